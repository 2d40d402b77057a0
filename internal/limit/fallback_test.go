package limit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limit"
)

var errDown = errors.New("shared limiter down")

// switchable is a shared Limiter for tests: a Memory that fails with err while err is set, and whose calls wait
// for hold to close while hold is set.
type switchable struct {
	*limit.Memory
	calls atomic.Int64

	mu      sync.Mutex
	err     error
	hold    chan struct{}
	entered chan struct{} // while hold is set, each call sends here before it waits
}

func newSwitchable() *switchable { return &switchable{Memory: limit.NewMemory(0)} }

func (s *switchable) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// holdCalls makes calls wait until the returned release is called; entered receives one value per waiting call.
func (s *switchable) holdCalls() (entered <-chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hold, ent := make(chan struct{}), make(chan struct{}, 100)
	s.hold, s.entered = hold, ent
	return ent, func() {
		s.mu.Lock()
		s.hold = nil
		s.mu.Unlock()
		close(hold)
	}
}

func (s *switchable) answer() error {
	s.calls.Add(1)
	s.mu.Lock()
	hold, entered := s.hold, s.entered
	s.mu.Unlock()
	if hold != nil {
		entered <- struct{}{}
		<-hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *switchable) Allow(ctx context.Context, key string, rate limit.Rate, now time.Time) (bool, time.Duration, error) {
	if err := s.answer(); err != nil {
		return false, 0, err
	}
	return s.Memory.Allow(ctx, key, rate, now)
}

func (s *switchable) Check(ctx context.Context, key string, rate limit.Rate, now time.Time) (bool, time.Duration, error) {
	if err := s.answer(); err != nil {
		return false, 0, err
	}
	return s.Memory.Check(ctx, key, rate, now)
}

// logBuffer collects what a logger writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
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

// transitions returns the Fallback's log messages about changes, in order: "degraded" or "shared".
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

func newLogger() (*slog.Logger, *logBuffer) {
	b := new(logBuffer)
	return slog.New(slog.NewTextHandler(b, nil)), b
}

func wantTransitions(t *testing.T, logs *logBuffer, want ...string) {
	t.Helper()
	if got := logs.transitions(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("logged changes %v, want %v; log:\n%s", got, want, logs)
	}
}

// TestFallbackShared: while the shared Limiter answers, its answers are the Fallback's and the local Memory is
// not used.
func TestFallbackShared(t *testing.T) {
	shared, local := newSwitchable(), limit.NewMemory(0)
	log, logs := newLogger()
	f := limit.NewFallback(shared, local, limit.FallbackOptions{Logger: log})
	rate := limit.Rate{Count: 2, Per: time.Second}
	shared.Allow(ctx, "k", rate, t0) // another instance took one
	if ok, _, err := f.Allow(ctx, "k", rate, t0); !ok || err != nil {
		t.Fatalf("Allow = %v, %v; want allowed", ok, err)
	}
	if ok, wait, err := f.Check(ctx, "k", rate, t0); ok || wait != 500*time.Millisecond || err != nil {
		t.Errorf("Check after the shared allowance is used = %v, %v, %v; want refused for 500ms", ok, wait, err)
	}
	if ok, wait, err := f.Allow(ctx, "k", rate, t0); ok || wait != 500*time.Millisecond || err != nil {
		t.Errorf("Allow after the shared allowance is used = %v, %v, %v; want refused for 500ms", ok, wait, err)
	}
	if ok, _, _ := f.Allow(ctx, "k", limit.Rate{}, t0); !ok {
		t.Error("no limit refused")
	}
	if local.Len() != 0 {
		t.Errorf("local Memory holds %d keys while shared", local.Len())
	}
	if st := f.Status(); !st.Shared || !st.Since.IsZero() || st.Err != nil {
		t.Errorf("Status = %+v, want shared since ever", st)
	}
	wantTransitions(t, logs)
}

// TestFallbackDegradesAndRecovers: when the shared Limiter fails, the local Memory answers, the shared one is
// tried once a RetryEvery, each change is logged once, and sharing resumes when the shared Limiter is back.
func TestFallbackDegradesAndRecovers(t *testing.T) {
	shared, local := newSwitchable(), limit.NewMemory(0)
	log, logs := newLogger()
	f := limit.NewFallback(shared, local, limit.FallbackOptions{Logger: log, RetryEvery: time.Second})
	rate := limit.Rate{Count: 10, Per: time.Second}
	for range 10 {
		f.Allow(ctx, "k", rate, t0) // the shared allowance is used up
	}

	shared.setErr(errDown)
	down := t0.Add(time.Millisecond)
	// The failing call answers from the local Memory, which has seen nothing of "k" yet.
	if ok, _, err := f.Allow(ctx, "k", rate, down); !ok || err != nil {
		t.Fatalf("Allow as the shared Limiter fails = %v, %v; want allowed by the local Memory", ok, err)
	}
	if st := f.Status(); st.Shared || !st.Since.Equal(down) || !errors.Is(st.Err, errDown) {
		t.Errorf("Status = %+v, want degraded since %v with errDown", st, down)
	}
	// 10 s at 1000 calls a second: every answer is the local Memory's, and the shared Limiter is tried once a
	// second.
	ref := limit.NewMemory(0) // what the local Memory answers
	ref.Allow(ctx, "k", rate, down)
	before := shared.calls.Load()
	for i := range 10_000 {
		now := down.Add(time.Duration(i) * time.Millisecond)
		if i%7 == 0 {
			ok, wait, err := f.Check(ctx, "k", rate, now)
			wantOK, wantWait, _ := ref.Check(ctx, "k", rate, now)
			if ok != wantOK || wait != wantWait || err != nil {
				t.Fatalf("Check at +%v while degraded = %v, %v, %v; want the local %v, %v", now.Sub(down), ok, wait, err, wantOK, wantWait)
			}
		}
		ok, wait, err := f.Allow(ctx, "k", rate, now)
		wantOK, wantWait, _ := ref.Allow(ctx, "k", rate, now)
		if ok != wantOK || wait != wantWait || err != nil {
			t.Fatalf("Allow at +%v while degraded = %v, %v, %v; want the local %v, %v", now.Sub(down), ok, wait, err, wantOK, wantWait)
		}
	}
	if tries := shared.calls.Load() - before; tries != 9 {
		t.Errorf("the shared Limiter was tried %d times in 10 s, want once a second after the first failure", tries)
	}
	if local.Len() != 1 {
		t.Errorf("local Memory holds %d keys, want 1", local.Len())
	}
	if st := f.Status(); st.Shared || !st.Since.Equal(down) || !errors.Is(st.Err, errDown) {
		t.Errorf("Status = %+v, want degraded since %v with errDown", st, down)
	}
	wantTransitions(t, logs, "degraded")

	// Back: the first call after RetryEvery tries it, and its answer is the shared one.
	shared.setErr(nil)
	last := down.Add(9999 * time.Millisecond)
	if _, _, err := f.Allow(ctx, "k", rate, last); err != nil {
		t.Fatal(err)
	}
	if st := f.Status(); st.Shared {
		t.Fatalf("shared again before RetryEvery passed: %+v", st)
	}
	up := last.Add(time.Second)
	calls := shared.calls.Load()
	if _, _, err := f.Check(ctx, "k", rate, up); err != nil {
		t.Fatal(err)
	}
	if shared.calls.Load() != calls+1 {
		t.Error("the shared Limiter was not tried after RetryEvery")
	}
	if st := f.Status(); !st.Shared || !st.Since.Equal(up) || st.Err != nil {
		t.Errorf("Status = %+v, want shared since %v", st, up)
	}
	for range 100 {
		f.Allow(ctx, "other", rate, up)
	}
	if local.Len() != 1 {
		t.Errorf("local Memory holds %d keys, want only the one from while degraded", local.Len())
	}
	wantTransitions(t, logs, "degraded", "shared")

	// Down again, and the clock goes back an hour: the shared Limiter is tried at once rather than in an hour.
	shared.setErr(errDown)
	f.Allow(ctx, "k", rate, up.Add(time.Hour))
	shared.setErr(nil)
	f.Allow(ctx, "k", rate, up)
	if st := f.Status(); !st.Shared {
		t.Errorf("after the clock went back: Status = %+v, want shared", st)
	}
	wantTransitions(t, logs, "degraded", "shared", "degraded", "shared")
}

// TestFallbackOneProbeAtATime: while a try of the shared Limiter is in flight, other calls answer locally at once,
// however late it is.
func TestFallbackOneProbeAtATime(t *testing.T) {
	shared, local := newSwitchable(), limit.NewMemory(0)
	log, logs := newLogger()
	f := limit.NewFallback(shared, local, limit.FallbackOptions{Logger: log, RetryEvery: time.Second})
	rate := limit.Rate{Count: 1, Per: time.Hour}
	shared.setErr(errDown)
	f.Allow(ctx, "k", rate, t0)
	shared.setErr(nil)

	entered, release := shared.holdCalls()
	probe := make(chan bool)
	go func() {
		ok, _, _ := f.Allow(ctx, "k", rate, t0.Add(time.Second))
		probe <- ok
	}()
	<-entered
	calls := shared.calls.Load()
	for i := range 100 {
		if ok, _, err := f.Allow(ctx, "k", rate, t0.Add(time.Duration(i+2)*time.Second)); ok || err != nil {
			t.Fatalf("Allow during the probe = %v, %v; want refused by the local Memory", ok, err)
		}
	}
	if n := shared.calls.Load() - calls; n != 0 {
		t.Errorf("%d more calls reached the shared Limiter while one was trying it", n)
	}
	release()
	if ok := <-probe; !ok {
		t.Error("the probe's answer was not the shared Limiter's")
	}
	if st := f.Status(); !st.Shared {
		t.Errorf("Status after the probe succeeded = %+v, want shared", st)
	}
	wantTransitions(t, logs, "degraded", "shared")
}

// TestFallbackStaleOutcome: a call's outcome changes nothing when the state changed while it was in flight: a
// slow failure from before an outage and recovery does not start another outage.
func TestFallbackStaleOutcome(t *testing.T) {
	shared, local := newSwitchable(), limit.NewMemory(0)
	log, logs := newLogger()
	f := limit.NewFallback(shared, local, limit.FallbackOptions{Logger: log, RetryEvery: time.Second})
	rate := limit.Rate{Count: 5, Per: time.Second}

	entered, release := shared.holdCalls()
	slow := make(chan error)
	go func() {
		_, _, err := f.Allow(ctx, "k", rate, t0)
		slow <- err
	}()
	<-entered // a call began while shared, and waits

	shared.mu.Lock()
	shared.hold, shared.err = nil, errDown
	shared.mu.Unlock()
	f.Allow(ctx, "k", rate, t0) // fails: degraded
	shared.setErr(nil)
	f.Allow(ctx, "k", rate, t0.Add(time.Second)) // probes: shared again

	shared.setErr(errDown)
	release() // the first call now fails
	if err := <-slow; err != nil {
		t.Errorf("slow call: %v", err)
	}
	if st := f.Status(); !st.Shared {
		t.Errorf("Status after a stale failure = %+v, want shared", st)
	}
	wantTransitions(t, logs, "degraded", "shared")
}

// TestFallbackCallerGaveUp: an error because the caller's context ended says nothing about the shared Limiter.
func TestFallbackCallerGaveUp(t *testing.T) {
	shared, local := newSwitchable(), limit.NewMemory(0)
	log, logs := newLogger()
	f := limit.NewFallback(shared, local, limit.FallbackOptions{Logger: log})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	shared.setErr(context.Canceled)
	if ok, _, err := f.Allow(cctx, "k", limit.Rate{Count: 1, Per: time.Second}, t0); !ok || err != nil {
		t.Errorf("Allow = %v, %v; want allowed by the local Memory", ok, err)
	}
	if st := f.Status(); !st.Shared {
		t.Errorf("Status = %+v, want shared", st)
	}
	wantTransitions(t, logs)
}

// TestFallbackConcurrent: calls from many goroutines while the shared Limiter goes down and up never fail, and
// the log has one line per change, alternating.
func TestFallbackConcurrent(t *testing.T) {
	shared, local := newSwitchable(), limit.NewMemory(0)
	log, logs := newLogger()
	f := limit.NewFallback(shared, local, limit.FallbackOptions{Logger: log, RetryEvery: time.Millisecond})
	rate := limit.Rate{Count: 100, Per: time.Second}
	var clock atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				now := t0.Add(time.Duration(clock.Add(int64(50 * time.Microsecond))))
				if _, _, err := f.Allow(ctx, fmt.Sprint("k", i%3), rate, now); err != nil {
					t.Errorf("Allow: %v", err)
					return
				}
				if g == 0 && i%100 == 0 {
					if i%200 == 0 {
						shared.setErr(errDown)
					} else {
						shared.setErr(nil)
					}
				}
				f.Status()
			}
		})
	}
	wg.Wait()
	got := logs.transitions()
	if len(got) < 2 {
		t.Errorf("%d changes logged, want several", len(got))
	}
	for i, s := range got {
		if want := []string{"degraded", "shared"}[i%2]; s != want {
			t.Fatalf("change %d logged as %q, want %q: %v", i, s, want, got)
		}
	}
	if st := f.Status(); st.Shared != (len(got)%2 == 0) {
		t.Errorf("Status = %+v after %d changes", st, len(got))
	}
}

// BenchmarkMemoryAllow: Allow from many goroutines over 64 clients.
func BenchmarkMemoryAllow(b *testing.B) {
	m := limit.NewMemory(0)
	rate := limit.Rate{Count: 1_000_000, Per: time.Second}
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprint("client-", i)
	}
	var clock atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			m.Allow(ctx, keys[i%len(keys)], rate, t0.Add(time.Duration(clock.Add(1000))))
		}
	})
}

// BenchmarkFallbackAllow is what a Fallback adds while shared, over a Memory standing in for the shared Limiter.
func BenchmarkFallbackAllow(b *testing.B) {
	f := limit.NewFallback(limit.NewMemory(0), limit.NewMemory(0), limit.FallbackOptions{})
	rate := limit.Rate{Count: 1_000_000, Per: time.Second}
	var clock atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f.Allow(ctx, "client-0123456789", rate, t0.Add(time.Duration(clock.Add(1000))))
		}
	})
}

// TestFallbackCheckAll: CheckAll asks the shared Limiter while it answers, the local Memory once it fails, and
// refuses when any key is refused, with the longest wait.
func TestFallbackCheckAll(t *testing.T) {
	shared := newSwitchable()
	log, _ := newLogger()
	f := limit.NewFallback(shared, limit.NewMemory(0), limit.FallbackOptions{Logger: log})
	a := limit.Want{Key: "a", Rate: limit.Rate{Count: 1, Per: time.Minute}}
	b := limit.Want{Key: "b", Rate: limit.Rate{Count: 1, Per: 2 * time.Minute}}
	shared.Allow(ctx, a.Key, a.Rate, t0)
	shared.Allow(ctx, b.Key, b.Rate, t0)
	if ok, wait, err := f.CheckAll(ctx, []limit.Want{a, b}, t0); ok || wait != 2*time.Minute || err != nil {
		t.Errorf("shared: %v %v %v; want refused for 2m, the longer wait", ok, wait, err)
	}
	shared.setErr(errors.New("redis down"))
	if ok, wait, err := f.CheckAll(ctx, []limit.Want{a, b}, t0); !ok || wait != 0 || err != nil {
		t.Errorf("fallen back on an empty Memory: %v %v %v; want allowed", ok, wait, err)
	}
	if f.Status().Shared {
		t.Error("Status says shared after the shared Limiter failed")
	}
}
