package rediscache_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/tokencache"
	"github.com/gatehouse/gatehouse/tokencache/rediscache"
)

// upstream is a fake token endpoint that counts its calls and takes a little time, as a real one does, so that
// callers overlap with the fetch.
type upstream struct {
	*httptest.Server
	calls atomic.Int64
}

func newUpstream(t testing.TB, lifetime time.Duration) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := u.calls.Add(1)
		time.Sleep(20 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"token-%d","token_type":"Bearer","expires_in":%d}`, n, int(lifetime.Seconds()))
	}))
	t.Cleanup(u.Close)
	return u
}

// fakeClock is real time plus an offset the test moves forward, shared by every Source (they are on one machine).
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// set moves the clock so that Now is about t.
func (c *fakeClock) set(t time.Time) { c.offset.Add(int64(t.Sub(c.Now()))) }

// newSources returns n Sources with one configuration, each with its own Redis client, as if in n processes.
func newSources(t testing.TB, n int, up *upstream, clock *fakeClock, newClient func() *redis.Client, prefix string) []*tokencache.Source {
	t.Helper()
	var sources []*tokencache.Source
	for range n {
		client := newClient()
		t.Cleanup(func() { client.Close() })
		src, err := tokencache.New(tokencache.Config{
			TokenURL:     up.URL + "/oauth/token",
			ClientID:     "herd-client",
			ClientSecret: "herd-secret",
			Audience:     "https://api.example.com/",
			Cache:        rediscache.New(client, rediscache.Options{Prefix: prefix}),
			Now:          clock.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, src)
	}
	return sources
}

// herd has perSource callers on each Source ask for a token at the same moment, and returns how many got each
// access token. Every call must succeed.
func herd(t *testing.T, sources []*tokencache.Source, perSource int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		got    = map[string]int{}
		errs   []error
		start  = make(chan struct{})
		callee = 0
	)
	for _, src := range sources {
		for range perSource {
			callee++
			wg.Go(func() {
				<-start
				tok, err := src.Token(ctx)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				got[tok.AccessToken]++
			})
		}
	}
	close(start)
	wg.Wait()
	for _, err := range errs[:min(len(errs), 5)] {
		t.Errorf("Token: %v", err)
	}
	if len(errs) > 0 {
		t.Fatalf("%d of %d calls failed", len(errs), callee)
	}
	return got
}

func checkHerd(t *testing.T, phase string, got map[string]int, wantToken string, callers int, up *upstream, wantCalls int64) {
	t.Helper()
	if got[wantToken] != callers || len(got) != 1 {
		t.Errorf("%s: callers got %v, want all %d to get %s", phase, got, callers, wantToken)
	}
	if n := up.calls.Load(); n != wantCalls {
		t.Fatalf("%s: %d upstream calls in all, want %d", phase, n, wantCalls)
	}
}

// TestRedisThunderingHerd is the proof: 1,000 concurrent callers spread over 10 Sources (10 processes) sharing
// one Redis make exactly one upstream call per token lifetime: at a cold start, when the token enters its refresh
// window, when every caller must wait for a new one, and after it expired.
func TestRedisThunderingHerd(t *testing.T) {
	const sourcesN, perSource, callers = 10, 100, 1000
	const lifetime = time.Hour
	up := newUpstream(t, lifetime)
	clock := &fakeClock{}
	real := newClient(t)
	prefix := testPrefix(t, real)
	sources := newSources(t, sourcesN, up, clock, func() *redis.Client { return redis.NewClient(&redis.Options{Addr: redisAddr()}) }, prefix)
	ctx := context.Background()

	got := herd(t, sources, perSource)
	checkHerd(t, "cold start", got, "token-1", callers, up, 1)
	tok1, _ := sources[0].Token(ctx)

	// The refresh window (the last 25% ±20% of the lifetime, before the last 30 s): callers keep the valid
	// token at once while one background refresh per process runs; they coordinate and one of them fetches.
	clock.set(tok1.Expiry.Add(-lifetime * 15 / 100))
	got = herd(t, sources, perSource)
	if got["token-1"]+got["token-2"] != callers {
		t.Errorf("refresh window: callers got %v, want the valid token-1, or token-2 once refreshed", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, src := range sources {
		for {
			tok, err := src.Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == "token-2" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a Source still has %s 10 s after its refresh window began", tok.AccessToken)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n := up.calls.Load(); n != 2 {
		t.Fatalf("refresh window: %d upstream calls in all, want 2", n)
	}
	tok2, _ := sources[0].Token(ctx)

	// The mandatory window (the last 30 s): every caller waits for a new token; one process fetches it.
	clock.set(tok2.Expiry.Add(-10 * time.Second))
	got = herd(t, sources, perSource)
	checkHerd(t, "mandatory window", got, "token-3", callers, up, 3)
	tok3, _ := sources[0].Token(ctx)

	// Expired: the same.
	clock.set(tok3.Expiry.Add(time.Second))
	got = herd(t, sources, perSource)
	checkHerd(t, "expired", got, "token-4", callers, up, 4)
}

// TestRedisDownThunderingHerd: with Redis down, every caller is still served, by the upstream; each process
// fetches for itself (its concurrent callers still collapse into one fetch).
func TestRedisDownThunderingHerd(t *testing.T) {
	const sourcesN, perSource, callers = 10, 100, 1000
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	up := newUpstream(t, time.Hour)
	sources := newSources(t, sourcesN, up, &fakeClock{}, func() *redis.Client { return redis.NewClient(&redis.Options{Addr: dead}) }, "gatehouse-test:down:")

	got := herd(t, sources, perSource)
	n := 0
	for _, c := range got {
		n += c
	}
	if n != callers {
		t.Fatalf("%d callers got a token, want %d", n, callers)
	}
	if calls := up.calls.Load(); calls != sourcesN {
		t.Fatalf("%d upstream calls, want %d (one per process)", calls, sourcesN)
	}
	for i, src := range sources {
		if st := src.Stats(); st.CacheErrors == 0 {
			t.Errorf("Source %d: Stats.CacheErrors = 0, want the Redis failures counted", i)
		}
	}
}
