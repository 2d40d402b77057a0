package keyset

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/sqlstore"
)

// openSQLite opens the SQLite database file at path, closed when the test ends.
func openSQLite(t *testing.T, path string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(t.Context(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// createAPI stores an API whose tokens live for lifetime: the retention of retired keys follows it.
func createAPI(t *testing.T, s auth.Store, lifetime time.Duration) {
	t.Helper()
	now := time.Now()
	a := &auth.API{ID: auth.NewID("api"), Identifier: "https://api.example.com/" + auth.NewID("x"), Name: "API",
		TokenLifetime: lifetime, SigningAlg: auth.ES256, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateAPI(t.Context(), a); err != nil {
		t.Fatal(err)
	}
}

// countingStore counts the rotation steps that succeeded, by kind.
type countingStore struct {
	auth.Store
	mu      sync.Mutex
	nexts   int
	rotated int
	removed int
}

func (s *countingStore) CreateNextSigningKey(ctx context.Context, k *auth.SigningKey, currentKID string) error {
	err := s.Store.CreateNextSigningKey(ctx, k, currentKID)
	s.count(err, &s.nexts)
	return err
}

func (s *countingStore) RotateSigningKey(ctx context.Context, alg auth.Algorithm, cur, next string, at time.Time) error {
	err := s.Store.RotateSigningKey(ctx, alg, cur, next, at)
	s.count(err, &s.rotated)
	return err
}

func (s *countingStore) DeleteRetiredSigningKey(ctx context.Context, kid string, by time.Time) error {
	err := s.Store.DeleteRetiredSigningKey(ctx, kid, by)
	s.count(err, &s.removed)
	return err
}

func (s *countingStore) count(err error, n *int) {
	if err == nil {
		s.mu.Lock()
		*n++
		s.mu.Unlock()
	}
}

func (s *countingStore) counts() [3]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return [3]int{s.nexts, s.rotated, s.removed}
}

// states returns the stored keys of alg as kid → state.
func states(t *testing.T, s auth.Store, alg auth.Algorithm) map[string]auth.KeyState {
	t.Helper()
	keys, err := s.ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]auth.KeyState{}
	for _, k := range keys {
		if k.Alg == alg {
			m[k.ID] = k.State
		}
	}
	return m
}

// published returns the kids in the keyset's JWKS.
func published(t *testing.T, k *Keyset) []string {
	t.Helper()
	body, _ := k.JWKS()
	var kids []string
	for _, key := range parseJWKS(t, body) {
		kids = append(kids, key["kid"])
	}
	slices.Sort(kids)
	return kids
}

// signingKid returns the kid the keyset signs alg's tokens with.
func signingKid(t *testing.T, k *Keyset, alg auth.Algorithm) string {
	t.Helper()
	tok, err := k.Sign(context.Background(), alg, claims(t))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := k.JWKS()
	return verify(t, body, alg, tok)["kid"].(string)
}

func sortedKeys(m map[string]auth.KeyState) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestRotationSchedule follows one key through its life with the default schedule around a one-day rotation
// period: published as next 10m30s (twice the max-age plus the reload interval) before it signs, current for a
// day, retired until its tokens (1 hour) have expired, plus the reload interval and the leeway, then removed.
func TestRotationSchedule(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gh.db")
	synctest.Test(t, func(t *testing.T) {
		store := openSQLite(t, path)
		createAPI(t, store, time.Hour)
		k := newKeyset(t, store, randomKey(), Options{RotateEvery: 24 * time.Hour, Logger: slog.New(slog.DiscardHandler)})
		if err := k.Ensure(t.Context(), auth.ES256); err != nil {
			t.Fatal(err)
		}
		first := signingKid(t, k, auth.ES256)
		t0 := time.Now()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go k.Run(ctx)

		// sleepUntil sleeps until d after t0, then lets Run finish what it does at that instant.
		sleepUntil := func(d time.Duration) {
			time.Sleep(time.Until(t0.Add(d)))
			synctest.Wait()
		}
		publishAt := 24*time.Hour - (10*time.Minute + 30*time.Second)
		sleepUntil(publishAt - time.Second)
		if got := states(t, store, auth.ES256); len(got) != 1 {
			t.Fatalf("before the next key is due: keys %v, want only the first", got)
		}
		sleepUntil(publishAt)
		got := states(t, store, auth.ES256)
		if len(got) != 2 {
			t.Fatalf("when the next key is due: keys %v, want the first and a next key", got)
		}
		var second string
		for kid, st := range got {
			if kid != first {
				second = kid
				if st != auth.KeyNext {
					t.Errorf("the new key is %s, want next", st)
				}
			}
		}
		if diff := cmp.Diff(sortedKeys(got), published(t, k)); diff != "" {
			t.Errorf("the JWKS does not publish the next key (-stored +published):\n%s", diff)
		}
		if kid := signingKid(t, k, auth.ES256); kid != first {
			t.Errorf("signing with %s before the rotation, want the first key", kid)
		}

		sleepUntil(24*time.Hour - time.Second)
		if kid := signingKid(t, k, auth.ES256); kid != first {
			t.Errorf("signing with %s a second before the rotation, want the first key", kid)
		}
		sleepUntil(24 * time.Hour)
		want := map[string]auth.KeyState{first: auth.KeyRetired, second: auth.KeyCurrent}
		if diff := cmp.Diff(want, states(t, store, auth.ES256)); diff != "" {
			t.Errorf("after the rotation (-want +got):\n%s", diff)
		}
		if kid := signingKid(t, k, auth.ES256); kid != second {
			t.Errorf("signing with %s after the rotation, want the second key", kid)
		}

		removeAt := 24*time.Hour + time.Hour + 30*time.Second + RetireLeeway
		sleepUntil(removeAt - time.Second)
		if got := published(t, k); !slices.Contains(got, first) {
			t.Errorf("the retired key left the JWKS before its tokens expired: %v", got)
		}
		sleepUntil(removeAt)
		if diff := cmp.Diff(map[string]auth.KeyState{second: auth.KeyCurrent}, states(t, store, auth.ES256)); diff != "" {
			t.Errorf("once the retired key's tokens expired (-want +got):\n%s", diff)
		}
		if got := published(t, k); slices.Contains(got, first) {
			t.Errorf("the removed key is still published: %v", got)
		}
		cancel()
	})
}

// TestRotationSharedStore: two instances on one database, both running, rotate three times in three periods — once
// per period, not once per instance — and sign with the same key after each reload.
func TestRotationSharedStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gh.db")
	synctest.Test(t, func(t *testing.T) {
		encKey := randomKey()
		opts := Options{RotateEvery: 6 * time.Hour, Logger: slog.New(slog.DiscardHandler)}
		counting := []*countingStore{{Store: openSQLite(t, path)}, {Store: openSQLite(t, path)}}
		createAPI(t, counting[0], 10*time.Minute)
		a := newKeyset(t, counting[0], encKey, opts)
		b := newKeyset(t, counting[1], encKey, opts)
		if err := a.Ensure(t.Context(), auth.EdDSA); err != nil {
			t.Fatal(err)
		}
		if err := b.Ensure(t.Context(), auth.EdDSA); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go a.Run(ctx)
		go b.Run(ctx)

		t0 := time.Now()
		signers := map[string]bool{signingKid(t, a, auth.EdDSA): true}
		for period := 1; period <= 3; period++ {
			// Half a minute past the rotation, both have reloaded.
			time.Sleep(time.Until(t0.Add(time.Duration(period)*6*time.Hour + 30*time.Second)))
			synctest.Wait()
			ka, kb := signingKid(t, a, auth.EdDSA), signingKid(t, b, auth.EdDSA)
			if ka != kb {
				t.Errorf("period %d: the instances sign with %s and %s", period, ka, kb)
			}
			signers[ka] = true
			if len(signers) != period+1 {
				t.Errorf("period %d: %d keys have signed, want %d", period, len(signers), period+1)
			}
		}
		got := [3]int{}
		for _, c := range counting {
			n := c.counts()
			for i := range got {
				got[i] += n[i]
			}
		}
		// The third period's retired key is still within its retention.
		if want := [3]int{3, 3, 2}; got != want {
			t.Errorf("next keys published, rotations, keys removed = %v over both instances, want %v", got, want)
		}
		cancel()
	})
}

func TestRotateNow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gh.db")
	synctest.Test(t, func(t *testing.T) {
		store := openSQLite(t, path)
		k := newKeyset(t, store, randomKey(), Options{})
		ctx := t.Context()
		if _, err := k.RotateNow(ctx, auth.RS256); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("RotateNow without a current key: %v, want ErrNotFound", err)
		}
		if err := k.Ensure(ctx, auth.RS256); err != nil {
			t.Fatal(err)
		}
		first := signingKid(t, k, auth.RS256)

		next, err := k.RotateNow(ctx, auth.RS256)
		if err != nil {
			t.Fatal(err)
		}
		ahead := 10*time.Minute + 30*time.Second
		if next.State != auth.KeyNext || !next.Next.Equal(next.CreatedAt.Add(ahead)) {
			t.Errorf("RotateNow = %+v, want a next key that signs %s after it was published", next, ahead)
		}
		if !slices.Contains(published(t, k), next.ID) {
			t.Error("the next key is not published")
		}
		if kid := signingKid(t, k, auth.RS256); kid != first {
			t.Errorf("signing with %s right after RotateNow, want the first key: the next one is not published long enough", kid)
		}
		// Asking again publishes no second key.
		again, err := k.RotateNow(ctx, auth.RS256)
		if err != nil || again.ID != next.ID {
			t.Errorf("RotateNow again = %+v, %v; want the same next key", again, err)
		}
		if n := len(states(t, store, auth.RS256)); n != 2 {
			t.Errorf("%d keys after RotateNow twice, want 2", n)
		}

		// Once it has been published long enough, Maintain (Run) or RotateNow promotes it.
		time.Sleep(ahead)
		promoted, err := k.RotateNow(ctx, auth.RS256)
		if err != nil || promoted.ID != next.ID || promoted.State != auth.KeyCurrent {
			t.Errorf("RotateNow after %s = %+v, %v; want the next key current", ahead, promoted, err)
		}
		if kid := signingKid(t, k, auth.RS256); kid != next.ID {
			t.Errorf("signing with %s, want the promoted key", kid)
		}
		want := map[string]auth.KeyState{first: auth.KeyRetired, next.ID: auth.KeyCurrent}
		if diff := cmp.Diff(want, states(t, store, auth.RS256)); diff != "" {
			t.Errorf("keys (-want +got):\n%s", diff)
		}
	})
}

func TestRotateImmediately(t *testing.T) {
	store := openSQLite(t, filepath.Join(t.TempDir(), "gh.db"))
	k := newKeyset(t, store, randomKey(), Options{})
	ctx := t.Context()
	if err := k.Ensure(ctx, auth.ES256); err != nil {
		t.Fatal(err)
	}
	first := signingKid(t, k, auth.ES256)
	old, err := k.Sign(ctx, auth.ES256, claims(t))
	if err != nil {
		t.Fatal(err)
	}
	info, err := k.RotateImmediately(ctx, auth.ES256)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != auth.KeyCurrent || info.ID == first {
		t.Errorf("RotateImmediately = %+v, want a new current key", info)
	}
	if kid := signingKid(t, k, auth.ES256); kid != info.ID {
		t.Errorf("signing with %s, want the new key %s", kid, info.ID)
	}
	// The old key is retired, not revoked: its tokens still verify.
	if _, err := k.Verify(old); err != nil {
		t.Errorf("a token of the retired key: %v", err)
	}
	want := map[string]auth.KeyState{first: auth.KeyRetired, info.ID: auth.KeyCurrent}
	if diff := cmp.Diff(want, states(t, store, auth.ES256)); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
}

// TestRevoke: the emergency path. The key leaves this instance's JWKS and Verify at once, tokens it signed stop
// verifying, and the algorithm signs with its next key or a new one; another instance drops it at its next reload.
func TestRevoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gh.db")
	synctest.Test(t, func(t *testing.T) {
		encKey := randomKey()
		store := openSQLite(t, path)
		k := newKeyset(t, store, encKey, Options{})
		other := newKeyset(t, openSQLite(t, path), encKey, Options{Logger: slog.New(slog.DiscardHandler)})
		ctx := t.Context()
		for _, alg := range []auth.Algorithm{auth.ES256, auth.EdDSA} {
			if err := k.Ensure(ctx, alg); err != nil {
				t.Fatal(err)
			}
		}
		if err := other.Load(ctx); err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		go other.Run(runCtx)

		// ES256 has a next key; EdDSA has none.
		next, err := k.RotateNow(ctx, auth.ES256)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			alg     auth.Algorithm
			hasNext bool
		}{{auth.ES256, true}, {auth.EdDSA, false}} {
			victim := signingKid(t, k, tt.alg)
			tok, err := k.Sign(ctx, tt.alg, claims(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := k.Verify(tok); err != nil { // and remembered as verified
				t.Fatal(err)
			}
			if _, err := other.Verify(tok); err != nil {
				t.Fatal(err)
			}
			if err := k.Revoke(ctx, victim); err != nil {
				t.Fatalf("Revoke(%s key): %v", tt.alg, err)
			}
			if slices.Contains(published(t, k), victim) {
				t.Errorf("%s: the revoked key is still published", tt.alg)
			}
			if _, err := k.Verify(tok); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("%s: a token of the revoked key: %v, want ErrInvalidToken", tt.alg, err)
			}
			signer := signingKid(t, k, tt.alg)
			switch {
			case signer == victim:
				t.Errorf("%s: still signing with the revoked key", tt.alg)
			case tt.hasNext && signer != next.ID:
				t.Errorf("%s: signing with %s, want the next key %s", tt.alg, signer, next.ID)
			}
			// The other instance drops it at its next reload.
			time.Sleep(30 * time.Second)
			synctest.Wait()
			if _, err := other.Verify(tok); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("%s: the other instance, after its reload: %v, want ErrInvalidToken", tt.alg, err)
			}
			if slices.Contains(published(t, other), victim) {
				t.Errorf("%s: the other instance still publishes the revoked key", tt.alg)
			}
		}
		if err := k.Revoke(ctx, "no-such-kid"); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("Revoke(unknown kid): %v, want ErrNotFound", err)
		}
		cancel()
	})
}

func TestNewRefusesUnsafeSchedule(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"next key published for less than max-age plus reload", Options{JWKSMaxAge: 10 * time.Minute, PublishAhead: 10 * time.Minute}},
		{"rotation period shorter than the publication", Options{RotateEvery: 5 * time.Minute}},
	}
	for _, tt := range tests {
		if _, err := New(newMemStore(), randomKey(), tt.opts); err == nil {
			t.Errorf("%s: New succeeded, want an error", tt.name)
		}
	}
	ok := Options{JWKSMaxAge: 10 * time.Minute, PublishAhead: 10*time.Minute + 30*time.Second, RotateEvery: time.Hour}
	if _, err := New(newMemStore(), randomKey(), ok); err != nil {
		t.Errorf("New with the least safe publication: %v", err)
	}
}

func TestList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gh.db")
	synctest.Test(t, func(t *testing.T) {
		store := openSQLite(t, path)
		createAPI(t, store, 2*time.Hour)
		k := newKeyset(t, store, randomKey(), Options{RotateEvery: 24 * time.Hour})
		ctx := t.Context()
		if err := k.Ensure(ctx, auth.EdDSA); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now().UTC()
		first := signingKid(t, k, auth.EdDSA)
		time.Sleep(time.Hour)
		promoted, err := k.RotateImmediately(ctx, auth.EdDSA)
		if err != nil {
			t.Fatal(err)
		}
		next, err := k.RotateNow(ctx, auth.EdDSA)
		if err != nil {
			t.Fatal(err)
		}
		t1 := t0.Add(time.Hour)
		ahead := 10*time.Minute + 30*time.Second
		want := []KeyInfo{
			{ID: first, Alg: auth.EdDSA, State: auth.KeyRetired, CreatedAt: t0, Since: t1, Next: t1.Add(2*time.Hour + 30*time.Second + RetireLeeway)},
			{ID: promoted.ID, Alg: auth.EdDSA, State: auth.KeyCurrent, CreatedAt: t1, Since: t1, Next: t1.Add(ahead)},
			{ID: next.ID, Alg: auth.EdDSA, State: auth.KeyNext, CreatedAt: t1, Since: t1, Next: t1.Add(ahead)},
		}
		got, err := k.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		byID := func(a, b KeyInfo) int { return strings.Compare(a.ID, b.ID) }
		slices.SortFunc(want, byID)
		slices.SortFunc(got, byID)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("List (-want +got):\n%s", diff)
		}
	})
}
