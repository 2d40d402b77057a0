package redislimit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/limit"
	"github.com/gatehouse/gatehouse/internal/redislimit"
)

var ctx = context.Background()

// redisAddr is the real Redis the tests run against: CI starts one on the default port.
func redisAddr() string {
	for _, env := range []string{"GATEHOUSE_TEST_REDIS", "GATEHOUSE_TEST_REDIS_ADDR"} {
		if addr := os.Getenv(env); addr != "" {
			return addr
		}
	}
	return "127.0.0.1:6379"
}

// newClient returns a client of the real Redis, failing (never skipping) the test when Redis cannot be reached.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: redisAddr()})
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is unreachable: %v (these tests need a real Redis: run `redis-server`, or set "+
			"GATEHOUSE_TEST_REDIS to its address)", redisAddr(), err)
	}
	return client
}

// testPrefix returns a key prefix no other test uses, and deletes every key under it when the test ends.
func testPrefix(t testing.TB, client redis.UniversalClient) string {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	prefix := "gatehouse-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		keys, err := client.Keys(ctx, prefix+"*").Result()
		if err != nil {
			t.Errorf("clean up %s*: %v", prefix, err)
			return
		}
		if len(keys) > 0 {
			if err := client.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("clean up %s*: %v", prefix, err)
			}
		}
	})
	return prefix
}

// patient are the Options of tests about what a Limiter answers rather than how fast: a loaded machine running
// the race detector must not turn an answer into a timeout.
func patient(prefix string) redislimit.Options {
	return redislimit.Options{Prefix: prefix, Timeout: 10 * time.Second}
}

// TestMatchesMemory: for several rates, a sequence of Allows, Checks and pauses gets the same answers from Redis as
// from a limit.Memory given the local clock, and the same retryAfter within what the calls' own durations blur.
func TestMatchesMemory(t *testing.T) {
	client := newClient(t)
	prefix := testPrefix(t, client)
	for _, rate := range []limit.Rate{
		{Count: 1, Per: 300 * time.Millisecond},
		{Count: 3, Per: time.Second},
		{Count: 10, Per: 2 * time.Second},
		{Count: 100, Per: time.Minute},
		{Count: 7, Per: 90 * time.Second},
		{Count: 2, Per: 24 * time.Hour},
	} {
		t.Run(rate.String(), func(t *testing.T) {
			t.Parallel()
			r := redislimit.New(client, patient(prefix+rate.String()+":"))
			m := limit.NewMemory(0)
			interval := rate.Per / time.Duration(rate.Count)
			var (
				step      int
				maxWindow time.Duration // the longest Redis call so far
				lastWait  time.Duration // Memory's last retryAfter
			)
			call := func(op string) {
				t.Helper()
				step++
				rf, mf := r.Allow, m.Allow
				if op == "Check" {
					rf, mf = r.Check, m.Check
				}
				before := time.Now()
				gotOK, gotWait, err := rf(ctx, "k", rate, time.Time{})
				window := time.Since(before)
				maxWindow = max(maxWindow, window)
				wantOK, wantWait, _ := mf(ctx, "k", rate, before)
				lastWait = wantWait
				// Redis read its clock within the call; what it measures since the call that set the TAT differs
				// from what the local clock does by at most the two calls' durations, and TIME's microseconds.
				tolerance := 2*maxWindow + 2*time.Microsecond + time.Millisecond
				if err != nil || gotOK != wantOK || (gotWait-wantWait).Abs() > tolerance {
					t.Fatalf("step %d, %s: Redis %v, %v, %v; Memory %v, %v (tolerance %v)",
						step, op, gotOK, gotWait, err, wantOK, wantWait, tolerance)
				}
			}
			pause := func(d time.Duration) {
				if interval <= time.Second {
					time.Sleep(d)
				}
			}

			call("Check")
			for range rate.Count + 2 {
				call("Allow")
			}
			call("Check")
			call("Allow")
			pause(lastWait + interval/2) // half an interval past the next event's
			call("Check")
			call("Allow")
			call("Allow")
			call("Check")
			pause(lastWait + interval/2)
			for range 3 {
				call("Allow")
			}
			if rate.Per <= 2*time.Second {
				pause(rate.Per + interval/2) // the whole burst is back, and no more
				for range rate.Count + 2 {
					call("Allow")
				}
			}
		})
	}
}

// TestStoredTAT: a key holds its TAT in Unix nanoseconds, expiring at that TAT; Check, refusals and no limit
// write nothing; a TAT written by another instance is read as such.
func TestStoredTAT(t *testing.T) {
	client := newClient(t)
	prefix := testPrefix(t, client)
	r := redislimit.New(client, patient(prefix))
	rate := limit.Rate{Count: 4, Per: 2 * time.Second} // one every 500ms

	for range 10 {
		r.Check(ctx, "k", rate, time.Time{})
		r.Allow(ctx, "free", limit.Rate{}, time.Time{})
	}
	if n, err := client.Exists(ctx, prefix+"k", prefix+"free").Result(); err != nil || n != 0 {
		t.Fatalf("after Checks and unlimited Allows: %d keys exist (%v), want none", n, err)
	}

	if ok, _, err := r.Allow(ctx, "k", rate, time.Time{}); !ok || err != nil {
		t.Fatalf("Allow = %v, %v", ok, err)
	}
	now, err := client.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	tat, err := client.Get(ctx, prefix+"k").Int64()
	if err != nil {
		t.Fatal(err)
	}
	if ahead := time.Duration(tat - now.UnixNano()); ahead <= 0 || ahead > 500*time.Millisecond {
		t.Errorf("stored TAT is %v ahead of Redis's clock, want (0, 500ms]", ahead)
	}
	if ttl, err := client.PTTL(ctx, prefix+"k").Result(); err != nil || ttl <= 0 || ttl > 501*time.Millisecond {
		t.Errorf("PTTL = %v, %v; want (0, 501ms]", ttl, err)
	}

	// Another instance set the TAT 5 s ahead: the next event is 5 s - 2 s + 500 ms away.
	if err := client.Set(ctx, prefix+"k", strconv.FormatInt(now.Add(5*time.Second).UnixNano(), 10), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	ok, wait, err := r.Allow(ctx, "k", rate, time.Time{})
	if want := 3500 * time.Millisecond; ok || err != nil || wait > want || wait < want-time.Second {
		t.Errorf("with a TAT 5 s ahead: Allow = %v, %v, %v; want refused for about %v", ok, wait, err, want)
	}
	if ttl, err := client.PTTL(ctx, prefix+"k").Result(); err != nil || ttl < 50*time.Second {
		t.Errorf("a refusal rewrote the key: PTTL = %v, %v", ttl, err)
	}
	// A TAT long past, or not a TAT, is no state.
	for _, v := range []string{"1", "0", "garbage", strconv.FormatInt(now.Add(-time.Hour).UnixNano(), 10)} {
		client.Set(ctx, prefix+"k", v, time.Minute)
		for i := range rate.Count {
			if ok, _, err := r.Allow(ctx, "k", rate, time.Time{}); !ok || err != nil {
				t.Errorf("stored %q: event %d refused (%v)", v, i+1, err)
			}
		}
	}

	// A key vanishes once its TAT has passed.
	fast := limit.Rate{Count: 1, Per: 20 * time.Millisecond}
	r.Allow(ctx, "brief", fast, time.Time{})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if n, err := client.Exists(ctx, prefix+"brief").Result(); err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a key with a TAT 20 ms ahead still exists after 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKeys: keys are the prefix and the key; a long key is bounded and still has an allowance of its own.
func TestKeys(t *testing.T) {
	client := newClient(t)
	prefix := testPrefix(t, client)
	a := redislimit.New(client, patient(prefix+"a:"))
	b := redislimit.New(client, patient(prefix+"b:"))
	rate := limit.Rate{Count: 1, Per: time.Hour}
	a.Allow(ctx, "k\x00192.0.2.1", rate, time.Time{})
	if n, err := client.Exists(ctx, prefix+"a:k\x00192.0.2.1").Result(); err != nil || n != 1 {
		t.Errorf("key under the prefix: exists %d, %v", n, err)
	}
	if ok, _, _ := b.Allow(ctx, "k\x00192.0.2.1", rate, time.Time{}); !ok {
		t.Error("another prefix shares the allowance")
	}

	long1 := strings.Repeat("x", 300) + "1"
	long2 := strings.Repeat("x", 300) + "2"
	exact := strings.Repeat("y", 256)
	for _, k := range []string{long1, long2, exact} {
		if ok, _, err := a.Allow(ctx, k, rate, time.Time{}); !ok || err != nil {
			t.Fatalf("first Allow of a %d-byte key = %v, %v", len(k), ok, err)
		}
		if ok, _, _ := a.Allow(ctx, k, rate, time.Time{}); ok {
			t.Errorf("second Allow of a %d-byte key was allowed", len(k))
		}
	}
	keys, err := client.Keys(ctx, prefix+"a:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	lens := map[int]int{}
	for _, k := range keys {
		lens[len(k)-len(prefix+"a:")]++
	}
	if want := map[int]int{len("k\x00192.0.2.1"): 1, 256: 1, 257: 2}; fmt.Sprint(lens) != fmt.Sprint(want) {
		t.Errorf("stored key lengths (without prefix) %v, want %v", lens, want)
	}
}

// TestRedisClock: the caller's clock is ignored, so instances whose clocks are years apart share one allowance.
func TestRedisClock(t *testing.T) {
	client := newClient(t)
	prefix := testPrefix(t, client)
	rate := limit.Rate{Count: 2, Per: time.Hour}
	past := redislimit.New(newClient(t), patient(prefix))
	future := redislimit.New(newClient(t), patient(prefix))
	past.Allow(ctx, "k", rate, time.Unix(0, 0))
	future.Allow(ctx, "k", rate, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	for name, r := range map[string]*redislimit.Limiter{"past": past, "future": future} {
		if ok, wait, err := r.Check(ctx, "k", rate, time.Now()); ok || err != nil || wait < 29*time.Minute {
			t.Errorf("%s: Check = %v, %v, %v; want refused for about 30m", name, ok, wait, err)
		}
	}
}

// TestConcurrentInstances: goroutines over several clients, as if several instances, hammering one key get no
// more than GCRA allows in the time they took: Count + elapsed/interval, plus one.
func TestConcurrentInstances(t *testing.T) {
	client := newClient(t)
	prefix := testPrefix(t, client)
	const instances, goroutines = 4, 16
	rate := limit.Rate{Count: 20, Per: 200 * time.Millisecond} // one every 10ms
	interval := rate.Per / time.Duration(rate.Count)
	var limiters []*redislimit.Limiter
	for range instances {
		limiters = append(limiters, redislimit.New(newClient(t), patient(prefix)))
	}
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(600 * time.Millisecond)
	for g := range goroutines {
		wg.Go(func() {
			r := limiters[g%instances]
			for time.Now().Before(stop) {
				ok, wait, err := r.Allow(ctx, "hot", rate, time.Time{})
				switch {
				case err != nil:
					t.Error(err)
					return
				case ok:
					allowed.Add(1)
				case wait <= 0 || wait > interval:
					t.Errorf("refused with retryAfter %v, want (0, %v]", wait, interval)
					return
				default:
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	most := int64(rate.Count) + int64(elapsed/interval) + 1
	t.Logf("%d allowed, %d refused in %v (at most %d)", allowed.Load(), refused.Load(), elapsed, most)
	if allowed.Load() > most {
		t.Errorf("%d allowed in %v, GCRA allows at most %d", allowed.Load(), elapsed, most)
	}
	if allowed.Load() < int64(rate.Count) {
		t.Errorf("%d allowed, fewer than the burst of %d", allowed.Load(), rate.Count)
	}
	if refused.Load() == 0 {
		t.Error("nothing was refused: the key was not hammered")
	}
}

// closedAddr returns a loopback address where nothing listens: connections are refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// returnsWithin fails the test unless f returns within d: a Redis that is gone or hung must not hang callers.
// The bound is generous; what it tells apart is the Limiter's timeout (milliseconds) from the client's (seconds).
func returnsWithin(t *testing.T, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("call did not return within %v", d)
		return nil
	}
}

// TestUnreachable: with nothing listening, every call fails, and a Fallback over it answers from its Memory,
// says it is degraded, and logs that once.
func TestUnreachable(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: closedAddr(t)})
	defer client.Close()
	r := redislimit.New(client, redislimit.Options{})
	rate := limit.Rate{Count: 3, Per: time.Minute}
	for name, f := range map[string]func(context.Context, string, limit.Rate, time.Time) (bool, time.Duration, error){
		"Allow": r.Allow, "Check": r.Check,
	} {
		err := returnsWithin(t, 2*time.Second, func() error { _, _, err := f(ctx, "k", rate, time.Now()); return err })
		if err == nil {
			t.Errorf("%s with nothing listening: err = nil", name)
		}
	}

	log, logs := newLogger()
	local := limit.NewMemory(0)
	f := limit.NewFallback(r, local, limit.FallbackOptions{Logger: log})
	for i := range 20 {
		ok, _, err := f.Allow(ctx, "k", rate, time.Now())
		if err != nil || ok != (i < rate.Count) {
			t.Fatalf("event %d: Allow = %v, %v; want the local Memory's answer", i+1, ok, err)
		}
	}
	if local.Len() != 1 {
		t.Errorf("local Memory holds %d keys, want 1", local.Len())
	}
	st := f.Status()
	if st.Shared || st.Err == nil || st.Since.IsZero() {
		t.Errorf("Status = %+v, want degraded with an error", st)
	}
	if got := logs.transitions(); fmt.Sprint(got) != "[degraded]" {
		t.Errorf("logged changes %v, want [degraded]; log:\n%s", got, logs)
	}
}

// logBuffer collects what a logger writes.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := new(logBuffer)
	return slog.New(slog.NewTextHandler(b, nil)), b
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// transitions returns a Fallback's log messages about changes, in order: "degraded" or "shared".
func (b *logBuffer) transitions() []string {
	var got []string
	for line := range strings.Lines(b.String()) {
		switch {
		case strings.Contains(line, "rate limits: Redis unreachable, falling back to per-instance limits"):
			got = append(got, "degraded")
		case strings.Contains(line, "rate limits: shared again"):
			got = append(got, "shared")
		}
	}
	return got
}

// TestHung: a Redis that accepts connections and never answers, behind a client that would wait 30 s for it,
// costs a call its Timeout, not the client's.
func TestHung(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer wg.Wait()
	defer close(stop)
	defer l.Close()
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { io.Copy(io.Discard, conn) })
			wg.Go(func() { <-stop; conn.Close() })
		}
	})
	// Both kinds of client: one that ignores deadlines in socket I/O (the Limiter bounds it with a goroutine), and
	// one that honours them (called directly).
	for _, honour := range []bool{false, true} {
		client := redis.NewClient(&redis.Options{Addr: l.Addr().String(), DialTimeout: 30 * time.Second,
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxRetries: -1, ContextTimeoutEnabled: honour})
		defer client.Close()
		r := redislimit.New(client, redislimit.Options{})
		rate := limit.Rate{Count: 3, Per: time.Minute}
		checkAll := func(ctx context.Context, key string, rate limit.Rate, now time.Time) (bool, time.Duration, error) {
			return r.CheckAll(ctx, []limit.Want{{Key: key, Rate: rate}}, now)
		}
		for _, f := range []func(context.Context, string, limit.Rate, time.Time) (bool, time.Duration, error){r.Allow, r.Check, checkAll} {
			err := returnsWithin(t, 2*time.Second, func() error { _, _, err := f(ctx, "k", rate, time.Now()); return err })
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("ContextTimeoutEnabled %v: err = %v, want context.DeadlineExceeded", honour, err)
			}
		}
	}
}

// BenchmarkRedisAllow: Allow from 8×GOMAXPROCS goroutines over 64 clients, through one connection pool.
func BenchmarkRedisAllow(b *testing.B) {
	client := newClient(b)
	r := redislimit.New(client, redislimit.Options{Prefix: testPrefix(b, client), Timeout: time.Second})
	rate := limit.Rate{Count: 1_000_000, Per: time.Second}
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprint("client-", i)
	}
	r.Allow(ctx, keys[0], rate, time.Time{}) // loads the script
	b.SetParallelism(8)                      // many token requests in flight, as on a busy instance
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if _, _, err := r.Allow(ctx, keys[i%len(keys)], rate, time.Time{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestCheckAll: CheckAll answers for several keys in one script as limit.CheckAll over Checks would — refused when
// any key is, with the longest wait — ignores wants without a limit, and writes nothing.
func TestCheckAll(t *testing.T) {
	client := newClient(t)
	prefix := testPrefix(t, client)
	r := redislimit.New(client, patient(prefix))
	a := limit.Want{Key: "{src}", Rate: limit.Rate{Count: 2, Per: time.Minute}}    // one every 30 s
	b := limit.Want{Key: "{src}svc", Rate: limit.Rate{Count: 3, Per: time.Minute}} // one every 20 s
	none := limit.Want{Key: "{src}none", Rate: limit.Rate{Count: -1}}
	near := func(got, want time.Duration) bool { return (got - want).Abs() < 2*time.Second }

	if ok, wait, err := r.CheckAll(ctx, []limit.Want{a, b, none}, time.Time{}); !ok || wait != 0 || err != nil {
		t.Fatalf("fresh keys: %v %v %v; want allowed", ok, wait, err)
	}
	if n, _ := client.Exists(ctx, prefix+a.Key, prefix+b.Key, prefix+none.Key).Result(); n != 0 {
		t.Fatalf("CheckAll wrote %d keys", n)
	}
	for range 2 {
		r.Allow(ctx, a.Key, a.Rate, time.Time{})
	}
	if ok, wait, err := r.CheckAll(ctx, []limit.Want{a, b}, time.Time{}); ok || !near(wait, 30*time.Second) || err != nil {
		t.Errorf("a exhausted: %v %v %v; want refused for about 30s", ok, wait, err)
	}
	if ok, _, err := r.CheckAll(ctx, []limit.Want{b, none}, time.Time{}); !ok || err != nil {
		t.Errorf("b alone: %v %v; want allowed", ok, err)
	}
	for range 3 {
		r.Allow(ctx, b.Key, b.Rate, time.Time{})
	}
	if ok, wait, err := r.CheckAll(ctx, []limit.Want{b, a}, time.Time{}); ok || !near(wait, 30*time.Second) || err != nil {
		t.Errorf("both exhausted: %v %v %v; want refused for the longer wait, about 30s", ok, wait, err)
	}
	if ok, wait, err := r.CheckAll(ctx, []limit.Want{b}, time.Time{}); ok || !near(wait, 20*time.Second) || err != nil {
		t.Errorf("b exhausted: %v %v %v; want refused for about 20s", ok, wait, err)
	}
	if ok, _, err := r.CheckAll(ctx, []limit.Want{none}, time.Time{}); !ok || err != nil {
		t.Errorf("no limit: %v %v; want allowed", ok, err)
	}
}

// TestThrottleShared is the attack the shared throttle stops: a guesser spreading wrong secrets over the instances
// behind a load balancer is throttled by their sum, not by each instance's count — and a client whose source is
// throttled is refused on every instance, before its secret is looked at.
func TestThrottleShared(t *testing.T) {
	prefix := testPrefix(t, newClient(t))
	opts := limit.ThrottleOptions{PerClient: limit.Rate{Count: 6, Per: time.Minute}, PerSource: limit.Rate{Count: 100, Per: time.Minute}}
	var instances []*limit.Throttle
	for range 3 {
		client := newClient(t) // one connection pool per instance
		shared := limit.NewFallback(redislimit.New(client, patient(prefix)), limit.NewMemory(0), limit.FallbackOptions{})
		instances = append(instances, limit.NewThrottle(shared, opts))
	}
	now := time.Now()
	for i := range 6 {
		th := instances[i%3]
		if ok, _, err := th.Check(ctx, "billing", "192.0.2.7", now); !ok || err != nil {
			t.Fatalf("guess %d: refused before the limit: %v %v", i, ok, err)
		}
		if err := th.Fail(ctx, "billing", "192.0.2.7", now); err != nil {
			t.Fatal(err)
		}
	}
	for i, th := range instances {
		if ok, wait, _ := th.Check(ctx, "billing", "192.0.2.7", now); ok || wait <= 0 {
			t.Errorf("instance %d after 6 failures spread over 3 instances: %v %v; want throttled", i, ok, wait)
		}
		if ok, _, _ := th.Check(ctx, "billing", "192.0.2.8", now); !ok {
			t.Errorf("instance %d: another source is throttled too", i)
		}
	}
}
