package main

// End-to-end tests of `gatehouse authorize` accepting Gatehouse API keys: a real Gatehouse server, keys made through
// its management API, a gateway client granted verify:apikeys alone, and the real forward-auth handler.

import (
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/apikey"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/verify"
)

// authorizeKeyRules accepts API keys on the items and reports APIs; the admin pages take access tokens only.
const authorizeKeyRules = `realm: api.example.com
rules:
  - name: items-read
    host: api.example.com
    path: /v1/items
    methods: [GET, HEAD]
    audience: https://api.example.com/v1
    scopes: [read]
    api_keys: true
  - name: items-write
    host: api.example.com
    path: /v1/items
    audience: https://api.example.com/v1
    scopes: [write]
    api_keys: true
  - name: reports
    host: reports.example.com
    audience: urn:example:reports
    scopes: ["reports:read"]
    api_keys: true
  - name: admin
    host: api.example.com
    path: /v1/admin
    audience: https://api.example.com/v1
    scopes: [read]
`

// gatewayClient is the client `gatehouse authorize` checks keys as: granted verify:apikeys, nothing else.
const gatewayClient = "edge-gateway"

// keyEdge is a Gatehouse server with an organization, the gateway's client, and the keys the tests make.
type keyEdge struct {
	ms            *manageServer
	gatewaySecret string
	orgID         string
}

func newKeyEdge(t *testing.T) *keyEdge {
	t.Helper()
	ms := startManage(t)
	_, secret := ms.admin.createClient(t, obj{"client_id": gatewayClient, "name": "Edge gateway"})
	ms.admin.grant(t, gatewayClient, auth.ManagementAudience, auth.ScopeVerifyAPIKeys)
	org := ms.admin.must(t, http.StatusCreated, "POST", "/api/v1/orgs", obj{"name": "acme", "allowed_grants": []obj{
		{"audience": seedAPI, "scopes": []string{"read", "write"}},
		{"audience": "urn:example:reports", "scopes": []string{"reports:read"}},
	}})
	return &keyEdge{ms: ms, gatewaySecret: secret, orgID: strOf(org.json, "id")}
}

// newKey makes a key of the organization, owned by user-42, reading items and reports, and returns its id and the
// key, which the server's log must never hold.
func (e *keyEdge) newKey(t *testing.T, name string) (id, key string) {
	t.Helper()
	r := e.ms.admin.must(t, http.StatusCreated, "POST", "/api/v1/apikeys", obj{"name": name, "org_id": e.orgID, "owner": "user-42",
		"grants": []obj{{"audience": seedAPI, "scopes": []string{"read"}}, {"audience": "urn:example:reports", "scopes": []string{"reports:read"}}}})
	id, key = strOf(r.json, "id"), strOf(r.json, "key")
	if id == "" || key == "" {
		t.Fatalf("create key: %s", r.body)
	}
	e.ms.remember(key)
	return id, key
}

func (e *keyEdge) deleteKey(t *testing.T, id string) {
	t.Helper()
	e.ms.admin.must(t, http.StatusNoContent, "DELETE", "/api/v1/apikeys/"+id, nil)
}

// authorize runs `gatehouse authorize` with authorizeKeyRules, checking keys with e's server as the gateway client,
// trusting an accepted key for ttl (negative: not at all), and logging at debug level into logs.
func (e *keyEdge) authorize(t *testing.T, ttl time.Duration, logs *syncBuffer) *Authorize {
	t.Helper()
	return startAuthorize(t, e.ms.testServer, authorizeKeyRules, 0, func(a *Authorize) {
		a.Server, a.ClientID, a.ClientSecret = e.ms.URL, gatewayClient, e.gatewaySecret
		a.APIKeyCacheTTL, a.APIKeyHeader = ttl, "X-API-Key"
		a.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
}

// checkWith asks a's /traefik endpoint about method host uri, with the headers (name, value pairs).
func checkWith(t *testing.T, a *Authorize, method, host, uri string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", a.URL+"/traefik", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Host", host)
	req.Header.Set("X-Forwarded-Uri", uri)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// waitFor polls f until it holds, failing the test if it has not within a minute (far beyond any TTL used here:
// the bound only keeps a broken build from hanging).
func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !f(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
	}
}

func TestAuthorizeAPIKeys(t *testing.T) {
	t.Parallel()
	e := newKeyEdge(t)
	keyID, key := e.newKey(t, "ci")
	logs := &syncBuffer{}
	a := e.authorize(t, 2*time.Second, logs)
	token := seedToken(t, e.ms.testServer, "svc-one", secretOne, seedAPI) // read write

	const realm = `Bearer realm="api.example.com"`
	keyHeaders := map[string]string{"X-Auth-Subject": keyID, "X-Auth-Client-Id": keyID, "X-Auth-Org-Id": e.orgID, "X-Auth-Scopes": "read"}
	tests := []struct {
		name              string
		method, host, uri string
		header            []string
		status            int
		challenge         string            // WWW-Authenticate, prefix
		headers           map[string]string // X-Auth-* of a 200
	}{
		{"key as a bearer token", "GET", "api.example.com", "/v1/items/7", []string{"Authorization", "Bearer " + key}, 200, "", keyHeaders},
		{"key in X-API-Key", "GET", "api.example.com", "/v1/items", []string{"X-API-Key", key}, 200, "", keyHeaders},
		{"key on another API", "GET", "reports.example.com", "/2024/q1", []string{"X-API-Key", key}, 200, "",
			map[string]string{"X-Auth-Subject": keyID, "X-Auth-Org-Id": e.orgID, "X-Auth-Scopes": "reports:read"}},
		{"key without the scope", "DELETE", "api.example.com", "/v1/items/7", []string{"Authorization", "Bearer " + key}, 403,
			realm + `, error="insufficient_scope", error_description="the token lacks a scope this request needs", scope="write"`, nil},
		{"key on a rule for tokens only", "GET", "api.example.com", "/v1/admin", []string{"Authorization", "Bearer " + key}, 401,
			realm + `, error="invalid_token"`, nil},
		{"access token beside keys", "DELETE", "api.example.com", "/v1/items/7", []string{"Authorization", "Bearer " + token}, 200, "",
			map[string]string{"X-Auth-Subject": "svc-one", "X-Auth-Client-Id": "svc-one", "X-Auth-Org-Id": "", "X-Auth-Scopes": "read write"}},
		{"unknown key", "GET", "api.example.com", "/v1/items", []string{"X-API-Key", makeUnknownKey(t)}, 401,
			realm + `, error="invalid_token", error_description="the API key is not valid"`, nil},
		{"mistyped key", "GET", "api.example.com", "/v1/items", []string{"X-API-Key", typo(key)}, 401,
			realm + `, error="invalid_token", error_description="the API key is malformed"`, nil},
		{"key and token", "GET", "api.example.com", "/v1/items", []string{"X-API-Key", key, "Authorization", "Bearer " + token}, 401,
			realm + `, error="invalid_token"`, nil},
		{"key in the query", "GET", "api.example.com", "/v1/items?api_key=" + key, []string{"Authorization", "Bearer " + token}, 403, "", nil},
	}
	for _, tt := range tests {
		resp := checkWith(t, a, tt.method, tt.host, tt.uri, tt.header...)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: status %d, want %d (WWW-Authenticate %q)", tt.name, resp.StatusCode, tt.status, resp.Header.Get("WWW-Authenticate"))
			continue
		}
		if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, tt.challenge) || (tt.challenge == "") != (got == "") {
			t.Errorf("%s: WWW-Authenticate %q, want %q…", tt.name, got, tt.challenge)
		}
		for k, want := range tt.headers {
			if got, ok := resp.Header[k]; !ok || got[0] != want {
				t.Errorf("%s: %s = %q (present %v), want %q", tt.name, k, got, ok, want)
			}
		}
	}
	// The other proxies' endpoints read the same key.
	for _, endpoint := range []string{"/nginx", "/caddy", "/envoy"} {
		if resp := check(t, http.DefaultClient, a, endpoint, "GET", "api.example.com", "/v1/items", key); resp.StatusCode != 200 ||
			resp.Header.Get("X-Auth-Subject") != keyID {
			t.Errorf("%s: status %d, subject %q; want 200 and %s", endpoint, resp.StatusCode, resp.Header.Get("X-Auth-Subject"), keyID)
		}
	}

	// Deleted: refused once the API key cache TTL (here 2 s) has run out, no later.
	e.deleteKey(t, keyID)
	waitFor(t, "deleted key refused", func() bool {
		return checkWith(t, a, "GET", "api.example.com", "/v1/items", "X-API-Key", key).StatusCode == http.StatusUnauthorized
	})
	if n := metric(t, a, "gatehouse_authorize_decisions_total", "result", "allow", "rule", "items-read"); n < 4 {
		t.Errorf("decisions{allow,items-read} = %v, want at least 4", n)
	}
	if strings.Contains(logs.String(), key) {
		t.Errorf("authorize's log holds the key:\n%s", logs)
	}
}

// TestAuthorizeAPIKeyNoCache: with --api-key-cache-ttl 0 every check asks the server, so a deleted key is refused at
// once.
func TestAuthorizeAPIKeyNoCache(t *testing.T) {
	t.Parallel()
	e := newKeyEdge(t)
	keyID, key := e.newKey(t, "ci")
	a := e.authorize(t, -1, &syncBuffer{})
	for i := range 3 {
		if resp := checkWith(t, a, "GET", "api.example.com", "/v1/items", "Authorization", "Bearer "+key); resp.StatusCode != 200 {
			t.Fatalf("check %d: status %d, want 200", i, resp.StatusCode)
		}
	}
	if n := metric(t, a, "gatehouse_authorize_cache_hits_total"); n != 0 {
		t.Errorf("cache hits = %v with the key cache off, want 0", n)
	}
	e.deleteKey(t, keyID)
	if resp := checkWith(t, a, "GET", "api.example.com", "/v1/items", "Authorization", "Bearer "+key); resp.StatusCode != 401 {
		t.Errorf("deleted key: status %d, want 401 at once", resp.StatusCode)
	}
}

// TestAuthorizeAPIKeyServerDown: when the server cannot be asked about a key, the check fails closed with 503;
// access tokens, verified offline, still pass.
func TestAuthorizeAPIKeyServerDown(t *testing.T) {
	t.Parallel()
	e := newKeyEdge(t)
	_, key := e.newKey(t, "ci")
	token := seedToken(t, e.ms.testServer, "svc-one", secretOne, seedAPI)
	logs := &syncBuffer{}
	a := startAuthorize(t, e.ms.testServer, authorizeKeyRules, 0, func(a *Authorize) {
		a.Server, a.ClientID, a.ClientSecret = "http://127.0.0.1:1", gatewayClient, e.gatewaySecret // nothing listens
		a.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	resp := checkWith(t, a, "GET", "api.example.com", "/v1/items", "Authorization", "Bearer "+key)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("key, server down: status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := checkWith(t, a, "GET", "api.example.com", "/v1/items", "Authorization", "Bearer "+token); resp.StatusCode != 200 {
		t.Errorf("token, key server down: status %d, want 200", resp.StatusCode)
	}
	if !strings.Contains(logs.String(), "API key check unavailable") || strings.Contains(logs.String(), key) {
		t.Errorf("the log should say why, without the key:\n%s", logs)
	}
}

// TestAuthorizeAPIKeyRulesNeedServer: rules accepting API keys are refused at start without a server to check them;
// rules without are unaffected by one.
func TestAuthorizeAPIKeyRulesNeedServer(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "", nil, fixture)
	a := &Authorize{Addr: "127.0.0.1:0", RulesFile: writeRules(t, authorizeKeyRules), Issuer: ts.IssuerURL}
	err := a.Open()
	a.Close()
	if err == nil || !strings.Contains(err.Error(), `:3: the rule "items-read" accepts API keys (api_keys: true), but no Gatehouse server`) {
		t.Errorf("Open: %v, want the refusal naming the first rule accepting keys", err)
	}
	a = startAuthorize(t, ts, authorizeRules, 0, func(a *Authorize) { a.Server = ts.URL })
	if a.APIKeys != nil {
		t.Error("an API key verifier without rules accepting keys")
	}
}

func writeRules(t *testing.T, rules string) string {
	t.Helper()
	path := t.TempDir() + "/rules.yaml"
	if err := writeFile(path, rules); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestVerifyAPIKeyFormat: package verify's own reading of the key format (it may not import internal/apikey) agrees
// with the format's definition, on new keys and on keys with a character changed.
func TestVerifyAPIKeyFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-. "
	for _, prefix := range []string{apikey.DefaultPrefix, "ab", "acme2", "abcdefghijkl"} {
		for range 200 {
			key, err := apikey.New(prefix)
			if err != nil {
				t.Fatal(err)
			}
			if !verify.IsAPIKey(key) {
				t.Fatalf("verify.IsAPIKey refuses a new key %q", key)
			}
			b := []byte(key)
			b[r.IntN(len(b))] = chars[r.IntN(len(chars))]
			_, err = apikey.Parse(string(b))
			if got := verify.IsAPIKey(string(b)); got != (err == nil) {
				t.Errorf("%q: verify.IsAPIKey = %v, apikey.Parse: %v", b, got, err)
			}
		}
	}
}

// makeUnknownKey returns a well-formed key no server made.
func makeUnknownKey(t *testing.T) string {
	t.Helper()
	key, err := apikey.New(apikey.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// typo returns key with its last body character changed, so that its checksum fails.
func typo(key string) string {
	i := len(key) - 7
	c := byte('A')
	if key[i] == 'A' {
		c = 'B'
	}
	return key[:i] + string(c) + key[i+1:]
}
