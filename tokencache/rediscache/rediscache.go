// Package rediscache is a tokencache.Cache in Redis, so that every process with the same client configuration
// shares one token: a fleet of services, or serverless functions that keep nothing between invocations.
//
// It implements tokencache.Coordinator: when a token is missing or due, exactly one process fetches it (it holds a
// lease, SET NX PX, released with a compare-and-delete) while the others wait briefly and read its result. Values
// are stored as the Source hands them over, sealed with a key derived from the client secret, so whoever can read
// Redis but lacks the secret gets nothing usable. Redis is read only when a Source has no token or its token is
// due: a Source keeps its current token in memory, so a hit costs no round trip.
//
// Redis is an optimization, never a dependency: every call is bounded by Options.Timeout (the caller gets an error
// even if Redis accepts connections and never answers), and after a failure calls fail at once for
// Options.RetryAfter instead of waiting on Redis again. A Source carries on without the cache when it errs, so
// callers are served by the token endpoint.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379"})
//	src, err := tokencache.New(tokencache.Config{…, Cache: rediscache.New(rdb, rediscache.Options{})})
package rediscache

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/tokencache"
)

// ErrUnavailable is returned, wrapped, by every method while Redis is considered down: for Options.RetryAfter after
// a call failed or timed out.
var ErrUnavailable = errors.New("rediscache: redis unavailable")

// Options tune a Cache. The zero value is ready to use.
type Options struct {
	// Prefix is put before every key this Cache writes (default "gatehouse:tokencache:"). Caches that must not
	// see each other's tokens use different prefixes.
	Prefix string
	// Timeout bounds each call to Redis (default 250ms), whatever the client's own timeouts are.
	Timeout time.Duration
	// RetryAfter is how long calls fail at once with ErrUnavailable after a call to Redis failed (default 1s), so
	// that a Redis that is down costs callers no time.
	RetryAfter time.Duration
}

// Cache is a tokencache.Coordinator on Redis. It is safe for concurrent use. Its keys are Prefix+"t:"+key for
// values and Prefix+"l:"+key for leases; each command touches one key, so it works on Redis Cluster too.
type Cache struct {
	client     redis.UniversalClient
	prefix     string
	timeout    time.Duration
	retryAfter time.Duration
	downUntil  atomic.Int64 // unix nanoseconds; calls before it fail with ErrUnavailable
}

var _ tokencache.Coordinator = (*Cache)(nil)

// New returns a Cache that stores tokens through client, a Redis client (*redis.Client, *redis.ClusterClient,
// …). The caller keeps ownership of client and closes it.
func New(client redis.UniversalClient, opts Options) *Cache {
	if opts.Prefix == "" {
		opts.Prefix = "gatehouse:tokencache:"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 250 * time.Millisecond
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = time.Second
	}
	return &Cache{client: client, prefix: opts.Prefix, timeout: opts.Timeout, retryAfter: opts.RetryAfter}
}

// compareAndDelete deletes KEYS[1] only if it still holds ARGV[1]: releasing a lease never releases the next
// holder's, and DeleteIf never drops a token another process has just stored.
var compareAndDelete = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// Get returns the value stored under key, tokencache.ErrMiss if there is none, or an error if Redis could not
// answer within the timeout.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	value, err := call(c, ctx, func(ctx context.Context) ([]byte, error) {
		return c.client.Get(ctx, c.prefix+"t:"+key).Bytes()
	})
	if errors.Is(err, redis.Nil) {
		return nil, tokencache.ErrMiss
	}
	if err != nil {
		return nil, fmt.Errorf("rediscache: get: %w", err)
	}
	return value, nil
}

// Set stores value under key for ttl (rounded up to a whole millisecond), replacing any value.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("rediscache: set: ttl %v is not positive", ttl)
	}
	_, err := call(c, ctx, func(ctx context.Context) (string, error) {
		return c.client.Set(ctx, c.prefix+"t:"+key, value, millis(ttl)).Result()
	})
	if err != nil {
		return fmt.Errorf("rediscache: set: %w", err)
	}
	return nil
}

// Lease tries to take the lease on key for ttl (SET NX PX with a random value). ok is false, with a nil error,
// when another caller holds it. release deletes the lease only if it is still this caller's (a compare-and-delete
// in Lua), so a caller whose lease expired cannot release the next holder's; it is idempotent, safe to call from
// any goroutine, and bounded by the timeout like every call.
func (c *Cache) Lease(ctx context.Context, key string, ttl time.Duration) (release func(), ok bool, err error) {
	if ttl <= 0 {
		return nil, false, fmt.Errorf("rediscache: lease: ttl %v is not positive", ttl)
	}
	var b [16]byte
	rand.Read(b[:])
	token := base64.RawURLEncoding.EncodeToString(b[:])
	leaseKey := c.prefix + "l:" + key
	ok, err = call(c, ctx, func(ctx context.Context) (bool, error) {
		return c.client.SetNX(ctx, leaseKey, token, millis(ttl)).Result()
	})
	if err != nil {
		return nil, false, fmt.Errorf("rediscache: lease: %w", err)
	}
	if !ok {
		return func() {}, false, nil
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			// The caller's cancellation must not keep the lease held until it expires.
			call(c, context.WithoutCancel(ctx), func(ctx context.Context) (any, error) {
				return compareAndDelete.Run(ctx, c.client, []string{leaseKey}, token).Result()
			})
		})
	}
	return release, true, nil
}

// DeleteIf removes the value under key only if it is still value (a compare-and-delete in Lua). Deleting nothing
// is not an error.
func (c *Cache) DeleteIf(ctx context.Context, key string, value []byte) error {
	_, err := call(c, ctx, func(ctx context.Context) (any, error) {
		return compareAndDelete.Run(ctx, c.client, []string{c.prefix + "t:" + key}, value).Result()
	})
	if err != nil {
		return fmt.Errorf("rediscache: delete: %w", err)
	}
	return nil
}

// call runs op with c's timeout and returns when op does or the timeout passes, whichever is first: the client
// may have been built without ContextTimeoutEnabled (then go-redis ignores the deadline for socket I/O) or with
// long timeouts of its own, and neither may hang a caller. An abandoned op ends when the client's own timeouts end
// it; its result is dropped. After a failure, calls fail at once with ErrUnavailable for c.retryAfter.
func call[T any](c *Cache, ctx context.Context, op func(context.Context) (T, error)) (T, error) {
	var v T
	if until := c.downUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return v, ErrUnavailable
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := op(ctx)
		done <- result{v, err}
	}()
	var err error
	select {
	case r := <-done:
		v, err = r.v, r.err
	case <-ctx.Done():
		err = ctx.Err()
	}
	var reply redis.Error
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		if c.downUntil.Load() != 0 {
			c.downUntil.Store(0)
		}
	case parent.Err() != nil:
		// The caller gave up: that says nothing about Redis.
	case errors.As(err, &reply):
		// Redis answered, with an error: it is up.
	default:
		c.downUntil.Store(time.Now().Add(c.retryAfter).UnixNano())
	}
	return v, err
}

// millis rounds d up to a whole millisecond, the resolution of PX.
func millis(d time.Duration) time.Duration {
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}
