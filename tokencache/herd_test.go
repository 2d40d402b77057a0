package tokencache_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/tokencache"
)

// clock is a settable Config.Now for tests that run on real goroutines and sockets.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// TestThunderingHerdLoopback: the herd again, with real scheduling and a real token endpoint on loopback:
// 1,000 goroutines released together at a cold start, then exactly at the mandatory point, cause one request
// each time.
func TestThunderingHerdLoopback(t *testing.T) {
	up := newUpstream()
	up.delay = 50 * time.Millisecond
	srv := httptest.NewServer(up)
	defer srv.Close()
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: start}
	src := mustNew(t, tokencache.Config{TokenURL: srv.URL, ClientID: "c", ClientSecret: "s", Now: clk.Now})
	herd := func(want string) {
		t.Helper()
		var wg sync.WaitGroup
		release := make(chan struct{})
		for range 1000 {
			wg.Go(func() {
				<-release
				tok, err := src.Token(context.Background())
				if err != nil {
					t.Error(err)
				} else if tok.AccessToken != want {
					t.Errorf("got %q, want %q", tok.AccessToken, want)
				}
			})
		}
		close(release)
		wg.Wait()
	}
	herd("tok-1")
	if c := up.calls.Load(); c != 1 {
		t.Fatalf("cold start: %d upstream calls, want 1", c)
	}
	clk.Set(start.Add(time.Hour - 30*time.Second)) // tok-1's mandatory point, exactly
	herd("tok-2")
	if c := up.calls.Load(); c != 2 {
		t.Fatalf("at the mandatory point: %d upstream calls, want 2", c)
	}
	if st := src.Stats(); st.Hits+st.Misses != 2000 {
		t.Errorf("stats %+v: hits+misses = %d, want 2000", st, st.Hits+st.Misses)
	}
}
