package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/proxy"
	"github.com/gatehouse/gatehouse/tokencache/rediscache"
)

// forwarded is what the fake upstream saw of one request.
type forwarded struct {
	Method, Path, ContentType string
	Basic                     []string          // client_id and secret from HTTP Basic, if sent
	Params                    map[string]string // the body's parameters, from JSON or a form
}

// upstream is a fake token endpoint: Auth0 (JSON in and out, credentials in the body) or Cognito (a form, HTTP
// Basic). It knows one client and records every request.
type upstream struct {
	*httptest.Server
	mu       sync.Mutex
	seen     []forwarded
	calls    atomic.Int64
	lifetime int
	fail     atomic.Pointer[func(w http.ResponseWriter) bool] // if set and it returns true, the request is answered by it
}

const (
	clientID     = "m2m-client"
	clientSecret = "s3cret-Value_with-Chars"
	audience     = "https://api.example.com/v1"
)

func newUpstream(t testing.TB) *upstream {
	u := &upstream{lifetime: 86400}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	n := u.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	f := forwarded{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Params: map[string]string{}}
	if id, secret, ok := r.BasicAuth(); ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		f.Basic = []string{id, secret}
	}
	if mt, _, _ := mime.ParseMediaType(f.ContentType); mt == "application/json" {
		json.Unmarshal(body, &f.Params)
	} else {
		vals, _ := url.ParseQuery(string(body))
		for k := range vals {
			f.Params[k] = vals.Get(k)
		}
	}
	u.mu.Lock()
	u.seen = append(u.seen, f)
	u.mu.Unlock()

	if fail := u.fail.Load(); fail != nil && (*fail)(w) {
		return
	}
	id, secret := f.Params["client_id"], f.Params["client_secret"]
	if f.Basic != nil {
		id, secret = f.Basic[0], f.Basic[1]
	}
	if id != clientID || secret != clientSecret {
		w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
		w.Header().Set("X-Upstream-Request-Id", "req-401")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"invalid_client","error_description":"Unauthorized"}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":"token-%d","token_type":"Bearer","expires_in":%d,"scope":%q,"upstream_extra":{"kept":true}}`,
		n, u.lifetime, f.Params["scope"])
}

func (u *upstream) last() forwarded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[len(u.seen)-1]
}

// clock is a time the test moves.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// startProxy serves a Proxy for up on loopback and returns its base URL.
func startProxy(t testing.TB, up *upstream, cfg proxy.Config) (string, *proxy.Proxy) {
	t.Helper()
	if cfg.Upstream == "" {
		cfg.Upstream = up.URL + "/oauth/token"
	}
	p, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return srv.URL, p
}

// reply is a token endpoint's answer.
type reply struct {
	Status int
	Header http.Header
	Body   map[string]any
}

func (r reply) expiresIn(t *testing.T) int {
	t.Helper()
	v, ok := r.Body["expires_in"].(float64)
	if !ok {
		t.Fatalf("answer has no numeric expires_in: %v", r.Body)
	}
	return int(v)
}

// post sends a token request and decodes the JSON answer.
func post(t *testing.T, rawURL, contentType, body string, basic []string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if basic != nil {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{Status: resp.StatusCode, Header: resp.Header}
	if err := json.Unmarshal(raw, &r.Body); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return r
}

// The requests of the seeds, as their programs send them.
var seedRequests = []struct {
	name        string
	path        string // the upstream's token endpoint path
	contentType string
	body        string
	basic       []string
	want        forwarded // what the upstream must see
}{
	{
		// Seeds 000 and 001 (Node on Lambda): a JSON body, Auth0 style.
		name:        "Auth0 JSON body",
		path:        "/oauth/token",
		contentType: "application/json",
		body:        `{"client_id":"` + clientID + `","client_secret":"` + clientSecret + `","audience":"` + audience + `","grant_type":"client_credentials"}`,
		want: forwarded{Method: "POST", Path: "/oauth/token", ContentType: "application/json", Params: map[string]string{
			"client_id": clientID, "client_secret": clientSecret, "audience": audience, "grant_type": "client_credentials"}},
	},
	{
		// Seed 002 (curl): a form body with the credentials in it.
		name:        "Auth0 form body",
		path:        "/oauth/token",
		contentType: "application/x-www-form-urlencoded",
		body:        "audience=" + url.QueryEscape(audience) + "&grant_type=client_credentials&client_id=" + clientID + "&client_secret=" + clientSecret,
		want: forwarded{Method: "POST", Path: "/oauth/token", ContentType: "application/x-www-form-urlencoded", Params: map[string]string{
			"client_id": clientID, "client_secret": clientSecret, "audience": audience, "grant_type": "client_credentials"}},
	},
	{
		// Seed 004 (Python requests against Cognito): HTTP Basic and a form with only grant_type.
		name:        "Cognito Basic and grant_type only",
		path:        "/oauth2/token",
		contentType: "application/x-www-form-urlencoded",
		body:        "grant_type=client_credentials",
		basic:       []string{clientID, clientSecret},
		want: forwarded{Method: "POST", Path: "/oauth2/token", ContentType: "application/x-www-form-urlencoded",
			Basic: []string{clientID, clientSecret}, Params: map[string]string{"grant_type": "client_credentials"}},
	},
}

func TestProxySeedRequests(t *testing.T) {
	for _, tt := range seedRequests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t)
			clk := &clock{}
			base, _ := startProxy(t, up, proxy.Config{Upstream: up.URL + tt.path, Now: clk.Now})
			for _, path := range []string{"/oauth/token", "/oauth2/token"} {
				first := post(t, base+path, tt.contentType, tt.body, tt.basic)
				if path == "/oauth/token" {
					if first.Status != http.StatusOK {
						t.Fatalf("first call: status %d %v", first.Status, first.Body)
					}
					if got := up.last(); !cmp.Equal(got, tt.want) {
						t.Errorf("forwarded request (-got +want):\n%s", cmp.Diff(got, tt.want))
					}
					if got := first.expiresIn(t); got < 86399 || got > 86400 {
						t.Errorf("first call: expires_in = %d, want 86400 (or a second less)", got)
					}
					if first.Body["upstream_extra"] == nil || first.Body["token_type"] != "Bearer" {
						t.Errorf("first call: the upstream's members are not all passed on: %v", first.Body)
					}
					if cc := first.Header.Get("Cache-Control"); cc != "no-store" {
						t.Errorf("Cache-Control = %q, want no-store", cc)
					}
				}
				clk.advance(100 * time.Second)
				second := post(t, base+path, tt.contentType, tt.body, tt.basic)
				if second.Status != http.StatusOK || second.Body["access_token"] != "token-1" {
					t.Fatalf("cached call on %s: %d %v, want token-1", path, second.Status, second.Body)
				}
				if got, want := second.expiresIn(t), 86400-int(time.Duration(clk.offset.Load())/time.Second); got != want && got != want-1 {
					t.Errorf("cached call on %s: expires_in = %d, want %d (the time left)", path, got, want)
				}
				if n := up.calls.Load(); n != 1 {
					t.Fatalf("after a cached call on %s: %d upstream calls, want 1", path, n)
				}
			}
		})
	}
}

// The same client in different request shapes shares one cache key: the shape is not part of it.
func TestProxyShapesShareTheKey(t *testing.T) {
	up := newUpstream(t)
	base, _ := startProxy(t, up, proxy.Config{})
	form := "grant_type=client_credentials&audience=" + url.QueryEscape(audience)
	r1 := post(t, base+"/oauth/token", "application/x-www-form-urlencoded", form, []string{clientID, clientSecret})
	r2 := post(t, base+"/oauth/token", "application/json", seedRequests[0].body, nil)
	r3 := post(t, base+"/oauth/token", "application/x-www-form-urlencoded", seedRequests[1].body, nil)
	for i, r := range []reply{r1, r2, r3} {
		if r.Status != http.StatusOK || r.Body["access_token"] != "token-1" {
			t.Errorf("call %d: %d %v, want token-1", i+1, r.Status, r.Body)
		}
	}
	if n := up.calls.Load(); n != 1 {
		t.Errorf("%d upstream calls, want 1", n)
	}
}

func TestProxyCacheKey(t *testing.T) {
	up := newUpstream(t)
	base, _ := startProxy(t, up, proxy.Config{})
	call := func(params string) string {
		r := post(t, base+"/oauth/token", "application/x-www-form-urlencoded", "grant_type=client_credentials&"+params, []string{clientID, clientSecret})
		if r.Status != http.StatusOK {
			t.Fatalf("%s: %d %v", params, r.Status, r.Body)
		}
		return r.Body["access_token"].(string)
	}
	tests := []struct {
		params, want string
	}{
		{"scope=read+write", "token-1"},
		{"scope=write+read", "token-1"}, // scopes are sorted in the key
		{"scope=read", "token-2"},
		{"scope=read+write&audience=https%3A%2F%2Fother", "token-3"},
		{"scope=read+write&resource=https%3A%2F%2Fother", "token-4"},
		{"", "token-5"},
		{"scope=read", "token-2"},
	}
	for _, tt := range tests {
		if got := call(tt.params); got != tt.want {
			t.Errorf("%q: got %s, want %s", tt.params, got, tt.want)
		}
	}
	if got := up.last().Params["scope"]; got != "" {
		t.Errorf("the last upstream request had scope %q, want none", got)
	}
}

func TestProxyWrongSecret(t *testing.T) {
	for _, tt := range seedRequests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t)
			base, _ := startProxy(t, up, proxy.Config{})
			if r := post(t, base+"/oauth/token", tt.contentType, tt.body, tt.basic); r.Status != http.StatusOK {
				t.Fatalf("right secret: %d %v", r.Status, r.Body)
			}
			wrongBody := strings.Replace(tt.body, clientSecret, "wrong-secret", 1)
			var wrongBasic []string
			if tt.basic != nil {
				wrongBasic = []string{clientID, "wrong-secret"}
			}
			for i := range 2 {
				r := post(t, base+"/oauth/token", tt.contentType, wrongBody, wrongBasic)
				if r.Status != http.StatusUnauthorized || r.Body["access_token"] != nil || r.Body["error"] != "invalid_client" {
					t.Fatalf("wrong secret, call %d: %d %v; want the upstream's 401 invalid_client", i+1, r.Status, r.Body)
				}
				if got := r.Header.Get("WWW-Authenticate"); got != `Basic realm="upstream"` {
					t.Errorf("WWW-Authenticate = %q, want the upstream's", got)
				}
				if got := r.Header.Get("X-Upstream-Request-Id"); got != "req-401" {
					t.Errorf("X-Upstream-Request-Id = %q, want the upstream's header passed on", got)
				}
				if n := up.calls.Load(); n != int64(2+i) {
					t.Errorf("wrong secret, call %d: %d upstream calls, want %d (refusals are not cached)", i+1, n, 2+i)
				}
			}
			// The right secret still hits.
			if r := post(t, base+"/oauth/token", tt.contentType, tt.body, tt.basic); r.Status != http.StatusOK || r.Body["access_token"] != "token-1" {
				t.Fatalf("right secret again: %d %v, want the cached token-1", r.Status, r.Body)
			}
			if n := up.calls.Load(); n != 3 {
				t.Errorf("%d upstream calls, want 3", n)
			}
		})
	}
}

func TestProxyUpstreamErrorsAreNotCached(t *testing.T) {
	up := newUpstream(t)
	base, _ := startProxy(t, up, proxy.Config{})
	failing := func(w http.ResponseWriter) bool {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"error":"too_many_requests","error_description":"Global limit has been reached"}`))
		return true
	}
	up.fail.Store(&failing)
	tt := seedRequests[0]
	for i := range 2 {
		r := post(t, base+"/oauth/token", tt.contentType, tt.body, tt.basic)
		if r.Status != http.StatusTooManyRequests || r.Body["error"] != "too_many_requests" {
			t.Fatalf("call %d: %d %v; want the upstream's 429", i+1, r.Status, r.Body)
		}
		if r.Header.Get("Retry-After") != "7" {
			t.Errorf("call %d: Retry-After = %q, want the upstream's 7", i+1, r.Header.Get("Retry-After"))
		}
		if n := up.calls.Load(); n != int64(i+1) {
			t.Fatalf("call %d: %d upstream calls, want %d", i+1, n, i+1)
		}
	}
	up.fail.Store(nil)
	if r := post(t, base+"/oauth/token", tt.contentType, tt.body, tt.basic); r.Status != http.StatusOK {
		t.Fatalf("after the upstream recovered: %d %v", r.Status, r.Body)
	}
	if r := post(t, base+"/oauth/token", tt.contentType, tt.body, tt.basic); r.Status != http.StatusOK {
		t.Fatalf("cached: %d %v", r.Status, r.Body)
	}
	if n := up.calls.Load(); n != 3 {
		t.Errorf("%d upstream calls, want 3", n)
	}
}

func TestProxyUpstreamUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() + "/oauth/token"
	l.Close()
	p, err := proxy.New(proxy.Config{Upstream: dead})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	tt := seedRequests[0]
	r := post(t, srv.URL+"/oauth/token", tt.contentType, tt.body, nil)
	if r.Status != http.StatusBadGateway || r.Body["error"] != "temporarily_unavailable" {
		t.Fatalf("unreachable upstream: %d %v, want 502 temporarily_unavailable", r.Status, r.Body)
	}
}

func TestProxyRefuses(t *testing.T) {
	up := newUpstream(t)
	base, _ := startProxy(t, up, proxy.Config{})
	form := "application/x-www-form-urlencoded"
	basic := []string{clientID, clientSecret}
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		basic       []string
		status      int
		code        string
	}{
		{"GET", http.MethodGet, "", "", nil, 405, "invalid_request"},
		{"no content type", "POST", "", "grant_type=client_credentials", basic, 400, "invalid_request"},
		{"text/plain", "POST", "text/plain", "grant_type=client_credentials", basic, 400, "invalid_request"},
		{"no grant_type", "POST", form, "scope=read", basic, 400, "invalid_request"},
		{"password grant", "POST", form, "grant_type=password&username=u&password=p", basic, 400, "invalid_request"}, // unknown params first
		{"refresh grant", "POST", form, "grant_type=refresh_token", basic, 400, "unsupported_grant_type"},
		{"no credentials", "POST", form, "grant_type=client_credentials", nil, 401, "invalid_client"},
		{"no secret", "POST", form, "grant_type=client_credentials&client_id=x", nil, 401, "invalid_client"},
		{"Basic and body secret", "POST", form, "grant_type=client_credentials&client_secret=x", basic, 400, "invalid_request"},
		{"different client_ids", "POST", form, "grant_type=client_credentials&client_id=other", basic, 400, "invalid_request"},
		{"unknown parameter", "POST", form, "grant_type=client_credentials&organization=org_1", basic, 400, "invalid_request"},
		{"repeated parameter", "POST", form, "grant_type=client_credentials&scope=a&scope=b", basic, 400, "invalid_request"},
		{"two resources", "POST", form, "grant_type=client_credentials&resource=a&resource=b", basic, 400, "invalid_target"},
		{"JSON array", "POST", "application/json", `["client_credentials"]`, basic, 400, "invalid_request"},
		{"JSON number", "POST", "application/json", `{"grant_type":"client_credentials","scope":1}`, basic, 400, "invalid_request"},
		{"JSON trailing", "POST", "application/json", `{"grant_type":"client_credentials"}{}`, basic, 400, "invalid_request"},
		{"too large", "POST", form, "grant_type=client_credentials&scope=" + strings.Repeat("a", 70<<10), basic, 413, "invalid_request"},
		{"secret in URL", "POST", form, "grant_type=client_credentials", basic, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := base + "/oauth/token"
			if tt.name == "secret in URL" {
				target += "?client_secret=x"
			}
			req, _ := http.NewRequest(tt.method, target, strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			if tt.basic != nil {
				req.SetBasicAuth(tt.basic[0], tt.basic[1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct{ Error string }
			json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tt.status || body.Error != tt.code {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body.Error, tt.status, tt.code)
			}
		})
	}
	if n := up.calls.Load(); n != 0 {
		t.Errorf("%d requests reached the upstream, want 0", n)
	}
}

func TestProxyConcurrentColdStart(t *testing.T) {
	up := newUpstream(t)
	base, _ := startProxy(t, up, proxy.Config{})
	slow := func(w http.ResponseWriter) bool { time.Sleep(50 * time.Millisecond); return false }
	up.fail.Store(&slow)
	tt := seedRequests[2]
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 100 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", base+"/oauth/token", strings.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.contentType)
			req.SetBasicAuth(clientID, clientSecret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 100 {
		t.Errorf("%d of 100 callers got a token", ok.Load())
	}
	if n := up.calls.Load(); n != 1 {
		t.Errorf("%d upstream calls, want 1", n)
	}
	m := scrape(t, base)
	if m[`gatehouse_proxy_requests_total{result="miss"}`] != 1 || m[`gatehouse_proxy_requests_total{result="hit"}`] != 99 {
		t.Errorf("requests_total: miss %v, hit %v; want 1 and 99", m[`gatehouse_proxy_requests_total{result="miss"}`], m[`gatehouse_proxy_requests_total{result="hit"}`])
	}
}

func TestProxyEvictsLeastRecentlyUsed(t *testing.T) {
	up := newUpstream(t)
	base, _ := startProxy(t, up, proxy.Config{MaxSources: 2})
	call := func(scope string) string {
		r := post(t, base+"/oauth/token", "application/x-www-form-urlencoded", "grant_type=client_credentials&scope="+scope, []string{clientID, clientSecret})
		return r.Body["access_token"].(string)
	}
	for _, step := range []struct{ scope, want string }{
		{"a", "token-1"}, {"b", "token-2"}, {"a", "token-1"}, {"c", "token-3"}, // c evicts b, the least recently used
		{"a", "token-1"}, {"b", "token-4"},
	} {
		if got := call(step.scope); got != step.want {
			t.Errorf("scope %s: %s, want %s", step.scope, got, step.want)
		}
	}
}

// scrape reads /metrics into a map from series ("name{labels}") to value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	raw, _ := io.ReadAll(resp.Body)
	m := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		fmt.Sscan(line[i+1:], &v)
		m[line[:i]] = v
	}
	return m
}

func TestProxyMetrics(t *testing.T) {
	up := newUpstream(t)
	base, _ := startProxy(t, up, proxy.Config{})
	tt := seedRequests[0]
	post(t, base+"/oauth/token", tt.contentType, tt.body, nil)                                                   // miss
	post(t, base+"/oauth/token", tt.contentType, tt.body, nil)                                                   // hit
	post(t, base+"/oauth2/token", seedRequests[1].contentType, seedRequests[1].body, nil)                        // hit (same key)
	post(t, base+"/oauth/token", tt.contentType, strings.Replace(tt.body, clientSecret, "wrong", 1), nil)        // upstream_error
	post(t, base+"/oauth/token", "application/x-www-form-urlencoded", "grant_type=password", []string{"a", "b"}) // refused
	got := scrape(t, base)
	want := map[string]float64{
		`gatehouse_proxy_requests_total{result="hit"}`:            2,
		`gatehouse_proxy_requests_total{result="miss"}`:           1,
		`gatehouse_proxy_requests_total{result="upstream_error"}`: 1,
		`gatehouse_proxy_requests_total{result="refused"}`:        1,
		`gatehouse_proxy_requests_total{result="unavailable"}`:    0,
		`gatehouse_proxy_cache_hits_total`:                        2,
		`gatehouse_proxy_upstream_requests_total`:                 2,
		`gatehouse_proxy_upstream_requests_saved_total`:           2,
		`gatehouse_proxy_shared_cache_errors_total`:               0,
	}
	for series, w := range want {
		if g, ok := got[series]; !ok || g != w {
			t.Errorf("%s = %v (present: %v), want %v", series, g, ok, w)
		}
	}
}

func TestProxyHealthz(t *testing.T) {
	up := newUpstream(t)
	base, _ := startProxy(t, up, proxy.Config{})
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %s", resp.Status)
	}
}

func TestProxyLogsNoSecrets(t *testing.T) {
	up := newUpstream(t)
	var buf syncBuffer
	base, _ := startProxy(t, up, proxy.Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	for _, tt := range seedRequests {
		post(t, base+"/oauth/token", tt.contentType, tt.body, tt.basic)
	}
	post(t, base+"/oauth/token", seedRequests[0].contentType, strings.Replace(seedRequests[0].body, clientSecret, "wrong-secret", 1), nil)
	logs := buf.String()
	for _, secret := range []string{clientSecret, "wrong-secret", "token-1", base64.StdEncoding.EncodeToString([]byte(clientID + ":" + clientSecret))} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q:\n%s", secret, logs)
		}
	}
	for _, want := range []string{`"client_id":"` + clientID + `"`, `"result":"miss"`, `"result":"hit"`, `"result":"upstream_error"`, `"error":"invalid_client"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s:\n%s", want, logs)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestProxyRejectsBadUpstream(t *testing.T) {
	for _, u := range []string{"", "not a url", "ftp://example.com/token", "http://auth.example.com/oauth/token"} {
		if _, err := proxy.New(proxy.Config{Upstream: u}); err == nil {
			t.Errorf("New with upstream %q: err = nil, want an error", u)
		}
	}
	if _, err := proxy.New(proxy.Config{Upstream: "http://gatehouse.internal:8080/oauth/token", InsecureUpstream: true}); err != nil {
		t.Errorf("an http upstream with InsecureUpstream: %v", err)
	}
}

// redisClient returns a client of the real Redis (CI starts one), failing the test if it is unreachable.
func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	addr := "127.0.0.1:6379"
	if a := os.Getenv("GATEHOUSE_TEST_REDIS_ADDR"); a != "" {
		addr = a
	}
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is unreachable: %v (this test needs a real Redis: run redis-server, or set GATEHOUSE_TEST_REDIS_ADDR)", addr, err)
	}
	return client
}

// redisPrefix returns a key prefix of the test's own and deletes its keys at the end.
func redisPrefix(t testing.TB, client *redis.Client) string {
	var b [8]byte
	rand.Read(b[:])
	prefix := "gatehouse-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		if keys, err := client.Keys(ctx, prefix+"*").Result(); err == nil && len(keys) > 0 {
			client.Del(ctx, keys...)
		}
	})
	return prefix
}

func TestProxyRedisShared(t *testing.T) {
	up := newUpstream(t)
	client := redisClient(t)
	prefix := redisPrefix(t, client)
	baseA, _ := startProxy(t, up, proxy.Config{Cache: rediscache.New(client, rediscache.Options{Prefix: prefix})})
	baseB, _ := startProxy(t, up, proxy.Config{Cache: rediscache.New(redisClient(t), rediscache.Options{Prefix: prefix})})
	// The first two requests name the audience; the third (Cognito style) does not: another cache key.
	for i, want := range []string{"token-1", "token-1", "token-2"} {
		tt := seedRequests[i]
		a := post(t, baseA+"/oauth/token", tt.contentType, tt.body, tt.basic)
		b := post(t, baseB+"/oauth/token", tt.contentType, tt.body, tt.basic)
		if a.Status != http.StatusOK || b.Status != http.StatusOK || a.Body["access_token"] != want || b.Body["access_token"] != want {
			t.Fatalf("%s: A %d %v, B %d %v; want both %s", tt.name, a.Status, a.Body, b.Status, b.Body, want)
		}
	}
	if n := up.calls.Load(); n != 2 {
		t.Fatalf("%d upstream calls, want 2 (one per cache key): the second instance takes the tokens from Redis", n)
	}
	mB := scrape(t, baseB)
	if mB[`gatehouse_proxy_requests_total{result="hit"}`] != 3 || mB[`gatehouse_proxy_upstream_requests_total`] != 0 {
		t.Errorf("instance B: hits %v, upstream %v; want 3 and 0", mB[`gatehouse_proxy_requests_total{result="hit"}`], mB[`gatehouse_proxy_upstream_requests_total`])
	}
	// What Redis holds is sealed: neither the token nor the secret is readable there.
	keys, err := client.Keys(context.Background(), prefix+"*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("no keys under the test prefix: %v", err)
	}
	for _, k := range keys {
		v, _ := client.Get(context.Background(), k).Bytes()
		if bytes.Contains(v, []byte("token-1")) || bytes.Contains(v, []byte(clientSecret)) {
			t.Errorf("Redis key %s holds the token or the secret in the clear", k)
		}
	}
}

func TestProxyRedisDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	client := redis.NewClient(&redis.Options{Addr: dead})
	defer client.Close()
	up := newUpstream(t)
	base, _ := startProxy(t, up, proxy.Config{Cache: rediscache.New(client, rediscache.Options{})})
	tt := seedRequests[0]
	for i := range 3 {
		if r := post(t, base+"/oauth/token", tt.contentType, tt.body, nil); r.Status != http.StatusOK || r.Body["access_token"] != "token-1" {
			t.Fatalf("call %d with Redis down: %d %v, want token-1", i+1, r.Status, r.Body)
		}
	}
	if n := up.calls.Load(); n != 1 {
		t.Errorf("%d upstream calls, want 1 (the instance's memory still caches)", n)
	}
	if m := scrape(t, base); m["gatehouse_proxy_shared_cache_errors_total"] == 0 {
		t.Error("shared_cache_errors_total = 0, want the Redis failures counted")
	}
}
