package forwardauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/verify"
)

// clock is a settable time for the handler and the verifier.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }
func newClock(t time.Time) *clock    { return &clock{t: t} }
func b64(b []byte) string            { return base64.RawURLEncoding.EncodeToString(b) }
func mustJSON(v any) []byte          { b, _ := json.Marshal(v); return b }
func (f *fixture) sign(c map[string]any) string {
	input := b64(mustJSON(map[string]string{"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"})) + "." + b64(mustJSON(c))
	return input + "." + b64(ed25519.Sign(f.priv, []byte(input)))
}

// fixture is a handler with rules, a verifier of an Ed25519 issuer on httptest, a settable clock and metrics.
type fixture struct {
	h     *Handler
	priv  ed25519.PrivateKey
	iss   string
	clock *clock
	reg   *prometheus.Registry
}

const testRules = `rules:
  - name: items
    host: api.example.com
    path: /v1/items
    audience: https://api.example.com/v1
    scopes: [read]
`

func newFixture(t *testing.T, cacheSize int) *fixture {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks := mustJSON(map[string]any{"keys": []map[string]string{{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "x": b64(pub)}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(jwks) }))
	t.Cleanup(srv.Close)
	rules, err := Parse("rules.yaml", []byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{priv: priv, iss: srv.URL + "/", clock: newClock(time.Now()), reg: prometheus.NewRegistry()}
	v, err := verify.New(verify.Config{Issuer: f.iss, Audiences: rules.Audiences(), JWKSURL: srv.URL, Now: f.clock.Now,
		Leeway: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f.h, err = New(rules, v, Options{CacheSize: cacheSize, Metrics: NewMetrics(f.reg), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// claims are valid claims for the rule, expiring in an hour of the fixture's clock, with changes (nil deletes).
func (f *fixture) claims(changes map[string]any) map[string]any {
	now := f.clock.Now()
	c := map[string]any{"iss": f.iss, "sub": "svc-one", "client_id": "svc-one", "aud": "https://api.example.com/v1",
		"scope": "read", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// check asks the /traefik endpoint about GET api.example.com/v1/items with token.
func (f *fixture) check(token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/traefik", nil)
	r.Header.Set("X-Forwarded-Method", "GET")
	r.Header.Set("X-Forwarded-Host", "api.example.com")
	r.Header.Set("X-Forwarded-Uri", "/v1/items")
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	f.h.Endpoints(nil).ServeHTTP(w, r)
	return w
}

// counter returns the value of the counter name (with labels as name{a="b"} in want's form) in f's registry.
func (f *fixture) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() != name {
			continue
		}
	metrics:
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestHandlerAllows(t *testing.T) {
	f := newFixture(t, 0)
	w := f.check(f.sign(f.claims(map[string]any{"org_id": "org-7", "scope": "read write"})))
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	for k, want := range map[string]string{"X-Auth-Subject": "svc-one", "X-Auth-Client-Id": "svc-one", "X-Auth-Org-Id": "org-7", "X-Auth-Scopes": "read write"} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if n := f.counter(t, "gatehouse_authorize_decisions_total", map[string]string{"result": "allow", "rule": "items"}); n != 1 {
		t.Errorf("decisions{allow,items} = %v, want 1", n)
	}
	// cmd/gatehouse gives JWKSRefreshed to verify.Config.OnRefresh.
	f.h.m.JWKSRefreshed(nil)
	f.h.m.JWKSRefreshed(verify.ErrJWKSUnavailable)
	f.h.m.JWKSRefreshed(verify.ErrJWKSUnavailable)
	ok := f.counter(t, "gatehouse_authorize_jwks_refreshes_total", map[string]string{"result": "ok"})
	failed := f.counter(t, "gatehouse_authorize_jwks_refreshes_total", map[string]string{"result": "error"})
	if ok != 1 || failed != 2 {
		t.Errorf("jwks_refreshes_total ok, error = %v, %v; want 1, 2", ok, failed)
	}
}

// TestHandlerCacheExpiry: a cached token is answered from the cache until its exp, then verified again (and
// refused, being expired).
func TestHandlerCacheExpiry(t *testing.T) {
	f := newFixture(t, 0)
	tok := f.sign(f.claims(nil))
	verifications := func() float64 { return f.counter(t, "gatehouse_authorize_token_verifications_total", nil) }
	for i := range 3 {
		if w := f.check(tok); w.Code != 200 {
			t.Fatalf("request %d: status %d", i, w.Code)
		}
	}
	if v, h := verifications(), f.counter(t, "gatehouse_authorize_cache_hits_total", nil); v != 1 || h != 2 {
		t.Errorf("verifications, hits = %v, %v; want 1, 2", v, h)
	}
	f.clock.Add(59 * time.Minute)
	if w := f.check(tok); w.Code != 200 || verifications() != 1 {
		t.Errorf("a minute before exp: status %d, verifications %v; want 200 from the cache", w.Code, verifications())
	}
	f.clock.Add(time.Minute)
	w := f.check(tok)
	if w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) || verifications() != 2 {
		t.Errorf("at exp: status %d %q, verifications %v; want 401 invalid_token after a new verification",
			w.Code, w.Header().Get("WWW-Authenticate"), verifications())
	}
	if f.h.cache.Len() != 0 {
		t.Errorf("the cache holds %d entries after the token expired, want 0", f.h.cache.Len())
	}
}

func TestHandlerNoCache(t *testing.T) {
	f := newFixture(t, -1)
	tok := f.sign(f.claims(nil))
	for range 3 {
		if w := f.check(tok); w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
	}
	if v := f.counter(t, "gatehouse_authorize_token_verifications_total", nil); v != 3 {
		t.Errorf("verifications = %v without a cache, want 3", v)
	}
}

// TestHandlerRefuses: what a check without an acceptable token gets, and that no refusal carries X-Auth-*.
func TestHandlerRefuses(t *testing.T) {
	f := newFixture(t, 0)
	tests := []struct {
		name      string
		token     string
		status    int
		challenge string
		result    string
	}{
		{"no token", "", 401, `Bearer realm="gatehouse"`, "no_token"},
		{"claim with a newline", f.sign(f.claims(map[string]any{"sub": "svc-one\r\nX-Auth-Scopes: admin"})), 401, `error="invalid_token"`, "invalid_token"},
		{"no scope", f.sign(f.claims(map[string]any{"scope": nil})), 403, `error="insufficient_scope"`, "insufficient_scope"},
		{"no exp", f.sign(f.claims(map[string]any{"exp": nil})), 401, `error="invalid_token"`, "invalid_token"},
		{"not yet valid", f.sign(f.claims(map[string]any{"nbf": time.Now().Add(time.Hour).Unix()})), 401, `error="invalid_token"`, "invalid_token"},
	}
	for _, tt := range tests {
		w := f.check(tt.token)
		if w.Code != tt.status || !strings.Contains(w.Header().Get("WWW-Authenticate"), tt.challenge) {
			t.Errorf("%s: status %d, WWW-Authenticate %q; want %d with %q", tt.name, w.Code, w.Header().Get("WWW-Authenticate"), tt.status, tt.challenge)
		}
		for _, h := range authHeaders {
			if _, ok := w.Header()[h]; ok {
				t.Errorf("%s: the refusal carries %s", tt.name, h)
			}
		}
		if n := f.counter(t, "gatehouse_authorize_decisions_total", map[string]string{"result": tt.result, "rule": "items"}); n < 1 {
			t.Errorf("%s: decisions{%s,items} = %v, want at least 1", tt.name, tt.result, n)
		}
	}
	if f.h.cache.Len() != 1 { // the token without scopes is valid: cached, and refused by the rule
		t.Errorf("the cache holds %d entries, want 1: invalid tokens are not cached", f.h.cache.Len())
	}
}

func TestNewRejectsBadEnvoyPrefix(t *testing.T) {
	rules, err := Parse("r.yaml", []byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"envoy", "/envoy/"} {
		if _, err := New(rules, nil, Options{EnvoyPrefix: p}); err == nil {
			t.Errorf("New with EnvoyPrefix %q succeeded", p)
		}
	}
}

const keyRules = `rules:
  - name: items
    host: api.example.com
    path: /v1/items
    audience: https://api.example.com/v1
    scopes: [read]
    api_keys: true
  - name: reports
    host: reports.example.com
    audience: urn:example:reports
    scopes: ["reports:read"]
    api_keys: true
  - name: tokens-only
    host: api.example.com
    path: /v1/admin
    audience: https://api.example.com/v1
`

// keyFixture is a handler with keyRules, a stand-in for Gatehouse's key check knowing keys (key → answer; absent:
// not found), and the number of checks it answered.
type keyFixture struct {
	h      *Handler
	clock  *clock
	checks atomic.Int64
	mu     sync.Mutex
	keys   map[string]string
}

// A well-formed key (see package verify's tests), and another.
const (
	testKey  = "gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W1"
	otherKey = "gate_0000000000000000000000000000000004E8DGG"
)

func newKeyFixture(t *testing.T, ttl time.Duration) *keyFixture {
	t.Helper()
	f := &keyFixture{clock: newClock(time.Now()), keys: map[string]string{
		testKey: `{"valid":true,"key_id":"key_1","org_id":"org_7","grants":[` +
			`{"audience":"https://api.example.com/v1","scopes":["read"]},{"audience":"urn:example:reports","scopes":["reports:read"]}]}`,
		otherKey: `{"valid":true,"key_id":"key_2","grants":[{"audience":"urn:example:reports","scopes":["reports:read"]}]}`,
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/oauth/token" {
			w.Write([]byte(`{"access_token":"m","token_type":"Bearer","expires_in":3600}`))
			return
		}
		f.checks.Add(1)
		var in struct{ Key string }
		json.NewDecoder(r.Body).Decode(&in)
		f.mu.Lock()
		ans, ok := f.keys[in.Key]
		f.mu.Unlock()
		if !ok {
			ans = `{"valid":false,"code":"not_found"}`
		}
		w.Write([]byte(ans))
	}))
	t.Cleanup(srv.Close)
	keys, err := verify.NewAPIKeyVerifier(verify.APIKeyConfig{ServerURL: srv.URL, ClientID: "edge", ClientSecret: "s",
		Audience: "https://api.example.com/v1", CacheTTL: ttl, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Parse("rules.yaml", []byte(keyRules))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(rules, nil, Options{}); err == nil || !strings.Contains(err.Error(), "accepts API keys") {
		t.Errorf("New without an API key verifier: %v, want an error", err)
	}
	tokens, err := verify.New(verify.Config{Issuer: srv.URL + "/", Audiences: rules.Audiences(), JWKSURL: srv.URL, Now: f.clock.Now,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f.h, err = New(rules, tokens, Options{APIKeys: keys, APIKeyHeader: "x-api-key", Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// check asks the /traefik endpoint about GET host/uri with the headers (name, value pairs).
func (f *keyFixture) check(host, uri string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/traefik", nil)
	r.Header.Set("X-Forwarded-Method", "GET")
	r.Header.Set("X-Forwarded-Host", host)
	r.Header.Set("X-Forwarded-Uri", uri)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	f.h.Endpoints(nil).ServeHTTP(w, r)
	return w
}

func TestHandlerAPIKeys(t *testing.T) {
	f := newKeyFixture(t, time.Minute)
	tests := []struct {
		name       string
		host, uri  string
		header     []string
		status     int
		subject    string // of a 200
		scopes     string
		challenge  string // of a refusal
		wantChecks int64  // the server's count after the check
	}{
		{"key as bearer", "api.example.com", "/v1/items", []string{"Authorization", "Bearer " + testKey}, 200, "key_1", "read", "", 1},
		{"key in X-API-Key, cached", "api.example.com", "/v1/items/7", []string{"X-Api-Key", testKey}, 200, "key_1", "read", "", 1},
		// The claims for the reports API are the key's grant for it, not those cached for the items API.
		{"same key, another API", "reports.example.com", "/q1", []string{"Authorization", "Bearer " + testKey}, 200, "key_1", "reports:read", "", 1},
		{"key without a grant for the API", "api.example.com", "/v1/items", []string{"Authorization", "Bearer " + otherKey}, 401, "", "",
			`error_description="the API key is not valid for this API"`, 2},
		{"rule for tokens only", "api.example.com", "/v1/admin", []string{"Authorization", "Bearer " + testKey}, 401, "", "",
			`error_description="the token is malformed"`, 2},
		{"X-API-Key on a rule for tokens only", "api.example.com", "/v1/admin", []string{"X-API-Key", testKey}, 401, "", "", `Bearer realm="gatehouse"`, 2},
		{"key and token", "api.example.com", "/v1/items", []string{"X-API-Key", testKey, "Authorization", "Bearer x.y.z"}, 401, "", "",
			`error_description="the token is malformed"`, 2},
		{"not a key in X-API-Key", "api.example.com", "/v1/items", []string{"X-API-Key", "secret"}, 401, "", "",
			`error_description="the API key is malformed"`, 2},
		{"unknown key", "api.example.com", "/v1/items", []string{"X-API-Key", "gate_bcdefghijklmnopqrstuvwxyz0123A00000NPTu"}, 401, "", "",
			`error_description="the API key is not valid"`, 3},
		{"key in the query", "api.example.com", "/v1/items?key=" + testKey, []string{"Authorization", "Bearer " + testKey}, 403, "", "", "", 3},
	}
	for _, tt := range tests {
		w := f.check(tt.host, tt.uri, tt.header...)
		if w.Code != tt.status {
			t.Errorf("%s: status %d (%q), want %d", tt.name, w.Code, w.Header().Get("WWW-Authenticate"), tt.status)
		} else if tt.status == 200 && (w.Header().Get("X-Auth-Subject") != tt.subject || w.Header().Get("X-Auth-Client-Id") != tt.subject ||
			w.Header().Get("X-Auth-Scopes") != tt.scopes || w.Header().Get("X-Auth-Org-Id") != "org_7") {
			t.Errorf("%s: headers %v, want subject %s and scopes %q", tt.name, w.Header(), tt.subject, tt.scopes)
		} else if !strings.Contains(w.Header().Get("WWW-Authenticate"), tt.challenge) {
			t.Errorf("%s: WWW-Authenticate %q, want %q", tt.name, w.Header().Get("WWW-Authenticate"), tt.challenge)
		}
		if n := f.checks.Load(); n != tt.wantChecks {
			t.Errorf("%s: %d checks at the server, want %d", tt.name, n, tt.wantChecks)
		}
	}

	// Deleted on the server: still accepted from the caches until the TTL is over, then refused.
	f.mu.Lock()
	delete(f.keys, testKey)
	f.mu.Unlock()
	f.clock.Add(time.Minute - time.Second)
	if w := f.check("api.example.com", "/v1/items", "X-API-Key", testKey); w.Code != 200 {
		t.Errorf("deleted key within the TTL: %d, want 200", w.Code)
	}
	f.clock.Add(time.Second)
	if w := f.check("api.example.com", "/v1/items", "X-API-Key", testKey); w.Code != 401 {
		t.Errorf("deleted key after the TTL: %d, want 401", w.Code)
	}
}

// TestHandlerAPIKeysNoCache: with the key cache off, the handler's own cache does not keep keys either.
func TestHandlerAPIKeysNoCache(t *testing.T) {
	f := newKeyFixture(t, -1)
	for range 3 {
		if w := f.check("api.example.com", "/v1/items", "Authorization", "Bearer "+testKey); w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
	}
	if n := f.checks.Load(); n != 3 {
		t.Errorf("%d checks for 3 requests, want 3", n)
	}
	if n := f.h.cache.Len(); n != 0 {
		t.Errorf("the handler's cache holds %d entries, want 0", n)
	}
}

func TestNewRejectsBadAPIKeyHeader(t *testing.T) {
	rules, err := Parse("r.yaml", []byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"authorization", "X API Key", "X-API-Key:"} {
		if _, err := New(rules, nil, Options{APIKeyHeader: name}); err == nil {
			t.Errorf("New with APIKeyHeader %q succeeded", name)
		}
	}
}
