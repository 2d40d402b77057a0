package apikey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// Reasons a key is refused. Check's errors wrap ErrRefused and one of these; Code turns them into the code the
// gateway check answers with. A key that never existed and one that was deleted (or rotated out) are the same
// ErrUnknown, so nobody can probe which keys once existed.
var (
	ErrRefused  = errors.New("API key refused")
	ErrUnknown  = errors.New("unknown API key")
	ErrExpired  = errors.New("API key expired")
	ErrDisabled = errors.New("API key disabled")
)

// Code is the short code of a refusal: "malformed", "not_found", "expired" or "disabled"; "" for another error.
func Code(err error) string {
	switch {
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrUnknown):
		return "not_found"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrDisabled):
		return "disabled"
	}
	return ""
}

// Store is what a Checker reads and writes.
type Store interface {
	auth.APIKeyStore
	FindAPI(ctx context.Context, id string) (*auth.API, error)
}

// Checked is a key that passed Check, with its grants resolved to APIs. It is shared: callers must not modify it.
type Checked struct {
	Key    *auth.APIKey
	Grants map[string]*Grant // by API identifier (audience)
	Only   *Grant            // the grant, when there is exactly one
}

// Grant is an API a key may get tokens for, with the granted scopes the API still defines, sorted.
type Grant struct {
	API    *auth.API
	Scopes []string
}

// CheckerOptions configure a Checker.
type CheckerOptions struct {
	// CacheTTL bounds how long a key read from the store is reused without reading it again: the delay before a
	// change made by another instance is seen here. Changes made through this process are seen at once
	// (Invalidate). Default 5s; negative disables the cache.
	CacheTTL time.Duration
	// StaleIfError is how much longer than CacheTTL a cached answer is still used while the store cannot be reached
	// (auth.ErrUnavailable), so that a database outage does not stop the keys this instance has checked. While the
	// store is down for every instance nothing in it can change; but an instance cut off from a store that others
	// still reach keeps a key they changed for up to this long past CacheTTL. Zero or less: never.
	StaleIfError time.Duration
	// FlushEvery is how often last-used times are written to the store, in one batch. Default 10s.
	FlushEvery time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
}

// Checker checks API keys: offline format and checksum first, then a keyed hash looked up in a cache in front of the
// store. It is safe for concurrent use.
type Checker struct {
	store  Store
	hasher *auth.SecretHasher
	ttl    time.Duration
	stale  time.Duration // StaleIfError
	flush  time.Duration
	now    func() time.Time
	log    *slog.Logger

	mu      sync.RWMutex
	entries map[string]entry               // by hash
	byKey   map[string]map[string]struct{} // key id → hashes cached for it
	gen     uint64                         // bumped by every invalidation; a load that started before one is not cached
	// nextEvict is when a full cache is next worth scanning for expired entries.
	nextEvict time.Time
	loads     singleflight.Group

	usedMu sync.Mutex
	used   map[string]time.Time // key id → last use not yet written
}

// loadTimeout bounds one read of a key from the store, which checks waiting for it share: past it, the read fails
// (auth.ErrUnavailable) rather than hold requests.
const loadTimeout = 5 * time.Second

// maxCached bounds the cache, so a flood of well-formed made-up keys cannot grow it without limit.
const maxCached = 100_000

type entry struct {
	checked *Checked  // nil: no key has this hash
	hashExp time.Time // when this hash stops working (a rotated-out key); zero: never
	expires time.Time // when the entry must be read again
	keyID   string
}

// NewChecker returns a Checker over store, hashing keys with hasher (its own subkey of the root key).
func NewChecker(store Store, hasher *auth.SecretHasher, o CheckerOptions) *Checker {
	if o.CacheTTL == 0 {
		o.CacheTTL = 5 * time.Second
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Checker{store: store, hasher: hasher, ttl: o.CacheTTL, stale: max(o.StaleIfError, 0), flush: o.FlushEvery, now: o.Now, log: o.Logger,
		entries: make(map[string]entry), byKey: make(map[string]map[string]struct{}), used: make(map[string]time.Time)}
}

// Hash returns the stored form of a key.
func (c *Checker) Hash(key string) []byte { return c.hasher.Hash(key) }

// Check returns the key's record if key is a working API key: well formed with a valid checksum (else no lookup is
// made), known, not rotated out past its grace period, not expired and not disabled. Refusals wrap ErrRefused;
// any other error is a failure of the store.
func (c *Checker) Check(ctx context.Context, key string) (*Checked, error) {
	ch, _, err := c.CheckFor(ctx, key, nil)
	return ch, err
}

// CheckFor is Check for a caller that may see only the keys visible approves (nil: every key): any other key —
// working, expired or disabled alike — is refused as ErrUnknown, and no use of it is recorded. It also returns until
// when the key presented works: the end of a rotated-out key's grace period, zero for a current key.
func (c *Checker) CheckFor(ctx context.Context, key string, visible func(*auth.APIKey) bool) (*Checked, time.Time, error) {
	if _, err := Parse(key); err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	hash := c.hasher.Hash(key)
	e, err := c.lookup(ctx, string(hash))
	if err != nil {
		return nil, time.Time{}, err
	}
	now := c.now()
	switch {
	case e.checked == nil, !e.hashExp.IsZero() && !now.Before(e.hashExp),
		visible != nil && !visible(e.checked.Key):
		return nil, time.Time{}, fmt.Errorf("%w: %w", ErrRefused, ErrUnknown)
	case e.checked.Key.Disabled:
		return nil, time.Time{}, fmt.Errorf("%w: %w", ErrRefused, ErrDisabled)
	case !e.checked.Key.ExpiresAt.IsZero() && !now.Before(e.checked.Key.ExpiresAt):
		return nil, time.Time{}, fmt.Errorf("%w: %w", ErrRefused, ErrExpired)
	}
	c.usedMu.Lock()
	c.used[e.keyID] = now
	c.usedMu.Unlock()
	return e.checked, e.hashExp, nil
}

func (c *Checker) lookup(ctx context.Context, hash string) (entry, error) {
	now := c.now()
	c.mu.RLock()
	e, ok := c.entries[hash]
	gen := c.gen
	c.mu.RUnlock()
	if ok && now.Before(e.expires) {
		return e, nil
	}
	// Checks share a load only within one generation: a check that starts after an invalidation must not take the
	// answer of a load that may have read the store before the change.
	v, err, _ := c.loads.Do(strconv.FormatUint(gen, 36)+":"+hash, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		fresh, err := c.load(lctx, hash)
		if err != nil {
			if ok && errors.Is(err, auth.ErrUnavailable) && now.Before(e.expires.Add(c.stale)) {
				return e, nil // stale if error: see StaleIfError
			}
			return entry{}, err
		}
		e := fresh
		e.expires = now.Add(c.ttl)
		if c.ttl > 0 {
			c.mu.Lock()
			defer c.mu.Unlock()
			if gen != c.gen {
				return e, nil // invalidated while loading: answer this request with it, keep nothing
			}
			if len(c.entries) >= maxCached && !now.Before(c.nextEvict) {
				c.evictExpired(now)
			}
			if len(c.entries) < maxCached {
				c.entries[hash] = e
				if e.keyID != "" {
					if c.byKey[e.keyID] == nil {
						c.byKey[e.keyID] = make(map[string]struct{}, 1)
					}
					c.byKey[e.keyID][hash] = struct{}{}
				}
			}
		}
		return e, nil
	})
	if err != nil {
		return entry{}, err
	}
	return v.(entry), nil
}

// evictExpired drops the expired entries, and notes when the next one expires: a full cache of live entries is not
// scanned again before then, so a flood of made-up keys costs one scan per expiry, not one per key.
func (c *Checker) evictExpired(now time.Time) {
	next := now.Add(c.ttl)
	for h, e := range c.entries {
		if !now.Before(e.expires) {
			c.drop(h, e.keyID)
		} else if e.expires.Before(next) {
			next = e.expires
		}
	}
	c.nextEvict = next
}

// drop removes one cache entry; the caller holds mu.
func (c *Checker) drop(hash, keyID string) {
	delete(c.entries, hash)
	if hs := c.byKey[keyID]; hs != nil {
		delete(hs, hash)
		if len(hs) == 0 {
			delete(c.byKey, keyID)
		}
	}
}

func (c *Checker) load(ctx context.Context, hash string) (entry, error) {
	k, h, err := c.store.FindAPIKeyByHash(ctx, []byte(hash))
	if errors.Is(err, auth.ErrNotFound) {
		return entry{}, nil
	}
	if err != nil {
		return entry{}, fmt.Errorf("find API key: %w", err)
	}
	if !h.ExpiresAt.IsZero() && !c.now().Before(h.ExpiresAt) {
		// Rotated out, past its grace period, not yet pruned: answered exactly as a hash no key has, at the same
		// cost (no API lookups), so that neither the answer nor its time tells that the key once existed.
		return entry{}, nil
	}
	checked, err := c.Resolve(ctx, k)
	if err != nil {
		return entry{}, err
	}
	return entry{checked: checked, hashExp: h.ExpiresAt, keyID: k.ID}, nil
}

// Resolve resolves a key's grants to the APIs they name, dropping APIs that no longer exist and scopes they no
// longer define.
func (c *Checker) Resolve(ctx context.Context, k *auth.APIKey) (*Checked, error) {
	ch := &Checked{Key: k, Grants: make(map[string]*Grant, len(k.Grants))}
	for _, g := range k.Grants {
		api, err := c.store.FindAPI(ctx, g.APIID)
		if errors.Is(err, auth.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("find API %q: %w", g.APIID, err)
		}
		scopes := make([]string, 0, len(g.Scopes))
		for _, s := range g.Scopes {
			if api.HasScope(s) {
				scopes = append(scopes, s)
			}
		}
		slices.Sort(scopes)
		ch.Grants[api.Identifier] = &Grant{API: api, Scopes: slices.Compact(scopes)}
	}
	if len(ch.Grants) == 1 {
		for _, g := range ch.Grants {
			ch.Only = g
		}
	}
	return ch, nil
}

// Invalidate drops every cached hash of a key, so the next check reads the store. Call it in the same step as any
// change to the key (update, rotation, deletion): then "the old key stops working at once" holds in this process.
func (c *Checker) Invalidate(keyID string) {
	c.mu.Lock()
	for h := range c.byKey[keyID] {
		delete(c.entries, h)
	}
	delete(c.byKey, keyID)
	c.gen++
	c.mu.Unlock()
}

// InvalidateAll empties the cache. Call it after changing an API, which many keys may name.
func (c *Checker) InvalidateAll() {
	c.mu.Lock()
	clear(c.entries)
	clear(c.byKey)
	c.gen++
	c.mu.Unlock()
}

// Run writes last-used times in batches every FlushEvery, and removes hashes whose grace period has ended, until ctx
// ends; then it writes the last batch and returns nil.
func (c *Checker) Run(ctx context.Context) error {
	t := time.NewTicker(c.flush)
	defer t.Stop()
	lastPrune := time.Time{}
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			c.Flush(flushCtx)
			cancel()
			return nil
		case <-t.C:
		}
		c.Flush(ctx)
		if now := c.now(); now.Sub(lastPrune) >= time.Hour {
			lastPrune = now
			if _, err := c.store.PruneAPIKeyHashes(ctx, now); err != nil && ctx.Err() == nil {
				c.log.Warn("pruning rotated-out API key hashes failed", "err", err)
			}
		}
	}
}

// Flush writes the last-used times gathered since the previous flush. A failed write is logged and the times are
// kept for the next flush.
func (c *Checker) Flush(ctx context.Context) {
	c.usedMu.Lock()
	batch := c.used
	c.used = make(map[string]time.Time, len(batch))
	c.usedMu.Unlock()
	if len(batch) == 0 {
		return
	}
	if err := c.store.TouchAPIKeys(ctx, batch); err != nil {
		c.log.Warn("recording API key last-used times failed; retrying at the next flush", "err", err, "keys", len(batch))
		c.usedMu.Lock()
		for id, t := range batch {
			if t.After(c.used[id]) {
				c.used[id] = t
			}
		}
		c.usedMu.Unlock()
	}
}
