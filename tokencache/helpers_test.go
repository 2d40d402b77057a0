package tokencache_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/tokencache"
)

// upstream is a fake token endpoint. It issues "tok-1", "tok-2", … with lifetime expiresIn seconds, after
// sleeping delay (fake time inside a synctest bubble).
type upstream struct {
	expiresIn int
	delay     time.Duration
	down      atomic.Bool // answers 503 temporarily_unavailable

	calls    atomic.Int64
	mu       sync.Mutex
	issued   int
	attempts []time.Time // when each request arrived
}

func newUpstream() *upstream { return &upstream{expiresIn: 3600} }

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	u.calls.Add(1)
	u.mu.Lock()
	u.attempts = append(u.attempts, time.Now())
	u.mu.Unlock()
	if u.delay > 0 {
		time.Sleep(u.delay)
	}
	w.Header().Set("Content-Type", "application/json")
	if u.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"temporarily_unavailable","error_description":"try later"}`)
		return
	}
	u.mu.Lock()
	u.issued++
	n := u.issued
	u.mu.Unlock()
	fmt.Fprintf(w, `{"access_token":"tok-%d","expires_in":%d,"token_type":"Bearer"}`, n, u.expiresIn)
}

func (u *upstream) attemptTimes() []time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]time.Time(nil), u.attempts...)
}

// handlerTransport sends requests straight to an http.Handler in the caller's goroutine: no sockets, so it
// works inside a synctest bubble, where time is fake and real network I/O does not block durably.
type handlerTransport struct{ h http.Handler }

func (ht handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	ht.h.ServeHTTP(rec, req)
	if req.Body != nil {
		req.Body.Close()
	}
	return rec.Result(), nil
}

func inMemoryClient(h http.Handler) *http.Client { return &http.Client{Transport: handlerTransport{h}} }

// testConfig is a configuration for an in-memory upstream.
func testConfig(h http.Handler) tokencache.Config {
	return tokencache.Config{
		TokenURL:     "https://auth.example.com/oauth/token",
		ClientID:     "client-1",
		ClientSecret: "s3cret-s3cret-s3cret",
		Audience:     "https://api.example.com",
		HTTPClient:   inMemoryClient(h),
	}
}

func mustNew(t testing.TB, cfg tokencache.Config) *tokencache.Source {
	t.Helper()
	s, err := tokencache.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func mustToken(t testing.TB, s *tokencache.Source) *tokencache.Token {
	t.Helper()
	tok, err := s.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

func wantAccessToken(t testing.TB, s *tokencache.Source, want string) {
	t.Helper()
	if got := mustToken(t, s).AccessToken; got != want {
		t.Fatalf("Token = %q, want %q", got, want)
	}
}

// failingCache is a Coordinator that is unreachable.
type failingCache struct{}

var errUnreachable = errors.New("cache unreachable")

func (failingCache) Get(context.Context, string) ([]byte, error) { return nil, errUnreachable }
func (failingCache) Set(context.Context, string, []byte, time.Duration) error {
	return errUnreachable
}
func (failingCache) Lease(context.Context, string, time.Duration) (func(), bool, error) {
	return nil, false, errUnreachable
}
func (failingCache) DeleteIf(context.Context, string, []byte) error { return errUnreachable }

// leaseFailingCache is a working MemoryCache whose Lease fails.
type leaseFailingCache struct{ *tokencache.MemoryCache }

func (leaseFailingCache) Lease(context.Context, string, time.Duration) (func(), bool, error) {
	return nil, false, errUnreachable
}

// plainCache hides MemoryCache's Coordinator methods.
type plainCache struct{ c *tokencache.MemoryCache }

func (p plainCache) Get(ctx context.Context, key string) ([]byte, error) { return p.c.Get(ctx, key) }
func (p plainCache) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	return p.c.Set(ctx, key, v, ttl)
}
