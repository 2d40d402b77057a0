// Package redislimit is a limit.Limiter in Redis, so that every instance of Gatehouse enforces one rate limit
// per key instead of one each.
//
// Each call is one Lua script, run atomically by Redis (EVALSHA, falling back to EVAL when Redis does not have
// the script cached). The script implements exactly the GCRA of limit.Memory: the Go side computes the emission
// interval and the burst as limit.Memory does and passes them in; the script reads the key's theoretical arrival
// time (TAT), decides, and, for Allow when the event is allowed, stores the new TAT with a PEXPIRE at that TAT,
// so a key vanishes when it holds no state. A key holds one value: the TAT in Unix nanoseconds, as a decimal
// string. The script computes in nanoseconds relative to the current time, which keeps every number well inside
// the integers a Lua double holds exactly.
//
// The clock is Redis's, read with TIME inside the script (microsecond resolution), never the caller's: instances
// whose clocks disagree still agree on every limit. The now argument of Allow and Check is therefore ignored.
// TIME inside a script that writes needs effects replication: the default from Redis 5 (the script asks for it
// on Redis 5 and 6), the only mode from Redis 7.
//
// Every call is bounded by Options.Timeout, so a Redis that is slow or gone costs a token request at most that
// long. A Limiter reports every failure as an error and keeps no state of its own; put it behind limit.Fallback,
// which answers from a per-instance limit.Memory while Redis is unreachable and stops waiting on Redis meanwhile:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", ContextTimeoutEnabled: true})
//	lim := limit.NewFallback(redislimit.New(rdb, redislimit.Options{}), limit.NewMemory(0), limit.FallbackOptions{Logger: log})
package redislimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/limit"
)

// Defaults of Options.
const (
	DefaultPrefix  = "gatehouse:limit:"
	DefaultTimeout = 100 * time.Millisecond
)

// maxKeyLen is the longest key stored as it is. A longer key is stored as its first maxKeyLen-64 bytes, "~", and
// the hex SHA-256 of the whole key: maxKeyLen+1 bytes, so it never collides with a key stored as it is.
const maxKeyLen = 256

// Options tune a Limiter. The zero value is ready to use.
type Options struct {
	// Prefix is put before every key (default DefaultPrefix). Limiters whose keys must not meet, such as a
	// client's rate limit and the authentication throttle, use different prefixes.
	Prefix string
	// Timeout bounds each call to Redis (default DefaultTimeout), whatever the client's own timeouts are.
	Timeout time.Duration
}

// Limiter is a limit.Limiter on Redis. It is safe for concurrent use. Allow and Check touch one key each, so they
// work on Redis Cluster too; CheckAll needs its keys in one slot.
type Limiter struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
	// honoursDeadline: the client applies ctx's deadline to its socket I/O (ContextTimeoutEnabled), so a call
	// needs no goroutine to be bounded.
	honoursDeadline bool
}

var (
	_ limit.Limiter      = (*Limiter)(nil)
	_ limit.MultiChecker = (*Limiter)(nil)
)

// New returns a Limiter that keeps its state in Redis through client (*redis.Client, *redis.ClusterClient, …).
// The caller keeps ownership of client and closes it.
func New(client redis.UniversalClient, opts Options) *Limiter {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	l := &Limiter{client: client, prefix: opts.Prefix, timeout: opts.Timeout}
	switch c := client.(type) {
	case *redis.Client:
		l.honoursDeadline = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		l.honoursDeadline = c.Options().ContextTimeoutEnabled
	}
	return l
}

// gcra is limit.Memory's GCRA in Lua, on the key KEYS[1], with Redis's clock. ARGV: the emission interval and the
// burst (both nanoseconds, as limit.Memory computes them), and "1" to take the event if allowed or "0" to only
// look. It returns {1, 0} when the event is allowed and {0, retryAfter in nanoseconds} when it is not.
//
// Unix nanoseconds (about 1.8e18) do not fit the 2^53 integers a Lua double holds exactly, so the stored TAT is
// split into seconds and nanoseconds as text, and everything is computed relative to now: the TAT ahead of now is
// at most the burst, and a TAT behind now counts as now.
var gcra = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call("TIME")
local now_s = tonumber(clock[1])
local now_ns = tonumber(clock[2]) * 1000
local tat = 0
local stored = redis.call("GET", KEYS[1])
if stored then
	local s = tonumber(string.sub(stored, 1, -10)) or 0
	local ns = tonumber(string.sub(stored, -9)) or 0
	tat = math.max((s - now_s) * 1e9 + (ns - now_ns), 0)
end
local next = tat + interval
local wait = next - burst
if wait > 0 then
	return {0, wait}
end
if ARGV[3] == "1" then
	local total = now_ns + next
	redis.call("SET", KEYS[1], string.format("%d%09d", now_s + math.floor(total / 1e9), total % 1e9),
		"PX", math.ceil(next / 1e6))
end
return {1, 0}
`)

// checkAll is gcra's look-only branch over every key of KEYS, in one script: ARGV holds each key's emission
// interval and burst in turn. It returns {1, 0} when every key has room, else {0, the longest retryAfter}.
var checkAll = redis.NewScript(`
local clock = redis.call("TIME")
local now_s = tonumber(clock[1])
local now_ns = tonumber(clock[2]) * 1000
local longest = 0
for i, key in ipairs(KEYS) do
	local interval = tonumber(ARGV[2 * i - 1])
	local burst = tonumber(ARGV[2 * i])
	local tat = 0
	local stored = redis.call("GET", key)
	if stored then
		local s = tonumber(string.sub(stored, 1, -10)) or 0
		local ns = tonumber(string.sub(stored, -9)) or 0
		tat = math.max((s - now_s) * 1e9 + (ns - now_ns), 0)
	end
	local wait = tat + interval - burst
	if wait > longest then
		longest = wait
	end
end
if longest > 0 then
	return {0, longest}
end
return {1, 0}
`)

// Allow implements limit.Limiter with Redis's clock; now is ignored. Errors are Redis's or the connection's, or
// the context's: context.DeadlineExceeded when Redis did not answer within the timeout.
func (l *Limiter) Allow(ctx context.Context, key string, rate limit.Rate, _ time.Time) (ok bool, retryAfter time.Duration, err error) {
	return l.run(ctx, key, rate, "1")
}

// Check implements limit.Limiter with Redis's clock; now is ignored. It writes nothing. Errors are as for Allow.
func (l *Limiter) Check(ctx context.Context, key string, rate limit.Rate, _ time.Time) (ok bool, retryAfter time.Duration, err error) {
	return l.run(ctx, key, rate, "0")
}

// CheckAll implements limit.MultiChecker: every want in one script, one round trip, with Redis's clock; now is
// ignored. It writes nothing. On Redis Cluster, the keys must share a hash tag ({…}), as limit.Throttle's do.
// Errors are as for Allow.
func (l *Limiter) CheckAll(ctx context.Context, wants []limit.Want, _ time.Time) (ok bool, retryAfter time.Duration, err error) {
	keys := make([]string, 0, len(wants))
	args := make([]any, 0, 2*len(wants))
	for _, w := range wants {
		if w.Rate.Count <= 0 || w.Rate.Per <= 0 {
			continue // no limit
		}
		interval, burst := emission(w.Rate)
		keys = append(keys, l.key(w.Key))
		args = append(args, interval, burst)
	}
	if len(keys) == 0 {
		return true, 0, nil
	}
	res, err := l.call(ctx, func(ctx context.Context) ([]int64, error) {
		return checkAll.Run(ctx, l.client, keys, args...).Int64Slice()
	})
	return result(res, err)
}

// emission returns the emission interval and the burst of rate, in nanoseconds, as limit.Memory computes them.
func emission(rate limit.Rate) (interval, burst int64) {
	interval = max(int64(rate.Per)/int64(rate.Count), 1)
	return interval, interval * int64(rate.Count)
}

// result reads a script's {allowed, retryAfter}.
func result(res []int64, err error) (bool, time.Duration, error) {
	if err != nil {
		return false, 0, fmt.Errorf("redislimit: %w", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("redislimit: script returned %v", res)
	}
	return res[0] == 1, time.Duration(res[1]), nil
}

func (l *Limiter) run(ctx context.Context, key string, rate limit.Rate, take string) (bool, time.Duration, error) {
	if rate.Count <= 0 || rate.Per <= 0 {
		return true, 0, nil // no limit, as for limit.Memory
	}
	interval, burst := emission(rate)
	keys := []string{l.key(key)}
	res, err := l.call(ctx, func(ctx context.Context) ([]int64, error) {
		return gcra.Run(ctx, l.client, keys, interval, burst, take).Int64Slice()
	})
	return result(res, err)
}

// key returns the Redis key of a limiter key: the prefix and the key, or a bounded stand-in for a long key.
func (l *Limiter) key(key string) string {
	if len(key) <= maxKeyLen {
		return l.prefix + key
	}
	sum := sha256.Sum256([]byte(key))
	return l.prefix + key[:maxKeyLen-2*len(sum)] + "~" + hex.EncodeToString(sum[:])
}

// call runs op with l's timeout and returns when op does or the timeout passes, whichever is first: the client
// may have been built without ContextTimeoutEnabled (then go-redis ignores the deadline for socket I/O) or with
// long timeouts of its own, and neither may hang a token request. An abandoned op ends when the client's own
// timeouts end it; its result is dropped.
//
// A client that honours deadlines itself (a *redis.Client or *redis.ClusterClient with ContextTimeoutEnabled) is
// called directly: the goroutine would cost more than the call (its stack grows to go-redis's depth every time).
func (l *Limiter) call(ctx context.Context, op func(context.Context) ([]int64, error)) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	if l.honoursDeadline {
		v, err := op(ctx)
		var ne net.Error
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.As(err, &ne) && ne.Timeout():
			// The client's i/o timeout is ctx's deadline, firing a moment before ctx's own timer: say so, as the
			// goroutine path does.
			return nil, context.DeadlineExceeded
		}
		return v, err
	}
	type result struct {
		v   []int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := op(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
