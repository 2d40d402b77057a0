package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// TestRestart: the same database and root key after a restart still authenticate clients, and tokens issued
// before the restart still verify against the JWKS served after it.
func TestRestart(t *testing.T) {
	dir, key := t.TempDir(), rootkey.Generate()
	ts := startServer(t, dir, key, fixture)
	before := postTokenBasic(t, ts, "svc-one", secretOne, "grant_type=client_credentials")
	if before.status != 200 {
		t.Fatalf("before restart: %d %s", before.status, before.body)
	}
	jwksBefore, issBefore := fetchJWKS(t, ts.URL), ts.IssuerURL // the test's port, and so its issuer, changes
	ts.stop()

	ts = startServer(t, dir, key, "") // no config: everything comes from the database
	after := postTokenBasic(t, ts, "svc-one", secretOne, "grant_type=client_credentials")
	if after.status != 200 {
		t.Fatalf("after restart: %d %s", after.status, after.body)
	}
	verifyToken(t, ts.URL, issBefore, "https://api.example.com/v1", before.json["access_token"].(string))
	sameKeys(t, "after a restart", jwksBefore, fetchJWKS(t, ts.URL))
	// Applying the same file again on restart changes nothing.
	ts.stop()
	ts = startServer(t, dir, key, fixture)
	if r := postTokenBasic(t, ts, "svc-one", secretOne, "grant_type=client_credentials"); r.status != 200 {
		t.Fatalf("after re-applying the file: %d %s", r.status, r.body)
	}
	sameKeys(t, "after re-applying the file", jwksBefore, fetchJWKS(t, ts.URL))
}

// TestWrongRootKey: a database opened with another root key is refused with a clear error, and nothing is
// created (no new signing keys silently replacing the old ones).
func TestWrongRootKey(t *testing.T) {
	dir, key := t.TempDir(), rootkey.Generate()
	ts := startServer(t, dir, key, fixture)
	kids := fetchJWKS(t, ts.URL)
	ts.stop()

	_, err := openServer(t, dir, rootkey.Generate(), "")
	if !errors.Is(err, rootkey.ErrMismatch) {
		t.Fatalf("open with another root key: err = %v, want ErrMismatch", err)
	}
	if !strings.Contains(err.Error(), "root key does not match") {
		t.Errorf("error %q does not say what is wrong", err)
	}
	// The refused start left the database as it was: the original key opens it, with the original signing keys.
	ts = startServer(t, dir, key, "")
	sameKeys(t, "after the refused start", kids, fetchJWKS(t, ts.URL))
}

// sameKeys checks that a JWKS holds exactly the keys it held before.
func sameKeys(t *testing.T, when string, before, after map[string]jwk) {
	t.Helper()
	if len(after) != len(before) {
		t.Errorf("%s: the JWKS has %d keys, want %d", when, len(after), len(before))
	}
	for kid := range before {
		if _, ok := after[kid]; !ok {
			t.Errorf("%s: key %s is gone", when, kid)
		}
	}
}

// TestNothingSecretAtRest: the database files hold no client secret and no unencrypted private key.
func TestNothingSecretAtRest(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil, fixture)
	for _, aud := range []string{"https://api.example.com/v1", "urn:example:reports", "https://edge.example.com"} {
		if r := postTokenBasic(t, ts, "svc-multi", secretMulti, form("grant_type", "client_credentials", "audience", aud)); r.status != 200 {
			t.Fatalf("%s: %d %s", aud, r.status, r.body)
		}
	}
	ts.stop() // flush and close, then read every file SQLite wrote
	var all []byte
	files, _ := filepath.Glob(filepath.Join(dir, "gatehouse.db*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if len(all) < 4096 {
		t.Fatalf("read only %d bytes from %v", len(all), files)
	}
	for _, s := range []string{secretOne, secretMulti, secretOff} {
		if bytes.Contains(all, []byte(s)) {
			t.Errorf("the database holds a client secret in plaintext")
		}
	}
	// Every unencrypted PKCS#8 private key starts with version 0 and its algorithm identifier; PEM and JWK
	// private members would show as text.
	markers := map[string]string{
		"RSA PKCS#8":     "020100300d06092a864886f70d010101",
		"EC PKCS#8":      "020100301306072a8648ce3d0201",
		"Ed25519 PKCS#8": "020100300506032b6570",
	}
	for name, h := range markers {
		m, _ := hex.DecodeString(h)
		if bytes.Contains(all, m) {
			t.Errorf("the database holds an unencrypted %s private key", name)
		}
	}
	for _, text := range []string{"PRIVATE KEY", `"d":`, `"p":`} {
		if bytes.Contains(all, []byte(text)) {
			t.Errorf("the database holds %q", text)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestLogsHoldNoSecrets: request logs name the client and the outcome but never a secret, a token or the
// Authorization header.
func TestLogsHoldNoSecrets(t *testing.T) {
	var logs syncBuffer
	dir := t.TempDir()
	m := &Main{Addr: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "gh.db"), RootKey: rootkey.Generate(),
		Logger:    slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		LookupEnv: func(k string) (string, bool) { v, ok := fixtureEnv[k]; return v, ok },
	}
	m.ConfigFile = filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(m.ConfigFile, []byte(fixture), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	ts := &testServer{Main: m}
	waitReady(t, m.URL)

	ok := postTokenBasic(t, ts, "svc-one", secretOne, "grant_type=client_credentials")
	postTokenBasic(t, ts, "svc-one", secretMulti, "grant_type=client_credentials")
	postToken(t, ts, "", form("grant_type", "client_credentials", "client_id", "svc-one", "client_secret", secretOne+"x"))
	req, _ := http.NewRequest("POST", ts.tokenURL()+"?client_secret="+secretOff, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	do(t, req)
	cancel()
	<-done
	m.Close()

	out := logs.String()
	for _, s := range []string{secretOne, secretMulti, secretOff, ok.json["access_token"].(string), "Basic ", "Authorization"} {
		if strings.Contains(out, s) {
			t.Errorf("logs contain %q", truncate(s, 12))
		}
	}
	for _, want := range []string{`"client_id":"svc-one"`, `"error":"invalid_client"`, `"status":401`, `"path":"/oauth/token"`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s", want)
		}
	}
}

// slowBody hands out its content after a pause, keeping a request in flight.
type slowBody struct {
	r     io.Reader
	pause time.Duration
	once  sync.Once
	start chan struct{}
}

func (s *slowBody) Read(p []byte) (int, error) {
	s.once.Do(func() { close(s.start); time.Sleep(s.pause) })
	return s.r.Read(p)
}

// TestGracefulShutdown: a request in flight when the server is told to stop still gets its token.
func TestGracefulShutdown(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	body := &slowBody{r: strings.NewReader("grant_type=client_credentials"), pause: 500 * time.Millisecond, start: make(chan struct{})}
	req, _ := http.NewRequest("POST", ts.tokenURL(), body)
	req.ContentLength = int64(len("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc-one", secretOne)
	got := make(chan response, 1)
	go func() { got <- do(t, req) }()
	<-body.start
	time.Sleep(100 * time.Millisecond) // the request is being read
	ts.stop()
	r := <-got
	if r.status != 200 {
		t.Fatalf("in-flight request: %d %s", r.status, r.body)
	}
	if _, err := http.Get(ts.URL + "/healthz"); err == nil {
		t.Error("server still accepts connections after stopping")
	}
}

// TestDiscoveryJWKSHealth: the metadata documents, the JWKS and the health endpoints.
func TestDiscoveryJWKSHealth(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		r := do(t, mustReq("GET", ts.URL+path))
		if r.status != 200 {
			t.Fatalf("%s: %d", path, r.status)
		}
		want := map[string]any{
			"issuer":                                ts.IssuerURL,
			"token_endpoint":                        ts.URL + "/oauth/token",
			"jwks_uri":                              ts.URL + "/.well-known/jwks.json",
			"grant_types_supported":                 []any{"client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"},
			"token_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post"},
			"id_token_signing_alg_values_supported": []any{"RS256", "ES256", "EdDSA"},
		}
		for k, v := range want {
			if got := r.json[k]; !equalJSON(got, v) {
				t.Errorf("%s %s = %v, want %v", path, k, got, v)
			}
		}
	}
	r := do(t, mustReq("GET", ts.URL+"/.well-known/jwks.json"))
	if cc := r.header.Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("JWKS Cache-Control = %q", cc)
	}
	keys := r.json["keys"].([]any)
	if len(keys) != 3 {
		t.Fatalf("JWKS has %d keys, want one per algorithm in use", len(keys))
	}
	for _, k := range keys {
		k := k.(map[string]any)
		for _, member := range []string{"kid", "kty", "alg", "use"} {
			if k[member] == nil || k[member] == "" {
				t.Errorf("key %v lacks %s", k["kid"], member)
			}
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if k[private] != nil {
				t.Errorf("key %v publishes private member %s", k["kid"], private)
			}
		}
	}
	req := mustReq("GET", ts.URL+"/.well-known/jwks.json")
	req.Header.Set("If-None-Match", r.header.Get("ETag"))
	if r := do(t, req); r.status != http.StatusNotModified {
		t.Errorf("conditional JWKS request: %d, want 304", r.status)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := do(t, mustReq("GET", ts.URL+path)); r.status != 200 {
			t.Errorf("%s: %d %s", path, r.status, r.body)
		}
	}
	r = do(t, mustReq("GET", ts.URL+"/nope"))
	if r.status != 404 || r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("unknown path: %d %s", r.status, r.header.Get("Content-Type"))
	}
}

// TestBadConfigStopsStart: an invalid file stops the server with an error naming the file, line and field, and
// writes nothing.
func TestBadConfigStopsStart(t *testing.T) {
	dir := t.TempDir()
	bad := strings.Replace(fixture, "token_lifetime: 1h", "token_lifetime: 45d", 1)
	_, err := openServer(t, dir, nil, bad)
	if err == nil {
		t.Fatal("server started with an invalid file")
	}
	for _, want := range []string{"gatehouse.yaml:", "apis[0].token_lifetime", "45d"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "gatehouse.db")); err == nil {
		t.Error("a database was created although the file was invalid")
	}
}

func mustReq(method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		panic(err)
	}
	return req
}

func equalJSON(a, b any) bool {
	as, _ := json.Marshal(a)
	bs, _ := json.Marshal(b)
	return bytes.Equal(as, bs)
}

// TestStoreOutage: with the database gone, a client already in the cache still gets tokens, an uncached one gets
// 503 temporarily_unavailable with Retry-After (never a 500), and /readyz says not ready.
func TestStoreOutage(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	if r := postTokenBasic(t, ts, "svc-one", secretOne, "grant_type=client_credentials"); r.status != 200 {
		t.Fatalf("warm-up: %d %s", r.status, r.body)
	}
	ts.Store.Close()
	if r := postTokenBasic(t, ts, "svc-one", secretOne, "grant_type=client_credentials"); r.status != 200 {
		t.Errorf("cached client during the outage: %d %s", r.status, r.body)
	}
	r := postTokenBasic(t, ts, "svc-multi", secretMulti, "grant_type=client_credentials&audience=urn:example:reports")
	if r.status != 503 || r.json["error"] != "temporarily_unavailable" || r.header.Get("Retry-After") == "" {
		t.Errorf("uncached client during the outage: %d %s (Retry-After %q)", r.status, r.body, r.header.Get("Retry-After"))
	}
	if r := do(t, mustReq("GET", ts.URL+"/readyz")); r.status != 503 {
		t.Errorf("/readyz during the outage: %d %s", r.status, r.body)
	}
	if r := do(t, mustReq("GET", ts.URL+"/healthz")); r.status != 200 {
		t.Errorf("/healthz during the outage: %d", r.status)
	}
}

// TestGeneratedSecret: a client declared without client_secret gets one, printed once on stderr with a warning; it
// works, and a restart neither prints nor changes it.
func TestGeneratedSecret(t *testing.T) {
	const yaml = `
apis:
  - identifier: urn:example:gen
    name: Gen
clients:
  - client_id: gen-client
    name: Generated
    grants: [{audience: "urn:example:gen"}]
`
	dir, key := t.TempDir(), rootkey.Generate()
	start := func() (*Main, *syncBuffer, func()) {
		var stderr syncBuffer
		m := &Main{Addr: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "gh.db"), RootKey: key, Stderr: &stderr,
			ConfigFile: filepath.Join(dir, "gatehouse.yaml")}
		os.WriteFile(m.ConfigFile, []byte(yaml), 0o600)
		ctx, cancel := context.WithCancel(context.Background())
		if err := m.Open(ctx); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- m.Serve(ctx) }()
		waitReady(t, m.URL)
		return m, &stderr, func() { cancel(); <-done; m.Close() }
	}
	m, stderr, stop := start()
	match := regexp.MustCompile(`WARNING: generated a secret for client gen-client.*\n\s+client_secret=(\S+)`).FindStringSubmatch(stderr.String())
	if match == nil {
		stop()
		t.Fatalf("no generated secret on stderr: %q", stderr.String())
	}
	ts := &testServer{Main: m}
	if r := postTokenBasic(t, ts, "gen-client", match[1], "grant_type=client_credentials"); r.status != 200 {
		t.Errorf("generated secret: %d %s", r.status, r.body)
	}
	stop()
	m, stderr, stop = start()
	defer stop()
	if strings.Contains(stderr.String(), "generated a secret") {
		t.Error("a restart printed a new secret")
	}
	if r := postTokenBasic(t, &testServer{Main: m}, "gen-client", match[1], "grant_type=client_credentials"); r.status != 200 {
		t.Errorf("generated secret after a restart: %d %s", r.status, r.body)
	}
}
