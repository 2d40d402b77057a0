package main

// End-to-end tests of the management API (/api/v1): a real server, administrators that get their tokens from
// /oauth/token like any client, and every change checked through the token endpoint where it matters.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// secretAdmin is the secret of gh-admin, the global administrator of manageFixture.
const secretAdmin = "admin-secret-0123456789abcdefghijklmnopqrstuvwxyz"

// manageFixture is the end-to-end fixture plus gh-admin, a global administrator granted every management scope
// through the declarative file, as an operator would bootstrap one.
var manageFixture = fixture + `
  - client_id: gh-admin
    name: Global administrator
    client_secret: ` + secretAdmin + `
    grants:
      - audience: ` + auth.ManagementAudience + `
        scopes: [` + strings.Join(auth.ManagementScopes, ", ") + `]
`

// manageServer is a running server with the management fixture, its log, and what the tests must never find in
// the log or the audit log.
type manageServer struct {
	*testServer
	logs  *syncBuffer
	admin manager // gh-admin, every management scope

	mu      sync.Mutex
	secrets []string // every client secret the tests used or were shown
	tokens  []string // every management token
}

// startManage starts a server with manageFixture and a debug log captured in memory. When the test ends it stops
// the server and checks that no secret the test saw is in the audit log or the server's log.
func startManage(tb testing.TB) *manageServer {
	tb.Helper()
	return startManageWith(tb, nil)
}

// startManageWith is startManage after configure (if not nil) has changed the server's Main.
func startManageWith(tb testing.TB, configure func(*Main)) *manageServer {
	tb.Helper()
	dir := tb.TempDir()
	logs := &syncBuffer{}
	m := &Main{
		Addr:       "127.0.0.1:0",
		DB:         "sqlite:" + filepath.Join(dir, "gatehouse.db"),
		RootKey:    rootkey.Generate(),
		ConfigFile: filepath.Join(dir, "gatehouse.yaml"),
		Logger:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		LookupEnv:  func(k string) (string, bool) { v, ok := fixtureEnv[k]; return v, ok },
	}
	if configure != nil {
		configure(m)
	}
	if err := writeFile(m.ConfigFile, manageFixture); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Open(ctx); err != nil {
		cancel()
		tb.Fatalf("start server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	ms := &manageServer{testServer: &testServer{Main: m, dir: dir}, logs: logs,
		secrets: []string{secretOne, secretMulti, secretOff, secretAdmin}}
	tb.Cleanup(func() {
		cancel() // Serve writes the buffered security events as it stops
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				tb.Errorf("serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			tb.Fatal("the server did not stop within 20s")
		}
		events, err := m.Store.ListAuditEvents(context.Background(), auth.AuditFilter{})
		m.Close()
		if err != nil {
			tb.Errorf("read the audit log: %v", err)
		}
		ms.checkNoSecrets(tb, events)
	})
	ms.admin = ms.as(tb, "gh-admin", secretAdmin)
	return ms
}

// checkNoSecrets fails the test if a client secret is in the audit log or the server's log, or a management token
// in the server's log.
func (ms *manageServer) checkNoSecrets(tb testing.TB, events []*auth.AuditEvent) {
	tb.Helper()
	audit, _ := json.Marshal(events)
	logs := ms.logs.String()
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, s := range ms.secrets {
		if strings.Contains(string(audit), s) {
			tb.Errorf("the audit log holds the client secret …%s", s[len(s)-4:])
		}
		if strings.Contains(logs, s) {
			tb.Errorf("the server's log holds the client secret …%s", s[len(s)-4:])
		}
	}
	for _, tok := range ms.tokens {
		if strings.Contains(logs, tok) {
			tb.Errorf("the server's log holds a management token")
		}
	}
	if strings.Contains(logs, "Bearer ") {
		tb.Errorf("the server's log holds an Authorization header")
	}
}

// seenSecrets returns the client secrets seen so far.
func (ms *manageServer) seenSecrets() []string {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return slices.Clone(ms.secrets)
}

func (ms *manageServer) remember(secret string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.secrets = append(ms.secrets, secret)
}

// requestToken asks /oauth/token for a token with HTTP Basic; params are form pairs after grant_type.
func (ms *manageServer) requestToken(tb testing.TB, clientID, secret string, params ...string) response {
	tb.Helper()
	body := form(append([]string{"grant_type", "client_credentials"}, params...)...)
	req, _ := http.NewRequest("POST", ms.tokenURL(), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	return fetchResponse(tb, req)
}

// managementToken gets a management token for a client, with the given scopes (all granted ones when none).
func (ms *manageServer) managementToken(tb testing.TB, clientID, secret string, scopes ...string) string {
	tb.Helper()
	params := []string{"audience", auth.ManagementAudience}
	if len(scopes) > 0 {
		params = append(params, "scope", strings.Join(scopes, " "))
	}
	r := ms.requestToken(tb, clientID, secret, params...)
	tok, _ := r.json["access_token"].(string)
	if r.status != http.StatusOK || tok == "" {
		tb.Fatalf("management token for %s: %d %s", clientID, r.status, r.body)
	}
	ms.mu.Lock()
	ms.tokens = append(ms.tokens, tok)
	ms.mu.Unlock()
	return tok
}

// as returns a manager acting with a management token of the client.
func (ms *manageServer) as(tb testing.TB, clientID, secret string, scopes ...string) manager {
	tb.Helper()
	return manager{ms: ms, token: ms.managementToken(tb, clientID, secret, scopes...)}
}

// manager calls the management API with one token.
type manager struct {
	ms    *manageServer
	token string
}

// call sends a management request. body is nil (none), a string (sent as it is) or a value (sent as JSON); a
// body is labelled application/json unless header (name, value pairs; an empty value removes the header) says
// otherwise. Secrets in the answer are remembered.
func (m manager) call(tb testing.TB, method, path string, body any, header ...string) response {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = strings.NewReader(string(j))
	}
	req, err := http.NewRequest(method, m.ms.URL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if m.token != "" {
		req.Header.Set("Authorization", "Bearer "+m.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	r := fetchResponse(tb, req)
	if s, ok := r.json["client_secret"].(string); ok {
		m.ms.remember(s)
	}
	return r
}

// must is call that fails the test unless the status is want.
func (m manager) must(tb testing.TB, want int, method, path string, body any, header ...string) response {
	tb.Helper()
	r := m.call(tb, method, path, body, header...)
	if r.status != want {
		tb.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.body, want)
	}
	return r
}

// fetchResponse is do for tests and benchmarks.
func fetchResponse(tb testing.TB, req *http.Request) response {
	tb.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, body: string(b)}
	json.Unmarshal(b, &r.json)
	return r
}

// obj is a JSON object.
type obj = map[string]any

// listItems returns the items of a list answer.
func listItems(tb testing.TB, r response) []obj {
	tb.Helper()
	raw, ok := r.json["items"].([]any)
	if !ok {
		tb.Fatalf("not a list: %s", truncate(r.body, 300))
	}
	out := make([]obj, len(raw))
	for i, it := range raw {
		out[i] = it.(obj)
	}
	return out
}

// strOf returns a string member of a JSON object ("" when absent).
func strOf(o obj, key string) string { s, _ := o[key].(string); return s }

// memberOf returns the key member of each item.
func memberOf(list []obj, key string) []string {
	out := make([]string, len(list))
	for i, it := range list {
		out[i] = strOf(it, key)
	}
	return out
}

// wantProblem checks an RFC 9457 answer: the status, the problem members, and the field at fault (none when
// field is "").
func wantProblem(tb testing.TB, what string, r response, status int, field string) {
	tb.Helper()
	if r.status != status {
		tb.Errorf("%s: %d %s, want %d", what, r.status, truncate(r.body, 300), status)
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Errorf("%s: Content-Type %q, want application/problem+json", what, ct)
	}
	if r.json["status"] != float64(status) || r.json["title"] != http.StatusText(status) || r.json["type"] != "about:blank" {
		tb.Errorf("%s: problem %s", what, r.body)
	}
	if id := r.header.Get("X-Request-Id"); id == "" || r.json["request_id"] != id {
		tb.Errorf("%s: request_id %v, X-Request-Id %q", what, r.json["request_id"], id)
	}
	errs, _ := r.json["errors"].([]any)
	switch {
	case field == "" && len(errs) > 0:
		tb.Errorf("%s: errors %v, want none", what, errs)
	case field != "" && len(errs) == 0:
		tb.Errorf("%s: no errors[], want one naming %s: %s", what, field, r.body)
	case field != "":
		e := errs[0].(obj)
		if e["field"] != field || strOf(e, "message") == "" {
			tb.Errorf("%s: errors[0] = %v, want field %q with a message", what, e, field)
		}
	}
}

// wantToken checks that a client's secret gets a token for audience with every granted scope, wantScope, and
// returns the token's claims.
func (ms *manageServer) wantToken(t *testing.T, what, clientID, secret, audience, wantScope string) map[string]any {
	t.Helper()
	r := ms.requestToken(t, clientID, secret, "audience", audience)
	if r.status != http.StatusOK {
		t.Fatalf("%s: token: %d %s", what, r.status, r.body)
	}
	if got := strOf(r.json, "scope"); got != wantScope {
		t.Errorf("%s: token scope %q, want %q", what, got, wantScope)
	}
	tok := r.json["access_token"].(string)
	verifyToken(t, ms.URL, ms.IssuerURL, audience, tok)
	return claimsOf(t, tok)
}

// wantNoToken checks that a client's secret gets no token for audience ("" for none named), but the OAuth error
// wantError.
func (ms *manageServer) wantNoToken(t *testing.T, what, clientID, secret, audience, wantError string) {
	t.Helper()
	params := []string{}
	if audience != "" {
		params = append(params, "audience", audience)
	}
	r := ms.requestToken(t, clientID, secret, params...)
	if r.status == http.StatusOK || r.json["error"] != wantError {
		t.Errorf("%s: token: %d %s, want %s", what, r.status, r.body, wantError)
	}
}

// claimsOf returns the claims of a JWT, unverified.
func claimsOf(tb testing.TB, token string) map[string]any {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("not a JWT: %q", truncate(token, 20))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if err == nil {
		err = json.Unmarshal(b, &claims)
	}
	if err != nil {
		tb.Fatalf("JWT claims: %v", err)
	}
	return claims
}

// walk lists every item of a list endpoint, limit per page, checking that pages are at most limit long and that
// the last has no next_cursor.
func (m manager) walk(tb testing.TB, path string, limit int) (all []obj, pages int) {
	tb.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	cursor := ""
	for pages = 1; ; pages++ {
		if pages > 10000 {
			tb.Fatalf("%s: more than 10000 pages", path)
		}
		p := fmt.Sprintf("%s%slimit=%d", path, sep, limit)
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		r := m.must(tb, http.StatusOK, "GET", p, nil)
		page := listItems(tb, r)
		if len(page) > limit {
			tb.Fatalf("%s: a page of %d items, limit %d", p, len(page), limit)
		}
		all = append(all, page...)
		next, has := r.json["next_cursor"].(string)
		if !has {
			return all, pages
		}
		if next == "" || next == cursor {
			tb.Fatalf("%s: next_cursor %q after %q", p, next, cursor)
		}
		cursor = next
	}
}

// apiID returns the id of the API with the given identifier.
func (m manager) apiID(tb testing.TB, identifier string) string {
	tb.Helper()
	apis, _ := m.walk(tb, "/api/v1/apis", 500)
	for _, a := range apis {
		if a["identifier"] == identifier {
			return strOf(a, "id")
		}
	}
	tb.Fatalf("no API %s", identifier)
	return ""
}

// createClient creates a client and returns it with its secret.
func (m manager) createClient(tb testing.TB, body obj) (obj, string) {
	tb.Helper()
	r := m.must(tb, http.StatusCreated, "POST", "/api/v1/clients", body)
	return r.json, strOf(r.json, "client_secret")
}

// grant grants a client an API by audience and returns the grant.
func (m manager) grant(tb testing.TB, clientID, audience string, scopes ...string) obj {
	tb.Helper()
	if scopes == nil {
		scopes = []string{}
	}
	return m.must(tb, http.StatusCreated, "POST", "/api/v1/grants", obj{"client_id": clientID, "audience": audience, "scopes": scopes}).json
}

// manageOp is one management endpoint as the served OpenAPI document describes it.
type manageOp struct{ method, path, scope string }

// operations reads every operation from GET /api/v1/openapi.json (which a test in internal/server holds to the
// routes the server serves).
func (ms *manageServer) operations(t *testing.T) []manageOp {
	t.Helper()
	r := fetchResponse(t, mustReq("GET", ms.URL+"/api/v1/openapi.json"))
	if r.status != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json: %d", r.status)
	}
	var ops []manageOp
	for path, item := range r.json["paths"].(obj) {
		for method, op := range item.(obj) {
			if method == "parameters" {
				continue
			}
			sec := op.(obj)["security"].([]any)[0].(obj)["gatehouse"].([]any)
			ops = append(ops, manageOp{strings.ToUpper(method), path, sec[0].(string)})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].path+ops[i].method < ops[j].path+ops[j].method })
	return ops
}

// TestManageAuthorization: every endpoint refuses a request without a token, with a token for another audience,
// or with a malformed one (401, WWW-Authenticate: Bearer), and a token without its scope (403 insufficient_scope
// naming the scope).
func TestManageAuthorization(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	ops := ms.operations(t)
	if len(ops) < 25 {
		t.Fatalf("the OpenAPI document lists %d operations", len(ops))
	}
	otherAudience := ms.requestToken(t, "svc-one", secretOne, "audience", "https://api.example.com/v1").json["access_token"].(string)
	tampered := ms.admin.token[:len(ms.admin.token)-4] + "AAAA"
	onlyAudit := ms.managementToken(t, "gh-admin", secretAdmin, auth.ScopeReadAudit)
	onlyAPIs := ms.managementToken(t, "gh-admin", secretAdmin, auth.ScopeReadAPIs)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("gh-admin:"+secretAdmin))
	for _, op := range ops {
		path := strings.NewReplacer("{id}", "x", "{secret_id}", "y").Replace(op.path)
		lacking := onlyAudit
		if op.scope == auth.ScopeReadAudit {
			lacking = onlyAPIs
		}
		t.Run(op.method+" "+op.path, func(t *testing.T) {
			for _, tc := range []struct {
				name      string
				authz     string
				status    int
				challenge string // the WWW-Authenticate header
			}{
				{"no token", "", 401, `Bearer realm="gatehouse"`},
				{"token for another audience", "Bearer " + otherAudience, 401, `error="invalid_token"`},
				{"tampered token", "Bearer " + tampered, 401, `error="invalid_token"`},
				{"not a JWT", "Bearer not-a-token", 401, `error="invalid_token"`},
				{"Basic credentials", basic, 401, `error="invalid_token"`},
				{"token without the scope", "Bearer " + lacking, 403, `error="insufficient_scope", scope="` + op.scope + `"`},
			} {
				var body any
				if op.method == "POST" || op.method == "PATCH" {
					body = obj{}
				}
				r := manager{ms: ms}.call(t, op.method, path, body, "Authorization", tc.authz)
				wantProblem(t, tc.name, r, tc.status, "")
				h := r.header.Get("WWW-Authenticate")
				if !strings.HasPrefix(h, "Bearer ") || !strings.Contains(h, tc.challenge) {
					t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge with %s", tc.name, h, tc.challenge)
				}
				if tc.authz == "" && strings.Contains(h, "error=") {
					t.Errorf("%s: WWW-Authenticate %q: a request without credentials gets no error code (RFC 6750 §3.1)", tc.name, h)
				}
				if cc := r.header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("%s: Cache-Control %q, want no-store", tc.name, cc)
				}
			}
		})
	}
}

// TestManageAPIs: create, read, list, change and delete APIs; validation, conflicts, If-Match, the built-in
// management API, and deleting an API removes its grants.
func TestManageAPIs(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	adm := ms.admin

	r := adm.must(t, 201, "POST", "/api/v1/apis", obj{"identifier": "https://inventory.example.com", "name": "Inventory",
		"scopes": []obj{{"name": "stock:read"}, {"name": "stock:write", "description": "Change stock"}}, "token_lifetime": 600,
		"signing_alg": "ES256"})
	id := strOf(r.json, "id")
	if !strings.HasPrefix(id, "api_") || r.header.Get("Location") != "/api/v1/apis/"+id || r.header.Get("ETag") == "" {
		t.Errorf("create: id %q, Location %q, ETag %q", id, r.header.Get("Location"), r.header.Get("ETag"))
	}
	want := obj{"id": id, "identifier": "https://inventory.example.com", "name": "Inventory", "token_lifetime": 600.0,
		"key_token_lifetime": 600.0, "signing_alg": "ES256",
		"scopes": []any{obj{"name": "stock:read"}, obj{"name": "stock:write", "description": "Change stock"}}}
	for k, v := range want {
		if !equalJSON(r.json[k], v) {
			t.Errorf("create: %s = %v, want %v", k, r.json[k], v)
		}
	}
	etag := r.header.Get("ETag")
	show := adm.must(t, 200, "GET", "/api/v1/apis/"+id, nil)
	if show.header.Get("ETag") != etag || !equalJSON(show.json, r.json) {
		t.Errorf("show: ETag %q, %s; want ETag %q, %s", show.header.Get("ETag"), show.body, etag, r.body)
	}
	all, _ := adm.walk(t, "/api/v1/apis", 2)
	if got := memberOf(all, "identifier"); len(got) != 5 || !slices.Contains(got, auth.ManagementAudience) ||
		!slices.Contains(got, "https://inventory.example.com") {
		t.Errorf("list: %v, want the fixture's three, the management API and the new one", got)
	}

	t.Run("invalid", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			body   obj
			status int
			field  string
		}{
			{"duplicate identifier", obj{"identifier": "https://api.example.com/v1", "name": "Again"}, 409, ""},
			{"no identifier", obj{"name": "X"}, 400, "identifier"},
			{"no name", obj{"identifier": "urn:x:a"}, 400, "name"},
			{"identifier not a URI", obj{"identifier": "inventory", "name": "X"}, 400, "identifier"},
			{"identifier with a fragment", obj{"identifier": "https://x.example.com/#a", "name": "X"}, 400, "identifier"},
			{"token lifetime under a minute", obj{"identifier": "urn:x:a", "name": "X", "token_lifetime": 59}, 400, "token_lifetime"},
			{"token lifetime over 30 days", obj{"identifier": "urn:x:a", "name": "X", "token_lifetime": 2592001}, 400, "token_lifetime"},
			{"negative token lifetime", obj{"identifier": "urn:x:a", "name": "X", "token_lifetime": -60}, 400, "token_lifetime"},
			{"huge token lifetime", obj{"identifier": "urn:x:a", "name": "X", "token_lifetime": int64(1) << 62}, 400, "token_lifetime"},
			{"token lifetime as a duration", obj{"identifier": "urn:x:a", "name": "X", "token_lifetime": "1h"}, 400, "token_lifetime"},
			{"key token lifetime over the token lifetime", obj{"identifier": "urn:x:a", "name": "X", "token_lifetime": 600, "key_token_lifetime": 601}, 400, "key_token_lifetime"},
			{"key token lifetime under a minute", obj{"identifier": "urn:x:a", "name": "X", "key_token_lifetime": 30}, 400, "key_token_lifetime"},
			{"unknown algorithm", obj{"identifier": "urn:x:a", "name": "X", "signing_alg": "HS256"}, 400, "signing_alg"},
			{"scope with a slash", obj{"identifier": "urn:x:a", "name": "X", "scopes": []obj{{"name": "a/b"}}}, 400, "scopes[0].name"},
			{"scope twice", obj{"identifier": "urn:x:a", "name": "X", "scopes": []obj{{"name": "a"}, {"name": "a"}}}, 400, "scopes[1].name"},
		} {
			r := adm.call(t, "POST", "/api/v1/apis", tc.body)
			wantProblem(t, tc.name, r, tc.status, tc.field)
		}
	})

	t.Run("If-Match", func(t *testing.T) {
		r := adm.call(t, "PATCH", "/api/v1/apis/"+id, obj{"name": "Stale"}, "If-Match", `"999"`)
		wantProblem(t, "stale ETag", r, 412, "")
		r = adm.must(t, 200, "PATCH", "/api/v1/apis/"+id, obj{"name": "Inventory v2", "token_lifetime": 120}, "If-Match", etag)
		next := r.header.Get("ETag")
		if next == "" || next == etag || r.json["name"] != "Inventory v2" || r.json["token_lifetime"] != 120.0 {
			t.Errorf("PATCH with the current ETag: ETag %q (was %q), %s", next, etag, r.body)
		}
		if r.json["key_token_lifetime"] != 120.0 {
			t.Errorf("key_token_lifetime %v after shortening the token lifetime to 120, want 120", r.json["key_token_lifetime"])
		}
		wantProblem(t, "the old ETag again", adm.call(t, "PATCH", "/api/v1/apis/"+id, obj{"name": "X"}, "If-Match", etag), 412, "")
		wantProblem(t, "delete with the old ETag", adm.call(t, "DELETE", "/api/v1/apis/"+id, nil, "If-Match", etag), 412, "")
		if s := adm.must(t, 200, "GET", "/api/v1/apis/"+id, nil); s.json["name"] != "Inventory v2" || s.header.Get("ETag") != next {
			t.Errorf("after the refused changes: %s, ETag %q", s.body, s.header.Get("ETag"))
		}
		adm.must(t, 200, "PATCH", "/api/v1/apis/"+id, obj{"name": "Inventory"}, "If-Match", `W/`+next) // weak form
		adm.must(t, 200, "PATCH", "/api/v1/apis/"+id, obj{"token_lifetime": 600})                      // unconditional
		wantProblem(t, "rename to a taken identifier", adm.call(t, "PATCH", "/api/v1/apis/"+id, obj{"identifier": "urn:example:reports"}), 409, "")
		wantProblem(t, "out-of-range lifetime", adm.call(t, "PATCH", "/api/v1/apis/"+id, obj{"token_lifetime": 30}), 400, "token_lifetime")
		wantProblem(t, "unknown API", adm.call(t, "PATCH", "/api/v1/apis/api_nope", obj{"name": "X"}), 404, "")
	})

	t.Run("built-in management API", func(t *testing.T) {
		mid := adm.apiID(t, auth.ManagementAudience)
		wantProblem(t, "delete", adm.call(t, "DELETE", "/api/v1/apis/"+mid, nil), 409, "")
		wantProblem(t, "change its scopes", adm.call(t, "PATCH", "/api/v1/apis/"+mid, obj{"scopes": []obj{{"name": "x"}}}), 409, "")
		wantProblem(t, "change its identifier", adm.call(t, "PATCH", "/api/v1/apis/"+mid, obj{"identifier": "urn:x:y"}), 409, "")
		ms.managementToken(t, "gh-admin", secretAdmin) // still works
	})

	t.Run("delete removes its grants", func(t *testing.T) {
		_, secret := adm.createClient(t, obj{"client_id": "stock-keeper", "name": "Stock keeper"})
		g := adm.grant(t, "stock-keeper", "https://inventory.example.com", "stock:read")
		adm.grant(t, "stock-keeper", "urn:example:reports")
		ms.wantToken(t, "before the delete", "stock-keeper", secret, "https://inventory.example.com", "stock:read")
		adm.must(t, 204, "DELETE", "/api/v1/apis/"+id, nil)
		wantProblem(t, "the deleted API", adm.call(t, "GET", "/api/v1/apis/"+id, nil), 404, "")
		wantProblem(t, "its grant", adm.call(t, "GET", "/api/v1/grants/"+strOf(g, "id"), nil), 404, "")
		if left := listItems(t, adm.must(t, 200, "GET", "/api/v1/grants?client_id=stock-keeper", nil)); len(left) != 1 ||
			left[0]["audience"] != "urn:example:reports" {
			t.Errorf("grants of the client after deleting the API: %v", left)
		}
		ms.wantNoToken(t, "after the delete", "stock-keeper", secret, "https://inventory.example.com", "invalid_target")
		wantProblem(t, "delete again", adm.call(t, "DELETE", "/api/v1/apis/"+id, nil), 404, "")
	})
}

// TestManageClients: create, read, change and delete clients; validation, conflicts, If-Match, disabling, and
// deleting a client removes its grants.
func TestManageClients(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	adm := ms.admin

	r := adm.must(t, 201, "POST", "/api/v1/clients", obj{"client_id": "billing", "name": "Billing",
		"description": "Sends the invoices", "rate_limit": obj{"count": 100, "per": 60}})
	secret := strOf(r.json, "client_secret")
	secrets, _ := r.json["secrets"].([]any)
	if len(secret) < 43 || len(secrets) != 1 || secrets[0].(obj)["hint"] != secret[len(secret)-4:] ||
		secrets[0].(obj)["expires_at"] != nil || !strings.HasPrefix(strOf(secrets[0].(obj), "id"), "sec_") {
		t.Errorf("create: secret %d characters, secrets %v", len(secret), secrets)
	}
	want := obj{"client_id": "billing", "name": "Billing", "description": "Sends the invoices", "disabled": false,
		"rate_limit": obj{"count": 100, "per": 60}}
	for k, v := range want {
		if !equalJSON(r.json[k], v) {
			t.Errorf("create: %s = %v, want %v", k, r.json[k], v)
		}
	}
	if _, ok := r.json["org_id"]; ok {
		t.Errorf("create: org_id %v for a client of no organization", r.json["org_id"])
	}
	if r.header.Get("Location") != "/api/v1/clients/billing" || r.header.Get("ETag") == "" {
		t.Errorf("create: Location %q, ETag %q", r.header.Get("Location"), r.header.Get("ETag"))
	}
	etag := r.header.Get("ETag")
	show := adm.must(t, 200, "GET", "/api/v1/clients/billing", nil)
	if _, ok := show.json["client_secret"]; ok || show.header.Get("ETag") != etag || strings.Contains(show.body, secret) {
		t.Errorf("show: ETag %q (want %q), %s", show.header.Get("ETag"), etag, show.body)
	}
	generated, genSecret := adm.createClient(t, obj{"name": "Generated id"})
	if id := strOf(generated, "client_id"); len(id) != 26 {
		t.Errorf("generated client_id %q", id)
	}
	ms.wantNoToken(t, "a client without grants", strOf(generated, "client_id"), genSecret, "", "unauthorized_client")

	g := adm.grant(t, "billing", "https://api.example.com/v1", "read")
	ms.wantToken(t, "new client", "billing", secret, "https://api.example.com/v1", "read")

	t.Run("invalid", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			body   any
			status int
			field  string
		}{
			{"duplicate client_id", obj{"client_id": "billing", "name": "Again"}, 409, ""},
			{"a fixture's client_id", obj{"client_id": "svc-one", "name": "Again"}, 409, ""},
			{"no name", obj{"client_id": "nameless"}, 400, "name"},
			{"blank name", obj{"name": "  "}, 400, "name"},
			{"control character in the name", obj{"name": "a\u0007b"}, 400, "name"},
			{"name too long", obj{"name": strings.Repeat("n", 201)}, 400, "name"},
			{"description too long", obj{"name": "X", "description": strings.Repeat("d", 1001)}, 400, "description"},
			{"client_id with a space", obj{"client_id": "a b", "name": "X"}, 400, "client_id"},
			{"client_id too long", obj{"client_id": strings.Repeat("c", 129), "name": "X"}, 400, "client_id"},
			{"name a number", obj{"name": 5}, 400, "name"},
			{"disabled a string", obj{"name": "X", "disabled": "yes"}, 400, "disabled"},
			{"rate limit of zero tokens", obj{"name": "X", "rate_limit": obj{"count": 0, "per": 60}}, 400, "rate_limit.count"},
			{"rate limit per zero seconds", obj{"name": "X", "rate_limit": obj{"count": 1, "per": 0}}, 400, "rate_limit.per"},
			{"rate limit per over a day", obj{"name": "X", "rate_limit": obj{"count": 1, "per": 86401}}, 400, "rate_limit.per"},
			{"rate limit a string", obj{"name": "X", "rate_limit": "fast"}, 400, "rate_limit"},
			{"rate limit with an unknown member", obj{"name": "X", "rate_limit": obj{"count": 1, "per": 1, "burst": 5}}, 400, "rate_limit"},
			{"unknown organization", obj{"name": "X", "org_id": "org_nope"}, 400, "org_id"},
		} {
			wantProblem(t, tc.name, adm.call(t, "POST", "/api/v1/clients", tc.body), tc.status, tc.field)
		}
	})

	t.Run("change", func(t *testing.T) {
		wantProblem(t, "stale ETag", adm.call(t, "PATCH", "/api/v1/clients/billing", obj{"disabled": true}, "If-Match", `"999"`), 412, "")
		ms.wantToken(t, "after a refused change", "billing", secret, "https://api.example.com/v1", "read")
		r := adm.must(t, 200, "PATCH", "/api/v1/clients/billing", obj{"disabled": true}, "If-Match", etag)
		if next := r.header.Get("ETag"); next == "" || next == etag || r.json["disabled"] != true {
			t.Errorf("disable: ETag %q (was %q), %s", next, etag, r.body)
		}
		ms.wantNoToken(t, "disabled", "billing", secret, "https://api.example.com/v1", "invalid_client")
		r = adm.must(t, 200, "PATCH", "/api/v1/clients/billing", obj{"disabled": false, "rate_limit": nil, "description": ""})
		if _, ok := r.json["rate_limit"]; ok || r.json["disabled"] != false || r.json["description"] != "" || r.json["name"] != "Billing" {
			t.Errorf("enable, no rate limit: %s", r.body)
		}
		ms.wantToken(t, "enabled again", "billing", secret, "https://api.example.com/v1", "read")
		adm.must(t, 200, "PATCH", "/api/v1/clients/billing", obj{"client_id": "billing"}) // the same id is no change
		wantProblem(t, "change client_id", adm.call(t, "PATCH", "/api/v1/clients/billing", obj{"client_id": "billing2"}), 400, "client_id")
		wantProblem(t, "change org_id", adm.call(t, "PATCH", "/api/v1/clients/billing", obj{"org_id": "org_x"}), 400, "org_id")
		wantProblem(t, "invalid name", adm.call(t, "PATCH", "/api/v1/clients/billing", obj{"name": ""}), 400, "name")
		wantProblem(t, "unknown client", adm.call(t, "PATCH", "/api/v1/clients/nope", obj{"name": "X"}), 404, "")
	})

	t.Run("delete removes its grants", func(t *testing.T) {
		cur := adm.must(t, 200, "GET", "/api/v1/clients/billing", nil).header.Get("ETag")
		wantProblem(t, "stale ETag", adm.call(t, "DELETE", "/api/v1/clients/billing", nil, "If-Match", `"999"`), 412, "")
		adm.must(t, 204, "DELETE", "/api/v1/clients/billing", nil, "If-Match", cur)
		ms.wantNoToken(t, "deleted", "billing", secret, "https://api.example.com/v1", "invalid_client")
		wantProblem(t, "the deleted client", adm.call(t, "GET", "/api/v1/clients/billing", nil), 404, "")
		wantProblem(t, "its grant", adm.call(t, "GET", "/api/v1/grants/"+strOf(g, "id"), nil), 404, "")
		if left := listItems(t, adm.must(t, 200, "GET", "/api/v1/grants?client_id=billing", nil)); len(left) != 0 {
			t.Errorf("grants of the deleted client: %v", left)
		}
		wantProblem(t, "delete again", adm.call(t, "DELETE", "/api/v1/clients/billing", nil), 404, "")
		// The same client_id again is a new client, without the old one's grants.
		_, again := adm.createClient(t, obj{"client_id": "billing", "name": "Billing again"})
		ms.wantNoToken(t, "the new client of the same id", "billing", again, "https://api.example.com/v1", "invalid_target")
	})

	if !strings.Contains(ms.logs.String(), `"client_id":"gh-admin"`) {
		t.Error("the access log does not name the administrator of management requests")
	}
}

// TestManageSecretRotation: two live secrets during a rotation (both get tokens), then one; the old secret is
// refused on the very next token request after expire_others_in=0 or DELETE; a client always keeps one secret.
func TestManageSecretRotation(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	adm := ms.admin
	const aud = "https://api.example.com/v1"
	c, s1 := adm.createClient(t, obj{"client_id": "rotating", "name": "Rotating"})
	id1 := strOf(c["secrets"].([]any)[0].(obj), "id")
	adm.grant(t, "rotating", aud, "read")
	works := func(what, secret string) { t.Helper(); ms.wantToken(t, what, "rotating", secret, aud, "read") }
	refused := func(what, secret string) {
		t.Helper()
		ms.wantNoToken(t, what, "rotating", secret, aud, "invalid_client")
	}
	add := func(body any) (string, string) {
		t.Helper()
		r := adm.must(t, 201, "POST", "/api/v1/clients/rotating/secrets", body)
		s, id := strOf(r.json, "client_secret"), strOf(r.json, "id")
		if len(s) < 43 || !strings.HasPrefix(id, "sec_") || r.json["hint"] != s[len(s)-4:] ||
			r.header.Get("Location") != "/api/v1/clients/rotating/secrets/"+id {
			t.Fatalf("add secret: %s, Location %q", r.body, r.header.Get("Location"))
		}
		return s, id
	}
	listed := func() []obj {
		t.Helper()
		list := listItems(t, adm.must(t, 200, "GET", "/api/v1/clients/rotating/secrets", nil))
		body := adm.must(t, 200, "GET", "/api/v1/clients/rotating", nil).body
		for _, s := range ms.seenSecrets() {
			if strings.Contains(body, s) {
				t.Fatal("the client's view holds a secret")
			}
		}
		return list
	}

	// Two live secrets: both get tokens.
	s2, id2 := add(nil)
	works("first secret, after adding a second", s1)
	works("second secret", s2)
	if l := listed(); len(l) != 2 || l[0]["expires_at"] != nil || l[1]["expires_at"] != nil {
		t.Errorf("secrets after adding one: %v", l)
	}

	// A rotation with a grace period: the others expire later, all still work.
	s3, id3 := add(obj{"expire_others_in": 3600})
	for _, s := range []string{s1, s2, s3} {
		works("during the grace period", s)
	}
	for _, l := range listed() {
		if exp, _ := time.Parse(time.RFC3339, strOf(l, "expires_at")); l["id"] != id3 && time.Until(exp) < 50*time.Minute {
			t.Errorf("secret %v expires at %v, want in about an hour", l["id"], l["expires_at"])
		} else if l["id"] == id3 && l["expires_at"] != nil {
			t.Errorf("the new secret expires at %v", l["expires_at"])
		}
	}

	// Cut-over: the others stop at once.
	s4, id4 := add(obj{"expire_others_in": 0})
	refused("first secret after expire_others_in=0", s1)
	refused("second secret after expire_others_in=0", s2)
	refused("third secret after expire_others_in=0", s3)
	works("the new secret", s4)

	// Delete: the deleted secret is refused on the very next request.
	s5, _ := add(map[string]any{})
	works("fourth secret beside a fifth", s4)
	adm.must(t, 204, "DELETE", "/api/v1/clients/rotating/secrets/"+id4, nil)
	refused("deleted secret", s4)
	works("fifth secret", s5)

	// A client keeps one secret.
	for _, id := range []string{id1, id2, id3} {
		adm.must(t, 204, "DELETE", "/api/v1/clients/rotating/secrets/"+id, nil)
	}
	last := listed()
	if len(last) != 1 {
		t.Fatalf("secrets left: %v", last)
	}
	wantProblem(t, "delete the last secret", adm.call(t, "DELETE", "/api/v1/clients/rotating/secrets/"+strOf(last[0], "id"), nil), 409, "")
	works("the last secret, after refusing its deletion", s5)
	wantProblem(t, "delete an unknown secret", adm.call(t, "DELETE", "/api/v1/clients/rotating/secrets/sec_nope", nil), 404, "")
	wantProblem(t, "delete another client's secret", adm.call(t, "DELETE", "/api/v1/clients/svc-one/secrets/"+strOf(last[0], "id"), nil), 404, "")
	wantProblem(t, "secrets of an unknown client", adm.call(t, "POST", "/api/v1/clients/nope/secrets", nil), 404, "")

	for _, tc := range []struct {
		name  string
		body  any
		field string
	}{
		{"negative grace period", obj{"expire_others_in": -1}, "expire_others_in"},
		{"grace period over 30 days", obj{"expire_others_in": 2592001}, "expire_others_in"},
		{"grace period as a duration", obj{"expire_others_in": "1h"}, "expire_others_in"},
		{"unknown member", obj{"expires_in": 60}, "expires_in"},
	} {
		wantProblem(t, tc.name, adm.call(t, "POST", "/api/v1/clients/rotating/secrets", tc.body), 400, tc.field)
	}
	works("after the refused rotations", s5)

	// At most ten secrets.
	for range 9 {
		add(nil)
	}
	wantProblem(t, "an eleventh secret", adm.call(t, "POST", "/api/v1/clients/rotating/secrets", nil), 409, "")
}

// TestManageGrants: create grants by audience or API id, list them with filters, change their scopes (the next
// token shows it) and delete them.
func TestManageGrants(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	adm := ms.admin
	const aud = "https://api.example.com/v1"
	_, secret := adm.createClient(t, obj{"client_id": "grantee", "name": "Grantee"})
	reportsID := adm.apiID(t, "urn:example:reports")

	r := adm.must(t, 201, "POST", "/api/v1/grants", obj{"client_id": "grantee", "audience": aud, "scopes": []string{"write", "read", "read"}})
	g := r.json
	gid, etag := strOf(g, "id"), r.header.Get("ETag")
	if !strings.HasPrefix(gid, "grt_") || r.header.Get("Location") != "/api/v1/grants/"+gid || etag == "" ||
		!equalJSON(g["scopes"], []string{"read", "write"}) || g["audience"] != aud || g["client_id"] != "grantee" ||
		g["api_id"] != adm.apiID(t, aud) {
		t.Errorf("create: %s, Location %q, ETag %q", r.body, r.header.Get("Location"), etag)
	}
	if s := adm.must(t, 200, "GET", "/api/v1/grants/"+gid, nil); !equalJSON(s.json, g) || s.header.Get("ETag") != etag {
		t.Errorf("show: %s, ETag %q", s.body, s.header.Get("ETag"))
	}
	rep := adm.must(t, 201, "POST", "/api/v1/grants", obj{"client_id": "grantee", "api_id": reportsID}).json
	if rep["audience"] != "urn:example:reports" || !equalJSON(rep["scopes"], []string{}) {
		t.Errorf("grant by api_id: %v", rep)
	}
	ms.wantToken(t, "granted", "grantee", secret, aud, "read write")
	ms.wantToken(t, "granted without scopes", "grantee", secret, "urn:example:reports", "")

	t.Run("invalid", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			body   any
			status int
			field  string
		}{
			{"again by audience", obj{"client_id": "grantee", "audience": aud}, 409, ""},
			{"again by api_id", obj{"client_id": "grantee", "api_id": reportsID}, 409, ""},
			{"no client_id", obj{"audience": aud}, 400, "client_id"},
			{"unknown client", obj{"client_id": "nope", "audience": aud}, 400, "client_id"},
			{"no API", obj{"client_id": "grantee"}, 400, "audience"},
			{"unknown audience", obj{"client_id": "grantee", "audience": "urn:nope"}, 400, "audience"},
			{"unknown api_id", obj{"client_id": "grantee", "api_id": "api_nope"}, 400, "api_id"},
			{"audience and api_id", obj{"client_id": "grantee", "audience": aud, "api_id": reportsID}, 400, "audience"},
			{"a scope the API lacks", obj{"client_id": "svc-none", "audience": aud, "scopes": []string{"admin", "nope"}}, 400, "scopes[1]"},
			{"scopes a string", obj{"client_id": "svc-none", "audience": aud, "scopes": "read"}, 400, "scopes"},
		} {
			wantProblem(t, tc.name, adm.call(t, "POST", "/api/v1/grants", tc.body), tc.status, tc.field)
		}
	})

	t.Run("list filters", func(t *testing.T) {
		for _, tc := range []struct {
			query string
			want  []string // client_id/audience of every grant listed
		}{
			{"client_id=grantee", []string{"grantee " + aud, "grantee urn:example:reports"}},
			{"audience=urn:example:reports", []string{"grantee urn:example:reports", "svc-multi urn:example:reports"}},
			{"api_id=" + reportsID, []string{"grantee urn:example:reports", "svc-multi urn:example:reports"}},
			{"client_id=grantee&audience=" + url.QueryEscape(aud), []string{"grantee " + aud}},
			{"audience=urn:nope", []string{}},
			{"client_id=nope", []string{}},
		} {
			list, _ := adm.walk(t, "/api/v1/grants?"+tc.query, 1)
			got := []string{}
			for _, g := range list {
				got = append(got, strOf(g, "client_id")+" "+strOf(g, "audience"))
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("?%s: %v, want %v", tc.query, got, tc.want)
			}
		}
	})

	t.Run("change", func(t *testing.T) {
		wantProblem(t, "stale ETag", adm.call(t, "PATCH", "/api/v1/grants/"+gid, obj{"scopes": []string{"read"}}, "If-Match", `"999"`), 412, "")
		ms.wantToken(t, "after a refused change", "grantee", secret, aud, "read write")
		r := adm.must(t, 200, "PATCH", "/api/v1/grants/"+gid, obj{"scopes": []string{"read"}}, "If-Match", etag)
		if next := r.header.Get("ETag"); next == etag || next == "" || !equalJSON(r.json["scopes"], []string{"read"}) {
			t.Errorf("change: ETag %q (was %q), %s", next, etag, r.body)
		}
		ms.wantToken(t, "after narrowing", "grantee", secret, aud, "read")
		same := adm.must(t, 200, "PATCH", "/api/v1/grants/"+gid, obj{"client_id": "grantee", "audience": aud})
		if same.header.Get("ETag") != r.header.Get("ETag") {
			t.Errorf("a PATCH without scopes changed the ETag")
		}
		wantProblem(t, "change the client", adm.call(t, "PATCH", "/api/v1/grants/"+gid, obj{"client_id": "svc-one"}), 400, "client_id")
		wantProblem(t, "change the API", adm.call(t, "PATCH", "/api/v1/grants/"+gid, obj{"audience": "urn:example:reports"}), 400, "audience")
		wantProblem(t, "change the api_id", adm.call(t, "PATCH", "/api/v1/grants/"+gid, obj{"api_id": reportsID}), 400, "api_id")
		wantProblem(t, "a scope the API lacks", adm.call(t, "PATCH", "/api/v1/grants/"+gid, obj{"scopes": []string{"nope"}}), 400, "scopes[0]")
		adm.must(t, 200, "PATCH", "/api/v1/grants/"+gid, obj{"scopes": []string{}})
		ms.wantToken(t, "audience only", "grantee", secret, aud, "")
		wantProblem(t, "unknown grant", adm.call(t, "PATCH", "/api/v1/grants/grt_nope", obj{"scopes": []string{}}), 404, "")
	})

	t.Run("delete", func(t *testing.T) {
		cur := adm.must(t, 200, "GET", "/api/v1/grants/"+gid, nil).header.Get("ETag")
		wantProblem(t, "stale ETag", adm.call(t, "DELETE", "/api/v1/grants/"+gid, nil, "If-Match", `"999"`), 412, "")
		adm.must(t, 204, "DELETE", "/api/v1/grants/"+gid, nil, "If-Match", cur)
		ms.wantNoToken(t, "after deleting the grant", "grantee", secret, aud, "invalid_target")
		ms.wantToken(t, "the other grant", "grantee", secret, "urn:example:reports", "")
		wantProblem(t, "the deleted grant", adm.call(t, "GET", "/api/v1/grants/"+gid, nil), 404, "")
		wantProblem(t, "delete again", adm.call(t, "DELETE", "/api/v1/grants/"+gid, nil), 404, "")
	})
}

// TestManageOrgs: organizations, tokens of their clients carrying org_id, and an organization's own administrator,
// who sees and changes only its organization and grants only what the organization allows.
func TestManageOrgs(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	adm := ms.admin
	const aud = "https://api.example.com/v1"

	acme := adm.must(t, 201, "POST", "/api/v1/orgs", obj{"name": "Acme", "description": "A tenant", "api_key_prefix": "acme",
		"allowed_grants": []obj{{"audience": aud, "scopes": []string{"read"}}}})
	a := strOf(acme.json, "id")
	wantAllowed := []any{obj{"api_id": adm.apiID(t, aud), "audience": aud, "scopes": []any{"read"}}}
	if !strings.HasPrefix(a, "org_") || acme.header.Get("Location") != "/api/v1/orgs/"+a || acme.header.Get("ETag") == "" ||
		!equalJSON(acme.json["allowed_grants"], wantAllowed) || acme.json["api_key_prefix"] != "acme" {
		t.Errorf("create: %s, Location %q", acme.body, acme.header.Get("Location"))
	}
	b := strOf(adm.must(t, 201, "POST", "/api/v1/orgs", obj{"name": "Bravo"}).json, "id")

	t.Run("invalid", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			body   any
			status int
			field  string
		}{
			{"duplicate name", obj{"name": "Acme"}, 409, ""},
			{"no name", obj{"description": "x"}, 400, "name"},
			{"bad key prefix", obj{"name": "C", "api_key_prefix": "9x"}, 400, "api_key_prefix"},
			{"unknown API", obj{"name": "C", "allowed_grants": []obj{{"audience": "urn:nope"}}}, 400, "allowed_grants[0].audience"},
			{"scope the API lacks", obj{"name": "C", "allowed_grants": []obj{{"audience": aud, "scopes": []string{"nope"}}}}, 400, "allowed_grants[0].scopes[0]"},
			{"an API twice", obj{"name": "C", "allowed_grants": []obj{{"audience": aud}, {"audience": aud}}}, 400, "allowed_grants[1]"},
		} {
			wantProblem(t, tc.name, adm.call(t, "POST", "/api/v1/orgs", tc.body), tc.status, tc.field)
		}
		etag := adm.must(t, 200, "GET", "/api/v1/orgs/"+b, nil).header.Get("ETag")
		wantProblem(t, "rename to a taken name", adm.call(t, "PATCH", "/api/v1/orgs/"+b, obj{"name": "Acme"}), 409, "")
		wantProblem(t, "stale ETag", adm.call(t, "PATCH", "/api/v1/orgs/"+b, obj{"name": "B"}, "If-Match", `"999"`), 412, "")
		r := adm.must(t, 200, "PATCH", "/api/v1/orgs/"+b, obj{"description": "Second tenant"}, "If-Match", etag)
		if r.header.Get("ETag") == etag || r.json["description"] != "Second tenant" || r.json["name"] != "Bravo" {
			t.Errorf("change: %s, ETag %q", r.body, r.header.Get("ETag"))
		}
	})

	// Clients in organizations get tokens with org_id.
	_, aSecret := adm.createClient(t, obj{"client_id": "acme-svc", "name": "Acme service", "org_id": a})
	adm.grant(t, "acme-svc", aud, "read")
	if claims := ms.wantToken(t, "a client of an organization", "acme-svc", aSecret, aud, "read"); claims["org_id"] != a {
		t.Errorf("token claims %v, want org_id %s", claims, a)
	}
	if claims := ms.wantToken(t, "a client of no organization", "svc-one", secretOne, aud, "read write"); claims["org_id"] != nil {
		t.Errorf("token claims %v, want no org_id", claims)
	}
	bClient, bSecret := adm.createClient(t, obj{"client_id": "bravo-svc", "name": "Bravo service", "org_id": b})
	if bClient["org_id"] != b {
		t.Errorf("client of Bravo: %v", bClient)
	}
	bGrant := adm.grant(t, "bravo-svc", "urn:example:reports", "reports:read")
	ms.wantToken(t, "Bravo's client", "bravo-svc", bSecret, "urn:example:reports", "reports:read")

	// Acme's administrator: a client of Acme, granted management scopes by the global administrator.
	_, adminSecret := adm.createClient(t, obj{"client_id": "acme-admin", "name": "Acme administrator", "org_id": a})
	mgmtGrant := adm.grant(t, "acme-admin", auth.ManagementAudience, auth.ScopeReadAPIs, auth.ScopeWriteAPIs, auth.ScopeReadClients,
		auth.ScopeWriteClients, auth.ScopeReadGrants, auth.ScopeWriteGrants, auth.ScopeReadOrgs, auth.ScopeWriteOrgs,
		auth.ScopeReadKeys, auth.ScopeWriteKeys, auth.ScopeReadAudit)
	org := ms.as(t, "acme-admin", adminSecret)
	if claims := claimsOf(t, org.token); claims["org_id"] != a {
		t.Fatalf("Acme administrator's management token: %v", claims)
	}
	reportsID, mgmtID := adm.apiID(t, "urn:example:reports"), adm.apiID(t, auth.ManagementAudience)

	t.Run("org-scoped sees only its organization", func(t *testing.T) {
		for _, tc := range []struct{ method, path string }{
			{"GET", "/api/v1/clients/bravo-svc"},
			{"GET", "/api/v1/clients/svc-one"},
			{"GET", "/api/v1/clients/gh-admin"},
			{"PATCH", "/api/v1/clients/bravo-svc"},
			{"DELETE", "/api/v1/clients/bravo-svc"},
			{"GET", "/api/v1/clients/bravo-svc/secrets"},
			{"POST", "/api/v1/clients/bravo-svc/secrets"},
			{"DELETE", "/api/v1/clients/bravo-svc/secrets/" + strOf(bClient["secrets"].([]any)[0].(obj), "id")},
			{"GET", "/api/v1/clients?org_id=" + b},
			{"GET", "/api/v1/grants/" + strOf(bGrant, "id")},
			{"PATCH", "/api/v1/grants/" + strOf(bGrant, "id")},
			{"DELETE", "/api/v1/grants/" + strOf(bGrant, "id")},
			{"GET", "/api/v1/grants?org_id=" + b},
			{"GET", "/api/v1/apis"},
			{"GET", "/api/v1/apis/" + reportsID},
			{"POST", "/api/v1/apis"},
			{"PATCH", "/api/v1/apis/" + reportsID},
			{"DELETE", "/api/v1/apis/" + reportsID},
			{"GET", "/api/v1/signing-keys"},
			{"POST", "/api/v1/signing-keys/rotate"},
			{"POST", "/api/v1/signing-keys/" + tokenKid(t, org.token) + "/revoke"},
			{"GET", "/api/v1/orgs/" + b},
			{"PATCH", "/api/v1/orgs/" + b},
			{"DELETE", "/api/v1/orgs/" + b},
			{"POST", "/api/v1/orgs"},
			{"PATCH", "/api/v1/orgs/" + a}, // not even its own: an organization does not set its own allowances
			{"DELETE", "/api/v1/orgs/" + a},
			{"GET", "/api/v1/audit-events?org_id=" + b},
		} {
			var body any
			if tc.method == "POST" || tc.method == "PATCH" {
				body = obj{"name": "Changed", "description": "Changed"}
			}
			wantProblem(t, tc.method+" "+tc.path, org.call(t, tc.method, tc.path, body), 404, "")
		}
		ms.wantToken(t, "Bravo's client after the refused changes", "bravo-svc", bSecret, "urn:example:reports", "reports:read")
		if got := adm.must(t, 200, "GET", "/api/v1/orgs/"+a, nil).json; got["name"] != "Acme" {
			t.Errorf("Acme after its administrator's refused change: %v", got)
		}

		clients, _ := org.walk(t, "/api/v1/clients", 1)
		if got := memberOf(clients, "client_id"); !slices.Equal(got, []string{"acme-admin", "acme-svc"}) {
			t.Errorf("Acme's administrator lists clients %v", got)
		}
		grants, _ := org.walk(t, "/api/v1/grants", 1)
		for _, g := range grants {
			if g["client_id"] != "acme-svc" && g["client_id"] != "acme-admin" {
				t.Errorf("Acme's administrator lists a grant of %v", g["client_id"])
			}
		}
		if len(grants) != 2 {
			t.Errorf("Acme's administrator lists %d grants, want 2", len(grants))
		}
		orgs, _ := org.walk(t, "/api/v1/orgs", 10)
		if got := memberOf(orgs, "id"); !slices.Equal(got, []string{a}) {
			t.Errorf("Acme's administrator lists organizations %v", got)
		}
		org.must(t, 200, "GET", "/api/v1/orgs/"+a, nil)
		org.must(t, 200, "GET", "/api/v1/clients/acme-svc", nil)
		org.must(t, 200, "GET", "/api/v1/clients?org_id="+a, nil)
		events, _ := org.walk(t, "/api/v1/audit-events", 500)
		if !slices.ContainsFunc(events, func(e obj) bool { return e["resource"] == "client/acme-svc" }) {
			t.Errorf("Acme's administrator does not see the creation of its clients in the audit log: %v", events)
		}
		for _, e := range events {
			if e["org_id"] != a {
				t.Errorf("Acme's administrator sees an audit event of another organization: %v", e)
			}
		}
	})

	t.Run("org-scoped creates clients only in its organization", func(t *testing.T) {
		wantProblem(t, "in another organization", org.call(t, "POST", "/api/v1/clients", obj{"name": "X", "org_id": b}), 400, "org_id")
		wantProblem(t, "in a nonexistent organization", org.call(t, "POST", "/api/v1/clients", obj{"name": "X", "org_id": "org_nope"}), 400, "org_id")
		wantProblem(t, "choosing its client_id", org.call(t, "POST", "/api/v1/clients", obj{"name": "X", "client_id": "acme-x"}), 400, "client_id")
		c, secret := org.createClient(t, obj{"name": "Acme worker"})
		if c["org_id"] != a {
			t.Errorf("created by Acme's administrator: org_id %v, want %s", c["org_id"], a)
		}
		c2, _ := org.createClient(t, obj{"name": "Acme worker 2", "org_id": a})
		if c2["org_id"] != a {
			t.Errorf("created in its own organization by name: org_id %v", c2["org_id"])
		}
		wantProblem(t, "move a client out", org.call(t, "PATCH", "/api/v1/clients/acme-svc", obj{"org_id": b}), 400, "org_id")
		wantProblem(t, "move a client out (global administrator)", adm.call(t, "PATCH", "/api/v1/clients/acme-svc", obj{"org_id": b}), 400, "org_id")
		worker := strOf(c, "client_id")

		// Grants: only what Acme allows; anything else looks like no such API.
		g := org.must(t, 201, "POST", "/api/v1/grants", obj{"client_id": worker, "audience": aud, "scopes": []string{"read"}}).json
		if claims := ms.wantToken(t, "a worker granted by its organization", worker, secret, aud, "read"); claims["org_id"] != a {
			t.Errorf("worker's token: %v", claims)
		}
		wantProblem(t, "a scope Acme may not grant", org.call(t, "PATCH", "/api/v1/grants/"+strOf(g, "id"), obj{"scopes": []string{"read", "write"}}), 400, "scopes[1]")
		wantProblem(t, "a scope Acme may not grant, on create", org.call(t, "POST", "/api/v1/grants",
			obj{"client_id": strOf(c2, "client_id"), "audience": aud, "scopes": []string{"write"}}), 400, "scopes[0]")
		wantProblem(t, "another organization's client", org.call(t, "POST", "/api/v1/grants",
			obj{"client_id": "bravo-svc", "audience": aud, "scopes": []string{"read"}}), 400, "client_id")
		wantProblem(t, "a global client", org.call(t, "POST", "/api/v1/grants",
			obj{"client_id": "svc-none", "audience": aud, "scopes": []string{"read"}}), 400, "client_id")
		wantProblem(t, "widen its own management grant", org.call(t, "PATCH", "/api/v1/grants/"+strOf(mgmtGrant, "id"),
			obj{"scopes": []string{auth.ScopeWriteOrgs, auth.ScopeReadKeys, auth.ScopeWriteKeys}}), 400, "audience")
		ms.wantToken(t, "the worker, after the refused grants", worker, secret, aud, "read")

		same := func(what string, allowed, unknown obj, field string) {
			t.Helper()
			r1 := org.call(t, "POST", "/api/v1/grants", allowed)
			r2 := org.call(t, "POST", "/api/v1/grants", unknown)
			wantProblem(t, what+" (an API Acme may not grant)", r1, 400, field)
			wantProblem(t, what+" (no such API)", r2, 400, field)
			delete(r1.json, "request_id")
			delete(r2.json, "request_id")
			if !equalJSON(r1.json, r2.json) {
				t.Errorf("%s: an API the organization may not grant answers\n%s\nbut one that does not exist\n%s", what, r1.body, r2.body)
			}
		}
		c2id := strOf(c2, "client_id")
		same("by audience", obj{"client_id": c2id, "audience": "urn:example:reports"}, obj{"client_id": c2id, "audience": "urn:nope"}, "audience")
		same("by audience, with scopes", obj{"client_id": c2id, "audience": "urn:example:reports", "scopes": []string{"bogus"}},
			obj{"client_id": c2id, "audience": "urn:nope", "scopes": []string{"bogus"}}, "audience")
		same("by api_id", obj{"client_id": c2id, "api_id": reportsID}, obj{"client_id": c2id, "api_id": "api_nope"}, "api_id")
		same("the management API", obj{"client_id": c2id, "audience": auth.ManagementAudience, "scopes": []string{auth.ScopeWriteOrgs}},
			obj{"client_id": c2id, "audience": "urn:nope", "scopes": []string{auth.ScopeWriteOrgs}}, "audience")
		same("the management API by id", obj{"client_id": c2id, "api_id": mgmtID}, obj{"client_id": c2id, "api_id": "api_nope"}, "api_id")
		ms.wantNoToken(t, "the refused grants gave nothing", c2id, "x", aud, "invalid_client")

		// Its own organization's clients can be changed and deleted.
		org.must(t, 200, "PATCH", "/api/v1/clients/"+c2id, obj{"description": "changed"})
		org.must(t, 201, "POST", "/api/v1/clients/"+c2id+"/secrets", nil)
		org.must(t, 204, "DELETE", "/api/v1/clients/"+c2id, nil)
	})

	t.Run("delete", func(t *testing.T) {
		wantProblem(t, "an organization that owns clients", adm.call(t, "DELETE", "/api/v1/orgs/"+b, nil), 409, "")
		ms.wantToken(t, "Bravo's client after the refused delete", "bravo-svc", bSecret, "urn:example:reports", "reports:read")
		adm.must(t, 204, "DELETE", "/api/v1/clients/bravo-svc", nil)
		etag := adm.must(t, 200, "GET", "/api/v1/orgs/"+b, nil).header.Get("ETag")
		wantProblem(t, "stale ETag", adm.call(t, "DELETE", "/api/v1/orgs/"+b, nil, "If-Match", `"999"`), 412, "")
		adm.must(t, 204, "DELETE", "/api/v1/orgs/"+b, nil, "If-Match", etag)
		wantProblem(t, "the deleted organization", adm.call(t, "GET", "/api/v1/orgs/"+b, nil), 404, "")
		wantProblem(t, "a client in the deleted organization", adm.call(t, "POST", "/api/v1/clients", obj{"name": "X", "org_id": b}), 400, "org_id")
		wantProblem(t, "Acme, which owns clients", adm.call(t, "DELETE", "/api/v1/orgs/"+a, nil), 409, "")
	})
}

// TestManageSigningKeys: the signing keys listed are the ones the JWKS publishes, with their public facts only.
func TestManageSigningKeys(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	r := ms.admin.must(t, 200, "GET", "/api/v1/signing-keys", nil)
	keys := listItems(t, r)
	jwks := fetchJWKS(t, ms.URL)
	algs := []string{}
	for _, k := range keys {
		j, ok := jwks[strOf(k, "kid")]
		if !ok || j.Alg != k["alg"] || k["state"] != "current" || strOf(k, "created_at") == "" || strOf(k, "since") == "" ||
			strOf(k, "next_step_at") <= strOf(k, "since") {
			t.Errorf("signing key %v (in the JWKS: %v)", k, ok)
		}
		algs = append(algs, strOf(k, "alg"))
	}
	slices.Sort(algs)
	if !slices.Equal(algs, []string{"ES256", "EdDSA", "RS256"}) || len(jwks) != len(keys) {
		t.Errorf("signing keys for %v, JWKS of %d keys; want one current key per algorithm in use", algs, len(jwks))
	}
	for _, private := range []string{`"d"`, `"p"`, `"private`, "PRIVATE"} {
		if strings.Contains(r.body, private) {
			t.Errorf("the signing keys list holds %s", private)
		}
	}

	// Rotate and revoke. The management tokens are ES256: act on EdDSA, so that gh-admin's token stays valid.
	var old string
	for _, k := range keys {
		if k["alg"] == "EdDSA" {
			old = strOf(k, "kid")
		}
	}
	next := ms.admin.must(t, 200, "POST", "/api/v1/signing-keys/rotate", obj{"alg": "EdDSA"}).json
	if next["state"] != "next" || next["kid"] == old || strOf(next, "next_step_at") <= strOf(next, "since") {
		t.Errorf("rotate: %v, want a next key that signs later", next)
	}
	if _, ok := fetchJWKS(t, ms.URL)[strOf(next, "kid")]; !ok {
		t.Errorf("the next key %v is not published", next["kid"])
	}
	cur := ms.admin.must(t, 200, "POST", "/api/v1/signing-keys/rotate", obj{"alg": "EdDSA", "immediately": true}).json
	if cur["state"] != "current" || cur["kid"] != next["kid"] {
		t.Errorf("rotate immediately: %v, want the next key %v current", cur, next["kid"])
	}
	revoked := ms.admin.must(t, 200, "POST", "/api/v1/signing-keys/"+old+"/revoke", nil).json
	if revoked["kid"] != old || revoked["alg"] != "EdDSA" || strOf(revoked, "revoked_at") == "" {
		t.Errorf("revoke: %v", revoked)
	}
	if _, ok := fetchJWKS(t, ms.URL)[old]; ok {
		t.Errorf("the revoked key %s is still published", old)
	}
	wantProblem(t, "revoke it again", ms.admin.call(t, "POST", "/api/v1/signing-keys/"+old+"/revoke", nil), 404, "")
	wantProblem(t, "rotate HS256", ms.admin.call(t, "POST", "/api/v1/signing-keys/rotate", obj{"alg": "HS256"}), 400, "alg")
	wantProblem(t, "rotate without alg", ms.admin.call(t, "POST", "/api/v1/signing-keys/rotate", obj{"immediately": true}), 400, "alg")
	wantProblem(t, "rotate with an unknown member", ms.admin.call(t, "POST", "/api/v1/signing-keys/rotate", obj{"alg": "ES256", "now": true}), 400, "now")
	events, err := ms.Store.ListAuditEvents(t.Context(), auth.AuditFilter{Resource: "signing_key/" + old})
	if err != nil || len(events) != 1 || events[0].Action != "signing_key.revoke" || events[0].Actor != "gh-admin" {
		t.Errorf("audit events of the revoked key: %v (err %v), want its revocation by gh-admin", events, err)
	}
}

// TestManageRequestErrors: malformed requests get a problem naming what is wrong, never a 500.
func TestManageRequestErrors(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	adm := ms.admin
	big := `{"name":"x","description":"` + strings.Repeat("a", 64<<10) + `"}`
	for _, tc := range []struct {
		name        string
		method      string
		path        string
		body        any
		contentType string
		status      int
		field       string
		allow       string
	}{
		{name: "unknown member", method: "POST", path: "/api/v1/clients", body: `{"name":"x","colour":"red"}`, status: 400, field: "colour"},
		{name: "unknown member of a scope", method: "POST", path: "/api/v1/apis", body: `{"identifier":"urn:a:b","name":"x","scopes":[{"name":"r","colour":1}]}`, status: 400, field: "colour"},
		{name: "unknown member in PATCH", method: "PATCH", path: "/api/v1/clients/svc-one", body: `{"nmae":"x"}`, status: 400, field: "nmae"},
		{name: "malformed JSON", method: "POST", path: "/api/v1/clients", body: `{"name":`, status: 400},
		{name: "syntax error", method: "POST", path: "/api/v1/clients", body: `{"name" "x"}`, status: 400},
		{name: "an array", method: "POST", path: "/api/v1/clients", body: `[{"name":"x"}]`, status: 400},
		{name: "a string", method: "POST", path: "/api/v1/grants", body: `"x"`, status: 400},
		{name: "two objects", method: "POST", path: "/api/v1/clients", body: `{"name":"x"} {"name":"y"}`, status: 400},
		{name: "empty body", method: "POST", path: "/api/v1/orgs", body: ``, status: 400},
		{name: "deep nesting", method: "POST", path: "/api/v1/clients", body: strings.Repeat("[", 10000), status: 400},
		{name: "wrong type", method: "POST", path: "/api/v1/orgs", body: `{"name":["x"]}`, status: 400, field: "name"},
		{name: "body over 64 KiB", method: "POST", path: "/api/v1/clients", body: big, status: 413},
		{name: "body over 64 KiB in PATCH", method: "PATCH", path: "/api/v1/clients/svc-one", body: big, status: 413},
		{name: "text/plain", method: "POST", path: "/api/v1/clients", body: `{"name":"x"}`, contentType: "text/plain", status: 415},
		{name: "form", method: "POST", path: "/api/v1/apis", body: "identifier=urn:a:b&name=x", contentType: "application/x-www-form-urlencoded", status: 415},
		{name: "form in PATCH", method: "PATCH", path: "/api/v1/clients/svc-one", body: "name=x", contentType: "application/x-www-form-urlencoded", status: 415},
		{name: "a look-alike media type", method: "POST", path: "/api/v1/clients", body: `{"name":"x"}`, contentType: "application/jsonx", status: 415},
		{name: "JSON with a charset", method: "POST", path: "/api/v1/clients", body: `{"name":`, contentType: "application/json; charset=utf-8", status: 400},
		{name: "invalid UTF-8", method: "POST", path: "/api/v1/clients", body: "{\"name\":\"caf\xe9\"}", status: 400},
		{name: "PUT a list", method: "PUT", path: "/api/v1/clients", body: `{}`, status: 405, allow: "GET, HEAD, POST"},
		{name: "DELETE a list", method: "DELETE", path: "/api/v1/apis", status: 405, allow: "GET, HEAD, POST"},
		{name: "PUT a client", method: "PUT", path: "/api/v1/clients/svc-one", body: `{}`, status: 405, allow: "GET, HEAD, PATCH, DELETE"},
		{name: "POST a grant", method: "POST", path: "/api/v1/grants/grt_x", body: `{}`, status: 405, allow: "GET, HEAD, PATCH, DELETE"},
		{name: "GET a secret", method: "GET", path: "/api/v1/clients/svc-one/secrets/sec_x", status: 405, allow: "DELETE"},
		{name: "POST signing keys", method: "POST", path: "/api/v1/signing-keys", body: `{}`, status: 405, allow: "GET, HEAD"},
		{name: "DELETE audit events", method: "DELETE", path: "/api/v1/audit-events", status: 405, allow: "GET, HEAD"},
		{name: "POST the OpenAPI document", method: "POST", path: "/api/v1/openapi.json", body: `{}`, status: 405, allow: "GET, HEAD"},
		{name: "unknown endpoint", method: "GET", path: "/api/v1/nope", status: 404},
		{name: "unknown nested endpoint", method: "GET", path: "/api/v1/clients/svc-one/nope", status: 404},
		{name: "limit 0", method: "GET", path: "/api/v1/clients?limit=0", status: 400, field: "limit"},
		{name: "limit 501", method: "GET", path: "/api/v1/grants?limit=501", status: 400, field: "limit"},
		{name: "limit not a number", method: "GET", path: "/api/v1/apis?limit=ten", status: 400, field: "limit"},
		{name: "cursor not base64", method: "GET", path: "/api/v1/orgs?cursor=%21%21", status: 400, field: "cursor"},
		{name: "cursor too long", method: "GET", path: "/api/v1/clients?cursor=" + strings.Repeat("QUFB", 300), status: 400, field: "cursor"},
		{name: "audit from not a time", method: "GET", path: "/api/v1/audit-events?from=yesterday", status: 400, field: "from"},
		{name: "audit to not a time", method: "GET", path: "/api/v1/audit-events?to=2026-13-01", status: 400, field: "to"},
		{name: "audit limit", method: "GET", path: "/api/v1/audit-events?limit=-1", status: 400, field: "limit"},
	} {
		header := []string{}
		if tc.contentType != "" {
			header = append(header, "Content-Type", tc.contentType)
		}
		r := adm.call(t, tc.method, tc.path, tc.body, header...)
		wantProblem(t, tc.name, r, tc.status, tc.field)
		if allow := r.header.Get("Allow"); allow != tc.allow {
			t.Errorf("%s: Allow %q, want %q", tc.name, allow, tc.allow)
		}
		if strings.Contains(r.body, "goroutine") || strings.Contains(r.body, ".go:") {
			t.Errorf("%s: the answer leaks internals: %s", tc.name, truncate(r.body, 300))
		}
	}
	// Nothing was created or changed by the refused requests.
	if c := adm.must(t, 200, "GET", "/api/v1/clients/svc-one", nil).json; c["name"] != "One API" {
		t.Errorf("svc-one after the refused PATCHes: %v", c)
	}
	if list, _ := adm.walk(t, "/api/v1/clients", 500); len(list) != 4 {
		t.Errorf("%d clients after the refused requests, want the fixture's 4", len(list))
	}
}

// TestManagePagination: 300 clients (100 of them in an organization) and their grants listed page by page: every
// item exactly once, in order, and the cursor ends.
func TestManagePagination(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	adm := ms.admin
	org := strOf(adm.must(t, 201, "POST", "/api/v1/orgs", obj{"name": "Paged"}).json, "id")
	want, wantOrg := []string{"gh-admin", "svc-multi", "svc-none", "svc-one"}, []string{}
	for i := range 300 {
		body := obj{"client_id": fmt.Sprintf("page-%03d", i), "name": fmt.Sprintf("Client %d", i)}
		if i%3 == 0 {
			body["org_id"] = org
			wantOrg = append(wantOrg, body["client_id"].(string))
		}
		adm.createClient(t, body)
		want = append(want, body["client_id"].(string))
	}
	slices.Sort(want)
	for _, tc := range []struct {
		path  string
		limit int
		want  []string
	}{
		{"/api/v1/clients", 50, want},
		{"/api/v1/clients", 7, want},
		{"/api/v1/clients", 500, want},
		{"/api/v1/clients?org_id=" + org, 50, wantOrg},
		{"/api/v1/clients?org_id=" + org, 100, wantOrg}, // exactly one page's worth
		{"/api/v1/clients?org_id=org_nope", 50, []string{}},
	} {
		list, pages := adm.walk(t, tc.path, tc.limit)
		got := memberOf(list, "client_id")
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s limit %d: %d clients (%v…), want %d, each once in order", tc.path, tc.limit, len(got), got[:min(len(got), 5)], len(tc.want))
		}
		if max := (len(tc.want) + tc.limit) / tc.limit; pages > max {
			t.Errorf("%s limit %d: %d pages, want at most %d", tc.path, tc.limit, pages, max)
		}
	}

	// Grants, for the 100 clients of the organization.
	for _, id := range wantOrg {
		adm.grant(t, id, "urn:example:reports", "reports:read")
	}
	all, _ := adm.walk(t, "/api/v1/grants?audience=urn:example:reports", 500)
	paged, _ := adm.walk(t, "/api/v1/grants?audience=urn:example:reports", 9)
	byOrg, _ := adm.walk(t, "/api/v1/grants?org_id="+org, 25)
	if len(all) != 101 || !slices.Equal(memberOf(paged, "id"), memberOf(all, "id")) || len(byOrg) != 100 {
		t.Errorf("grants: %d in one page, %d paged by 9, %d of the organization; want 101, the same, 100", len(all), len(paged), len(byOrg))
	}
	if !slices.IsSorted(memberOf(paged, "id")) {
		t.Error("grants are not listed in id order")
	}
	orgs, _ := adm.walk(t, "/api/v1/orgs", 1)
	apis, _ := adm.walk(t, "/api/v1/apis", 1)
	if len(orgs) != 1 || len(apis) != 4 || !slices.IsSorted(memberOf(apis, "id")) {
		t.Errorf("orgs %d, apis %d (sorted: %v); want 1 and 4", len(orgs), len(apis), slices.IsSorted(memberOf(apis, "id")))
	}
}

// TestManageAudit: every change the management API makes is in the audit log with its action, resource, actor,
// organization and request id; the filters and pagination work; no secret is ever in it (startManage checks the
// whole log and the server's log when the test ends).
func TestManageAudit(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	adm := ms.admin
	start := time.Now().UTC()

	type change struct{ action, resource, org, requestID string }
	var changes []change
	n := 0
	record := func(status int, action, method, path string, body any, resource func(r response) string, org string) response {
		t.Helper()
		n++
		id := fmt.Sprintf("audit-test-%02d", n)
		r := adm.must(t, status, method, path, body, "X-Request-Id", id)
		changes = append(changes, change{action, resource(r), org, id})
		return r
	}
	fixed := func(s string) func(response) string { return func(response) string { return s } }
	fromID := func(prefix string) func(response) string {
		return func(r response) string { return prefix + strOf(r.json, "id") }
	}

	api := record(201, "api.create", "POST", "/api/v1/apis", obj{"identifier": "urn:audit:api", "name": "Audited", "scopes": []obj{{"name": "a"}}}, fromID("api/"), "")
	apiID := strOf(api.json, "id")
	record(200, "api.update", "PATCH", "/api/v1/apis/"+apiID, obj{"name": "Audited API"}, fixed("api/"+apiID), "")
	org := record(201, "org.create", "POST", "/api/v1/orgs", obj{"name": "Audited org"}, fromID("org/"), "")
	orgID := strOf(org.json, "id")
	changes[len(changes)-1].org = orgID // known only now
	record(200, "org.update", "PATCH", "/api/v1/orgs/"+orgID, obj{"allowed_grants": []obj{{"audience": "urn:audit:api", "scopes": []string{"a"}}}}, fixed("org/"+orgID), orgID)
	c := record(201, "client.create", "POST", "/api/v1/clients", obj{"client_id": "audited", "name": "Audited", "org_id": orgID}, fixed("client/audited"), orgID)
	firstSecret := strOf(c.json["secrets"].([]any)[0].(obj), "id")
	record(200, "client.update", "PATCH", "/api/v1/clients/audited", obj{"description": "changed"}, fixed("client/audited"), orgID)
	record(201, "client.secret.add", "POST", "/api/v1/clients/audited/secrets", obj{"expire_others_in": 60}, fixed("client/audited"), orgID)
	record(204, "client.secret.delete", "DELETE", "/api/v1/clients/audited/secrets/"+firstSecret, nil, fixed("client/audited"), orgID)
	g := record(201, "grant.create", "POST", "/api/v1/grants", obj{"client_id": "audited", "audience": "urn:audit:api", "scopes": []string{"a"}}, fromID("grant/"), orgID)
	gid := strOf(g.json, "id")
	record(200, "grant.update", "PATCH", "/api/v1/grants/"+gid, obj{"scopes": []string{}}, fixed("grant/"+gid), orgID)
	record(204, "grant.delete", "DELETE", "/api/v1/grants/"+gid, nil, fixed("grant/"+gid), orgID)
	record(204, "client.delete", "DELETE", "/api/v1/clients/audited", nil, fixed("client/audited"), orgID)
	record(204, "org.delete", "DELETE", "/api/v1/orgs/"+orgID, nil, fixed("org/"+orgID), orgID)
	record(204, "api.delete", "DELETE", "/api/v1/apis/"+apiID, nil, fixed("api/"+apiID), "")
	end := time.Now().UTC()

	// The recorder may write in batches: wait until the last change is in.
	list := func(query string, limit int) []obj {
		t.Helper()
		all, _ := adm.walk(t, "/api/v1/audit-events?"+query, limit)
		return all
	}
	var events []obj
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		events = list("actor=gh-admin", 500)
		if slices.ContainsFunc(events, func(e obj) bool { return e["request_id"] == changes[len(changes)-1].requestID }) ||
			time.Now().After(deadline) {
			break
		}
	}
	if len(events) == 0 {
		t.Fatal("the audit log lists no event by gh-admin")
	}

	byRequest := map[string]obj{}
	for _, e := range events {
		if e["actor"] != "gh-admin" {
			t.Errorf("?actor=gh-admin lists an event by %v", e["actor"])
		}
		if id := strOf(e, "request_id"); strings.HasPrefix(id, "audit-test-") {
			if byRequest[id] != nil {
				t.Errorf("two events for request %s", id)
			}
			byRequest[id] = e
		}
	}
	for _, c := range changes {
		e := byRequest[c.requestID]
		if e == nil {
			t.Errorf("no audit event for %s of %s (request %s)", c.action, c.resource, c.requestID)
			continue
		}
		if e["action"] != c.action || e["resource"] != c.resource || strOf(e, "org_id") != c.org || !strings.HasPrefix(strOf(e, "id"), "evt_") {
			t.Errorf("request %s: event %v, want action %s, resource %s, org_id %q", c.requestID, e, c.action, c.resource, c.org)
		}
		if tm, err := time.Parse(time.RFC3339Nano, strOf(e, "time")); err != nil || tm.Before(start.Add(-time.Second)) || tm.After(end.Add(time.Second)) {
			t.Errorf("request %s: time %v, want between %v and %v", c.requestID, e["time"], start, end)
		}
	}
	if e := byRequest[changes[0].requestID]; e != nil && !strings.Contains(fmt.Sprint(e["details"]), "urn:audit:api") {
		t.Errorf("api.create details %v do not name the identifier", e["details"])
	}

	// Filters.
	ours := func(list []obj) []string {
		var out []string
		for _, e := range list {
			if id := strOf(e, "request_id"); strings.HasPrefix(id, "audit-test-") {
				out = append(out, id)
			}
		}
		slices.Sort(out)
		return out
	}
	requests := func(keep func(change) bool) []string {
		var out []string
		for _, c := range changes {
			if keep(c) {
				out = append(out, c.requestID)
			}
		}
		slices.Sort(out)
		return out
	}
	every := requests(func(change) bool { return true })
	for _, tc := range []struct {
		query string
		want  []string
		check func(obj) bool // every event listed passes
	}{
		{"action=client.create", requests(func(c change) bool { return c.action == "client.create" }), func(e obj) bool { return e["action"] == "client.create" }},
		{"resource=client/audited", requests(func(c change) bool { return c.resource == "client/audited" }), func(e obj) bool { return e["resource"] == "client/audited" }},
		{"org_id=" + orgID, requests(func(c change) bool { return c.org == orgID }), func(e obj) bool { return e["org_id"] == orgID }},
		{"actor=nobody", nil, func(e obj) bool { return false }},
		{"actor=gh-admin&action=grant.delete&resource=grant/" + gid, requests(func(c change) bool { return c.action == "grant.delete" }), nil},
		{"from=" + end.Add(time.Second).Format(time.RFC3339Nano), nil, nil},
		{"to=" + start.Add(-time.Second).Format(time.RFC3339Nano), nil, nil},
		{"from=" + start.Add(-time.Second).Format(time.RFC3339Nano) + "&to=" + end.Add(time.Second).Format(time.RFC3339Nano), every, nil},
	} {
		got := list(tc.query, 500)
		if o := ours(got); !slices.Equal(o, tc.want) {
			t.Errorf("?%s: requests %v, want %v", tc.query, o, tc.want)
		}
		for _, e := range got {
			if tc.check != nil && !tc.check(e) {
				t.Errorf("?%s lists %v", tc.query, e)
			}
		}
	}

	// Pagination: newest first, each event once.
	paged := list("actor=gh-admin", 3)
	if !slices.Equal(memberOf(paged, "id"), memberOf(events, "id")) {
		t.Errorf("paged by 3: %d events, in one page: %d, or in another order", len(paged), len(events))
	}
	sorted := memberOf(paged, "id")
	if !slices.IsSortedFunc(sorted, func(a, b string) int { return strings.Compare(b, a) }) {
		t.Error("audit events are not newest first")
	}
	if len(slices.Compact(slices.Clone(sorted))) != len(sorted) {
		t.Error("an audit event is listed twice")
	}
}

// BenchmarkManageList measures GET /api/v1/clients over 10,000 clients, page after page, through the real server
// and loopback HTTP.
func BenchmarkManageList(b *testing.B) {
	ms := startManage(b)
	ctx := context.Background()
	now := time.Now().UTC()
	hash := ms.Hasher.Hash(auth.NewSecret())
	for i := range 10000 {
		c := &auth.Client{ID: fmt.Sprintf("bench-%05d", i), Name: fmt.Sprintf("Client %d", i), Description: "benchmark",
			Version: 1, CreatedAt: now, UpdatedAt: now,
			Secrets: []auth.Secret{{ID: auth.NewID("sec"), Hash: hash, Hint: "abcd", CreatedAt: now}}}
		if err := ms.Store.CreateClient(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	for _, limit := range []int{50, 500} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			cursor := ""
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				path := fmt.Sprintf("/api/v1/clients?limit=%d", limit)
				if cursor != "" {
					path += "&cursor=" + cursor
				}
				req, _ := http.NewRequest("GET", ms.URL+path, nil)
				req.Header.Set("Authorization", "Bearer "+ms.admin.token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
				}
				b.StopTimer()
				var page struct {
					Items      []json.RawMessage `json:"items"`
					NextCursor string            `json:"next_cursor"`
				}
				if err := json.Unmarshal(body, &page); err != nil || len(page.Items) == 0 {
					b.Fatalf("GET %s: %v, %d items", path, err, len(page.Items))
				}
				cursor = url.QueryEscape(page.NextCursor) // "" after the last page: start again
				b.StartTimer()
			}
		})
	}
}

// TestManageAuditConfig: what the declarative file creates at start is on the record too, by the actor "config",
// and a second start that changes nothing records nothing.
func TestManageAuditConfig(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	events := func() []*auth.AuditEvent {
		t.Helper()
		es, err := ms.Store.ListAuditEvents(t.Context(), auth.AuditFilter{Actor: "config"})
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	got := map[string]string{}
	for _, e := range events() {
		got[e.Resource] = e.Action
	}
	for _, want := range []string{"client/svc-one", "client/gh-admin", "api/https://api.example.com/v1"} {
		if got[want] != "config.create" {
			t.Errorf("audit of the file applied at start: %s has %q, want config.create (all: %v)", want, got[want], got)
		}
	}
	n := len(got)
	file, err := config.Load(ms.ConfigFile, ms.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	res, err := file.Apply(t.Context(), ms.Store, ms.Hasher, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ms.auditApply(t.Context(), res)
	if again := len(events()); again != n {
		t.Errorf("applying the same file again recorded %d events, want none", again-n)
	}
}

// TestManageDeleteIfMatchAfterPatch: a DELETE sent with the ETag its client read, after another client changed the
// resource, is refused with 412 and deletes nothing, for APIs, clients, grants and organizations; and when the
// change and the delete race, both sent with the same ETag, exactly one of them wins: the store's delete compares
// the version itself, so that no change made between the handler's read and its delete is deleted unseen.
func TestManageDeleteIfMatchAfterPatch(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	adm := ms.admin
	const aud = "https://api.example.com/v1"
	adm.createClient(t, obj{"client_id": "if-match-grantee", "name": "Grantee"})
	grant := adm.grant(t, "if-match-grantee", aud, "read")

	for _, tc := range []struct {
		name, path string
		patch      obj
		field      string // of the patch, read back to see the change is kept
	}{
		{"API", "/api/v1/apis/" + strOf(adm.must(t, 201, "POST", "/api/v1/apis",
			obj{"identifier": "urn:example:if-match", "name": "Before"}).json, "id"), obj{"name": "After"}, "name"},
		{"client", "/api/v1/clients/" + strOf(adm.must(t, 201, "POST", "/api/v1/clients",
			obj{"client_id": "if-match", "name": "Before"}).json, "client_id"), obj{"name": "After"}, "name"},
		{"grant", "/api/v1/grants/" + strOf(grant, "id"), obj{"scopes": []string{"read", "write"}}, "scopes"},
		{"organization", "/api/v1/orgs/" + strOf(adm.must(t, 201, "POST", "/api/v1/orgs",
			obj{"name": "if-match-before"}).json, "id"), obj{"name": "if-match-after"}, "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := adm.must(t, 200, "GET", tc.path, nil).header.Get("ETag")
			patched := adm.must(t, 200, "PATCH", tc.path, tc.patch, "If-Match", read)
			wantProblem(t, "DELETE with the ETag read before a PATCH",
				adm.call(t, "DELETE", tc.path, nil, "If-Match", read), http.StatusPreconditionFailed, "")
			after := adm.must(t, 200, "GET", tc.path, nil)
			if etag := after.header.Get("ETag"); etag != patched.header.Get("ETag") || etag == read ||
				!equalJSON(after.json[tc.field], tc.patch[tc.field]) {
				t.Errorf("after the refused DELETE: ETag %q (read %q, PATCH %q), %s", etag, read,
					patched.header.Get("ETag"), after.body)
			}
		})
	}

	t.Run("race", func(t *testing.T) {
		for i := range 10 {
			r := adm.must(t, 201, "POST", "/api/v1/apis", obj{"identifier": fmt.Sprintf("urn:example:race-%d", i), "name": "Before"})
			path, etag := "/api/v1/apis/"+strOf(r.json, "id"), r.header.Get("ETag")
			var patch, del response
			var wg sync.WaitGroup
			wg.Go(func() { patch = adm.call(t, "PATCH", path, obj{"name": "After"}, "If-Match", etag) })
			wg.Go(func() { del = adm.call(t, "DELETE", path, nil, "If-Match", etag) })
			wg.Wait()
			show := adm.call(t, "GET", path, nil)
			switch {
			case patch.status == 200 && del.status == http.StatusPreconditionFailed:
				if show.status != 200 || show.json["name"] != "After" {
					t.Errorf("round %d: the PATCH won, but GET answers %d %s", i, show.status, show.body)
				}
			case patch.status == http.StatusNotFound && del.status == http.StatusNoContent:
				if show.status != http.StatusNotFound {
					t.Errorf("round %d: the DELETE won, but GET answers %d %s", i, show.status, show.body)
				}
			default:
				t.Errorf("round %d: PATCH %d %s, DELETE %d %s with the same ETag; want exactly one to win",
					i, patch.status, patch.body, del.status, del.body)
			}
		}
	})
}
