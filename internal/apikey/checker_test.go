package apikey_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/apikey"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/rootkey"
	"github.com/gatehouse/gatehouse/internal/sqlstore"
)

// countingStore is the real SQLite store, counting the calls a Checker makes. When hold is set, the next
// FindAPIKeyByHash reads the store, then says so on entered and waits for release before it returns: a load that
// has read a key and not yet answered.
type countingStore struct {
	*sqlstore.DB
	byHash, apis, touches atomic.Int64

	hold     atomic.Bool
	entered  chan struct{}
	release  chan struct{}
	touchErr atomic.Pointer[error]
	findErr  atomic.Pointer[error]
}

func (s *countingStore) FindAPIKeyByHash(ctx context.Context, hash []byte) (*auth.APIKey, *auth.APIKeyHash, error) {
	s.byHash.Add(1)
	if err := s.findErr.Load(); err != nil {
		return nil, nil, *err
	}
	k, h, err := s.DB.FindAPIKeyByHash(ctx, hash)
	if s.hold.CompareAndSwap(true, false) {
		s.entered <- struct{}{}
		<-s.release
	}
	return k, h, err
}

func (s *countingStore) FindAPI(ctx context.Context, id string) (*auth.API, error) {
	s.apis.Add(1)
	return s.DB.FindAPI(ctx, id)
}

func (s *countingStore) TouchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	s.touches.Add(1)
	if err := s.touchErr.Load(); err != nil {
		return *err
	}
	return s.DB.TouchAPIKeys(ctx, used)
}

// calls is every store call a Checker has made.
func (s *countingStore) calls() int64 { return s.byHash.Load() + s.apis.Load() + s.touches.Load() }

var errBoom = errors.New("boom")

// checkerFixture is a Checker over a real SQLite store with one API, on a clock the test moves.
type checkerFixture struct {
	store  *countingStore
	hasher *auth.SecretHasher
	c      *apikey.Checker
	api    *auth.API
	logs   *bytes.Buffer

	mu  sync.Mutex
	now time.Time
}

func newCheckerFixture(tb testing.TB, ttl time.Duration) *checkerFixture {
	tb.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(tb.TempDir(), "gh.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	f := &checkerFixture{
		store:  &countingStore{DB: db, entered: make(chan struct{}), release: make(chan struct{})},
		hasher: auth.NewSecretHasher(rootkey.Generate().Derive("api key hashing")),
		logs:   &bytes.Buffer{},
		now:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	f.api = &auth.API{ID: "api_orders", Identifier: "https://orders.example.com", Name: "Orders",
		Scopes: []auth.Scope{{Name: "read"}, {Name: "write"}, {Name: "admin"}}, CreatedAt: f.now, UpdatedAt: f.now}
	if err := f.api.Normalize(); err != nil {
		tb.Fatal(err)
	}
	if err := db.CreateAPI(ctx, f.api); err != nil {
		tb.Fatal(err)
	}
	f.c = apikey.NewChecker(f.store, f.hasher, apikey.CheckerOptions{CacheTTL: ttl, Now: f.clock,
		Logger: slog.New(slog.NewTextHandler(f.logs, nil))})
	return f
}

func (f *checkerFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *checkerFixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// newKey stores a new key granted scopes of the fixture's API and returns its record and the key.
func (f *checkerFixture) newKey(tb testing.TB, scopes ...string) (*auth.APIKey, string) {
	tb.Helper()
	key, err := apikey.New(apikey.DefaultPrefix)
	if err != nil {
		tb.Fatal(err)
	}
	now := f.clock()
	k := &auth.APIKey{ID: auth.NewID("key"), Name: "test", Hint: apikey.Hint(key), Version: 1, CreatedAt: now, UpdatedAt: now,
		Grants: []auth.KeyGrant{{APIID: f.api.ID, Scopes: scopes}}}
	if err := f.store.CreateAPIKey(context.Background(), k, f.hasher.Hash(key)); err != nil {
		tb.Fatal(err)
	}
	return k, key
}

// update applies change to the stored key, as the management API does, without telling the Checker.
func (f *checkerFixture) update(tb testing.TB, id string, change func(*auth.APIKey)) {
	tb.Helper()
	k, err := f.store.FindAPIKey(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	change(k)
	if err := f.store.UpdateAPIKey(context.Background(), k); err != nil {
		tb.Fatal(err)
	}
}

// rotate gives the stored key a new secret, the old one working until oldExpireAt (zero: not at all), without
// telling the Checker, and returns the new key.
func (f *checkerFixture) rotate(tb testing.TB, id string, oldExpireAt time.Time) string {
	tb.Helper()
	k, err := f.store.FindAPIKey(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	key, _ := apikey.New(apikey.DefaultPrefix)
	k.Hint = apikey.Hint(key)
	if err := f.store.RotateAPIKey(context.Background(), k, f.hasher.Hash(key), oldExpireAt); err != nil {
		tb.Fatal(err)
	}
	return key
}

// wantOK checks that key passes and returns what Check returned.
func (f *checkerFixture) wantOK(tb testing.TB, what, key string) *apikey.Checked {
	tb.Helper()
	ch, err := f.c.Check(context.Background(), key)
	if err != nil {
		tb.Fatalf("%s: Check: %v", what, err)
	}
	return ch
}

// wantRefused checks that key is refused with code and returns the error.
func (f *checkerFixture) wantRefused(tb testing.TB, what, key, code string) error {
	tb.Helper()
	ch, err := f.c.Check(context.Background(), key)
	if ch != nil || !errors.Is(err, apikey.ErrRefused) || apikey.Code(err) != code {
		tb.Fatalf("%s: Check = %v, %v (code %q); want refused, code %q", what, ch, err, apikey.Code(err), code)
	}
	return err
}

// TestCheckMalformed: a key that fails the format or the checksum is refused as malformed without any store call.
func TestCheckMalformed(t *testing.T) {
	f := newCheckerFixture(t, time.Hour)
	_, good := f.newKey(t, "read")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for _, key := range []string{
		"",
		"gate_",
		good[:len(good)-1],          // truncated
		good + "0",                  // one character too many
		flip(good, len(good)-1),     // checksum
		flip(good, 10),              // body: the checksum no longer matches
		"Gate" + good[4:],           // prefix
		"gate-" + good[5:],          // separator
		good[:20] + "!" + good[21:], // not base62
		"Bearer " + good,            // pasted with its scheme
		good + "\n",                 // with a newline
		"gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W2", // a made-up key whose checksum is off by one
	} {
		err := f.wantRefused(t, "malformed key", key, "malformed")
		if !errors.Is(err, apikey.ErrMalformed) {
			t.Errorf("Check(malformed): %v does not match ErrMalformed", err)
		}
		if bytes.Contains([]byte(err.Error()), []byte(good[5:15])) {
			t.Errorf("the error %q holds the key", err)
		}
	}
	if n := f.store.calls(); n != 0 {
		t.Errorf("malformed keys made %d store calls, want 0", n)
	}
}

// TestCheckCache: a good key is read once, then answered from the cache; a well-formed key nobody has is read
// once too, and refused as not_found.
func TestCheckCache(t *testing.T) {
	f := newCheckerFixture(t, time.Hour)
	k, key := f.newKey(t, "write", "read", "nope") // a scope the API does not define is dropped
	ch := f.wantOK(t, "first check", key)
	if ch.Key.ID != k.ID || ch.Only == nil || ch.Only.API.Identifier != f.api.Identifier ||
		!slices.Equal(ch.Only.Scopes, []string{"read", "write"}) || ch.Grants[f.api.Identifier] != ch.Only {
		t.Errorf("Check = key %s, only %+v, grants %v", ch.Key.ID, ch.Only, ch.Grants)
	}
	for range 100 {
		f.wantOK(t, "cached check", key)
	}
	if got := f.store.byHash.Load(); got != 1 {
		t.Errorf("101 checks of one key read the store %d times, want 1", got)
	}

	unknown, _ := apikey.New(apikey.DefaultPrefix)
	for range 10 {
		f.wantRefused(t, "a key nobody has", unknown, "not_found")
	}
	if got := f.store.byHash.Load(); got != 2 {
		t.Errorf("after 10 checks of an unknown key the store was read %d times, want 2", got)
	}

	// The cache entry ends with the TTL.
	f.advance(time.Hour)
	f.wantOK(t, "after the TTL", key)
	if got := f.store.byHash.Load(); got != 3 {
		t.Errorf("a check after the TTL did not read the store (%d reads)", got)
	}
}

// TestCheckNoCache: with a negative CacheTTL every check reads the store.
func TestCheckNoCache(t *testing.T) {
	f := newCheckerFixture(t, -1)
	_, key := f.newKey(t, "read")
	for range 3 {
		f.wantOK(t, "uncached", key)
	}
	if got := f.store.byHash.Load(); got != 3 {
		t.Errorf("3 uncached checks read the store %d times", got)
	}
}

// TestCheckInvalidate: a change made behind the Checker's back is not seen while the entry is cached (the cache
// is real); Invalidate makes the very next check read the store again and see a permission change, a disabled
// key, a rotation and a deletion. A deleted or rotated-out key is refused exactly as one that never existed.
func TestCheckInvalidate(t *testing.T) {
	f := newCheckerFixture(t, time.Hour)
	k, key := f.newKey(t, "read")
	_, otherKey := f.newKey(t, "read")
	f.wantOK(t, "before", key)
	f.wantOK(t, "the other key, before", otherKey)
	never, _ := apikey.New(apikey.DefaultPrefix)
	neverErr := f.wantRefused(t, "a key that never existed", never, "not_found")

	// Permissions.
	f.update(t, k.ID, func(k *auth.APIKey) { k.Grants[0].Scopes = []string{"read", "admin"} })
	if ch := f.wantOK(t, "changed, not invalidated", key); !slices.Equal(ch.Only.Scopes, []string{"read"}) {
		t.Fatalf("the cache did not hold the key: scopes %v before Invalidate", ch.Only.Scopes)
	}
	f.c.Invalidate(k.ID)
	if ch := f.wantOK(t, "after a permission change", key); !slices.Equal(ch.Only.Scopes, []string{"admin", "read"}) {
		t.Errorf("after Invalidate: scopes %v, want [admin read]", ch.Only.Scopes)
	}

	// Disabled, then enabled.
	f.update(t, k.ID, func(k *auth.APIKey) { k.Disabled = true })
	f.c.Invalidate(k.ID)
	f.wantRefused(t, "disabled", key, "disabled")
	f.update(t, k.ID, func(k *auth.APIKey) { k.Disabled = false })
	f.c.Invalidate(k.ID)
	f.wantOK(t, "enabled again", key)

	// Rotation without a grace period: the old key is unknown at once.
	reads := f.store.byHash.Load()
	newKey := f.rotate(t, k.ID, time.Time{})
	f.c.Invalidate(k.ID)
	rotatedErr := f.wantRefused(t, "rotated out", key, "not_found")
	f.wantOK(t, "the new key", newKey)
	if got := f.store.byHash.Load() - reads; got != 2 {
		t.Errorf("after Invalidate, the old and the new key made %d reads, want 2", got)
	}

	// Deletion.
	if err := f.store.DeleteAPIKey(context.Background(), k.ID, 0); err != nil {
		t.Fatal(err)
	}
	f.c.Invalidate(k.ID)
	deletedErr := f.wantRefused(t, "deleted", newKey, "not_found")
	f.wantRefused(t, "deleted, its old key", key, "not_found")
	if neverErr.Error() != deletedErr.Error() || neverErr.Error() != rotatedErr.Error() {
		t.Errorf("never existed: %q, deleted: %q, rotated out: %q; want one answer", neverErr, deletedErr, rotatedErr)
	}

	// Invalidating one key leaves the others cached.
	reads = f.store.byHash.Load()
	f.wantOK(t, "the other key", otherKey)
	if f.store.byHash.Load() != reads {
		t.Errorf("Invalidate of one key dropped another key's entry")
	}
}

// TestCheckInvalidateAll: a change to an API (scopes removed) is seen by every key after InvalidateAll.
func TestCheckInvalidateAll(t *testing.T) {
	f := newCheckerFixture(t, time.Hour)
	_, k1 := f.newKey(t, "read", "write")
	_, k2 := f.newKey(t, "write")
	f.wantOK(t, "k1", k1)
	f.wantOK(t, "k2", k2)
	a := *f.api
	a.Scopes = []auth.Scope{{Name: "read"}}
	if err := f.store.UpdateAPI(context.Background(), &a); err != nil {
		t.Fatal(err)
	}
	if ch := f.wantOK(t, "k1 cached", k1); len(ch.Only.Scopes) != 2 {
		t.Fatalf("the cache did not hold k1: %v", ch.Only.Scopes)
	}
	f.c.InvalidateAll()
	if ch := f.wantOK(t, "k1", k1); !slices.Equal(ch.Only.Scopes, []string{"read"}) {
		t.Errorf("k1 after InvalidateAll: %v, want [read]", ch.Only.Scopes)
	}
	if ch := f.wantOK(t, "k2", k2); len(ch.Only.Scopes) != 0 {
		t.Errorf("k2 after InvalidateAll: %v, want none", ch.Only.Scopes)
	}
}

// TestCheckLoadRacesInvalidate: a load that read the key before a change and answers after the change's
// Invalidate may answer its own check with what it read (they ran at the same time), but is not cached, and a
// check that starts after the Invalidate does not wait for it and take its answer: it reads the store itself.
func TestCheckLoadRacesInvalidate(t *testing.T) {
	f := newCheckerFixture(t, time.Hour)
	k, key := f.newKey(t, "read")
	release := sync.OnceFunc(func() { close(f.store.release) })
	defer release()
	f.store.hold.Store(true)
	first := make(chan error, 1)
	go func() { _, err := f.c.Check(context.Background(), key); first <- err }()
	<-f.store.entered // the load has read the key, still enabled

	f.update(t, k.ID, func(k *auth.APIKey) { k.Disabled = true })
	f.c.Invalidate(k.ID)

	second := make(chan error, 1)
	go func() { _, err := f.c.Check(context.Background(), key); second <- err }()
	select {
	case err := <-second:
		if apikey.Code(err) != "disabled" {
			t.Errorf("a check that started after Invalidate: %v, want disabled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a check that started after Invalidate waited for a load that started before it")
	}

	release()
	if err := <-first; err != nil {
		t.Logf("the racing check: %v", err) // either answer is right for a check concurrent with the change
	}
	reads := f.store.byHash.Load()
	f.wantRefused(t, "after the racing load finished", key, "disabled")
	f.wantRefused(t, "and again", key, "disabled")
	if got := f.store.byHash.Load() - reads; got > 1 {
		t.Errorf("%d reads after the race, want at most 1", got)
	}
}

// TestCheckGracePeriod: a key rotated with a grace period works until the grace period ends, and then is refused
// as not_found without another read; the new key works throughout.
func TestCheckGracePeriod(t *testing.T) {
	f := newCheckerFixture(t, time.Hour)
	k, old := f.newKey(t, "read")
	f.wantOK(t, "before", old)
	newKey := f.rotate(t, k.ID, f.clock().Add(10*time.Minute))
	f.c.Invalidate(k.ID)
	f.wantOK(t, "old key in its grace period", old)
	f.wantOK(t, "new key", newKey)
	reads := f.store.byHash.Load()
	f.advance(10*time.Minute - time.Millisecond)
	f.wantOK(t, "old key just before the end of its grace period", old)
	f.advance(time.Millisecond)
	f.wantRefused(t, "old key at the end of its grace period", old, "not_found")
	f.wantOK(t, "new key after the grace period", newKey)
	if got := f.store.byHash.Load() - reads; got != 0 {
		t.Errorf("%d reads: the grace period's end should be judged on the cached entry", got)
	}
}

// TestCheckExpiredDisabled: the codes of an expired and a disabled key; a disabled key that has also expired is
// disabled.
func TestCheckExpiredDisabled(t *testing.T) {
	f := newCheckerFixture(t, time.Hour)
	k, key := f.newKey(t, "read")
	f.update(t, k.ID, func(k *auth.APIKey) { k.ExpiresAt = f.clock().Add(time.Minute) })
	f.c.Invalidate(k.ID)
	f.wantOK(t, "before expiry", key)
	f.advance(time.Minute)
	f.wantRefused(t, "at expiry", key, "expired")
	f.update(t, k.ID, func(k *auth.APIKey) { k.Disabled = true })
	f.c.Invalidate(k.ID)
	f.wantRefused(t, "expired and disabled", key, "disabled")
	if got := apikey.Code(errBoom); got != "" {
		t.Errorf("Code(another error) = %q, want \"\"", got)
	}
}

// TestCheckStoreError: a store failure is not a refusal, and is not cached.
func TestCheckStoreError(t *testing.T) {
	f := newCheckerFixture(t, time.Hour)
	_, key := f.newKey(t, "read")
	f.store.findErr.Store(&errBoom)
	ch, err := f.c.Check(context.Background(), key)
	if ch != nil || !errors.Is(err, errBoom) || errors.Is(err, apikey.ErrRefused) || apikey.Code(err) != "" {
		t.Fatalf("Check with the store down = %v, %v; want the store's error, not a refusal", ch, err)
	}
	f.store.findErr.Store(nil)
	f.wantOK(t, "store back", key)
}

// TestFlush: checks record last-used times, written in one batch by Flush; a failed write is kept for the next
// flush; nothing to write is no store call.
func TestFlush(t *testing.T) {
	f := newCheckerFixture(t, time.Hour)
	ctx := context.Background()
	k1, key1 := f.newKey(t, "read")
	k2, key2 := f.newKey(t, "read")
	f.c.Flush(ctx)
	if got := f.store.touches.Load(); got != 0 {
		t.Errorf("Flush with nothing to write made %d store calls", got)
	}
	t1 := f.clock()
	f.wantOK(t, "k1", key1)
	f.advance(time.Second)
	f.wantOK(t, "k2", key2)
	f.wantRefused(t, "a refused check records nothing", "gate_nope", "malformed")

	f.store.touchErr.Store(&errBoom)
	f.c.Flush(ctx)
	if got := f.store.touches.Load(); got != 1 {
		t.Fatalf("Flush made %d writes, want 1 batch", got)
	}
	if !bytes.Contains(f.logs.Bytes(), []byte("retrying at the next flush")) {
		t.Errorf("the failed flush was not logged: %s", f.logs)
	}
	for _, id := range []string{k1.ID, k2.ID} {
		if k, _ := f.store.FindAPIKey(ctx, id); !k.LastUsedAt.IsZero() {
			t.Errorf("%s: last used %v after a failed flush", id, k.LastUsedAt)
		}
	}

	f.advance(time.Second)
	t3 := f.clock()
	f.wantOK(t, "k2 again, between the flushes", key2)
	f.store.touchErr.Store(nil)
	f.c.Flush(ctx)
	if got := f.store.touches.Load(); got != 2 {
		t.Errorf("%d writes after the retry, want 2", got)
	}
	for id, want := range map[string]time.Time{k1.ID: t1, k2.ID: t3} {
		k, err := f.store.FindAPIKey(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !k.LastUsedAt.Equal(want) {
			t.Errorf("%s: last used %v, want %v", id, k.LastUsedAt, want)
		}
	}
	f.c.Flush(ctx)
	if got := f.store.touches.Load(); got != 2 {
		t.Errorf("a flush with nothing new wrote again (%d writes)", got)
	}
}

// BenchmarkCheck is the in-process check of a good key with a warm cache: Parse, the HMAC of the key, a map
// lookup under a read lock, and the last-used record.
func BenchmarkCheck(b *testing.B) {
	f := newCheckerFixture(b, time.Hour)
	_, key := f.newKey(b, "read")
	ctx := context.Background()
	f.wantOK(b, "warm", key)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.c.Check(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckParallel is BenchmarkCheck from every P at once, each with its own key.
func BenchmarkCheckParallel(b *testing.B) {
	f := newCheckerFixture(b, time.Hour)
	keys := make(chan string, 64)
	for range cap(keys) {
		_, key := f.newKey(b, "read")
		f.wantOK(b, "warm", key)
		keys <- key
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := <-keys
		for pb.Next() {
			if _, err := f.c.Check(ctx, key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCheckUncached is a check that reads the store every time (CacheTTL < 0): the SQLite lookup by hash and
// the API of its grant, in a database of one key.
func BenchmarkCheckUncached(b *testing.B) {
	f := newCheckerFixture(b, -1)
	_, key := f.newKey(b, "read")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.c.Check(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckMalformed is the refusal of a key whose checksum is wrong: no hash, no lookup.
func BenchmarkCheckMalformed(b *testing.B) {
	f := newCheckerFixture(b, time.Hour)
	ctx := context.Background()
	const key = "gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W2"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.c.Check(ctx, key); err == nil {
			b.Fatal("accepted")
		}
	}
}

// TestReviewCheckPastGraceLikeUnknown: a rotated-out key past its grace period, whose hash is not yet pruned, costs
// the store what a key that never existed costs (one read, no API lookups), so its refusal takes no longer: which
// keys once existed is not told by the time either.
func TestReviewCheckPastGraceLikeUnknown(t *testing.T) {
	f := newCheckerFixture(t, time.Hour)
	k, old := f.newKey(t, "read")
	f.rotate(t, k.ID, f.clock().Add(time.Minute))
	f.advance(2 * time.Minute)
	never, _ := apikey.New(apikey.DefaultPrefix)
	cost := func(key string) (int64, int64) {
		hashes, apis := f.store.byHash.Load(), f.store.apis.Load()
		f.wantRefused(t, "refused", key, "not_found")
		return f.store.byHash.Load() - hashes, f.store.apis.Load() - apis
	}
	nh, na := cost(never)
	oh, oa := cost(old)
	if oh != nh || oa != na {
		t.Errorf("a key past its grace period cost %d reads and %d API lookups, one that never existed %d and %d", oh, oa, nh, na)
	}
}

// TestCheckForInvisible: a key the caller may not see is refused as unknown, whether it works, is disabled or is
// expired, and its use is not recorded; a visible key is checked as usual and its grace period end is returned.
func TestCheckForInvisible(t *testing.T) {
	f := newCheckerFixture(t, time.Hour)
	ctx := context.Background()
	_, key := f.newKey(t, "read")
	hidden := func(*auth.APIKey) bool { return false }
	if ch, _, err := f.c.CheckFor(ctx, key, hidden); ch != nil || apikey.Code(err) != "not_found" {
		t.Errorf("CheckFor an invisible working key = %v, %v; want not_found", ch, err)
	}
	f.c.Flush(ctx)
	if got := f.store.touches.Load(); got != 0 {
		t.Errorf("an invisible key's check was recorded as a use (%d writes)", got)
	}
	ch, until, err := f.c.CheckFor(ctx, key, func(*auth.APIKey) bool { return true })
	if err != nil || ch == nil || !until.IsZero() {
		t.Errorf("CheckFor a visible current key = %v, %v, %v; want the key, no end", ch, until, err)
	}
}

// TestCheckStaleIfError: while the store is unreachable (auth.ErrUnavailable), a key checked within StaleIfError
// past the TTL is still answered from the cache; an invalidated one, one checked too long ago, or any error that is
// not an outage, are not.
func TestCheckStaleIfError(t *testing.T) {
	f := newCheckerFixture(t, 5*time.Second)
	f.c = apikey.NewChecker(f.store, f.hasher, apikey.CheckerOptions{CacheTTL: 5 * time.Second, StaleIfError: 30 * time.Second,
		Now: f.clock, Logger: slog.New(slog.NewTextHandler(f.logs, nil))})
	k1, key1 := f.newKey(t, "read")
	k2, key2 := f.newKey(t, "read")
	f.wantOK(t, "first", key1)
	f.wantOK(t, "first", key2)
	down := fmt.Errorf("find: %w", auth.ErrUnavailable)
	f.store.findErr.Store(&down)
	f.c.Invalidate(k2.ID)
	f.advance(20 * time.Second)
	f.wantOK(t, "cached, store down", key1)
	if _, err := f.c.Check(context.Background(), key2); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("invalidated key, store down: %v, want ErrUnavailable", err)
	}
	f.store.findErr.Store(&errBoom)
	if _, err := f.c.Check(context.Background(), key1); !errors.Is(err, errBoom) {
		t.Errorf("store failing otherwise: %v, want its error, not a stale answer", err)
	}
	f.store.findErr.Store(&down)
	f.advance(20 * time.Second)
	if _, err := f.c.Check(context.Background(), key1); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("cached too long ago, store down: %v, want ErrUnavailable", err)
	}
	f.store.findErr.Store(nil)
	f.wantOK(t, "store back", key1)
	_ = k1
}
