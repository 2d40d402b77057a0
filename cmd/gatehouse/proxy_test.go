package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// startProxyMain runs `gatehouse proxy`'s wiring in front of upstream and stops it when the test ends.
func startProxyMain(t *testing.T, m *ProxyMain) *ProxyMain {
	t.Helper()
	if m.Addr == "" {
		m.Addr = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Open(ctx); err != nil {
		cancel()
		t.Fatalf("open proxy: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("proxy serve: %v", err)
		}
		m.Close()
	})
	return m
}

// proxyMetric reads one series from the proxy's /metrics.
func proxyMetric(t *testing.T, base, series string) float64 {
	t.Helper()
	r := do(t, mustRequest(t, "GET", base+"/metrics", ""))
	for _, line := range strings.Split(r.body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}

func mustRequest(t *testing.T, method, rawURL, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestProxyEndToEnd puts the proxy in front of a real Gatehouse: the seed programs' requests and
// golang.org/x/oauth2 get tokens through it that verify against the server's keys, the second time from the cache.
func TestProxyEndToEnd(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	p := startProxyMain(t, &ProxyMain{Upstream: ts.tokenURL()})
	tokenURL := p.URL + "/oauth/token"
	const aud = "https://api.example.com/v1"

	// The seeds' three request shapes (000/001 JSON, 002 form, 004 Basic with only grant_type), twice each.
	shapes := []struct {
		name        string
		contentType string
		body        string
		basic       bool
	}{
		{"JSON", "application/json", `{"client_id":"svc-one","client_secret":"` + secretOne + `","audience":"` + aud + `","grant_type":"client_credentials"}`, false},
		{"form", "application/x-www-form-urlencoded", form("audience", aud, "grant_type", "client_credentials", "client_id", "svc-one", "client_secret", secretOne), false},
		{"Basic", "application/x-www-form-urlencoded", "grant_type=client_credentials", true},
	}
	tokens := map[string]string{}
	for _, s := range shapes {
		var first response
		for i := range 2 {
			req := mustRequest(t, "POST", tokenURL, s.body)
			req.Header.Set("Content-Type", s.contentType)
			if s.basic {
				req.SetBasicAuth("svc-one", secretOne)
			}
			r := do(t, req)
			if r.status != http.StatusOK {
				t.Fatalf("%s, call %d: %d %s", s.name, i+1, r.status, r.body)
			}
			if i == 0 {
				first = r
				verifyToken(t, ts.URL, ts.IssuerURL, aud, r.json["access_token"].(string))
				tokens[s.name] = r.json["access_token"].(string)
				continue
			}
			if r.json["access_token"] != first.json["access_token"] {
				t.Errorf("%s: the second call got a new token, want the cached one", s.name)
			}
			if r.json["expires_in"].(float64) > first.json["expires_in"].(float64) || r.json["scope"] != first.json["scope"] {
				t.Errorf("%s: second answer %v, want the first's %v with expires_in no larger", s.name, r.json, first.json)
			}
		}
	}
	if tokens["JSON"] != tokens["form"] {
		t.Error("the JSON and form requests of one client and audience got different tokens; want one cache key")
	}
	if tokens["Basic"] == tokens["JSON"] {
		t.Error("the request without an audience got the audience's token; want another cache key")
	}
	if got := proxyMetric(t, p.URL, "gatehouse_proxy_upstream_requests_total"); got != 2 {
		t.Errorf("upstream requests = %v, want 2 (one per cache key)", got)
	}
	if got := proxyMetric(t, p.URL, "gatehouse_proxy_upstream_requests_saved_total"); got != 4 {
		t.Errorf("upstream requests saved = %v, want 4", got)
	}

	// golang.org/x/oauth2, in both client authentication styles, gets the cached token.
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cfg := clientcredentials.Config{ClientID: "svc-one", ClientSecret: secretOne, TokenURL: tokenURL, AuthStyle: style,
			EndpointParams: url.Values{"audience": {aud}}}
		tok, err := cfg.Token(context.Background())
		if err != nil {
			t.Fatalf("x/oauth2 style %v: %v", style, err)
		}
		if tok.AccessToken != tokens["JSON"] {
			t.Errorf("x/oauth2 style %v: a new token, want the cached one", style)
		}
		if left := time.Until(tok.Expiry); left <= 0 || left > time.Hour {
			t.Errorf("x/oauth2 style %v: expires in %v, want within the API's hour", style, left)
		}
	}

	// A known client_id with a wrong secret gets Gatehouse's refusal, not the cached token.
	for _, basic := range []bool{true, false} {
		var req *http.Request
		if basic {
			req = mustRequest(t, "POST", tokenURL, "grant_type=client_credentials")
			req.SetBasicAuth("svc-one", "wrong-secret")
		} else {
			req = mustRequest(t, "POST", tokenURL, strings.Replace(shapes[1].body, secretOne, "wrong-secret", 1))
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r := do(t, req)
		if r.status != http.StatusUnauthorized || r.json["error"] != "invalid_client" || r.json["access_token"] != nil {
			t.Errorf("wrong secret (basic %v): %d %s, want Gatehouse's 401 invalid_client", basic, r.status, r.body)
		}
		if basic && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("wrong secret with Basic: WWW-Authenticate = %q, want Gatehouse's Basic challenge", r.header.Get("WWW-Authenticate"))
		}
	}
	// Gatehouse's other refusals pass through too, and are not cached.
	for range 2 {
		r := do(t, func() *http.Request {
			req := mustRequest(t, "POST", tokenURL, form("grant_type", "client_credentials", "audience", aud, "scope", "admin"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("svc-one", secretOne)
			return req
		}())
		if r.status != http.StatusBadRequest || r.json["error"] != "invalid_scope" {
			t.Errorf("ungranted scope: %d %s, want Gatehouse's 400 invalid_scope", r.status, r.body)
		}
	}
	if got := proxyMetric(t, p.URL, `gatehouse_proxy_requests_total{result="upstream_error"}`); got != 4 {
		t.Errorf("upstream errors = %v, want 4", got)
	}
}

// TestProxyRedisEndToEnd: two proxy instances sharing a real Redis in front of a real Gatehouse: the second
// instance's first request is answered from Redis.
func TestProxyRedisEndToEnd(t *testing.T) {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		t.Fatalf("Redis at 127.0.0.1:6379 is unreachable: %v (this test needs a real Redis: run redis-server)", err)
	}
	var b [8]byte
	rand.Read(b[:])
	prefix := "gatehouse-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		if keys, err := client.Keys(ctx, prefix+"*").Result(); err == nil && len(keys) > 0 {
			client.Del(ctx, keys...)
		}
	})

	ts := startServer(t, "", nil, fixture)
	a := startProxyMain(t, &ProxyMain{Upstream: ts.tokenURL(), RedisURL: "redis://127.0.0.1:6379/0", RedisPrefix: prefix})
	bp := startProxyMain(t, &ProxyMain{Upstream: ts.tokenURL(), RedisURL: "redis://127.0.0.1:6379/0", RedisPrefix: prefix})
	get := func(base string) string {
		req := mustRequest(t, "POST", base+"/oauth2/token", form("grant_type", "client_credentials", "resource", "urn:example:reports"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc-multi", secretMulti)
		r := do(t, req)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", base, r.status, r.body)
		}
		return r.json["access_token"].(string)
	}
	if ta, tb := get(a.URL), get(bp.URL); ta != tb {
		t.Error("the second instance got a new token, want the first instance's from Redis")
	}
	if got := proxyMetric(t, bp.URL, "gatehouse_proxy_upstream_requests_total"); got != 0 {
		t.Errorf("second instance: %v upstream requests, want 0", got)
	}
	if got := proxyMetric(t, bp.URL, "gatehouse_proxy_cache_hits_total"); got != 1 {
		t.Errorf("second instance: %v hits, want 1", got)
	}
}

// TestProxyCommand runs `gatehouse proxy` as a user does: flags and GATEHOUSE_* variables, usage errors, and a
// graceful stop.
func TestProxyCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"proxy"}, 2},
		{[]string{"proxy", "extra"}, 2},
		{[]string{"proxy", "--upstream", "ftp://x/token"}, 2},
		{[]string{"proxy", "--upstream", "http://auth.example.com/oauth/token"}, 2}, // http only on loopback
		{[]string{"proxy", "--upstream", "https://auth.example.com/oauth/token", "--redis", "mysql://x"}, 2},
		{[]string{"proxy", "--upstream", "https://auth.example.com/oauth/token", "--log-format", "xml"}, 2},
		{[]string{"proxy", "--upstream", "https://auth.example.com/oauth/token", "--max-keys", "0"}, 2},
	} {
		if got, _, stderr := runCLI(t, tc.args...); got != tc.want {
			t.Errorf("gatehouse %s: exit %d, want %d (stderr %q)", strings.Join(tc.args, " "), got, tc.want, stderr)
		}
	}

	ts := startServer(t, "", nil, fixture)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("GATEHOUSE_UPSTREAM", ts.tokenURL())
	t.Setenv("GATEHOUSE_ADDR", addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, []string{"proxy", "--log-format", "json"}, &stdout, &stderr) }()
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case code := <-exited:
			t.Fatalf("gatehouse proxy exited with %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("gatehouse proxy did not answer /healthz within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	req := mustRequest(t, "POST", base+"/oauth/token", "grant_type=client_credentials")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc-one", secretOne)
	if r := do(t, req); r.status != http.StatusOK {
		t.Fatalf("token through the proxy command: %d %s", r.status, r.body)
	}
	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("exit %d after the signal, want 0: %s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("gatehouse proxy did not stop within 20s")
	}
	logs := stderr.String()
	if !strings.Contains(logs, `"result":"miss"`) || strings.Contains(logs, secretOne) {
		t.Errorf("want a request log line without the secret; got:\n%s", logs)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing (logs go to stderr)", stdout.String())
	}
}
