package tokencache_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gatehouse/gatehouse/tokencache"
)

// These tests run in synctest bubbles: time is fake and advances only when every goroutine waits, so a
// one-hour token lifetime takes no real time and every moment is exact. The upstream is an http.Handler called
// in-process (handlerTransport).

// sleepUntil advances the bubble's clock to t.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// TestAdvisoryRefreshInBackground: after the advisory point one background fetch runs while callers keep
// getting the current token without waiting; then they get the new one.
func TestAdvisoryRefreshInBackground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		up.delay = 2 * time.Second
		src := mustNew(t, testConfig(up))
		start := time.Now()
		wantAccessToken(t, src, "tok-1")
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("cold Token took %v, want the upstream's 2s", d)
		}
		// A 1h token, advisory fraction 0.25 ± 20%: the refresh starts between 42m and 48m.
		sleepUntil(start.Add(41*time.Minute + 59*time.Second))
		wantAccessToken(t, src, "tok-1")
		if st := src.Stats(); st.Fetches != 1 || st.Refreshes != 0 {
			t.Fatalf("before the advisory window: %+v, want 1 fetch and no refresh", st)
		}
		sleepUntil(start.Add(48 * time.Minute))
		for range 10 {
			t0 := time.Now()
			wantAccessToken(t, src, "tok-1")
			synctest.Wait() // the refresh is now waiting in the upstream
			if d := time.Since(t0); d != 0 {
				t.Fatalf("Token in the advisory window waited %v", d)
			}
		}
		if st := src.Stats(); st.Refreshes != 1 || up.calls.Load() != 2 {
			t.Fatalf("during the refresh: %+v, upstream calls %d; want 1 refresh, 2 calls", st, up.calls.Load())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait() // the refresh completes at this very moment
		wantAccessToken(t, src, "tok-2")
		if st := src.Stats(); st.Misses != 1 || st.Fetches != 2 {
			t.Errorf("stats %+v, want 1 miss (the cold start) and 2 fetches", st)
		}
	})
}

// TestMandatoryWindowBlocks: in the mandatory window (default: min(30s, 10% of the lifetime) before expiry)
// callers wait for the new token.
func TestMandatoryWindowBlocks(t *testing.T) {
	for _, tt := range []struct {
		name   string
		window time.Duration // Config.MandatoryWindow
		at     time.Duration // before expiry
	}{
		{"default 30s", 0, 29 * time.Second},
		{"configured 5m", 5 * time.Minute, 4*time.Minute + 59*time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				up := newUpstream()
				cfg := testConfig(up)
				cfg.MandatoryWindow = tt.window
				src := mustNew(t, cfg)
				start := time.Now()
				tok := mustToken(t, src) // no delay: expiry is start+1h exactly
				if !tok.Expiry.Equal(start.Add(time.Hour)) {
					t.Fatalf("Expiry = %v, want start+1h", tok.Expiry)
				}
				up.delay = 3 * time.Second
				// No call in the advisory window, so nothing refreshed in the background.
				sleepUntil(tok.Expiry.Add(-tt.at))
				t0 := time.Now()
				wantAccessToken(t, src, "tok-2")
				if d := time.Since(t0); d != 3*time.Second {
					t.Errorf("Token in the mandatory window took %v, want to wait for the 3s fetch", d)
				}
				if st := src.Stats(); st.Misses != 2 || st.Refreshes != 0 {
					t.Errorf("stats %+v, want 2 misses, no background refresh", st)
				}
			})
		})
	}
}

// TestRefreshFailureKeepsServing: with the upstream down, the valid token is served until it expires, retries
// back off, and then callers get a clear error, never the expired token; when the upstream is back, they get a
// new token.
func TestRefreshFailureKeepsServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		src := mustNew(t, testConfig(up))
		start := time.Now()
		tok := mustToken(t, src)
		up.down.Store(true)
		sleepUntil(start.Add(49 * time.Minute))
		for time.Now().Before(tok.Expiry) {
			wantAccessToken(t, src, "tok-1")
			time.Sleep(time.Second)
		}
		attempts := up.calls.Load() - 1
		if attempts < 5 || attempts > 60 {
			t.Errorf("%d refresh attempts in 11 minutes of outage, want a backed-off handful", attempts)
		}
		if st := src.Stats(); st.FetchErrors != uint64(attempts) {
			t.Errorf("FetchErrors = %d, want %d", st.FetchErrors, attempts)
		}
		// Expired: an error, at once and at every later call.
		for range 3 {
			got, err := src.Token(context.Background())
			if err == nil {
				t.Fatalf("Token after expiry = %+v, want an error", got)
			}
			var re *tokencache.RetrieveError
			if !errors.As(err, &re) || re.StatusCode != 503 || re.ErrorCode != "temporarily_unavailable" {
				t.Errorf("error %v is not the upstream's RetrieveError", err)
			}
			if !strings.Contains(err.Error(), "expired") {
				t.Errorf("error %q does not say the token expired", err)
			}
			time.Sleep(time.Second)
		}
		up.down.Store(false)
		wantAccessToken(t, src, "tok-2")
	})
}

// TestBackoff: failed background refreshes are retried after waits bounded by min(60s, 1s·2^(n-1)) for the
// n-th consecutive failure, with full jitter.
func TestBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		up.expiresIn = 24 * 3600 // a long advisory window
		src := mustNew(t, testConfig(up))
		start := time.Now()
		mustToken(t, src)
		up.down.Store(true)
		const step = 100 * time.Millisecond
		sleepUntil(start.Add(19*time.Hour + 15*time.Minute)) // past the advisory point: 6h ± 1.2h before expiry
		end := time.Now().Add(20 * time.Minute)
		for time.Now().Before(end) {
			wantAccessToken(t, src, "tok-1")
			time.Sleep(step)
		}
		attempts := up.attemptTimes()[1:]
		if len(attempts) < 20 {
			t.Fatalf("%d attempts in 20 minutes, want at least 20 (the back-off is capped at 1m)", len(attempts))
		}
		var short int
		for i := 1; i < len(attempts); i++ {
			gap := attempts[i].Sub(attempts[i-1])
			bound := min(time.Minute, time.Second<<min(i-1, 10))
			if gap > bound+step {
				t.Errorf("gap after failure %d = %v, want ≤ %v", i, gap, bound)
			}
			if gap < bound/2 {
				short++
			}
		}
		if short == 0 {
			t.Errorf("no gap below half its bound in %d attempts: no jitter?", len(attempts))
		}
		t.Logf("%d attempts in 20m; %d of the gaps below half their bound", len(attempts), short)
	})
}

// TestJitterSpread: many Sources that got their tokens at the same moment refresh at different moments, all
// within the advisory window's jitter bounds (0.25 of the lifetime ± 20%).
func TestJitterSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		const n = 200
		sources := make([]*tokencache.Source, n)
		for i := range sources {
			sources[i] = mustNew(t, testConfig(up))
			mustToken(t, sources[i])
		}
		start := time.Now()
		const step = 10 * time.Second
		refreshedAt := make([]time.Duration, n)
		for now := time.Duration(0); now <= 50*time.Minute; now += step {
			sleepUntil(start.Add(now))
			for i, s := range sources {
				mustToken(t, s)
				if refreshedAt[i] == 0 && s.Stats().Refreshes > 0 {
					refreshedAt[i] = now
				}
			}
		}
		lo, hi := 42*time.Minute, 48*time.Minute+step
		first, last := time.Duration(1<<62), time.Duration(0)
		for i, at := range refreshedAt {
			if at < lo || at > hi {
				t.Errorf("source %d refreshed at %v, want within [%v, %v]", i, at, lo, hi)
			}
			first, last = min(first, at), max(last, at)
		}
		if last-first < 4*time.Minute {
			t.Errorf("refreshes spread over %v (%v … %v), want most of the 6m jitter range", last-first, first, last)
		}
	})
}

// TestNeverExpired: a property over many random time steps with a flaky upstream and concurrent callers: Token
// returns a token that has not expired, or an error.
func TestNeverExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		up.expiresIn = 60
		up.delay = 500 * time.Millisecond
		src := mustNew(t, testConfig(up))
		rng := rand.New(rand.NewPCG(1, 2))
		var (
			mu         sync.Mutex
			ok, failed int
		)
		done := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 7))
				for {
					select {
					case <-done:
						return
					case <-time.After(time.Duration(r.Int64N(int64(3 * time.Second)))):
					}
					tok, err := src.Token(context.Background())
					now := time.Now()
					mu.Lock()
					if err != nil {
						failed++
					} else {
						ok++
						if !now.Before(tok.Expiry) {
							t.Errorf("at %v: Token returned %s, expired at %v", now, tok.AccessToken, tok.Expiry)
						}
					}
					mu.Unlock()
				}
			})
		}
		for range 2000 {
			// The upstream flips between up and down; outages last long enough for tokens to expire.
			if rng.IntN(10) == 0 {
				up.down.Store(!up.down.Load())
			}
			time.Sleep(time.Duration(rng.Int64N(int64(15 * time.Second))))
		}
		close(done)
		wg.Wait()
		if ok == 0 || failed == 0 {
			t.Errorf("%d successes, %d errors: want both exercised", ok, failed)
		}
		t.Logf("%d tokens, %d errors, %d upstream calls", ok, failed, up.calls.Load())
	})
}

// TestThunderingHerd: 1,000 goroutines on one Source, at a cold start, at the advisory point and exactly at the
// mandatory point: one upstream call each time.
func TestThunderingHerd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		up.delay = time.Second
		src := mustNew(t, testConfig(up))
		herd := func(want string) {
			t.Helper()
			var wg sync.WaitGroup
			got := make([]string, 1000)
			for i := range got {
				wg.Go(func() {
					tok, err := src.Token(context.Background())
					if err != nil {
						t.Error(err)
						return
					}
					got[i] = tok.AccessToken
				})
			}
			wg.Wait()
			for i, g := range got {
				if g != want {
					t.Fatalf("goroutine %d got %q, want %q", i, g, want)
				}
			}
		}
		start := time.Now()
		herd("tok-1")
		if c := up.calls.Load(); c != 1 {
			t.Fatalf("cold start: %d upstream calls, want 1", c)
		}
		// Past any advisory point: everyone gets tok-1 at once, one background refresh.
		sleepUntil(start.Add(48 * time.Minute))
		herd("tok-1")
		time.Sleep(2 * time.Second)
		if c := up.calls.Load(); c != 2 {
			t.Fatalf("advisory point: %d upstream calls, want 2", c)
		}
		tok2 := mustToken(t, src)
		// Exactly at tok-2's mandatory point.
		sleepUntil(tok2.Expiry.Add(-30 * time.Second))
		herd("tok-3")
		if c := up.calls.Load(); c != 3 {
			t.Fatalf("mandatory point: %d upstream calls, want 3", c)
		}
	})
}

// TestCallerContext: a caller that gives up does not cancel the fetch other callers wait for.
func TestCallerContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		up.delay = 5 * time.Second
		src := mustNew(t, testConfig(up))
		var wg sync.WaitGroup
		wg.Go(func() {
			time.Sleep(time.Second)
			wantAccessToken(t, src, "tok-1") // joins the flight
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := src.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Token with a 1s deadline: %v, want DeadlineExceeded", err)
		}
		wg.Wait()
		wantAccessToken(t, src, "tok-1")
		if c := up.calls.Load(); c != 1 {
			t.Errorf("%d upstream calls, want 1", c)
		}
	})
}

// TestHooks: every hook fires as often as its counter counts.
func TestHooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		var mu sync.Mutex
		got := map[string]int{}
		count := func(name string) { mu.Lock(); got[name]++; mu.Unlock() }
		cache := tokencache.NewMemoryCache()
		newSource := func() *tokencache.Source {
			cfg := testConfig(up)
			cfg.Cache = cache
			cfg.Hooks = tokencache.Hooks{
				Hit:        func() { count("hit") },
				Miss:       func() { count("miss") },
				SharedHit:  func() { count("sharedHit") },
				Fetch:      func(d time.Duration, err error) { count("fetch") },
				CacheError: func(err error) { count("cacheError") },
			}
			return mustNew(t, cfg)
		}
		a, b := newSource(), newSource()
		mustToken(t, a)
		mustToken(t, a)
		mustToken(t, b)
		want := map[string]int{"miss": 2, "fetch": 1, "hit": 1, "sharedHit": 1}
		mu.Lock()
		defer mu.Unlock()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("hook %s called %d times, want %d (all: %v)", k, got[k], v, got)
			}
		}
		sa, sb := a.Stats(), b.Stats()
		if sa.Hits+sb.Hits != 1 || sa.Misses+sb.Misses != 2 || sa.Fetches != 1 || sb.SharedHits != 1 {
			t.Errorf("stats a %+v b %+v", sa, sb)
		}
	})
}
