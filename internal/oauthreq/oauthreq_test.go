package oauthreq

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// known is the token endpoint's policy: these parameters are read, other JSON members ignored.
var known = map[string]bool{
	"grant_type": true, "client_id": true, "client_secret": true, "audience": true, "resource": true, "scope": true,
}

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
		got, err := jsonParams([]byte(tc.body), known)
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

// TestUnknownParams: with a nil known every parameter is kept and every JSON member must be a string (the proxy's
// policy); with a known set the others are dropped, and in JSON may have any type (the token endpoint's).
func TestUnknownParams(t *testing.T) {
	p, err := jsonParams([]byte(`{"grant_type":"client_credentials","organization":"org_1","n":null}`), nil)
	if err != nil || len(p) != 2 || p["organization"] != "org_1" {
		t.Errorf("JSON, nil known: %v %v, want grant_type and organization", p, err)
	}
	if _, err := jsonParams([]byte(`{"organization":{"id":"org_1"}}`), nil); err == nil || err.Description != `"organization" must be a string` {
		t.Errorf("JSON object member, nil known: err %v, want must be a string", err)
	}
	if p, err := jsonParams([]byte(`{"organization":{"id":"org_1"},"scope":"read"}`), known); err != nil || len(p) != 1 {
		t.Errorf("JSON, known: %v %v, want scope only", p, err)
	}
	if p, err := formParams([]byte("grant_type=client_credentials&organization=org_1&scope="), nil); err != nil || len(p) != 2 || p["organization"] != "org_1" {
		t.Errorf("form, nil known: %v %v, want grant_type and organization", p, err)
	}
	if p, err := formParams([]byte("grant_type=client_credentials&organization=org_1"), known); err != nil || len(p) != 1 {
		t.Errorf("form, known: %v %v, want grant_type only", p, err)
	}
	// Repeats are refused whether or not the caller reads the parameter.
	for _, known := range []map[string]bool{nil, known} {
		if _, err := formParams([]byte("a=1&a=2"), known); err == nil || err.Code != "invalid_request" {
			t.Errorf("repeated form parameter: err %v, want invalid_request", err)
		}
		if _, err := formParams([]byte("resource=a&resource=b"), known); err == nil || err.Code != "invalid_target" || err.Status != 400 {
			t.Errorf("two resources: err %v, want 400 invalid_target", err)
		}
		if _, err := jsonParams([]byte(`{"a":{},"a":{}}`), known); err == nil || err.Code != "invalid_request" {
			t.Errorf("repeated JSON member: err %v, want invalid_request", err)
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
		for _, known := range []map[string]bool{known, nil} {
			for _, parse := range []func([]byte, map[string]bool) (Params, *Error){jsonParams, formParams} {
				p, err := parse(body, known)
				if err != nil {
					if err.Status != http.StatusBadRequest || err.Code == "" || err.Description == "" {
						t.Fatalf("error %#v is not an OAuth error with a description", err)
					}
					continue
				}
				for k, v := range p {
					if v == "" {
						t.Fatalf("parameter %q kept with an empty value", k)
					}
					if known != nil && !known[k] {
						t.Fatalf("parameter %q kept, not a known one", k)
					}
				}
			}
		}
	})
}

func TestRead(t *testing.T) {
	form, js := "application/x-www-form-urlencoded", "application/json"
	for _, tc := range []struct {
		name, method, query, contentType, body string
		wantStatus                             int // 0: no error
		wantCode                               string
		wantJSON                               bool
	}{
		{name: "form", contentType: form, body: "grant_type=client_credentials"},
		{name: "form with charset", contentType: form + "; charset=UTF-8", body: "grant_type=client_credentials"},
		{name: "JSON", contentType: js, body: `{"grant_type":"client_credentials"}`, wantJSON: true},
		{name: "GET", method: "GET", wantStatus: 405, wantCode: "invalid_request"},
		{name: "secret in the URL", query: "client_secret=x", contentType: form, body: "grant_type=client_credentials", wantStatus: 400, wantCode: "invalid_request"},
		{name: "assertion in the URL", query: "client_assertion=x", contentType: form, body: "grant_type=client_credentials", wantStatus: 400, wantCode: "invalid_request"},
		{name: "no content type", body: "grant_type=client_credentials", wantStatus: 400, wantCode: "invalid_request"},
		{name: "multipart", contentType: "multipart/form-data; boundary=x", body: "x", wantStatus: 400, wantCode: "invalid_request"},
		{name: "too large", contentType: form, body: "scope=" + strings.Repeat("a", maxBody), wantStatus: 413, wantCode: "invalid_request"},
		{name: "just fits", contentType: form, body: "scope=" + strings.Repeat("a", maxBody-len("scope="))},
		{name: "repeated resource", contentType: form, body: "resource=a&resource=b", wantStatus: 400, wantCode: "invalid_target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "POST"
			}
			r := httptest.NewRequest(method, "/oauth/token?"+tc.query, strings.NewReader(tc.body))
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			w := httptest.NewRecorder()
			p, isJSON, err := Read(w, r, known)
			if tc.wantStatus == 0 {
				if err != nil || p == nil || isJSON != tc.wantJSON {
					t.Fatalf("got %v, JSON %v, %v; want parameters, JSON %v", p, isJSON, err, tc.wantJSON)
				}
				return
			}
			if err == nil || err.Status != tc.wantStatus || err.Code != tc.wantCode || err.Description == "" {
				t.Fatalf("err %#v, want %d %s", err, tc.wantStatus, tc.wantCode)
			}
			if got := w.Header().Get("Allow"); (tc.wantStatus == 405) != (got == "POST") {
				t.Errorf("Allow = %q", got)
			}
		})
	}
	// A body that is longer than it says is cut at the bound all the same.
	r := httptest.NewRequest("POST", "/oauth/token", strings.NewReader("scope="+strings.Repeat("a", maxBody)))
	r.Header.Set("Content-Type", form)
	r.ContentLength = -1
	if _, _, err := Read(httptest.NewRecorder(), r, known); err == nil || err.Status != 413 {
		t.Errorf("unknown length over the bound: err %v, want 413", err)
	}
}

func TestClientCredentials(t *testing.T) {
	for _, tc := range []struct {
		name      string
		params    Params
		authz     []string
		wantID    string
		wantSec   string
		wantBasic bool
		wantErr   string // code
	}{
		{name: "body", params: Params{"client_id": "a", "client_secret": "s"}, wantID: "a", wantSec: "s"},
		{name: "Basic", authz: []string{basicAuth("a", "s")}, wantID: "a", wantSec: "s", wantBasic: true},
		{name: "Basic, form-encoded parts", authz: []string{basicAuth("a%3Ab", "s+%25")}, wantID: "a:b", wantSec: "s %", wantBasic: true},
		{name: "Basic with the same body client_id", params: Params{"client_id": "a"}, authz: []string{basicAuth("a", "s")}, wantID: "a", wantSec: "s", wantBasic: true},
		{name: "body secret without client_id: the caller's to refuse", params: Params{"client_secret": "s"}, wantSec: "s"},
		{name: "empty Basic user-id: the caller's to refuse", authz: []string{basicAuth("", "s")}, wantSec: "s", wantBasic: true},
		{name: "nothing", wantErr: "invalid_client"},
		{name: "client_id only, kept for the log", params: Params{"client_id": "a"}, wantID: "a", wantErr: "invalid_client"},
		{name: "two Authorization headers", authz: []string{basicAuth("a", "s"), basicAuth("a", "s")}, wantBasic: true, wantErr: "invalid_request"},
		{name: "Bearer", authz: []string{"Bearer x"}, wantBasic: true, wantErr: "invalid_client"},
		{name: "malformed Basic", authz: []string{"Basic !!!"}, wantBasic: true, wantErr: "invalid_client"},
		{name: "malformed encoding in Basic", authz: []string{basicAuth("a%zz", "s")}, wantBasic: true, wantErr: "invalid_client"},
		{name: "Basic and body secret", params: Params{"client_secret": "s"}, authz: []string{basicAuth("a", "s")}, wantBasic: true, wantErr: "invalid_request"},
		{name: "body client_id differs", params: Params{"client_id": "b"}, authz: []string{basicAuth("a", "s")}, wantBasic: true, wantErr: "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/oauth/token", nil)
			for _, v := range tc.authz {
				r.Header.Add("Authorization", v)
			}
			id, secret, basic, err := tc.params.ClientCredentials(r)
			if id != tc.wantID || secret != tc.wantSec || basic != tc.wantBasic {
				t.Errorf("got %q %q basic %v, want %q %q basic %v", id, secret, basic, tc.wantID, tc.wantSec, tc.wantBasic)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("err %v", err)
			case tc.wantErr != "" && (err == nil || err.Code != tc.wantErr || err.Description == ""):
				t.Errorf("err %v, want %s", err, tc.wantErr)
			case err != nil && (err.Status == http.StatusUnauthorized) != (err.Code == "invalid_client"):
				t.Errorf("err %v has status %d", err, err.Status)
			}
		})
	}
}

func basicAuth(id, secret string) string {
	r := httptest.NewRequest("GET", "/", nil)
	r.SetBasicAuth(id, secret)
	return r.Header.Get("Authorization")
}

func TestTarget(t *testing.T) {
	for _, tc := range []struct {
		params  Params
		want    string
		wantErr bool
	}{
		{params: Params{}, want: ""},
		{params: Params{"audience": "a"}, want: "a"},
		{params: Params{"resource": "r"}, want: "r"},
		{params: Params{"audience": "a", "resource": "a"}, want: "a"},
		{params: Params{"audience": "a", "resource": "r"}, wantErr: true},
	} {
		got, err := tc.params.Target()
		if got != tc.want || (err != nil) != tc.wantErr || (err != nil && err.Code != "invalid_request") {
			t.Errorf("%v: %q %v, want %q (error %v)", tc.params, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestInvalidRequestAndQuote(t *testing.T) {
	if err := invalidRequest("x"); err.Code != "invalid_request" || err.Status != http.StatusBadRequest {
		t.Errorf("invalidRequest: %d %q", err.Status, err.Code)
	}
	if got := Quote(strings.Repeat("é", 100)); len([]rune(got)) > 70 {
		t.Errorf("Quote does not bound its input: %d runes", len([]rune(got)))
	}
	if got, want := Quote("a\"\xff"), `"a\"`+"\uFFFD"+`"`; got != want {
		t.Errorf("Quote = %s, want %s", got, want)
	}
}
