package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// BenchmarkAuthorize measures `gatehouse authorize` answering checks with a hot token (the cache path, as almost
// every check is in production) over loopback, against the ceiling of a trivial net/http handler that answers 200
// with the same four X-Auth-* headers. Both are driven by the same client, request and concurrency (64 goroutines),
// taking turns of half a second, six rounds each after a warm-up, in the same run; it reports both rates and the
// ratio. Target: authorize ≥ 50% of the ceiling. The client runs in the same process, on the same cores.
//
//	go test ./cmd/gatehouse -run '^$' -bench Authorize -count 3
func BenchmarkAuthorize(b *testing.B) {
	dir := b.TempDir()
	m := &Main{
		Addr: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "gh.db"), RootKey: rootkey.Generate(),
		LookupEnv: func(k string) (string, bool) { v, ok := fixtureEnv[k]; return v, ok },
	}
	m.ConfigFile = filepath.Join(dir, "gatehouse.yaml")
	if err := writeFile(m.ConfigFile, fixture); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Open(ctx); err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	go m.Serve(ctx)
	token := benchToken(b, m.URL)

	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(authorizeRules), 0o600); err != nil {
		b.Fatal(err)
	}
	a := &Authorize{Addr: "127.0.0.1:0", RulesFile: rules, Issuer: m.IssuerURL, JWKSURL: m.URL + "/.well-known/jwks.json"}
	if err := a.Open(); err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	go a.Serve(ctx)

	trivial := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("X-Auth-Subject", "svc-one")
		h.Set("X-Auth-Client-Id", "svc-one")
		h.Set("X-Auth-Org-Id", "")
		h.Set("X-Auth-Scopes", "read write")
		w.WriteHeader(http.StatusOK)
	}))
	defer trivial.Close()

	benchAgainstTrivial(b, "authorize-req/s", trivial.URL+"/nginx", a.URL+"/nginx",
		func(ctx context.Context, url string) *http.Request {
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			req.Host = "api.example.com"
			req.Header.Set("X-Original-Method", "GET")
			req.Header.Set("X-Original-URI", "/v1/items/7?expand=1")
			req.Header.Set("Authorization", "Bearer "+token)
			return req
		}, nil)
}

// benchAgainstTrivial measures target against the trivial handler at trivialURL in the same run: the machine is
// shared and noisy, so the two take turns of half a second, six rounds each after a warm-up, from 64 connections,
// and the totals are compared. newReq makes each request; a response counts if it is 200 and check (if not nil)
// accepts its body. It reports target's rate as metric, the trivial handler's, and the ratio.
func benchAgainstTrivial(b *testing.B, metric, trivialURL, targetURL string,
	newReq func(ctx context.Context, url string) *http.Request, check func(body []byte) bool) {
	const rounds, turn, concurrency = 6, 500 * time.Millisecond, 64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	targets := []string{trivialURL, targetURL}
	var done [2]int
	b.ResetTimer()
	for b.Loop() { // once: the run takes longer than the default -benchtime
		for _, target := range targets { // warm-up: connections, caches, the JWKS
			if _, err := loadFor(client, target, concurrency, turn/2, newReq, check); err != nil {
				b.Fatal(err)
			}
		}
		for range rounds {
			for i, target := range targets {
				n, err := loadFor(client, target, concurrency, turn, newReq, check)
				if err != nil {
					b.Fatal(err)
				}
				done[i] += n
			}
		}
	}
	secs := (rounds * turn).Seconds()
	trivialRate, rate := float64(done[0])/secs, float64(done[1])/secs
	b.ReportMetric(rate, metric)
	b.ReportMetric(trivialRate, "trivial-req/s")
	b.ReportMetric(100*rate/trivialRate, "%-of-ceiling")
	b.ReportMetric(0, "ns/op") // not meaningful here
}

// loadFor sends requests to url from concurrency goroutines for d and returns how many were answered 200 (with a
// body check accepts).
func loadFor(client *http.Client, url string, concurrency int, d time.Duration,
	newReq func(ctx context.Context, url string) *http.Request, check func(body []byte) bool) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	counts := make([]int, concurrency)
	errs := make([]error, concurrency)
	var wg sync.WaitGroup
	for g := range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := client.Do(newReq(ctx, url))
				if err != nil {
					if ctx.Err() == nil {
						errs[g] = err
					}
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || check != nil && !check(body) {
					errs[g] = fmt.Errorf("%s: status %d: %.200s", url, resp.StatusCode, body)
					return
				}
				counts[g]++
			}
		})
	}
	wg.Wait()
	total := 0
	for _, n := range counts {
		total += n
	}
	return total, errors.Join(errs...)
}

// benchToken gets an RS256 access token of svc-one for the fixture API.
func benchToken(b *testing.B, base string) string {
	b.Helper()
	resp, err := http.PostForm(base+"/oauth/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {"svc-one"}, "client_secret": {secretOne}, "audience": {seedAPI}})
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		b.Fatal(errors.Join(err, errors.New("no access token: "+resp.Status)))
	}
	return body.AccessToken
}
