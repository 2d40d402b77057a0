// Package limit is rate limiting for the token endpoint: the Limiter contract, Memory (a Limiter for one
// instance), Fallback (a Limiter shared by instances, with a Memory for when the shared one is unreachable), and
// Throttle, which slows down the guessing of client secrets (RFC 6749 §2.3.1).
//
// Limiters implement GCRA, the generic cell rate algorithm: a key's state is one time, its theoretical arrival
// time (TAT). A rate of Count per Per lets a key take Count events at once and then one every Per/Count, like a
// token bucket holding Count that refills at Count per Per: between any two events, at most Count plus one per
// Per/Count elapsed. The state of a key whose TAT has passed is the same as no state, which is what lets Memory
// forget keys and stay bounded.
package limit

import (
	"context"
	"fmt"
	"time"
)

// Rate is Count events per Per: a burst of up to Count, then one every Per/Count. A Count or Per that is not
// positive is no limit. It converts to and from auth.RateLimit.
type Rate struct {
	Count int
	Per   time.Duration
}

// unlimited reports whether r is no limit.
func (r Rate) unlimited() bool { return r.Count <= 0 || r.Per <= 0 }

func (r Rate) String() string {
	if r.unlimited() {
		return "unlimited"
	}
	return fmt.Sprintf("%d per %s", r.Count, r.Per)
}

// Limiter keeps one GCRA state per key. The in-process implementation is Memory; one shared by several instances
// (Redis) implements the same contract.
//
// Keys are opaque; a key should always be used with the same Rate. now is the caller's clock; an implementation
// shared across instances may use its own. Methods are safe for concurrent use. Errors come only from a backend a
// shared implementation talks to; Memory never fails. Callers decide whether to fail open.
type Limiter interface {
	// Allow takes one event from key's allowance under rate at now, if the rate allows one, and reports whether
	// it did. When it did not, retryAfter (> 0) is how long until it would. A rate that is no limit always allows.
	Allow(ctx context.Context, key string, rate Rate, now time.Time) (ok bool, retryAfter time.Duration, err error)
	// Check reports what Allow would answer, without taking anything.
	Check(ctx context.Context, key string, rate Rate, now time.Time) (ok bool, retryAfter time.Duration, err error)
}

// Want is a key and the rate it is checked under, for CheckAll.
type Want struct {
	Key  string
	Rate Rate
}

// MultiChecker is a Limiter that checks several keys in one step, which for a shared Limiter is one round trip
// instead of one per key.
type MultiChecker interface {
	// CheckAll reports whether Check would allow each of wants, without taking anything. When one is refused,
	// retryAfter is the longest wait among those refused.
	CheckAll(ctx context.Context, wants []Want, now time.Time) (ok bool, retryAfter time.Duration, err error)
}

// CheckAll checks every want with l: in one step if l is a MultiChecker, else one Check at a time.
func CheckAll(ctx context.Context, l Limiter, wants []Want, now time.Time) (ok bool, retryAfter time.Duration, err error) {
	if mc, is := l.(MultiChecker); is {
		return mc.CheckAll(ctx, wants, now)
	}
	ok = true
	for _, w := range wants {
		allowed, wait, err := l.Check(ctx, w.Key, w.Rate, now)
		if err != nil {
			return false, 0, err
		}
		if !allowed {
			ok, retryAfter = false, max(retryAfter, wait)
		}
	}
	return ok, retryAfter, nil
}

// gcra answers an event for a key with theoretical arrival time tat at now (both in Unix nanoseconds) under rate,
// which must be a limit: whether it is allowed, the TAT after taking it, and, when it is not allowed, how long
// until it would be.
func gcra(tat, now int64, rate Rate) (ok bool, next int64, retryAfter time.Duration) {
	interval := int64(rate.Per) / int64(rate.Count) // the emission interval, T
	if interval < 1 {
		interval = 1
	}
	burst := interval * int64(rate.Count) // τ + T: Count events at once
	tat = max(tat, now)
	next = tat + interval
	if wait := next - burst - now; wait > 0 {
		return false, tat, time.Duration(wait)
	}
	return true, next, 0
}
