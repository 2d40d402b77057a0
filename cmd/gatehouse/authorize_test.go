package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/issuer"
)

// authorizeRules protects the fixture's APIs: items of https://api.example.com/v1 (read to GET, write to change),
// its admin pages, and the reports API.
const authorizeRules = `realm: api.example.com
rules:
  - name: items-read
    host: api.example.com
    path: /v1/items
    methods: [GET, HEAD]
    audience: https://api.example.com/v1
    scopes: [read]
  - name: items-write
    host: api.example.com
    path: /v1/items
    audience: https://api.example.com/v1
    scopes: [write]
  - name: admin
    host: api.example.com
    path: /v1/admin
    audience: https://api.example.com/v1
    scopes: [admin]
  - name: reports
    host: reports.example.com
    audience: urn:example:reports
    scopes: ["reports:read"]
`

// startAuthorize runs `gatehouse authorize` with rules in front of ts, changed by configure, and stops it when the
// test ends.
func startAuthorize(t testing.TB, ts *testServer, rules string, cacheSize int, configure ...func(*Authorize)) *Authorize {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &Authorize{Addr: "127.0.0.1:0", RulesFile: path, Issuer: ts.IssuerURL,
		JWKSURL: ts.URL + "/.well-known/jwks.json", CacheSize: cacheSize}
	for _, f := range configure {
		f(a)
	}
	if err := a.Open(); err != nil {
		t.Fatalf("authorize: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("authorize: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("authorize did not stop within 20s")
		}
		a.Close()
	})
	return a
}

// authorizeTokens are tokens of the fixture's clients, from the real token endpoint or signed with the server's
// keys.
type authorizeTokens struct {
	readWrite, readOnly, reports, expired, otherIssuer, tampered string
}

func newAuthorizeTokens(t *testing.T, ts *testServer) authorizeTokens {
	t.Helper()
	now := time.Now()
	expired := issuer.Claims{
		Issuer: ts.IssuerURL, Subject: "svc-one", ClientID: "svc-one", Audience: seedAPI, Scope: "read write", ID: "expired",
		IssuedAt: now.Add(-2 * time.Hour).Unix(), NotBefore: now.Add(-2 * time.Hour).Unix(), ExpiresAt: now.Add(-time.Hour).Unix(),
	}
	other := expired
	other.Issuer, other.ID, other.IssuedAt, other.NotBefore, other.ExpiresAt = "https://other.example.com/", "other", now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
	readWrite := seedToken(t, ts, "svc-one", secretOne, seedAPI)
	return authorizeTokens{
		readWrite:   readWrite,
		readOnly:    seedToken(t, ts, "svc-multi", secretMulti, seedAPI),
		reports:     seedToken(t, ts, "svc-multi", secretMulti, "urn:example:reports"),
		expired:     seedSign(t, ts, auth.RS256, expired),
		otherIssuer: seedSign(t, ts, auth.RS256, other),
		tampered:    seedTamper(t, readWrite),
	}
}

// check asks authorize about a request the way proxy would: endpoint /nginx, /traefik or /envoy.
func check(t testing.TB, client *http.Client, a *Authorize, endpoint, method, host, uri, token string) *http.Response {
	t.Helper()
	var req *http.Request
	var err error
	switch endpoint {
	case "/nginx":
		req, err = http.NewRequest(method, a.URL+endpoint, nil) // nginx's subrequest keeps the method
		if err == nil {
			req.Host = host
			req.Header.Set("X-Original-Method", method)
			req.Header.Set("X-Original-URI", uri)
		}
	case "/traefik", "/caddy":
		req, err = http.NewRequest("GET", a.URL+endpoint, nil)
		if err == nil {
			req.Header.Set("X-Forwarded-Method", method)
			req.Header.Set("X-Forwarded-Host", host)
			req.Header.Set("X-Forwarded-Uri", uri)
			req.Header.Set("X-Forwarded-Proto", "https")
		}
	case "/envoy":
		req, err = http.NewRequest(method, a.URL+"/envoy"+uri, nil)
		if err == nil {
			req.Host = host
		}
	default:
		t.Fatalf("endpoint %q", endpoint)
	}
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestAuthorize(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "", nil, fixture)
	a := startAuthorize(t, ts, authorizeRules, 0)
	tok := newAuthorizeTokens(t, ts)

	const realm = `Bearer realm="api.example.com"`
	tests := []struct {
		name              string
		method, host, uri string
		token             string
		status            int
		challenge         string            // WWW-Authenticate, prefix
		headers           map[string]string // X-Auth-* of a 200
		rule, result      string
	}{
		{"allowed read", "GET", "api.example.com", "/v1/items/7?expand=1", tok.readWrite, 200, "",
			map[string]string{"X-Auth-Subject": "svc-one", "X-Auth-Client-Id": "svc-one", "X-Auth-Org-Id": "", "X-Auth-Scopes": "read write"},
			"items-read", "allow"},
		{"allowed write", "POST", "API.example.com:443", "/v1/items", tok.readWrite, 200, "",
			map[string]string{"X-Auth-Subject": "svc-one", "X-Auth-Scopes": "read write"}, "items-write", "allow"},
		{"read-only token reads", "GET", "api.example.com", "/v1/items", tok.readOnly, 200, "",
			map[string]string{"X-Auth-Subject": "svc-multi", "X-Auth-Client-Id": "svc-multi", "X-Auth-Scopes": "read"}, "items-read", "allow"},
		{"missing token", "GET", "api.example.com", "/v1/items", "", 401, realm, nil, "items-read", "no_token"},
		{"wrong scope", "DELETE", "api.example.com", "/v1/items/7", tok.readOnly, 403,
			realm + `, error="insufficient_scope", error_description="the token lacks a scope this request needs", scope="write"`, nil,
			"items-write", "insufficient_scope"},
		{"scope nobody has", "GET", "api.example.com", "/v1/admin/users", tok.readWrite, 403,
			realm + `, error="insufficient_scope"`, nil, "admin", "insufficient_scope"},
		{"expired", "GET", "api.example.com", "/v1/items", tok.expired, 401,
			realm + `, error="invalid_token", error_description="the token has expired"`, nil, "items-read", "invalid_token"},
		{"another API's token", "GET", "api.example.com", "/v1/items", tok.reports, 401,
			realm + `, error="invalid_token", error_description="the token is for another audience"`, nil, "items-read", "invalid_token"},
		{"that token on its API", "GET", "reports.example.com", "/2024/q1", tok.reports, 200, "",
			map[string]string{"X-Auth-Subject": "svc-multi", "X-Auth-Scopes": "reports:read"}, "reports", "allow"},
		{"another issuer", "GET", "api.example.com", "/v1/items", tok.otherIssuer, 401,
			realm + `, error="invalid_token", error_description="the token is from another issuer"`, nil, "items-read", "invalid_token"},
		{"tampered", "GET", "api.example.com", "/v1/items", tok.tampered, 401,
			realm + `, error="invalid_token", error_description="the token's signature is invalid"`, nil, "items-read", "invalid_token"},
		{"garbage", "GET", "api.example.com", "/v1/items", "InvalidToken", 401, realm + `, error="invalid_token"`, nil, "items-read", "invalid_token"},
		{"no rule: deny by default", "GET", "api.example.com", "/v2/items", tok.readWrite, 403, "", nil, "none", "no_rule"},
		{"no rule for the host", "GET", "evil.example.com", "/v1/items", tok.readWrite, 403, "", nil, "none", "no_rule"},
		{"dot segments", "GET", "api.example.com", "/v1/items/../admin", tok.readWrite, 403, "", nil, "none", "bad_request"},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, endpoint := range []string{"/nginx", "/traefik", "/caddy", "/envoy"} {
		for _, tt := range tests {
			before := metric(t, a, "gatehouse_authorize_decisions_total", "result", tt.result, "rule", tt.rule)
			resp := check(t, client, a, endpoint, tt.method, tt.host, tt.uri, tt.token)
			name := endpoint + " " + tt.name
			if resp.StatusCode != tt.status {
				t.Errorf("%s: status %d, want %d (WWW-Authenticate %q)", name, resp.StatusCode, tt.status, resp.Header.Get("WWW-Authenticate"))
				continue
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, tt.challenge) || (tt.challenge == "") != (got == "") {
				t.Errorf("%s: WWW-Authenticate %q, want %q…", name, got, tt.challenge)
			}
			for k, want := range tt.headers {
				if got, ok := resp.Header[k]; !ok || got[0] != want {
					t.Errorf("%s: %s = %q (present %v), want %q", name, k, got, ok, want)
				}
			}
			if tt.status != 200 && resp.Header.Get("X-Auth-Subject") != "" {
				t.Errorf("%s: a refusal carries X-Auth-Subject", name)
			}
			if after := metric(t, a, "gatehouse_authorize_decisions_total", "result", tt.result, "rule", tt.rule); after != before+1 {
				t.Errorf("%s: decisions{result=%q,rule=%q} went from %v to %v, want +1", name, tt.result, tt.rule, before, after)
			}
		}
	}
	if n := metric(t, a, "gatehouse_authorize_jwks_refreshes_total", "result", "ok"); n < 1 {
		t.Errorf("jwks_refreshes_total{result=ok} = %v, want at least 1", n)
	}
}

// TestAuthorizeCache: a token seen before is answered from the cache, without verifying it again, until it
// expires; a cache that is full evicts the least recently used token.
func TestAuthorizeCache(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "", nil, fixture)
	a := startAuthorize(t, ts, authorizeRules, 2)
	tok := newAuthorizeTokens(t, ts)
	client := &http.Client{Timeout: 10 * time.Second}
	counts := func() (verifications, hits float64) {
		return metric(t, a, "gatehouse_authorize_token_verifications_total"), metric(t, a, "gatehouse_authorize_cache_hits_total")
	}
	want := func(step string, wantV, wantH float64) {
		t.Helper()
		if v, h := counts(); v != wantV || h != wantH {
			t.Errorf("%s: verifications, cache hits = %v, %v; want %v, %v", step, v, h, wantV, wantH)
		}
	}
	get := func(token string, status int) {
		t.Helper()
		if resp := check(t, client, a, "/nginx", "GET", "api.example.com", "/v1/items", token); resp.StatusCode != status {
			t.Fatalf("status %d, want %d", resp.StatusCode, status)
		}
	}

	get(tok.readWrite, 200)
	want("first request", 1, 0)
	get(tok.readWrite, 200)
	get(tok.readWrite, 200)
	want("same token twice more", 1, 2)
	// The cached claims still meet each rule on their own: the audience and scopes are checked on every request.
	if resp := check(t, client, a, "/nginx", "GET", "reports.example.com", "/", tok.readWrite); resp.StatusCode != 401 {
		t.Errorf("cached token on another API's rule: status %d, want 401", resp.StatusCode)
	}
	if resp := check(t, client, a, "/nginx", "DELETE", "api.example.com", "/v1/admin", tok.readWrite); resp.StatusCode != 403 {
		t.Errorf("cached token without the scope: status %d, want 403", resp.StatusCode)
	}
	want("cached token on other rules", 1, 4)
	// Refused tokens are not cached: each costs a verification.
	get(tok.expired, 401)
	get(tok.expired, 401)
	want("expired token twice", 3, 4)
	// Size 2: a third token evicts the least recently used.
	get(tok.readOnly, 200)
	get(tok.reports, 401) // verified (for another API) and cached: the cache holds readOnly and reports now
	get(tok.readWrite, 200)
	want("after eviction", 6, 4)
}

// TestAuthorizeBadInput: hostile or broken checks get 4xx, never 500, and never 200.
func TestAuthorizeBadInput(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "", nil, fixture)
	a := startAuthorize(t, ts, authorizeRules, 0)
	tok := newAuthorizeTokens(t, ts)
	long := strings.Repeat("a", 70<<10)
	tests := []struct {
		name    string
		path    string
		headers map[string][]string
	}{
		{"nothing", "/nginx", nil},
		{"no original URI", "/nginx", map[string][]string{"X-Original-Method": {"GET"}}},
		{"client's X-Forwarded-* behind nginx", "/nginx", map[string][]string{
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/v1/items"}, "X-Forwarded-Host": {"api.example.com"}}},
		{"client's X-Original-* behind Traefik", "/traefik", map[string][]string{
			"X-Original-Method": {"GET"}, "X-Original-URI": {"/v1/items"}}},
		{"encoded slash", "/traefik", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"api.example.com"},
			"X-Forwarded-Uri": {"/v1/items%2F..%2Fadmin"}}},
		{"backslash", "/traefik", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"api.example.com"},
			"X-Forwarded-Uri": {`/v1/items\..\admin`}}},
		{"bad escape", "/traefik", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"api.example.com"},
			"X-Forwarded-Uri": {"/v1/items/%zz"}}},
		{"huge URI", "/traefik", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"api.example.com"},
			"X-Forwarded-Uri": {"/v1/items/" + long[:20<<10]}}},
		{"headers too large", "/nginx", map[string][]string{"X-Original-Method": {"GET"}, "X-Original-URI": {"/v1/items"}, "X-Big": {long}}},
		{"bad method", "/traefik", map[string][]string{"X-Forwarded-Method": {"G(E)T"}, "X-Forwarded-Host": {"api.example.com"}, "X-Forwarded-Uri": {"/v1/items"}}},
		{"bad host", "/traefik", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"api.example.com/x"}, "X-Forwarded-Uri": {"/v1/items"}}},
		{"two Authorization headers", "/traefik", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"api.example.com"},
			"X-Forwarded-Uri": {"/v1/items"}, "Authorization": {"Bearer " + tok.readWrite, "Bearer " + tok.readOnly}}},
		{"Basic", "/traefik", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"api.example.com"},
			"X-Forwarded-Uri": {"/v1/items"}, "Authorization": {"Basic c3ZjLW9uZTpzZWNyZXQ="}}},
		{"Bearer and nothing", "/traefik", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"api.example.com"},
			"X-Forwarded-Uri": {"/v1/items"}, "Authorization": {"Bearer "}}},
		{"token with a comma", "/traefik", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"api.example.com"},
			"X-Forwarded-Uri": {"/v1/items"}, "Authorization": {"Bearer " + tok.readWrite + ",x"}}},
		{"huge token", "/traefik", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"api.example.com"},
			"X-Forwarded-Uri": {"/v1/items"}, "Authorization": {"Bearer " + long[:40<<10]}}},
		{"token of dots", "/traefik", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"api.example.com"},
			"X-Forwarded-Uri": {"/v1/items"}, "Authorization": {"Bearer ..."}}},
		{"envoy without its prefix", "/v1/items", nil},
		{"envoy, dot segments", "/envoy/v1/items/../admin", nil},
		{"envoy, encoded slash", "/envoy/v1/items%2F..%2Fadmin", nil},
		{"envoy, double slashes", "/envoy//v1//items", nil}, // no token: 401
	}
	client := &http.Client{Timeout: 10 * time.Second, // a redirect would be an answer too: do not follow it
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range tests {
		req, err := http.NewRequest("GET", a.URL+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "api.example.com"
		for k, vs := range tt.headers {
			req.Header[k] = vs
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("%s: status %d, want a 4xx", tt.name, resp.StatusCode)
		}
	}
}

func TestAuthorizeUsage(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(authorizeRules), 0o600); err != nil {
		t.Fatal(err)
	}
	apiKeys := filepath.Join(dir, "apikeys.yaml")
	if err := os.WriteFile(apiKeys, []byte("rules:\n  - audience: urn:a\n    api_keys: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"authorize", "--issuer", "https://auth.example.com/"}, 2, "--rules is required"},
		{[]string{"authorize", "--rules", rules}, 2, "--issuer is required"},
		{[]string{"authorize", "--rules", rules, "--issuer", "auth.example.com"}, 2, "use an http or https URL"},
		{[]string{"authorize", "--rules", rules, "--issuer", "https://a/", "--jwks-url", "x"}, 2, "--jwks-url"},
		{[]string{"authorize", "--rules", rules, "--issuer", "https://a/", "--log-format", "xml"}, 2, "--log-format"},
		{[]string{"authorize", "--rules", rules, "--issuer", "https://a/", "--envoy-prefix", "envoy"}, 2, "--envoy-prefix"},
		{[]string{"authorize", "--rules", rules, "--issuer", "https://a/", "extra"}, 2, "unexpected argument"},
		{[]string{"authorize", "--rules", filepath.Join(dir, "missing.yaml"), "--issuer", "https://a/"}, 1, "no such file"},
		{[]string{"authorize", "--rules", apiKeys, "--issuer", "https://a/", "--addr", "127.0.0.1:0"}, 1,
			apiKeys + `:2: the rule "/" accepts API keys (api_keys: true), but no Gatehouse server is configured to check them: set --server`},
		{[]string{"authorize", "--rules", apiKeys, "--issuer", "https://a/", "--addr", "127.0.0.1:0", "--server", "http://127.0.0.1:1"}, 1,
			"set GATEHOUSE_CLIENT_ID and GATEHOUSE_CLIENT_SECRET to a client granted verify:apikeys"},
		{[]string{"authorize", "--rules", rules, "--issuer", "https://a/", "--server", "gatehouse:8080"}, 2, "--server"},
		{[]string{"authorize", "--rules", rules, "--issuer", "https://a/", "--api-key-cache-ttl", "-1s"}, 2, "--api-key-cache-ttl"},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("gatehouse %s: exit %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.stderr)
		}
	}

	// Every flag reads GATEHOUSE_<FLAG>: with the rules and issuer from the environment, the command starts and
	// ends with its context.
	t.Setenv("GATEHOUSE_RULES", rules)
	t.Setenv("GATEHOUSE_ISSUER", "https://auth.example.com/")
	t.Setenv("GATEHOUSE_ADDR", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_JWKS_URL", "http://127.0.0.1:1/jwks.json") // nothing listens: no request leaves the machine
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var stderr strings.Builder
	if code := run(ctx, []string{"authorize"}, io.Discard, &stderr); code != 0 {
		t.Errorf("gatehouse authorize from the environment: exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "gatehouse authorize serving") {
		t.Errorf("stderr %q: want the serving log line", stderr.String())
	}
}

// metric returns the value of the Prometheus sample name{labels…} that a's /metrics serves (0 when absent).
func metric(t testing.TB, a *Authorize, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(a.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want := name
	if len(labels) > 0 {
		var b strings.Builder
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(labels[i] + "=" + strconv.Quote(labels[i+1]))
		}
		want += "{" + b.String() + "}"
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, want+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return 0
}
