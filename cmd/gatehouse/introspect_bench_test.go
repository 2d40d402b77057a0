package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// openBenchServer opens the real wiring on the management fixture, logging to nowhere (the log line is still
// formatted), and returns it with a token of each algorithm.
func openBenchServer(b *testing.B) (*Main, map[string]string) {
	b.Helper()
	dir := b.TempDir()
	m := &Main{
		Addr: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "gh.db"), RootKey: rootkey.Generate(),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		LookupEnv: func(k string) (string, bool) { v, ok := fixtureEnv[k]; return v, ok },
	}
	m.ConfigFile = filepath.Join(dir, "gatehouse.yaml")
	if err := writeFile(m.ConfigFile, managementFixture); err != nil {
		b.Fatal(err)
	}
	if err := m.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	tokens := map[string]string{}
	for alg, aud := range map[string]string{"RS256": "https://api.example.com/v1", "ES256": "urn:example:reports", "EdDSA": "https://edge.example.com"} {
		req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "audience": {aud}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc-multi", secretMulti)
		w := httptest.NewRecorder()
		m.http.Handler.ServeHTTP(w, req)
		tok, _ := strings.CutPrefix(w.Body.String(), `{"access_token":"`)
		tok, _, _ = strings.Cut(tok, `"`)
		if w.Code != 200 || tok == "" {
			b.Fatalf("token for %s: %d %s", aud, w.Code, w.Body)
		}
		tokens[alg] = tok
	}
	return m, tokens
}

// BenchmarkIntrospectHandler measures one introspection of a valid token through the real handler (parsing, the
// caller's authentication, the token check, the revocation lookup, the JSON answer and the access log), without
// the network: per algorithm, for a caller authenticated with HTTP Basic and with a bearer token.
//
//	go test ./cmd/gatehouse -run '^$' -bench IntrospectHandler
func BenchmarkIntrospectHandler(b *testing.B) {
	m, tokens := openBenchServer(b)
	h := m.http.Handler
	bearer := ""
	{
		req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader("grant_type=client_credentials&audience="+auth.ManagementAudience))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc-introspect", secretIntrospect)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		bearer, _ = strings.CutPrefix(w.Body.String(), `{"access_token":"`)
		bearer, _, _ = strings.Cut(bearer, `"`)
	}
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		body := "token=" + tokens[alg]
		for _, caller := range []string{"basic", "bearer"} {
			b.Run(alg+"/"+caller, func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						req := httptest.NewRequest("POST", "/oauth/introspect", strings.NewReader(body))
						req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
						if caller == "basic" {
							req.SetBasicAuth("svc-introspect", secretIntrospect)
						} else {
							req.Header.Set("Authorization", "Bearer "+bearer)
						}
						w := httptest.NewRecorder()
						h.ServeHTTP(w, req)
						if w.Code != http.StatusOK || !strings.HasPrefix(w.Body.String(), `{"active":true`) {
							b.Fatalf("status %d: %s", w.Code, w.Body)
						}
					}
				})
			})
		}
	}
}

// BenchmarkIntrospect measures introspection of a valid ES256 token over loopback (HTTP Basic caller, 64
// connections) against the ceiling of a trivial net/http handler that reads the same request and answers a small
// JSON object with the same headers, driven by the same client in the same run, taking turns of half a second, six
// rounds each after a warm-up. It reports both rates and the ratio. Target: introspection ≥ 50% of the ceiling.
// The client runs in the same process, on the same cores; `gatehouse bench --modes introspect` runs the server in
// its own process.
//
//	go test ./cmd/gatehouse -run '^$' -bench 'Introspect$' -count 3
func BenchmarkIntrospect(b *testing.B) {
	m, tokens := openBenchServer(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Serve(ctx)
	trivial := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "application/json")
		h.Set("Pragma", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Request-Id", "0123456789abcdef")
		w.Write([]byte(`{"active":true}` + "\n"))
	}))
	defer trivial.Close()

	body := "token=" + tokens["ES256"]
	benchAgainstTrivial(b, "introspect-req/s", trivial.URL+"/oauth/introspect", m.URL+"/oauth/introspect",
		func(ctx context.Context, url string) *http.Request {
			req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("svc-introspect", secretIntrospect)
			return req
		}, func(b []byte) bool { return strings.HasPrefix(string(b), `{"active":true`) })
}
