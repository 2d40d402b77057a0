package tokencache_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gatehouse/gatehouse/tokencache"
)

// TestSharedCache: a second Source with the same configuration takes the first one's token from the shared
// cache, which holds it sealed: neither the token nor the secret appears in the stored value.
func TestSharedCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		cache := tokencache.NewMemoryCache()
		cfg := testConfig(up)
		cfg.Cache = cache
		a, b := mustNew(t, cfg), mustNew(t, cfg)
		wantAccessToken(t, a, "tok-1")
		wantAccessToken(t, b, "tok-1")
		if c := up.calls.Load(); c != 1 {
			t.Errorf("%d upstream calls, want 1", c)
		}
		if st := b.Stats(); st.SharedHits != 1 || st.Fetches != 0 {
			t.Errorf("b's stats %+v, want one shared hit, no fetch", st)
		}
		stored, err := cache.Get(context.Background(), cfg.CacheKey())
		if err != nil {
			t.Fatalf("the cache holds nothing under CacheKey: %v", err)
		}
		for _, plain := range []string{"tok-1", cfg.ClientSecret, "expires_in"} {
			if bytes.Contains(stored, []byte(plain)) {
				t.Errorf("the stored value contains %q in the clear", plain)
			}
		}
		// The token keeps its lifetime through the cache.
		if ta, tb := mustToken(t, a), mustToken(t, b); !ta.Expiry.Equal(tb.Expiry) || string(ta.Raw) != string(tb.Raw) {
			t.Errorf("shared token differs: %+v vs %+v", ta, tb)
		}

		// Another secret (a rotated one) is another key: no sharing.
		other := cfg
		other.ClientSecret = "rotated-secret"
		wantAccessToken(t, mustNew(t, other), "tok-2")

		// A value that does not open is a miss, replaced by the next fetch.
		if err := cache.Set(context.Background(), cfg.CacheKey(), []byte("garbage"), time.Hour); err != nil {
			t.Fatal(err)
		}
		wantAccessToken(t, mustNew(t, cfg), "tok-3")
		wantAccessToken(t, mustNew(t, cfg), "tok-3")
	})
}

// TestSharedRefresh: when one Source refreshes, the others take the new token from the cache when they are due.
func TestSharedRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		up.delay = time.Second
		cfg := testConfig(up)
		cfg.Cache = tokencache.NewMemoryCache()
		sources := make([]*tokencache.Source, 10)
		for i := range sources {
			sources[i] = mustNew(t, cfg)
		}
		start := time.Now()
		for _, s := range sources {
			wantAccessToken(t, s, "tok-1")
		}
		// Every Source passes its own advisory point somewhere in 42m…48m; step through it.
		for now := 40 * time.Minute; now <= 50*time.Minute; now += 10 * time.Second {
			sleepUntil(start.Add(now))
			for _, s := range sources {
				mustToken(t, s)
			}
		}
		time.Sleep(2 * time.Second)
		for i, s := range sources {
			if tok := mustToken(t, s); tok.AccessToken != "tok-2" {
				t.Errorf("source %d: %q, want tok-2", i, tok.AccessToken)
			}
		}
		if c := up.calls.Load(); c != 2 {
			t.Errorf("%d upstream calls, want 2 (one cold, one refresh for all)", c)
		}
	})
}

// TestCoordinatedHerd: many Sources (as if in many processes) start cold at once on a Coordinator: one fetches,
// the others wait for its token.
func TestCoordinatedHerd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		up.delay = 2 * time.Second
		cfg := testConfig(up)
		cfg.Cache = tokencache.NewMemoryCache()
		sources := make([]*tokencache.Source, 20)
		for i := range sources {
			sources[i] = mustNew(t, cfg)
		}
		var wg sync.WaitGroup
		for _, s := range sources {
			for range 10 {
				wg.Go(func() { wantAccessToken(t, s, "tok-1") })
			}
		}
		wg.Wait()
		if c := up.calls.Load(); c != 1 {
			t.Errorf("%d upstream calls, want 1", c)
		}
		var shared uint64
		for _, s := range sources {
			shared += s.Stats().SharedHits
		}
		if shared != 19 {
			t.Errorf("%d shared hits, want 19", shared)
		}
	})
}

// TestLeaseHolderDies: if the process holding the lease never stores a token, its lease expires and another
// fetches.
func TestLeaseHolderDies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		cache := tokencache.NewMemoryCache()
		cfg := testConfig(up)
		cfg.Cache = cache
		cfg.FetchTimeout = 10 * time.Second
		if _, ok, _ := cache.Lease(context.Background(), cfg.CacheKey(), cfg.FetchTimeout); !ok {
			t.Fatal("could not take the lease")
		}
		start := time.Now()
		wantAccessToken(t, mustNew(t, cfg), "tok-1")
		if d := time.Since(start); d < 10*time.Second || d > 11*time.Second {
			t.Errorf("Token took %v, want just over the 10s lease", d)
		}
		if c := up.calls.Load(); c != 1 {
			t.Errorf("%d upstream calls, want 1", c)
		}
	})
}

// TestFailingCache: a cache that fails does not fail callers: the upstream serves them.
func TestFailingCache(t *testing.T) {
	for _, tt := range []struct {
		name  string
		cache func() tokencache.Cache
	}{
		{"everything fails", func() tokencache.Cache { return failingCache{} }},
		{"Lease fails", func() tokencache.Cache { return leaseFailingCache{tokencache.NewMemoryCache()} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				up := newUpstream()
				cfg := testConfig(up)
				cfg.Cache = tt.cache()
				var hooked int
				cfg.Hooks.CacheError = func(err error) {
					if !errors.Is(err, errUnreachable) {
						t.Errorf("CacheError hook got %v", err)
					}
					hooked++
				}
				src := mustNew(t, cfg)
				wantAccessToken(t, src, "tok-1")
				wantAccessToken(t, src, "tok-1")
				st := src.Stats()
				if st.Fetches != 1 || st.CacheErrors == 0 || int(st.CacheErrors) != hooked {
					t.Errorf("stats %+v, hook %d; want 1 fetch and the cache errors counted", st, hooked)
				}
				// At the mandatory point the refresh goes through the upstream too.
				sleepUntil(mustToken(t, src).Expiry.Add(-time.Second))
				wantAccessToken(t, src, "tok-2")
			})
		})
	}
}

// TestPlainCache: a Cache that is not a Coordinator is still shared, without leases.
func TestPlainCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newUpstream()
		cfg := testConfig(up)
		cfg.Cache = plainCache{tokencache.NewMemoryCache()}
		wantAccessToken(t, mustNew(t, cfg), "tok-1")
		wantAccessToken(t, mustNew(t, cfg), "tok-1")
		if c := up.calls.Load(); c != 1 {
			t.Errorf("%d upstream calls, want 1", c)
		}
	})
}
