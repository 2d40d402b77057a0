package main

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// Secrets of the fixture clients. Real deployments generate them; tests need them known.
const (
	secretOne   = "one-secret-0123456789abcdefghijklmnopqrstuvwxyz"
	secretMulti = "multi-secret-0123456789abcdefghijklmnopqrstuvwxyz"
	secretOff   = "off-secret-0123456789abcdefghijklmnopqrstuvwxyz"
)

// fixture is the declarative file most end-to-end tests start from: three APIs, one per signing algorithm, and
// clients granted one API (svc-one), several (svc-multi) and none (svc-none).
const fixture = `
apis:
  - identifier: https://api.example.com/v1
    name: Example API
    scopes: [read, write, admin]
    token_lifetime: 1h
  - identifier: urn:example:reports
    name: Reports
    scopes: ["reports:read", "reports:write"]
    signing_alg: ES256
  - identifier: https://edge.example.com
    name: Edge
    scopes: [edge]
    signing_alg: EdDSA
    token_lifetime: 10m
clients:
  - client_id: svc-one
    name: One API
    client_secret: ${ONE_SECRET}
    grants:
      - audience: https://api.example.com/v1
        scopes: [read, write]
  - client_id: svc-multi
    name: Several APIs
    client_secret: ${MULTI_SECRET}
    grants:
      - audience: https://api.example.com/v1
        scopes: [read]
      - audience: urn:example:reports
        scopes: ["reports:read"]
      - audience: https://edge.example.com
        scopes: [edge]
  - client_id: svc-none
    name: No grants
    client_secret: ${OFF_SECRET}
`

var fixtureEnv = map[string]string{"ONE_SECRET": secretOne, "MULTI_SECRET": secretMulti, "OFF_SECRET": secretOff}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// testServer is the real `gatehouse serve` wiring on a loopback port.
type testServer struct {
	*Main
	dir    string
	cancel context.CancelFunc
	done   chan error
}

// startServer runs Gatehouse with a fresh SQLite file in dir (t.TempDir() when ""), the given root key (a new one
// when nil) and declarative file, and stops it when the test ends.
func startServer(t *testing.T, dir string, key *rootkey.Key, yaml string) *testServer {
	t.Helper()
	ts, err := openServer(t, dir, key, yaml)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	return ts
}

func openServer(t *testing.T, dir string, key *rootkey.Key, yaml string) (*testServer, error) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if key == nil {
		key = rootkey.Generate()
	}
	m := &Main{
		Addr:      "127.0.0.1:0",
		DB:        "sqlite:" + filepath.Join(dir, "gatehouse.db"),
		RootKey:   key,
		LookupEnv: func(k string) (string, bool) { v, ok := fixtureEnv[k]; return v, ok },
	}
	if yaml != "" {
		m.ConfigFile = filepath.Join(dir, "gatehouse.yaml")
		if err := os.WriteFile(m.ConfigFile, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Open(ctx); err != nil {
		cancel()
		return nil, err
	}
	ts := &testServer{Main: m, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- m.Serve(ctx) }()
	t.Cleanup(ts.stop)
	waitReady(t, m.URL)
	return ts, nil
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// stop shuts the server down and waits for it; calling it twice is fine.
func (ts *testServer) stop() {
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	ts.cancel = nil
	select {
	case err := <-ts.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			panic("serve: " + err.Error())
		}
	case <-time.After(20 * time.Second):
		panic("server did not stop within 20s")
	}
	ts.Close()
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s/readyz never answered 200", base)
}

func (ts *testServer) tokenURL() string { return ts.URL + "/oauth/token" }

// form encodes key/value pairs as a form body.
func form(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[i]) + "=" + url.QueryEscape(kv[i+1]))
	}
	return b.String()
}
