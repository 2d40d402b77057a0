package revocation_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/revocation"
	"github.com/gatehouse/gatehouse/internal/sqlstore"
)

func openStore(t *testing.T, path string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newList(t *testing.T, store auth.LifecycleStore) *revocation.List {
	t.Helper()
	l := revocation.New(store, revocation.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := l.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestRevokeToken(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "gh.db"))
	l := newList(t, store)
	ctx := t.Context()
	iat := time.Now().Unix()
	if l.Revoked("jti-1", "svc", iat) {
		t.Fatal("a token is revoked before anything was")
	}
	if err := l.RevokeToken(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !l.Revoked("jti-1", "svc", iat) {
		t.Error("the revoked token is not revoked")
	}
	if l.Revoked("jti-2", "svc", iat) {
		t.Error("another token of the same subject is revoked")
	}
	if l.Revoked("", "svc", iat) {
		t.Error("a token without jti is revoked")
	}
	if err := l.RevokeToken(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	// It is in the store: a new list (a restart) has it.
	if !newList(t, store).Revoked("jti-1", "svc", iat) {
		t.Error("after a restart, the revoked token is not revoked")
	}
}

func TestRevokeSubject(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "gh.db"))
	l := newList(t, store)
	ctx := t.Context()
	cut := time.Unix(1_800_000_000, 400_000_000) // .4 s into a second
	if err := l.RevokeSubject(ctx, "svc", cut); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sub  string
		iat  int64
		want bool
	}{
		{"issued a second before", "svc", cut.Unix() - 1, true},
		{"issued in the cut-off's second", "svc", cut.Unix(), true},
		{"issued the second after", "svc", cut.Unix() + 1, false},
		{"another subject", "other", cut.Unix() - 100, false},
		{"no subject", "", cut.Unix() - 100, false},
	}
	check := func(when string, l *revocation.List) {
		t.Helper()
		for _, tt := range tests {
			if got := l.Revoked("some-jti", tt.sub, tt.iat); got != tt.want {
				t.Errorf("%s: %s: Revoked = %t, want %t", when, tt.name, got, tt.want)
			}
		}
	}
	check("at once", l)
	// A cut-off only moves forward.
	if err := l.RevokeSubject(ctx, "svc", cut.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("after an earlier cut-off", l)
	check("after a restart", newList(t, store))

	if err := l.RevokeSubject(ctx, "svc", cut.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !l.Revoked("some-jti", "svc", cut.Unix()+1) {
		t.Error("a later cut-off did not revoke a token issued before it")
	}
}

// TestPoll: a revocation made through one instance reaches another at its next poll, even one stamped by a clock
// running behind.
func TestPoll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gh.db")
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		a, b := newList(t, openStore(t, path)), newList(t, openStore(t, path))
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		go b.Run(runCtx)
		iat := time.Now().Unix()

		if err := a.RevokeToken(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := a.RevokeSubject(ctx, "svc", time.Now()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if b.Revoked("jti-1", "x", iat) || b.Revoked("jti-x", "svc", iat) {
			t.Error("the other instance knows before its poll")
		}
		time.Sleep(revocation.DefaultPollEvery)
		synctest.Wait()
		if !b.Revoked("jti-1", "x", iat) || !b.Revoked("jti-x", "svc", iat) {
			t.Error("the other instance does not know after its poll")
		}

		// A revocation stamped 30 s in the past, as by an instance whose clock is behind, after b's last poll.
		skewed := openStore(t, path)
		if err := skewed.RevokeToken(ctx, auth.RevokedToken{JTI: "jti-late", ExpiresAt: time.Now().Add(time.Hour), RevokedAt: time.Now().Add(-30 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(revocation.DefaultPollEvery)
		synctest.Wait()
		if !b.Revoked("jti-late", "x", iat) {
			t.Error("a revocation stamped before the last poll was missed")
		}
		cancel()
	})
}

func TestPrune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gh.db")
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		store := openStore(t, path)
		l := newList(t, store)
		iat := time.Now().Unix()
		if err := l.RevokeToken(ctx, "short", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := l.RevokeToken(ctx, "long", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute + revocation.Leeway + time.Second)
		if err := l.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if l.Revoked("short", "x", iat) {
			t.Error("an expired token's revocation is still in memory")
		}
		if !l.Revoked("long", "x", iat) {
			t.Error("a live token's revocation was pruned")
		}
		tokens, _, err := store.ListRevocations(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(tokens) != 1 || tokens[0].JTI != "long" {
			t.Errorf("stored revocations after Prune: %v, want only the live one", tokens)
		}
	})
}

func jtis(tokens []auth.RevokedToken) []string {
	var s []string
	for _, r := range tokens {
		s = append(s, r.JTI)
	}
	slices.Sort(s)
	return s
}

// TestChanges: the feed of verifiers. A cursor misses nothing learned after it, from this instance or another.
func TestChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gh.db")
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		a, b := newList(t, openStore(t, path)), newList(t, openStore(t, path))
		if err := a.RevokeToken(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := a.RevokeSubject(ctx, "svc", time.Now()); err != nil {
			t.Fatal(err)
		}
		tokens, cutoffs, cursor := a.Changes(time.Time{})
		if got := jtis(tokens); !slices.Equal(got, []string{"jti-1"}) || len(cutoffs) != 1 || cutoffs[0].Subject != "svc" {
			t.Fatalf("Changes(zero) = %v, %v; want jti-1 and svc", got, cutoffs)
		}

		// Later, a revocation through b; a verifier asks a with its cursor before a has polled, then b.
		time.Sleep(10 * time.Minute)
		if err := b.RevokeToken(ctx, "jti-2", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		tokens, _, cursor2 := a.Changes(cursor)
		if got := jtis(tokens); slices.Contains(got, "jti-2") {
			t.Errorf("Changes(cursor) on a before it polled = %v, want no jti-2", got)
		}
		time.Sleep(time.Second)
		if err := a.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		for name, l := range map[string]*revocation.List{"a": a, "b": b} {
			tokens, _, _ := l.Changes(cursor2)
			if got := jtis(tokens); !slices.Contains(got, "jti-2") {
				t.Errorf("Changes(cursor) on %s after the revocation = %v, want jti-2", name, got)
			}
			if got := jtis(tokens); slices.Contains(got, "jti-1") {
				t.Errorf("Changes(cursor) on %s = %v: jti-1 was sent before", name, got)
			}
		}
	})
}
