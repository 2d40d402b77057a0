package limit

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRetryEvery is how often a degraded Fallback tries its shared Limiter again unless told otherwise.
const DefaultRetryEvery = time.Second

// FallbackOptions configure a Fallback. The zero value is ready to use.
type FallbackOptions struct {
	// RetryEvery is how often, while degraded, one call tries the shared Limiter again (default
	// DefaultRetryEvery). Meanwhile every call answers from the local Memory without waiting on the shared one.
	RetryEvery time.Duration
	// Logger receives one line each time the Fallback stops or starts sharing limits (default slog.Default()).
	Logger *slog.Logger
}

// Fallback is a Limiter that shares limits across instances while it can and limits each instance on its own
// while it cannot. It asks a shared Limiter (Redis) and, whenever that fails, answers from a local Memory
// instead and becomes degraded: while degraded, every call answers from the Memory at once, except that one call
// at a time, at most every RetryEvery, tries the shared Limiter again; when that succeeds, the Fallback shares
// limits again. Each instance then allows a key its whole rate, so a fleet of N allows up to N times the rate
// until the shared Limiter is back.
//
// A call whose ctx ended (the caller gave up) is answered locally and changes nothing: it says nothing about the
// shared Limiter. Only a call's own outcome changes the state, and only if no other call changed it meanwhile, so
// a slow answer from before an outage or a recovery cannot undo it.
//
// It logs once on each change, never per call, and reports its state with Status. Its clock is the now the
// callers pass. It is safe for concurrent use, and starts no goroutine.
type Fallback struct {
	shared     Limiter
	local      *Memory
	retryEvery time.Duration
	log        *slog.Logger

	// state is the number of changes between shared and degraded so far: even while shared, odd while
	// degraded. A call's outcome changes the state only if no other call has changed it since the call began.
	state atomic.Uint64

	mu        sync.Mutex // guards the rest, and every change of state
	since     time.Time  // when the current state began
	lastErr   error      // while degraded, the shared Limiter's last error
	nextProbe time.Time  // while degraded, when the shared Limiter may be tried again
	probing   bool       // while degraded, a call is trying the shared Limiter
}

var (
	_ Limiter      = (*Fallback)(nil)
	_ MultiChecker = (*Fallback)(nil)
)

// NewFallback returns a Fallback that shares limits through shared and falls back on local. local should be used
// by nothing else.
func NewFallback(shared Limiter, local *Memory, o FallbackOptions) *Fallback {
	if o.RetryEvery <= 0 {
		o.RetryEvery = DefaultRetryEvery
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Fallback{shared: shared, local: local, retryEvery: o.RetryEvery, log: o.Logger}
}

// FallbackStatus is the state of a Fallback, for a readiness or health endpoint.
type FallbackStatus struct {
	// Shared is whether limits are shared across instances; false while the Fallback is degraded.
	Shared bool
	// Since is when the Fallback last changed state, as the clock of its callers told; zero if it never did.
	Since time.Time
	// Err is, while degraded, the last error of the shared Limiter; nil while shared.
	Err error
}

// Status returns f's state.
func (f *Fallback) Status() FallbackStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FallbackStatus{Shared: f.state.Load()%2 == 0, Since: f.since, Err: f.lastErr}
}

// Allow implements Limiter. It never returns an error: when the shared Limiter fails, the local Memory answers.
func (f *Fallback) Allow(ctx context.Context, key string, rate Rate, now time.Time) (bool, time.Duration, error) {
	if rate.unlimited() {
		return true, 0, nil
	}
	return f.do(ctx, now,
		func(ctx context.Context) (bool, time.Duration, error) { return f.shared.Allow(ctx, key, rate, now) },
		func(ctx context.Context) (bool, time.Duration, error) { return f.local.Allow(ctx, key, rate, now) })
}

// Check implements Limiter. It never returns an error: when the shared Limiter fails, the local Memory answers.
func (f *Fallback) Check(ctx context.Context, key string, rate Rate, now time.Time) (bool, time.Duration, error) {
	if rate.unlimited() {
		return true, 0, nil
	}
	return f.do(ctx, now,
		func(ctx context.Context) (bool, time.Duration, error) { return f.shared.Check(ctx, key, rate, now) },
		func(ctx context.Context) (bool, time.Duration, error) { return f.local.Check(ctx, key, rate, now) })
}

// CheckAll implements MultiChecker: in one step of the shared Limiter if it is a MultiChecker. It never returns
// an error: when the shared Limiter fails, the local Memory answers.
func (f *Fallback) CheckAll(ctx context.Context, wants []Want, now time.Time) (bool, time.Duration, error) {
	return f.do(ctx, now,
		func(ctx context.Context) (bool, time.Duration, error) { return CheckAll(ctx, f.shared, wants, now) },
		func(ctx context.Context) (bool, time.Duration, error) { return CheckAll(ctx, f.local, wants, now) })
}

type limitFunc func(ctx context.Context) (bool, time.Duration, error)

// do answers with shared while f shares limits, and with local while it is degraded or when shared fails.
func (f *Fallback) do(ctx context.Context, now time.Time, shared, local limitFunc) (bool, time.Duration, error) {
	state := f.state.Load()
	degraded := state%2 == 1
	if degraded && !f.startProbe(state, now) {
		return local(ctx)
	}
	ok, wait, err := shared(ctx)
	switch {
	case err == nil:
		if degraded {
			f.recovered(state, now)
		}
		return ok, wait, nil
	case ctx.Err() != nil:
		// The caller gave up: that says nothing about the shared Limiter.
		if degraded {
			f.endProbe(state, nil)
		}
	case degraded:
		f.endProbe(state, err)
	default:
		f.failed(state, err, now)
	}
	return local(ctx)
}

// startProbe reports whether the caller, which saw state, is to try the shared Limiter: whether f is still in
// that state, no call is trying it, and RetryEvery has passed since the last try (or the clock went back).
func (f *Fallback) startProbe(state uint64, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state.Load() != state || f.probing || (now.Before(f.nextProbe) && !now.Before(f.nextProbe.Add(-f.retryEvery))) {
		return false
	}
	f.probing = true
	f.nextProbe = now.Add(f.retryEvery)
	return true
}

// endProbe ends a try of the shared Limiter that did not succeed; err, if not nil, is why.
func (f *Fallback) endProbe(state uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state.Load() != state {
		return
	}
	f.probing = false
	if err != nil {
		f.lastErr = err
	}
}

// failed makes f degraded after the shared Limiter failed, unless another call changed f's state since state.
func (f *Fallback) failed(state uint64, err error, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state.Load() != state {
		return
	}
	f.since, f.lastErr, f.nextProbe, f.probing = now, err, now.Add(f.retryEvery), false
	f.state.Store(state + 1)
	f.log.Warn("rate limits: Redis unreachable, falling back to per-instance limits", "err", err)
}

// recovered makes f shared again after a try of the shared Limiter succeeded.
func (f *Fallback) recovered(state uint64, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state.Load() != state {
		return
	}
	degradedFor := now.Sub(f.since)
	f.since, f.lastErr, f.probing = now, nil, false
	f.state.Store(state + 1)
	f.log.Info("rate limits: shared again", "degraded_for", degradedFor.Round(time.Millisecond))
}
