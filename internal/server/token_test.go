package server

import (
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/issuer"
)

func TestJSONParams(t *testing.T) {
	for _, tc := range []struct {
		body    string
		want    map[string]string
		wantErr string
	}{
		{body: `{"grant_type":"client_credentials","audience":"a","extra":{"x":[1]},"n":3}`, want: map[string]string{"grant_type": "client_credentials", "audience": "a"}},
		{body: `{"grant_type":"client_credentials","scope":"","audience":null}`, want: map[string]string{"grant_type": "client_credentials"}},
		{body: ` {} `, want: map[string]string{}},
		{body: `{"scope":["a"]}`, wantErr: `"scope" must be a string`},
		{body: `{"a":1,"a":2}`, wantErr: `member "a" is repeated`},
		{body: `[]`, wantErr: "must be an object"},
		{body: `"x"`, wantErr: "must be an object"},
		{body: ``, wantErr: "must be an object"},
		{body: `{"a":"b"}x`, wantErr: "unexpected data"},
		{body: `{"a":"b"}{}`, wantErr: "unexpected data"},
		{body: `{"a" "b"}`, wantErr: "malformed JSON body"},
	} {
		got, err := jsonParams([]byte(tc.body))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want %q", tc.body, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.body, got, err, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", tc.body, k, got[k], v)
			}
		}
	}
}

// FuzzParams: no body makes the parsers panic, and what they accept is single-valued and non-empty.
func FuzzParams(f *testing.F) {
	for _, s := range []string{
		`{"grant_type":"client_credentials","client_id":"a","client_secret":"b"}`,
		"grant_type=client_credentials&client_id=a&client_secret=b&scope=read%20write",
		`{"a":{"b":[1,2,{"c":null}]}}`, "a=1&a=2", "%zz", `{"\u0000":"\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, parse := range []func([]byte) (map[string]string, error){
			jsonParams,
			func(b []byte) (map[string]string, error) { p, _, err := formParams(b); return p, err },
		} {
			p, err := parse(body)
			if err != nil {
				if oe, ok := err.(*issuer.Error); !ok || oe.Code == "" || oe.Description == "" {
					t.Fatalf("error %#v is not an OAuth error with a description", err)
				}
				continue
			}
			for k, v := range p {
				if v == "" {
					t.Fatalf("parameter %q kept with an empty value", k)
				}
			}
		}
	})
}

func TestClientCredentialsParsing(t *testing.T) {
	if err := badRequest("x"); err.Code != issuer.CodeInvalidRequest {
		t.Errorf("badRequest code %q", err.Code)
	}
	if got := quote(strings.Repeat("é", 100)); len([]rune(got)) > 70 {
		t.Errorf("quote does not bound its input: %d runes", len([]rune(got)))
	}
}
