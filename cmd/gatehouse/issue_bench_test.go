package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// BenchmarkIssue measures a whole token request through the real handler (parsing, client authentication, the
// grant rules, signing and the access log), without the network, per signing algorithm.
func BenchmarkIssue(b *testing.B) {
	dir := b.TempDir()
	m := &Main{
		Addr: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "gh.db"), RootKey: rootkey.Generate(),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)), // the log line is formatted, then discarded
		LookupEnv: func(k string) (string, bool) { v, ok := fixtureEnv[k]; return v, ok },
	}
	m.ConfigFile = filepath.Join(dir, "gatehouse.yaml")
	if err := writeFile(m.ConfigFile, fixture); err != nil {
		b.Fatal(err)
	}
	if err := m.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	h := m.http.Handler
	for _, tc := range []struct{ alg, aud string }{
		{"RS256", "https://api.example.com/v1"},
		{"ES256", "urn:example:reports"},
		{"EdDSA", "https://edge.example.com"},
	} {
		body := "grant_type=client_credentials&audience=" + tc.aud
		b.Run(tc.alg, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth("svc-multi", secretMulti)
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
			})
		})
	}
}
