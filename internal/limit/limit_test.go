package limit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limit"
)

var (
	ctx = context.Background()
	t0  = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

// TestBurstThenEvenly: a rate of 10 a minute allows 10 at once, then one every 6 s, and says when.
func TestBurstThenEvenly(t *testing.T) {
	m := limit.NewMemory(0)
	rate := limit.Rate{Count: 10, Per: time.Minute}
	for i := range 10 {
		if ok, wait, _ := m.Allow(ctx, "k", rate, t0); !ok || wait != 0 {
			t.Fatalf("event %d of the burst: ok=%v wait=%v", i+1, ok, wait)
		}
	}
	steps := []struct {
		at       time.Duration
		wantOK   bool
		wantWait time.Duration
	}{
		{0, false, 6 * time.Second},
		{time.Second, false, 5 * time.Second},
		{6*time.Second - 1, false, 1},
		{6 * time.Second, true, 0},
		{6 * time.Second, false, 6 * time.Second},
		{time.Minute, true, 0}, // 54 s later: 9 more have been earned since the last
	}
	for _, s := range steps {
		ok, wait, err := m.Allow(ctx, "k", rate, t0.Add(s.at))
		if err != nil || ok != s.wantOK || wait != s.wantWait {
			t.Errorf("at +%v: ok=%v wait=%v err=%v, want ok=%v wait=%v", s.at, ok, wait, err, s.wantOK, s.wantWait)
		}
	}
	for i := range 8 {
		if ok, _, _ := m.Allow(ctx, "k", rate, t0.Add(time.Minute)); !ok {
			t.Fatalf("event %d earned back: refused", i+2)
		}
	}
	if ok, _, _ := m.Allow(ctx, "k", rate, t0.Add(time.Minute)); ok {
		t.Error("an 11th event within a minute was allowed")
	}
	if ok, _, _ := m.Allow(ctx, "other", rate, t0); !ok {
		t.Error("another key shares the allowance")
	}
}

// TestCheckTakesNothing: Check answers what Allow would, and any number of Checks leave the allowance whole.
func TestCheckTakesNothing(t *testing.T) {
	m := limit.NewMemory(0)
	rate := limit.Rate{Count: 2, Per: time.Second}
	for range 100 {
		if ok, _, _ := m.Check(ctx, "k", rate, t0); !ok {
			t.Fatal("Check refused a fresh key")
		}
	}
	m.Allow(ctx, "k", rate, t0)
	m.Allow(ctx, "k", rate, t0)
	okC, waitC, _ := m.Check(ctx, "k", rate, t0)
	okA, waitA, _ := m.Allow(ctx, "k", rate, t0)
	if okC || okA || waitC != waitA || waitC != 500*time.Millisecond {
		t.Errorf("Check: %v %v; Allow: %v %v; want both refused, 500ms", okC, waitC, okA, waitA)
	}
}

func TestNoLimit(t *testing.T) {
	m := limit.NewMemory(0)
	for _, r := range []limit.Rate{{}, {Count: -1, Per: time.Second}, {Count: 5}} {
		for range 100 {
			if ok, _, err := m.Allow(ctx, "k", r, t0); !ok || err != nil {
				t.Fatalf("%v refused: %v", r, err)
			}
		}
	}
	if m.Len() != 0 {
		t.Errorf("no limit kept %d keys", m.Len())
	}
}

// TestConformance drives random arrivals through several rates and checks GCRA's promise, which is a token
// bucket's: between any two allowed events i < j, no more than Count + (t_j - t_i) / (Per/Count) were allowed;
// and a refused event was told a wait after which it is allowed and before which it is not.
func TestConformance(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, rate := range []limit.Rate{{1, time.Second}, {3, time.Second}, {100, time.Minute}, {7, 90 * time.Second}} {
		m := limit.NewMemory(0)
		interval := rate.Per / time.Duration(rate.Count)
		now := t0
		var allowed []time.Time
		for range 1500 {
			now = now.Add(time.Duration(rng.Int64N(int64(2 * interval))))
			ok, wait, _ := m.Allow(ctx, "k", rate, now)
			if ok {
				allowed = append(allowed, now)
				continue
			}
			if ok, _, _ := m.Check(ctx, "k", rate, now.Add(wait-1)); ok {
				t.Fatalf("%v: told to wait %v, but allowed 1ns sooner", rate, wait)
			}
			if ok, _, _ := m.Check(ctx, "k", rate, now.Add(wait)); !ok {
				t.Fatalf("%v: told to wait %v, but refused then", rate, wait)
			}
		}
		for j := range allowed {
			for i := range j {
				if n, most := j-i+1, rate.Count+int(allowed[j].Sub(allowed[i])/interval); n > most {
					t.Fatalf("%v: %d events within %v, at most %d allowed", rate, n, allowed[j].Sub(allowed[i]), most)
				}
			}
		}
		if len(allowed) < 1500/3 {
			t.Errorf("%v: only %d of 1500 allowed at about half the rate", rate, len(allowed))
		}
	}
}

// TestBounded: a flood of distinct keys does not grow a Memory past its bound, and makes it forget keys with no
// state before keys that are being limited.
func TestBounded(t *testing.T) {
	m := limit.NewMemory(640)
	slow := limit.Rate{Count: 1, Per: time.Hour}
	for i := range 20 {
		m.Allow(ctx, fmt.Sprint("limited-", i), slow, t0)
	}
	fast := limit.Rate{Count: 1, Per: time.Second}
	for i := range 100_000 {
		m.Allow(ctx, fmt.Sprint("flood-", i), fast, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if n := m.Len(); n > 640 {
		t.Errorf("holds %d keys, bound 640", n)
	}
	for i := range 20 {
		if ok, _, _ := m.Allow(ctx, fmt.Sprint("limited-", i), slow, t0.Add(2*time.Minute)); ok {
			t.Errorf("limited-%d was forgotten in the flood", i)
		}
	}
	// Even a flood of keys that are all being limited stays within the bound.
	for i := range 10_000 {
		m.Allow(ctx, fmt.Sprint("slow-", i), slow, t0.Add(3*time.Minute))
	}
	if n := m.Len(); n > 640 {
		t.Errorf("holds %d keys, bound 640", n)
	}
}

func TestConcurrent(t *testing.T) {
	m := limit.NewMemory(0)
	rate := limit.Rate{Count: 100, Per: time.Minute}
	var got atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				if ok, _, _ := m.Allow(ctx, "shared", rate, t0); ok {
					got.Add(1)
				}
				m.Allow(ctx, fmt.Sprint(g, "-", i), rate, t0)
			}
		})
	}
	wg.Wait()
	if got.Load() != 100 {
		t.Errorf("800 concurrent events on one key: %d allowed, want 100", got.Load())
	}
}

func TestNoAllocations(t *testing.T) {
	m := limit.NewMemory(0)
	rate := limit.Rate{Count: 1_000_000, Per: time.Second}
	key := "client-0123456789"
	m.Allow(ctx, key, rate, t0)
	now := t0
	for name, f := range map[string]func(){
		"Allow":  func() { now = now.Add(time.Millisecond); m.Allow(ctx, key, rate, now) },
		"Check":  func() { m.Check(ctx, key, rate, now) },
		"Source": func() { limit.Source("192.0.2.1") },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s allocates %v times", name, n)
		}
	}
}

func TestSource(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                   "192.0.2.1",
		"192.0.2.1:4711":              "192.0.2.1",
		"::ffff:192.0.2.1":            "192.0.2.1",
		"[::ffff:192.0.2.1]:80":       "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":        "2001:db8:1:2::/64",
		"[2001:db8:1:2::9]:443":       "2001:db8:1:2::/64",
		"fe80::1%eth0":                "fe80::/64",
		"[fe80::1%eth0]:80":           "fe80::/64",
		"::1":                         "::/64",
		"not an address":              "not an address",
		"@":                           "@",
		"":                            "",
		"example.com:80":              "example.com:80",
		"2001:db8::1:2:3:4:5:6:7:8:9": "2001:db8::1:2:3:4:5:6:7:8:9",
	} {
		if got := limit.Source(in); got != want {
			t.Errorf("Source(%q) = %q, want %q", in, got, want)
		}
	}
}

func fail(th *limit.Throttle, client, addr string, now time.Time, n int) {
	for range n {
		th.Fail(ctx, client, addr, now)
	}
}

func allowed(t *testing.T, th *limit.Throttle, client, addr string, now time.Time) bool {
	t.Helper()
	ok, wait, err := th.Check(ctx, client, addr, now)
	if err != nil || ok != (wait == 0) {
		t.Fatalf("Check(%q, %q) = %v, %v, %v", client, addr, ok, wait, err)
	}
	return ok
}

// TestThrottlePerClient: ten wrong secrets for a client from an address stop the eleventh attempt from there,
// for six seconds, and nowhere else.
func TestThrottlePerClient(t *testing.T) {
	th := limit.NewThrottle(limit.NewMemory(0), limit.ThrottleOptions{})
	fail(th, "svc", "192.0.2.1:1000", t0, 9)
	if !allowed(t, th, "svc", "192.0.2.1:2000", t0) {
		t.Fatal("refused after 9 failures")
	}
	fail(th, "svc", "192.0.2.1:3000", t0, 1)
	if ok, wait, _ := th.Check(ctx, "svc", "192.0.2.1", t0); ok || wait != 6*time.Second {
		t.Errorf("after 10 failures: ok=%v wait=%v, want refused for 6s", ok, wait)
	}
	if !allowed(t, th, "svc", "192.0.2.2", t0) {
		t.Error("the client is refused from another address")
	}
	if !allowed(t, th, "other", "192.0.2.1", t0) {
		t.Error("another client is refused from the address")
	}
	if !allowed(t, th, "svc", "192.0.2.1", t0.Add(6*time.Second)) {
		t.Error("still refused after 6s")
	}
}

// TestThrottleSuccessCountsNothing: Check alone, as for a request whose secret is right, never throttles.
func TestThrottleSuccessCountsNothing(t *testing.T) {
	th := limit.NewThrottle(limit.NewMemory(0), limit.ThrottleOptions{})
	for i := range 10_000 {
		if !allowed(t, th, "svc", "192.0.2.1", t0.Add(time.Duration(i)*time.Microsecond)) {
			t.Fatalf("request %d refused", i)
		}
	}
}

// TestThrottlePerSource: failures spread over many client_ids from one address throttle the address.
func TestThrottlePerSource(t *testing.T) {
	th := limit.NewThrottle(limit.NewMemory(0), limit.ThrottleOptions{})
	for i := range 100 {
		fail(th, fmt.Sprint("guess-", i), "2001:db8::1", t0, 1)
	}
	if ok, wait, _ := th.Check(ctx, "fresh", "2001:db8::2", t0); ok || wait != 600*time.Millisecond {
		t.Errorf("same /64 after 100 failures: ok=%v wait=%v, want refused for 600ms", ok, wait)
	}
	if !allowed(t, th, "fresh", "2001:db8:0:1::1", t0) {
		t.Error("another /64 is refused")
	}
	if !allowed(t, th, "fresh", "192.0.2.1", t0) {
		t.Error("another address is refused")
	}
}

func TestThrottleOptions(t *testing.T) {
	th := limit.NewThrottle(limit.NewMemory(0), limit.ThrottleOptions{
		PerClient: limit.Rate{Count: 2, Per: time.Second},
		PerSource: limit.Rate{Count: -1},
	})
	fail(th, "svc", "192.0.2.1", t0, 2)
	if allowed(t, th, "svc", "192.0.2.1", t0) {
		t.Error("PerClient 2/s: a third attempt was allowed")
	}
	for i := range 1000 {
		fail(th, fmt.Sprint("guess-", i), "192.0.2.9", t0, 1)
	}
	if !allowed(t, th, "fresh", "192.0.2.9", t0) {
		t.Error("PerSource off: the address was throttled")
	}
}

// BenchmarkSuccessPath is what limits add to a token request that succeeds: the Throttle's Check and the
// client's Allow, on one hot client from many goroutines.
func BenchmarkSuccessPath(b *testing.B) {
	th := limit.NewThrottle(limit.NewMemory(0), limit.ThrottleOptions{})
	m := limit.NewMemory(0)
	rate := limit.Rate{Count: 1_000_000, Per: time.Second}
	var clock atomic.Int64 // 10 µs a request
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := t0.Add(time.Duration(clock.Add(10_000)))
			th.Check(ctx, "svc-multi", "192.0.2.1", now)
			m.Allow(ctx, "svc-multi", rate, now)
		}
	})
}

// TestThrottleEmptyClientID: failures without a client_id (API key exchanges) are counted once per source and once
// per (empty) client_id from it, under each rate: never twice under one key.
func TestThrottleEmptyClientID(t *testing.T) {
	th := limit.NewThrottle(limit.NewMemory(0), limit.ThrottleOptions{PerClient: limit.Rate{Count: 3, Per: time.Minute},
		PerSource: limit.Rate{Count: 100, Per: time.Minute}})
	for i := range 3 {
		if ok, _, _ := th.Check(ctx, "", "192.0.2.1", t0); !ok {
			t.Fatalf("refused after %d failures, want 3 allowed", i)
		}
		th.Fail(ctx, "", "192.0.2.1", t0)
	}
	if ok, _, _ := th.Check(ctx, "", "192.0.2.1", t0); ok {
		t.Error("allowed after 3 failures")
	}
}
