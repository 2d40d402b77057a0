package tokencache

import (
	"context"
	"errors"
	"time"
)

// ErrMiss is returned by Cache.Get when nothing is stored under the key (or it has expired).
var ErrMiss = errors.New("tokencache: cache miss")

// Cache is a store of tokens shared between Sources: in one process (NewMemoryCache) or across processes and
// machines (package rediscache). Values are opaque to the cache: a Source seals each token with a key derived from
// its client secret before it is stored, so a cache (or whoever can read it) never holds a usable token.
//
// Implementations are safe for concurrent use and pass the suite in package cachetest. They keep their own copy
// of a value given to Set, and a slice returned by Get is the caller's.
type Cache interface {
	// Get returns the value stored under key, or ErrMiss. Other errors mean the cache is unreachable; Sources then
	// carry on without it.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key for ttl (> 0), replacing any value. After ttl, Get answers ErrMiss.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// Coordinator is implemented by caches shared between processes (package rediscache), so that when a token is
// missing or due only one process fetches it while the others wait briefly and read its result, and so that a
// token an API rejected is dropped from the cache only if it is still the one stored.
type Coordinator interface {
	Cache
	// Lease tries to take the right to fetch the token for key for at most ttl. ok reports whether this caller
	// got it; release gives it back early (idempotent, and it never frees a lease taken by someone else after this
	// one expired). Leases expire on their own, so a fetcher that dies does not block the others for longer than
	// ttl. Leases are independent of the values: Set and Get do not touch them.
	Lease(ctx context.Context, key string, ttl time.Duration) (release func(), ok bool, err error)
	// DeleteIf removes the value under key only if it is still value (a compare-and-delete).
	DeleteIf(ctx context.Context, key string, value []byte) error
}
