package tokencache

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"
)

// memoryCacheMax bounds a MemoryCache: when it is full, expired entries are dropped first, then the ones
// closest to expiry.
const memoryCacheMax = 10_000

// MemoryCache is a Cache and Coordinator in this process's memory, for Sources in one process that share a
// configuration (or tests). It holds at most 10,000 entries. Its zero value is not usable; call NewMemoryCache.
type MemoryCache struct {
	now    func() time.Time
	mu     sync.Mutex
	items  map[string]memoryItem
	leases map[string]memoryLease
	seq    uint64
}

type memoryItem struct {
	value   []byte
	expires time.Time
}

type memoryLease struct {
	id      uint64
	expires time.Time
}

// NewMemoryCache returns an empty MemoryCache.
func NewMemoryCache() *MemoryCache {
	return &MemoryCache{now: time.Now, items: map[string]memoryItem{}, leases: map[string]memoryLease{}}
}

// Get returns a copy of the value under key, or ErrMiss.
func (c *MemoryCache) Get(ctx context.Context, key string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.items[key]
	if !ok || !c.now().Before(it.expires) {
		return nil, ErrMiss
	}
	return bytes.Clone(it.value), nil
}

// Set stores a copy of value under key for ttl.
func (c *MemoryCache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("tokencache: MemoryCache.Set: ttl must be positive")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if _, ok := c.items[key]; !ok && len(c.items) >= memoryCacheMax {
		c.evictLocked(now)
	}
	c.items[key] = memoryItem{value: bytes.Clone(value), expires: now.Add(ttl)}
	return nil
}

// evictLocked makes room for one entry: it drops the expired ones, or else the one closest to expiry.
func (c *MemoryCache) evictLocked(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for k, it := range c.items {
		if !now.Before(it.expires) {
			delete(c.items, k)
			continue
		}
		if oldest == "" || it.expires.Before(oldestAt) {
			oldest, oldestAt = k, it.expires
		}
	}
	if len(c.items) >= memoryCacheMax {
		delete(c.items, oldest)
	}
}

// Lease takes the lease on key for ttl if no one holds it. It never fails.
func (c *MemoryCache) Lease(ctx context.Context, key string, ttl time.Duration) (release func(), ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if l, held := c.leases[key]; held && now.Before(l.expires) {
		return func() {}, false, nil
	}
	if len(c.leases) >= memoryCacheMax {
		for k, l := range c.leases {
			if !now.Before(l.expires) {
				delete(c.leases, k)
			}
		}
	}
	c.seq++
	id := c.seq
	c.leases[key] = memoryLease{id: id, expires: now.Add(ttl)}
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if l, held := c.leases[key]; held && l.id == id { // not a later holder's lease
				delete(c.leases, key)
			}
		})
	}, true, nil
}

// DeleteIf removes the value under key if it equals value.
func (c *MemoryCache) DeleteIf(ctx context.Context, key string, value []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if it, ok := c.items[key]; ok && bytes.Equal(it.value, value) {
		delete(c.items, key)
	}
	return nil
}
