package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gatehouse/gatehouse/verify"
)

const (
	feedClient = "verifier"
	feedSecret = "feed-secret-0123456789"
)

// feedServer is a revocation feed as Gatehouse serves it (GET /oauth/revocations): Basic authentication, an
// opaque cursor, every entry on each answer (a feed may repeat entries).
type feedServer struct {
	mu       sync.Mutex
	tokens   map[string]int64    // jti → exp
	subjects map[string][2]int64 // sub → issued_before, exp
	status   int                 // 0: 200
	sinces   []string            // the since of every request
}

func newFeedServer() *feedServer {
	return &feedServer{tokens: map[string]int64{}, subjects: map[string][2]int64{}}
}

func (f *feedServer) set(change func(f *feedServer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *feedServer) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sinces...)
}

func (f *feedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, secret, ok := r.BasicAuth()
	if !ok || id != feedClient || secret != feedSecret {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	f.sinces = append(f.sinces, r.URL.Query().Get("since"))
	if f.status != 0 {
		http.Error(w, "down", f.status)
		return
	}
	type tok struct {
		JTI string `json:"jti"`
		Exp int64  `json:"exp"`
	}
	type sub struct {
		Sub          string `json:"sub"`
		IssuedBefore int64  `json:"issued_before"`
		Exp          int64  `json:"exp"`
	}
	ans := struct {
		Cursor   string `json:"cursor"`
		Tokens   []tok  `json:"revoked_tokens"`
		Subjects []sub  `json:"revoked_subjects"`
	}{Cursor: "c" + strconv.Itoa(len(f.sinces))}
	for jti, exp := range f.tokens {
		ans.Tokens = append(ans.Tokens, tok{jti, exp})
	}
	for s, v := range f.subjects {
		ans.Subjects = append(ans.Subjects, sub{s, v[0], v[1]})
	}
	json.NewEncoder(w).Encode(ans)
}

// feedConfig is a RevocationFeed reading feed at u.
func feedConfig(u string, maxStale time.Duration) *verify.RevocationFeed {
	return &verify.RevocationFeed{URL: u, ClientID: feedClient, ClientSecret: feedSecret, MaxStale: maxStale}
}

// TestRevocationsFailClosed: with MaxStale, the first Verify waits for the list; revoked tokens are refused by
// jti and by subject cut-off; a list older than MaxStale refuses everything, as unavailable.
func TestRevocationsFailClosed(t *testing.T) {
	keys := newJWKSServer(t, ecKey)
	feed := newFeedServer()
	fs := httptest.NewServer(feed)
	defer fs.Close()
	clk := newClock()
	now := clk.Now()
	feed.set(func(f *feedServer) {
		f.tokens["jti-revoked"] = now.Add(time.Hour).Unix()
		f.subjects["svc-cut"] = [2]int64{now.Unix(), now.Add(30 * 24 * time.Hour).Unix()}
	})
	v := newVerifier(t, keys, clk, verify.Config{Revocations: feedConfig(fs.URL+"/oauth/revocations", time.Minute)})
	ctx := context.Background()
	withJTI := func(jti string) func(h, c map[string]any) { return func(h, c map[string]any) { c["jti"] = jti } }
	withSub := func(sub string, iat time.Time) func(h, c map[string]any) {
		return func(h, c map[string]any) { c["sub"], c["iat"] = sub, iat.Unix() }
	}
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"revoked by jti", token(ecKey, now, withJTI("jti-revoked")), verify.ErrRevoked},
		{"another jti", token(ecKey, now, withJTI("jti-fine")), nil},
		{"subject cut off, issued before", token(ecKey, now, withSub("svc-cut", now.Add(-time.Second))), verify.ErrRevoked},
		{"subject cut off, issued at the cut-off", token(ecKey, now, withSub("svc-cut", now)), nil},
		{"another subject", token(ecKey, now, withSub("svc-other", now.Add(-time.Hour))), nil},
	}
	for _, tt := range tests {
		if _, err := v.Verify(ctx, tt.token); !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
		}
	}

	// The middleware answers a revoked token as invalid.
	h := verify.Middleware(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+tests[0].token)
	h.ServeHTTP(rec, req)
	if rec.Code != 401 || rec.Header().Get("WWW-Authenticate") != `Bearer error="invalid_token", error_description="the token has been revoked"` {
		t.Errorf("middleware, revoked token: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}

	// The feed goes down; past MaxStale every token is refused as unavailable, and the middleware answers 503.
	feed.set(func(f *feedServer) { f.status = http.StatusInternalServerError })
	clk.Advance(2 * time.Minute)
	good := token(ecKey, clk.Now())
	var err error
	for range 3 { // the poll Verify starts in the background fails; the list stays old
		_, err = v.Verify(ctx, good)
	}
	if !errors.Is(err, verify.ErrRevocationsUnavailable) {
		t.Errorf("Verify with a list older than MaxStale = %v, want ErrRevocationsUnavailable", err)
	}
	rec = httptest.NewRecorder()
	req.Header.Set("Authorization", "Bearer "+good)
	h.ServeHTTP(rec, req)
	if rec.Code != 503 {
		t.Errorf("middleware, revocations unavailable: %d, want 503", rec.Code)
	}
}

// TestRevocationsFailClosedWrongSecret: a feed that refuses the verifier's credentials leaves a fail-closed
// verifier with no list: every token is refused.
func TestRevocationsFailClosedWrongSecret(t *testing.T) {
	keys := newJWKSServer(t, ecKey)
	fs := httptest.NewServer(newFeedServer())
	defer fs.Close()
	clk := newClock()
	cfg := feedConfig(fs.URL, time.Minute)
	cfg.ClientSecret = "wrong"
	v := newVerifier(t, keys, clk, verify.Config{Revocations: cfg})
	if _, err := v.Verify(context.Background(), token(ecKey, clk.Now())); !errors.Is(err, verify.ErrRevocationsUnavailable) {
		t.Errorf("Verify = %v, want ErrRevocationsUnavailable", err)
	}
}

// TestRevocationsPoll: the bound. Run polls every PollInterval, passing the cursor back; a revocation is refused
// from the first poll after it, and not before. The feed failing keeps the last list in use (fail open), and
// entries leave the list once their tokens have expired.
func TestRevocationsPoll(t *testing.T) {
	keys := newJWKSServer(t, ecKey)
	feed := newFeedServer()
	mux := http.NewServeMux()
	mux.Handle("/.well-known/jwks.json", keys.Config.Handler)
	mux.Handle("/oauth/revocations", feed)
	synctest.Test(t, func(t *testing.T) {
		v := newVerifier(t, nil, nil, verify.Config{
			JWKSURL:     "https://issuer.example/.well-known/jwks.json",
			HTTPClient:  &http.Client{Transport: handlerTransport{mux}},
			Revocations: feedConfig("https://issuer.example/oauth/revocations", 0),
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan struct{})
		go func() { defer close(done); v.Run(ctx) }()
		synctest.Wait()

		tok := token(ecKey, time.Now(), func(h, c map[string]any) { c["exp"] = time.Now().Add(10 * time.Minute).Unix() })
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("Verify before any revocation: %v", err)
		}
		feed.set(func(f *feedServer) { f.tokens["jti-1"] = time.Now().Add(10 * time.Minute).Unix() })
		time.Sleep(verify.DefaultRevocationPoll - time.Second)
		synctest.Wait()
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Errorf("Verify before the next poll: %v; want the token accepted until then", err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if _, err := v.Verify(ctx, tok); !errors.Is(err, verify.ErrRevoked) {
			t.Errorf("Verify after the poll: %v, want ErrRevoked", err)
		}
		if got := feed.requests(); len(got) != 2 || got[0] != "" || got[1] != "c1" {
			t.Errorf("feed requests with since = %q, want a first one without and the cursor after", got)
		}

		// Fail open: the feed goes down; the last list stays in use.
		feed.set(func(f *feedServer) { f.status = http.StatusBadGateway })
		time.Sleep(5 * verify.DefaultRevocationPoll)
		synctest.Wait()
		if _, err := v.Verify(ctx, tok); !errors.Is(err, verify.ErrRevoked) {
			t.Errorf("Verify while the feed is down: %v, want ErrRevoked from the last list", err)
		}
		other := token(ecKey, time.Now(), func(h, c map[string]any) { c["jti"] = "jti-2" })
		if _, err := v.Verify(ctx, other); err != nil {
			t.Errorf("Verify of an unrevoked token while the feed is down: %v", err)
		}
		cancel()
		<-done
	})
}

// TestRevocationsConfig: the feed's settings are checked by New.
func TestRevocationsConfig(t *testing.T) {
	for name, feed := range map[string]*verify.RevocationFeed{
		"no URL":                     {ClientID: "a", ClientSecret: "b"},
		"relative URL":               {URL: "/oauth/revocations", ClientID: "a", ClientSecret: "b"},
		"plain http beyond loopback": {URL: "http://auth.example.com/oauth/revocations", ClientID: "a", ClientSecret: "b"},
		"no client secret":           {URL: "https://auth.example.com/oauth/revocations", ClientID: "a"},
	} {
		if _, err := verify.New(verify.Config{Issuer: testIssuer, Audiences: []string{testAudience}, Revocations: feed}); err == nil {
			t.Errorf("%s: New succeeded, want an error", name)
		}
	}
	for name, feed := range map[string]*verify.RevocationFeed{
		"https":                     {URL: "https://auth.example.com/oauth/revocations", ClientID: "a", ClientSecret: "b"},
		"http on loopback":          {URL: "http://127.0.0.1:8080/oauth/revocations", ClientID: "a", ClientSecret: "b"},
		"http allowed in a network": {URL: "http://auth.internal/oauth/revocations", ClientID: "a", ClientSecret: "b", AllowInsecureHTTP: true},
	} {
		if _, err := verify.New(verify.Config{Issuer: testIssuer, Audiences: []string{testAudience}, Revocations: feed}); err != nil {
			t.Errorf("%s: New: %v", name, err)
		}
	}
}

// handlerTransport sends requests to a handler in process, for tests in a synctest bubble.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// BenchmarkVerifyWithRevocations is BenchmarkVerify with a revocation list of 10,000 entries in use: the check
// adds two map lookups and no allocation.
func BenchmarkVerifyWithRevocations(b *testing.B) {
	keys := newJWKSServer(b, ecKey)
	feed := newFeedServer()
	now := time.Now()
	feed.set(func(f *feedServer) {
		for i := range 10000 {
			f.tokens["jti-r"+strconv.Itoa(i)] = now.Add(time.Hour).Unix()
		}
	})
	fs := httptest.NewServer(feed)
	defer fs.Close()
	v := newVerifier(b, keys, nil, verify.Config{Revocations: feedConfig(fs.URL, time.Hour)})
	tok := token(ecKey, now)
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
