// Package cachetest is the conformance suite for tokencache.Cache implementations. Each implementation runs it
// from its tests:
//
//	func TestCache(t *testing.T) {
//		cachetest.TestCache(t, func(t *testing.T) tokencache.Cache { return newCache(t) })
//	}
//
// Caches that also implement tokencache.Coordinator are checked for that contract too. Expiry is tested with real
// time (ttls of a few hundred milliseconds, polled with a generous deadline), because a shared cache such as Redis
// expires keys in its own clock.
package cachetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/tokencache"
)

// shortTTL is the ttl of entries and leases that are meant to expire during a test; expiryDeadline is how long
// the suite waits for them to go.
const (
	shortTTL       = 200 * time.Millisecond
	expiryDeadline = 5 * time.Second
)

// TestCache runs the suite. newCache is called once per subtest; the caches it returns may share storage (the
// suite uses keys unique to each run).
func TestCache(t *testing.T, newCache func(t *testing.T) tokencache.Cache) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, c tokencache.Cache, key func(string) string)
	}{
		{"GetMiss", testGetMiss},
		{"SetGet", testSetGet},
		{"Overwrite", testOverwrite},
		{"Expiry", testExpiry},
		{"ValuesAreCopied", testValuesAreCopied},
		{"LargeValue", testLargeValue},
		{"OddKeys", testOddKeys},
		{"Concurrent", testConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newCache(t), keyFunc(t))
		})
	}
	coordTests := []struct {
		name string
		fn   func(t *testing.T, c tokencache.Coordinator, key func(string) string)
	}{
		{"LeaseExclusive", testLeaseExclusive},
		{"LeaseExpires", testLeaseExpires},
		{"LeaseRelease", testLeaseRelease},
		{"StaleReleaseKeepsNewLease", testStaleRelease},
		{"LeasesArePerKey", testLeasesPerKey},
		{"DeleteIf", testDeleteIf},
	}
	for _, tt := range coordTests {
		t.Run("Coordinator/"+tt.name, func(t *testing.T) {
			c, ok := newCache(t).(tokencache.Coordinator)
			if !ok {
				t.Skip("the cache is not a tokencache.Coordinator")
			}
			tt.fn(t, c, keyFunc(t))
		})
	}
}

// keyFunc returns a function making keys unique to this run, so that suites against one shared server do not
// see each other's entries.
func keyFunc(t *testing.T) func(string) string {
	var b [8]byte
	rand.Read(b[:])
	prefix := "cachetest:" + hex.EncodeToString(b[:]) + ":" + t.Name() + ":"
	return func(s string) string { return prefix + s }
}

func mustGet(t *testing.T, c tokencache.Cache, key string, want []byte) {
	t.Helper()
	got, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v, want a value", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %q, want %q", key, trim(got), trim(want))
	}
}

func mustMiss(t *testing.T, c tokencache.Cache, key string) {
	t.Helper()
	got, err := c.Get(context.Background(), key)
	if !errors.Is(err, tokencache.ErrMiss) {
		t.Fatalf("Get(%q) = %q, %v; want ErrMiss", key, trim(got), err)
	}
}

func mustSet(t *testing.T, c tokencache.Cache, key string, value []byte, ttl time.Duration) {
	t.Helper()
	if err := c.Set(context.Background(), key, value, ttl); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func trim(b []byte) string {
	if len(b) > 64 {
		return fmt.Sprintf("%s… (%d bytes)", b[:64], len(b))
	}
	return string(b)
}

// eventually polls cond until it is true or expiryDeadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(expiryDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, expiryDeadline)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testGetMiss(t *testing.T, c tokencache.Cache, key func(string) string) {
	mustMiss(t, c, key("absent"))
}

func testSetGet(t *testing.T, c tokencache.Cache, key func(string) string) {
	mustSet(t, c, key("a"), []byte("value a"), time.Hour)
	mustSet(t, c, key("b"), []byte("value b"), time.Hour)
	mustGet(t, c, key("a"), []byte("value a"))
	mustGet(t, c, key("b"), []byte("value b"))
	// Binary values survive.
	bin := []byte{0, 1, 2, 0xff, 0xfe, '\n', '\r', 0}
	mustSet(t, c, key("bin"), bin, time.Hour)
	mustGet(t, c, key("bin"), bin)
}

func testOverwrite(t *testing.T, c tokencache.Cache, key func(string) string) {
	mustSet(t, c, key("k"), []byte("first"), time.Hour)
	mustSet(t, c, key("k"), []byte("second"), time.Hour)
	mustGet(t, c, key("k"), []byte("second"))
	// Overwriting also replaces the ttl.
	mustSet(t, c, key("k"), []byte("third"), shortTTL)
	eventually(t, "overwritten entry with a short ttl expires", func() bool {
		_, err := c.Get(context.Background(), key("k"))
		return errors.Is(err, tokencache.ErrMiss)
	})
}

func testExpiry(t *testing.T, c tokencache.Cache, key func(string) string) {
	mustSet(t, c, key("short"), []byte("short"), shortTTL)
	mustSet(t, c, key("long"), []byte("long"), time.Hour)
	eventually(t, "entry with a short ttl expires", func() bool {
		_, err := c.Get(context.Background(), key("short"))
		if err != nil && !errors.Is(err, tokencache.ErrMiss) {
			t.Fatalf("Get: %v", err)
		}
		return errors.Is(err, tokencache.ErrMiss)
	})
	mustGet(t, c, key("long"), []byte("long"))
	// An expired key can be set again.
	mustSet(t, c, key("short"), []byte("again"), time.Hour)
	mustGet(t, c, key("short"), []byte("again"))
}

func testValuesAreCopied(t *testing.T, c tokencache.Cache, key func(string) string) {
	v := []byte("original")
	mustSet(t, c, key("k"), v, time.Hour)
	copy(v, "MUTATED!")
	mustGet(t, c, key("k"), []byte("original"))
	got, err := c.Get(context.Background(), key("k"))
	if err != nil {
		t.Fatal(err)
	}
	copy(got, "MUTATED!")
	mustGet(t, c, key("k"), []byte("original"))
}

func testLargeValue(t *testing.T, c tokencache.Cache, key func(string) string) {
	v := make([]byte, 256<<10) // a sealed token with a large upstream response
	rand.Read(v)
	mustSet(t, c, key("large"), v, time.Hour)
	mustGet(t, c, key("large"), v)
}

func testOddKeys(t *testing.T, c tokencache.Cache, key func(string) string) {
	odd := []string{
		"with space", "new\nline", "colon:star*?[]{}", "unicode-トークン-토큰", "slash/and\\back",
		"quote\"'`", "percent%20", "tokencache:v1:AbC-_xyz", string(make([]byte, 300)),
	}
	for i, k := range odd {
		mustSet(t, c, key(k), []byte(fmt.Sprint("value ", i)), time.Hour)
	}
	for i, k := range odd {
		mustGet(t, c, key(k), []byte(fmt.Sprint("value ", i)))
	}
	// Keys that differ only in case are different keys.
	mustSet(t, c, key("Case"), []byte("upper"), time.Hour)
	mustSet(t, c, key("case"), []byte("lower"), time.Hour)
	mustGet(t, c, key("Case"), []byte("upper"))
	mustGet(t, c, key("case"), []byte("lower"))
}

func testConcurrent(t *testing.T, c tokencache.Cache, key func(string) string) {
	const workers, rounds = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			ctx := context.Background()
			own := key(fmt.Sprint("own-", w))
			for i := range rounds {
				want := []byte(fmt.Sprint(w, "-", i))
				if err := c.Set(ctx, own, want, time.Hour); err != nil {
					errs <- err
					return
				}
				got, err := c.Get(ctx, own)
				if err != nil || !bytes.Equal(got, want) {
					errs <- fmt.Errorf("worker %d: Get = %q, %v; want %q", w, got, err, want)
					return
				}
				// A key everyone writes: any complete value is fine.
				if err := c.Set(ctx, key("shared"), want, time.Hour); err != nil {
					errs <- err
					return
				}
				if _, err := c.Get(ctx, key("shared")); err != nil {
					errs <- fmt.Errorf("worker %d: Get shared: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func lease(t *testing.T, c tokencache.Coordinator, key string, ttl time.Duration) (func(), bool) {
	t.Helper()
	release, ok, err := c.Lease(context.Background(), key, ttl)
	if err != nil {
		t.Fatalf("Lease(%q): %v", key, err)
	}
	if ok && release == nil {
		t.Fatalf("Lease(%q) granted the lease with a nil release", key)
	}
	if release == nil {
		release = func() {}
	}
	return release, ok
}

func testLeaseExclusive(t *testing.T, c tokencache.Coordinator, key func(string) string) {
	const n = 50
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners int
		errs    []error
	)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			_, ok, err := c.Lease(context.Background(), key("lease"), time.Minute)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				winners++
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		t.Errorf("Lease: %v", err)
	}
	if winners != 1 {
		t.Fatalf("%d of %d concurrent Lease calls got the lease, want exactly 1", winners, n)
	}
}

func testLeaseExpires(t *testing.T, c tokencache.Coordinator, key func(string) string) {
	if _, ok := lease(t, c, key("l"), shortTTL); !ok {
		t.Fatal("first Lease: not ok")
	}
	if _, ok := lease(t, c, key("l"), time.Minute); ok {
		// Only possible if the machine stalled for longer than shortTTL; then the rest still holds.
		t.Log("second Lease succeeded at once: the first had already expired")
		return
	}
	eventually(t, "a lease that is never released expires", func() bool {
		_, ok := lease(t, c, key("l"), time.Minute)
		return ok
	})
}

func testLeaseRelease(t *testing.T, c tokencache.Coordinator, key func(string) string) {
	release, ok := lease(t, c, key("l"), time.Minute)
	if !ok {
		t.Fatal("first Lease: not ok")
	}
	if _, ok := lease(t, c, key("l"), time.Minute); ok {
		t.Fatal("second Lease while held: ok, want not ok")
	}
	release()
	release() // idempotent
	release2, ok := lease(t, c, key("l"), time.Minute)
	if !ok {
		t.Fatal("Lease after release: not ok")
	}
	release() // the first holder's release must not free the second holder's lease
	if _, ok := lease(t, c, key("l"), time.Minute); ok {
		t.Fatal("a stale release freed a later holder's lease")
	}
	release2()
	if _, ok := lease(t, c, key("l"), time.Minute); !ok {
		t.Fatal("Lease after the second release: not ok")
	}
}

func testStaleRelease(t *testing.T, c tokencache.Coordinator, key func(string) string) {
	releaseA, ok := lease(t, c, key("l"), shortTTL)
	if !ok {
		t.Fatal("first Lease: not ok")
	}
	// A's lease expires and B takes it.
	eventually(t, "lease expires", func() bool {
		_, ok := lease(t, c, key("l"), time.Minute)
		return ok
	})
	releaseA() // A comes back late: it must not release B's lease
	if _, ok := lease(t, c, key("l"), time.Minute); ok {
		t.Fatal("the release of an expired lease freed the next holder's lease")
	}
}

func testLeasesPerKey(t *testing.T, c tokencache.Coordinator, key func(string) string) {
	if _, ok := lease(t, c, key("a"), time.Minute); !ok {
		t.Fatal("Lease a: not ok")
	}
	if _, ok := lease(t, c, key("b"), time.Minute); !ok {
		t.Fatal("Lease b while a is held: not ok")
	}
	// A lease does not touch the value under the same key.
	mustSet(t, c, key("a"), []byte("v"), time.Hour)
	mustGet(t, c, key("a"), []byte("v"))
	if _, ok := lease(t, c, key("a"), time.Minute); ok {
		t.Fatal("Set released the lease on the same key")
	}
}

func testDeleteIf(t *testing.T, c tokencache.Coordinator, key func(string) string) {
	ctx := context.Background()
	mustSet(t, c, key("k"), []byte("current"), time.Hour)
	if err := c.DeleteIf(ctx, key("k"), []byte("stale")); err != nil {
		t.Fatalf("DeleteIf mismatch: %v", err)
	}
	mustGet(t, c, key("k"), []byte("current"))
	if err := c.DeleteIf(ctx, key("k"), []byte("curren")); err != nil { // a prefix is not a match
		t.Fatalf("DeleteIf prefix: %v", err)
	}
	mustGet(t, c, key("k"), []byte("current"))
	if err := c.DeleteIf(ctx, key("k"), []byte("current")); err != nil {
		t.Fatalf("DeleteIf match: %v", err)
	}
	mustMiss(t, c, key("k"))
	if err := c.DeleteIf(ctx, key("absent"), []byte("x")); err != nil {
		t.Fatalf("DeleteIf on a missing key: %v", err)
	}
	// Binary values compare byte for byte.
	bin := []byte{0, 0xff, 1, 0}
	mustSet(t, c, key("bin"), bin, time.Hour)
	if err := c.DeleteIf(ctx, key("bin"), []byte{0, 0xff, 1}); err != nil {
		t.Fatal(err)
	}
	mustGet(t, c, key("bin"), bin)
	if err := c.DeleteIf(ctx, key("bin"), bin); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, c, key("bin"))
}
