package main

// Review tests of API keys: the key never echoed in an error, byte-identical refusals (headers too), management
// access never obtainable, and "at once" under concurrent checks.

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/apikey"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/limit"
)

// TestReviewAPIKeyNotEchoed: a key sent in the wrong parameter of a token exchange (subject_token_type, audience,
// resource or scope) is never repeated in the error: "keys never appear in error messages".
func TestReviewAPIKeyNotEchoed(t *testing.T) {
	t.Parallel()
	ms := startKeys(t, func(m *Main) {
		lots := limit.Rate{Count: 1000, Per: time.Minute}
		m.AuthThrottle = limit.ThrottleOptions{PerClient: lots, PerSource: lots}
	})
	const aud = "https://api.example.com/v1"
	_, key := ms.admin.createKey(t, obj{"name": "k", "grants": []obj{{"audience": aud, "scopes": []string{"read"}}}})
	for _, tc := range []struct {
		what   string
		params []string
	}{
		{"subject_token_type", []string{"grant_type", "urn:ietf:params:oauth:grant-type:token-exchange",
			"subject_token", key, "subject_token_type", key}},
		{"subject_token_type, no subject_token", []string{"grant_type", "urn:ietf:params:oauth:grant-type:token-exchange",
			"subject_token_type", key}},
		{"audience", []string{"grant_type", "urn:ietf:params:oauth:grant-type:token-exchange",
			"subject_token", key, "subject_token_type", "urn:gatehouse:params:oauth:token-type:api-key", "audience", key}},
		{"resource", []string{"grant_type", "urn:ietf:params:oauth:grant-type:token-exchange",
			"subject_token", key, "subject_token_type", "urn:gatehouse:params:oauth:token-type:api-key", "resource", key}},
		{"scope", []string{"grant_type", "urn:ietf:params:oauth:grant-type:token-exchange",
			"subject_token", key, "subject_token_type", "urn:gatehouse:params:oauth:token-type:api-key", "scope", "read " + key}},
	} {
		r := reviewPostForm(t, ms.tokenURL(), form(tc.params...))
		if r.status == http.StatusOK {
			t.Errorf("%s: a key there was accepted: %s", tc.what, r.body)
			continue
		}
		if strings.Contains(r.body, key) || strings.Contains(r.body, key[len(key)-12:]) {
			t.Errorf("%s: the error repeats the key: %d %s", tc.what, r.status, r.body)
		}
	}
}

// TestReviewAPIKeyRefusalsIdentical: never existed, malformed, deleted, rotated out, past its grace period, disabled
// and expired keys get the same status, headers and body from the token exchange.
func TestReviewAPIKeyRefusalsIdentical(t *testing.T) {
	t.Parallel()
	ms := startKeys(t, func(m *Main) {
		lots := limit.Rate{Count: 1000, Per: time.Minute}
		m.AuthThrottle = limit.ThrottleOptions{PerClient: lots, PerSource: lots}
	})
	adm := ms.admin
	const aud = "https://api.example.com/v1"
	mk := func() (string, string) {
		k, key := adm.createKey(t, obj{"name": "k", "grants": []obj{{"audience": aud, "scopes": []string{"read"}}}})
		return strOf(k, "id"), key
	}
	never, _ := apikey.New("gate")
	keys := map[string]string{"never existed": never, "malformed": flipLast(never)}
	id, key := mk()
	adm.must(t, 204, "DELETE", "/api/v1/apikeys/"+id, nil)
	keys["deleted"] = key
	id, key = mk()
	adm.rotateKey(t, id, nil)
	keys["rotated out"] = key
	id, key = mk()
	_, key2 := adm.rotateKey(t, id, obj{"grace_period": 1})
	keys["past its grace period"] = key
	id, key = mk()
	adm.must(t, 200, "PATCH", "/api/v1/apikeys/"+id, obj{"disabled": true})
	keys["disabled"] = key
	id, key = mk()
	adm.must(t, 200, "PATCH", "/api/v1/apikeys/"+id, obj{"expires_at": time.Now().Add(1500 * time.Millisecond).UTC()})
	keys["expired"] = key
	time.Sleep(1600 * time.Millisecond)
	if r := ms.exchange(t, nil, key2); r.status != 200 {
		t.Fatalf("the new key of the rotation: %d %s", r.status, r.body)
	}

	norm := func(r response) string {
		h := r.header.Clone()
		h.Del("Date")
		h.Del("X-Request-Id")
		var b strings.Builder
		h.Write(&b)
		return strings.Join([]string{http.StatusText(r.status), b.String(), r.body}, "\n")
	}
	want := norm(ms.exchange(t, nil, never))
	for what, k := range keys {
		for range 2 { // once from the store, once from the cache
			if got := norm(ms.exchange(t, nil, k)); got != want {
				t.Errorf("%s: refused with\n%s\nwant\n%s", what, got, want)
			}
		}
	}
}

// TestReviewAPIKeyNoManagement: a key cannot be given management access, however the API is named, and so cannot
// be exchanged for a management token.
func TestReviewAPIKeyNoManagement(t *testing.T) {
	t.Parallel()
	ms := startKeys(t, nil)
	adm := ms.admin
	mgmt := adm.apiID(t, auth.ManagementAudience)
	for _, g := range []obj{
		{"audience": auth.ManagementAudience, "scopes": []string{auth.ScopeReadAPIKeys}},
		{"api_id": mgmt, "scopes": []string{auth.ScopeReadAPIKeys}},
		{"api_id": mgmt, "scopes": []string{}},
	} {
		wantProblem(t, "a management grant", adm.call(t, "POST", "/api/v1/apikeys", obj{"name": "x", "grants": []obj{g}}), 400, "grants[0].audience")
	}
	k, key := adm.createKey(t, obj{"name": "k", "grants": []obj{{"audience": "https://api.example.com/v1", "scopes": []string{"read"}}}})
	wantProblem(t, "PATCH to a management grant", adm.call(t, "PATCH", "/api/v1/apikeys/"+strOf(k, "id"),
		obj{"grants": []obj{{"api_id": mgmt, "scopes": []string{auth.ScopeReadAPIKeys}}}}), 400, "grants[0].audience")
	if r := ms.exchange(t, nil, key, "audience", auth.ManagementAudience); r.status == 200 {
		t.Errorf("a key exchanged for management access: %s", r.body)
	}
}

// TestReviewAPIKeyAtOnceUnderLoad: while other requests keep checking a key (so loads of it are in flight when
// the change lands), a rotation, a scope change and a disable are each seen by the first exchange and check after
// the management call returns.
func TestReviewAPIKeyAtOnceUnderLoad(t *testing.T) {
	t.Parallel()
	ms := startKeys(t, func(m *Main) {
		lots := limit.Rate{Count: 100000, Per: time.Minute}
		m.AuthThrottle = limit.ThrottleOptions{PerClient: lots, PerSource: lots}
	})
	adm := ms.admin
	const aud = "https://api.example.com/v1"
	_, gwSecret := adm.createClient(t, obj{"client_id": "gateway", "name": "API gateway"})
	adm.grant(t, "gateway", auth.ManagementAudience, auth.ScopeVerifyAPIKeys)
	gw := ms.as(t, "gateway", gwSecret)
	k, key := adm.createKey(t, obj{"name": "k", "grants": []obj{{"audience": aud, "scopes": []string{"read", "write"}}}})
	id := strOf(k, "id")

	var current atomic.Pointer[string]
	current.Store(&key)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ms.exchange(t, nil, *current.Load())
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	for i := range 15 {
		old := *current.Load()
		_, next := adm.rotateKey(t, id, nil)
		if r := ms.exchange(t, nil, old); r.status != http.StatusBadRequest {
			t.Fatalf("round %d: the rotated-out key right after the rotation: %d %s", i, r.status, r.body)
		}
		gw.wantCode(t, "the rotated-out key", old, "not_found")
		current.Store(&next)
		scopes := []string{"read"}
		if i%2 == 1 {
			scopes = []string{"read", "write"}
		}
		adm.must(t, 200, "PATCH", "/api/v1/apikeys/"+id, obj{"grants": []obj{{"audience": aud, "scopes": scopes}}})
		if r := ms.exchange(t, nil, next); r.status != 200 || r.json["scope"] != strings.Join(scopes, " ") {
			t.Fatalf("round %d: after the scope change to %v: %d %s", i, scopes, r.status, r.body)
		}
		adm.must(t, 200, "PATCH", "/api/v1/apikeys/"+id, obj{"disabled": true})
		if r := ms.exchange(t, nil, next); r.status != http.StatusBadRequest {
			t.Fatalf("round %d: disabled: %d %s", i, r.status, r.body)
		}
		gw.wantCode(t, "disabled", next, "disabled")
		adm.must(t, 200, "PATCH", "/api/v1/apikeys/"+id, obj{"disabled": false})
	}
}

// reviewPostForm posts a form to url.
func reviewPostForm(tb testing.TB, url, body string) response {
	tb.Helper()
	resp, err := http.Post(url, "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, body: string(b)}
	json.Unmarshal(b, &r.json)
	return r
}

// TestAPIKeyExchangeParameters: RFC 8693 parameters this server does not honour are refused, not ignored: a
// requested_token_type other than an access token, and an actor token (delegation).
func TestAPIKeyExchangeParameters(t *testing.T) {
	t.Parallel()
	ms := startKeys(t, nil)
	const aud = "https://api.example.com/v1"
	_, key := ms.admin.createKey(t, obj{"name": "k", "grants": []obj{{"audience": aud, "scopes": []string{"read"}}}})
	base := []string{"grant_type", "urn:ietf:params:oauth:grant-type:token-exchange",
		"subject_token", key, "subject_token_type", "urn:gatehouse:params:oauth:token-type:api-key"}
	for _, tc := range []struct {
		name   string
		extra  []string
		status int
	}{
		{"access token requested", []string{"requested_token_type", "urn:ietf:params:oauth:token-type:access_token"}, 200},
		{"an id_token requested", []string{"requested_token_type", "urn:ietf:params:oauth:token-type:id_token"}, 400},
		{"a refresh token requested", []string{"requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"}, 400},
		{"an actor token", []string{"actor_token", "x", "actor_token_type", "urn:ietf:params:oauth:token-type:access_token"}, 400},
	} {
		r := reviewPostForm(t, ms.tokenURL(), form(append(append([]string{}, base...), tc.extra...)...))
		if r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
		}
		if tc.status == 400 && !strings.Contains(r.body, `"invalid_request"`) {
			t.Errorf("%s: %s, want invalid_request", tc.name, r.body)
		}
	}
}
