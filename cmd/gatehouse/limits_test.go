package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/issuer"
	"github.com/gatehouse/gatehouse/internal/limit"
	"github.com/gatehouse/gatehouse/internal/rootkey"
	"github.com/gatehouse/gatehouse/internal/server"
)

// from returns an HTTP client whose connections come from the loopback address ip (Linux routes all of
// 127.0.0.0/8 to lo), so that the server sees requests from different sources.
func from(t *testing.T, ip string) *http.Client {
	t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type tokenAnswer struct {
	status     int
	retryAfter string
	body       map[string]any
}

// requestToken asks for a token as clientID with secret (HTTP Basic), from c, with extra headers.
func requestToken(t *testing.T, c *http.Client, ts *testServer, clientID, secret string, header ...string) tokenAnswer {
	t.Helper()
	req, _ := http.NewRequest("POST", ts.tokenURL(), strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := tokenAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if err := json.NewDecoder(resp.Body).Decode(&a.body); err != nil {
		t.Fatalf("status %d: body: %v", resp.StatusCode, err)
	}
	return a
}

// auditCounts flushes the audit log and returns, per "action actor address", how many events were recorded
// (a coalesced row counts as its count) and in how many rows.
func auditCounts(t *testing.T, ts *testServer) (events, rows map[string]int) {
	t.Helper()
	if err := ts.Audit.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	list, err := ts.Store.ListAuditEvents(context.Background(), auth.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	events, rows = map[string]int{}, map[string]int{}
	for _, e := range list {
		k := e.Action + " " + e.Actor + " " + e.Address
		var d struct{ Count int }
		json.Unmarshal(e.Details, &d)
		events[k] += max(1, d.Count)
		rows[k]++
		for _, s := range []string{secretOne, secretMulti, "wrong-secret"} {
			if strings.Contains(string(e.Details), s) {
				t.Errorf("audit event %s %s holds a secret: %s", e.ID, e.Action, e.Details)
			}
		}
	}
	return events, rows
}

// TestRateLimitHTTP: a client limited to 5 tokens a minute gets 5, then 429 too_many_requests with Retry-After
// in whole seconds, from any address; the refusals are in the audit log; other clients are not limited.
func TestRateLimitHTTP(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	ctx := context.Background()
	c, err := ts.Store.FindClient(ctx, "svc-one")
	if err != nil {
		t.Fatal(err)
	}
	c.RateLimit = auth.RateLimit{Count: 5, Per: time.Minute}
	if err := ts.Store.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	ts.Issuer.Invalidate("svc-one")
	hc := from(t, "127.0.0.1")
	for i := range 5 {
		if a := requestToken(t, hc, ts, "svc-one", secretOne); a.status != 200 {
			t.Fatalf("token %d: %d %v", i+1, a.status, a.body)
		}
	}
	a := requestToken(t, hc, ts, "svc-one", secretOne)
	secs, err := strconv.Atoi(a.retryAfter)
	if a.status != http.StatusTooManyRequests || a.body["error"] != "too_many_requests" || err != nil || secs < 1 || secs > 12 {
		t.Fatalf("6th token: %d Retry-After %q %v; want 429 too_many_requests, Retry-After 1–12 s", a.status, a.retryAfter, a.body)
	}
	if d, _ := a.body["error_description"].(string); !strings.Contains(d, "retry after "+a.retryAfter+" seconds") {
		t.Errorf("error_description %q does not say when to retry", d)
	}
	if a := requestToken(t, from(t, "127.0.0.2"), ts, "svc-one", secretOne); a.status != http.StatusTooManyRequests {
		t.Errorf("from another address: %d %v; the limit is the client's, wherever it asks from", a.status, a.body)
	}
	for range 10 { // svc-multi has no limit (and several APIs, so no audience is invalid_request)
		if a := requestToken(t, hc, ts, "svc-multi", secretMulti); a.status != http.StatusBadRequest {
			t.Fatalf("an unlimited client: %d %v", a.status, a.body)
		}
	}
	events, _ := auditCounts(t, ts)
	if got := events["token.rate_limited svc-one 127.0.0.1"] + events["token.rate_limited svc-one 127.0.0.2"]; got != 2 {
		t.Errorf("%d rate-limit refusals recorded, want 2 (all: %v)", got, events)
	}
}

// TestBruteForce: a thousand wrong secrets from one address are throttled after ten (429 with Retry-After, the
// secret not even checked) and never get a token, however they forge X-Forwarded-For; the right secret from
// another address still works; failures and refusals are in the audit log, coalesced.
func TestBruteForce(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	attacker, owner := from(t, "127.0.0.1"), from(t, "127.0.0.2")
	statuses := map[int]int{}
	for i := range 1000 {
		a := requestToken(t, attacker, ts, "svc-one", fmt.Sprintf("wrong-secret-%04d-0123456789abcdefghijklmnopqrstuvwxyz", i),
			"X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i%250))
		statuses[a.status]++
		switch a.status {
		case http.StatusUnauthorized:
			if a.body["error"] != "invalid_client" {
				t.Fatalf("attempt %d: %v", i, a.body)
			}
		case http.StatusTooManyRequests:
			if n, err := strconv.Atoi(a.retryAfter); err != nil || n < 1 || n > 6 || a.body["error"] != "too_many_requests" {
				t.Fatalf("attempt %d: Retry-After %q, %v", i, a.retryAfter, a.body)
			}
		default:
			t.Fatalf("attempt %d: %d %v", i, a.status, a.body)
		}
	}
	if statuses[401] != 10 || statuses[429] != 990 {
		t.Errorf("answers %v, want 10 × 401 then 990 × 429", statuses)
	}
	if a := requestToken(t, owner, ts, "svc-one", secretOne); a.status != 200 {
		t.Errorf("the right secret from 127.0.0.2: %d %v", a.status, a.body)
	}
	if a := requestToken(t, attacker, ts, "svc-one", secretOne); a.status != http.StatusTooManyRequests {
		t.Errorf("the right secret from the throttled address: %d %v, want 429 until the throttle drains", a.status, a.body)
	}
	if a := requestToken(t, attacker, ts, "svc-multi", secretMulti, "X-Forwarded-For", "192.0.2.1"); a.status == 429 {
		t.Errorf("another client from the address is throttled after only 10 failures: %v", a.body)
	}

	// Spraying client_ids from one address: 100 failures throttle the address for every client_id.
	sprayer := from(t, "127.0.0.3")
	for i := range 100 {
		if a := requestToken(t, sprayer, ts, fmt.Sprint("guess-", i), "wrong-secret"); a.status != 401 {
			t.Fatalf("guess %d: %d %v", i, a.status, a.body)
		}
	}
	if a := requestToken(t, sprayer, ts, "svc-multi", secretMulti); a.status != 429 {
		t.Errorf("after 100 failures across client_ids: %d %v, want 429", a.status, a.body)
	}

	events, rows := auditCounts(t, ts)
	for k, want := range map[string]int{
		"auth.failure svc-one 127.0.0.1":         10,
		"token.rate_limited svc-one 127.0.0.1":   991,
		"auth.failure guess-7 127.0.0.3":         1,
		"token.rate_limited svc-multi 127.0.0.3": 1,
	} {
		if events[k] != want {
			t.Errorf("%s: %d recorded, want %d", k, events[k], want)
		}
	}
	if n := rows["token.rate_limited svc-one 127.0.0.1"]; n > 5 {
		t.Errorf("991 refusals took %d rows: not coalesced", n)
	}
}

// TestTrustedProxy: behind a trusted proxy, the caller's address comes from X-Forwarded-For, so one caller's
// failures do not throttle the others behind the same proxy.
func TestTrustedProxy(t *testing.T) {
	dir := t.TempDir()
	m := &Main{
		Addr: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "gh.db"), RootKey: rootkey.Generate(),
		ConfigFile: filepath.Join(dir, "gatehouse.yaml"), TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		LookupEnv: func(k string) (string, bool) { v, ok := fixtureEnv[k]; return v, ok },
	}
	if err := writeFile(m.ConfigFile, fixture); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Open(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	ts := &testServer{Main: m, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- m.Serve(ctx) }()
	t.Cleanup(ts.stop)
	waitReady(t, m.URL)

	hc := from(t, "127.0.0.1")
	for range 10 {
		requestToken(t, hc, ts, "svc-one", "wrong-secret", "X-Forwarded-For", "203.0.113.9, 198.51.100.7")
	}
	if a := requestToken(t, hc, ts, "svc-one", secretOne, "X-Forwarded-For", "198.51.100.7"); a.status != 429 {
		t.Errorf("the failing caller: %d, want 429", a.status)
	}
	if a := requestToken(t, hc, ts, "svc-one", secretOne, "X-Forwarded-For", "198.51.100.8"); a.status != 200 {
		t.Errorf("another caller behind the proxy: %d %v", a.status, a.body)
	}
	if events, _ := auditCounts(t, ts); events["auth.failure svc-one 198.51.100.7"] != 10 {
		t.Errorf("failures not recorded with the caller's address: %v", events)
	}
}

// BenchmarkIssueLimits measures token issuance through the real handler without and with the limits: a
// Limiter holding the client to a rate it never reaches (one hot key, the worst case for its locks), the failure
// Throttle and the audit log. Compare the pairs: go test -run '^$' -bench IssueLimits -count 6 ./cmd/gatehouse
//
// On a busy machine the pairs drift apart with the load; the paired variant alternates batches of both and
// reports the ratio of their times (on/off), which the load affects alike.
func BenchmarkIssueLimits(b *testing.B) {
	off, on := limitsHandlers(b)
	for _, tc := range []struct{ alg, aud string }{
		{"EdDSA", "https://edge.example.com"},
		{"RS256", "https://api.example.com/v1"},
	} {
		body := "grant_type=client_credentials&audience=" + tc.aud
		for _, v := range []struct {
			name string
			h    http.Handler
		}{{"off", off}, {"on", on}} {
			b.Run(tc.alg+"/limits="+v.name, func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						issueOnce(b, v.h, body)
					}
				})
			})
		}
		b.Run(tc.alg+"/paired", func(b *testing.B) {
			const batch = 20
			var spent [2]time.Duration
			for i := 0; i < b.N; i += 2 * batch {
				for k, h := range [2]http.Handler{off, on} {
					if i/(2*batch)%2 == 1 {
						k, h = 1-k, [2]http.Handler{off, on}[1-k] // alternate which goes first
					}
					start := time.Now()
					for range batch {
						issueOnce(b, h, body)
					}
					spent[k] += time.Since(start)
				}
			}
			n := float64(max(1, b.N/(2*batch)) * batch)
			b.ReportMetric(float64(spent[0].Nanoseconds())/n, "off-ns/op")
			b.ReportMetric(float64(spent[1].Nanoseconds())/n, "on-ns/op")
			b.ReportMetric(float64(spent[1])/float64(spent[0]), "on/off")
		})
	}
}

// limitsHandlers returns the token server's handler over one store without and with the limits.
func limitsHandlers(b *testing.B) (off, on http.Handler) {
	dir := b.TempDir()
	m := &Main{
		Addr: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "gh.db"), RootKey: rootkey.Generate(),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		LookupEnv: func(k string) (string, bool) { v, ok := fixtureEnv[k]; return v, ok },
	}
	m.ConfigFile = filepath.Join(dir, "gatehouse.yaml")
	if err := writeFile(m.ConfigFile, fixture); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := m.Open(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	c, err := m.Store.FindClient(ctx, "svc-multi")
	if err != nil {
		b.Fatal(err)
	}
	c.RateLimit = auth.RateLimit{Count: auth.MaxRateLimitCount, Per: time.Second}
	if err := m.Store.UpdateClient(ctx, c); err != nil {
		b.Fatal(err)
	}
	handler := func(limits bool) http.Handler {
		opts := issuer.Options{Issuer: m.IssuerURL, Logger: m.Logger, Verifier: m.Keys}
		if limits {
			opts.Limiter = limit.NewMemory(0)
			opts.Throttle = limit.NewThrottle(limit.NewMemory(0), limit.ThrottleOptions{})
			opts.Audit = audit.New(m.Store, audit.Options{Logger: m.Logger})
		}
		iss := issuer.New(m.Store, m.Keys, m.Hasher, opts)
		return server.New(server.Config{Issuer: iss, Keys: m.Keys, Store: m.Store, IssuerURL: m.IssuerURL, Logger: m.Logger}).Handler()
	}
	return handler(false), handler(true)
}

func issueOnce(b *testing.B, h http.Handler, body string) {
	req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc-multi", secretMulti)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		b.Fatalf("status %d: %s", w.Code, w.Body)
	}
}

// TestLimitFlags: the serve flags of the limits and the audit log, with their defaults.
func TestLimitFlags(t *testing.T) {
	parse := func(args ...string) (*Main, error) {
		var f serveFlags
		cmd := &cobra.Command{Use: "serve"}
		f.register(cmd, "sqlite:x.db")
		if err := cmd.Flags().Parse(args); err != nil {
			return nil, err
		}
		m := &Main{}
		return m, f.limits(m)
	}
	m, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	want := limit.ThrottleOptions{PerClient: limit.Rate{Count: 10, Per: time.Minute}, PerSource: limit.Rate{Count: 100, Per: time.Minute}}
	if m.AuditRetention != 90*24*time.Hour || m.AuthThrottle != want || m.TrustedProxies != nil {
		t.Errorf("defaults: retention %v, throttle %+v, proxies %v", m.AuditRetention, m.AuthThrottle, m.TrustedProxies)
	}
	m, err = parse("--audit-retention=0", "--auth-failures-per-client=0", "--auth-failures-per-address=500",
		"--trusted-proxies=10.0.0.0/8, 192.0.2.7,2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	want = limit.ThrottleOptions{PerClient: limit.Rate{Count: -1}, PerSource: limit.Rate{Count: 500, Per: time.Minute}}
	proxies := fmt.Sprint(m.TrustedProxies)
	if m.AuditRetention >= 0 || m.AuthThrottle != want || proxies != "[10.0.0.0/8 192.0.2.7/32 2001:db8::/32]" {
		t.Errorf("set: retention %v, throttle %+v, proxies %s", m.AuditRetention, m.AuthThrottle, proxies)
	}
	for _, args := range [][]string{{"--audit-retention=-1h"}, {"--auth-failures-per-client=-1"}, {"--trusted-proxies=proxy.local"}} {
		if _, err := parse(args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
