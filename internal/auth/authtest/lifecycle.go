package authtest

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// lifecycleTests are the tests of auth.LifecycleStore, run by TestStore.
var lifecycleTests = []struct {
	name string
	test func(t *testing.T, open func(t *testing.T) auth.Store)
}{
	{"CreateNextSigningKey", testCreateNextSigningKey},
	{"RotateSigningKey", testRotateSigningKey},
	{"DeleteRetiredSigningKey", testDeleteRetiredSigningKey},
	{"RevokeToken", testRevokeToken},
	{"RevokeSubject", testRevokeSubject},
	{"ListRevocationsSince", testListRevocationsSince},
	{"PruneRevocations", testPruneRevocations},
	{"RaceCreateNextSigningKey", testRaceCreateNextSigningKey},
	{"RaceRotateSigningKey", testRaceRotateSigningKey},
	{"RaceDeleteRetiredSigningKey", testRaceDeleteRetiredSigningKey},
}

// keySpec is a key to create before a test: kid, algorithm and state.
type keySpec struct {
	id    string
	alg   auth.Algorithm
	state auth.KeyState
}

// createKeys creates the keys, a second apart in creation time, and returns them.
func createKeys(t *testing.T, s auth.Store, t0 time.Time, specs []keySpec) []*auth.SigningKey {
	t.Helper()
	var keys []*auth.SigningKey
	for i, k := range specs {
		sk := newKey(k.id, k.alg, k.state, t0.Add(time.Duration(i)*time.Second))
		mustCreateKey(t, s, sk)
		keys = append(keys, sk)
	}
	return keys
}

func testCreateNextSigningKey(t *testing.T, open func(t *testing.T) auth.Store) {
	t0 := now()
	existing := []keySpec{
		{"kid-rs-current", auth.RS256, auth.KeyCurrent},
		{"kid-rs-retired", auth.RS256, auth.KeyRetired},
		{"kid-es-current", auth.ES256, auth.KeyCurrent},
		{"kid-es-next", auth.ES256, auth.KeyNext},
	}
	tests := []struct {
		name       string
		key        *auth.SigningKey
		currentKID string
		want       error
	}{
		{"the algorithm's current key, no next key", newKey("kid-new", auth.RS256, auth.KeyNext, t0), "kid-rs-current", nil},
		{"a retired key as the current one", newKey("kid-new", auth.RS256, auth.KeyNext, t0), "kid-rs-retired", auth.ErrConflict},
		{"another algorithm's current key", newKey("kid-new", auth.RS256, auth.KeyNext, t0), "kid-es-current", auth.ErrConflict},
		{"an unknown current key", newKey("kid-new", auth.RS256, auth.KeyNext, t0), "kid-none", auth.ErrConflict},
		{"the algorithm has a next key", newKey("kid-new", auth.ES256, auth.KeyNext, t0), "kid-es-current", auth.ErrConflict},
		{"an algorithm without a current key", newKey("kid-new", auth.EdDSA, auth.KeyNext, t0), "kid-rs-current", auth.ErrConflict},
		{"a taken kid", newKey("kid-rs-retired", auth.RS256, auth.KeyNext, t0), "kid-rs-current", auth.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			want := createKeys(t, s, t0.Add(-time.Hour), existing)
			err := s.CreateNextSigningKey(t.Context(), tt.key, tt.currentKID)
			checkErr(t, "CreateNextSigningKey", err, tt.want)
			if tt.want == nil {
				want = append(want, tt.key)
			}
			if diff := gocmp.Diff(want, listKeys(t, s)); diff != "" {
				t.Errorf("ListSigningKeys after CreateNextSigningKey: mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("a key that is not next", func(t *testing.T) {
		s := open(t)
		want := createKeys(t, s, t0, existing[:1])
		if err := s.CreateNextSigningKey(t.Context(), newKey("kid-new", auth.RS256, auth.KeyCurrent, t0), "kid-rs-current"); err == nil {
			t.Error("CreateNextSigningKey of a current key succeeded, want an error")
		}
		if diff := gocmp.Diff(want, listKeys(t, s)); diff != "" {
			t.Errorf("ListSigningKeys after a refused CreateNextSigningKey: mismatch (-want +got):\n%s", diff)
		}
	})
}

func testRotateSigningKey(t *testing.T, open func(t *testing.T) auth.Store) {
	t0 := now()
	at := t0.Add(time.Hour)
	existing := []keySpec{
		{"kid-rs-current", auth.RS256, auth.KeyCurrent},
		{"kid-rs-next", auth.RS256, auth.KeyNext},
		{"kid-rs-next-2", auth.RS256, auth.KeyNext},
		{"kid-rs-retired", auth.RS256, auth.KeyRetired},
		{"kid-es-current", auth.ES256, auth.KeyCurrent},
		{"kid-es-next", auth.ES256, auth.KeyNext},
	}
	tests := []struct {
		name              string
		alg               auth.Algorithm
		currentKID, next  string
		want              error
		retired, promoted string // on success
	}{
		{name: "current and next", alg: auth.RS256, currentKID: "kid-rs-current", next: "kid-rs-next",
			retired: "kid-rs-current", promoted: "kid-rs-next"},
		{name: "another next key", alg: auth.RS256, currentKID: "kid-rs-current", next: "kid-rs-next-2",
			retired: "kid-rs-current", promoted: "kid-rs-next-2"},
		{name: "the current key is retired", alg: auth.RS256, currentKID: "kid-rs-retired", next: "kid-rs-next", want: auth.ErrConflict},
		{name: "the next key is retired", alg: auth.RS256, currentKID: "kid-rs-current", next: "kid-rs-retired", want: auth.ErrConflict},
		{name: "the next key is current", alg: auth.RS256, currentKID: "kid-rs-current", next: "kid-rs-current", want: auth.ErrConflict},
		{name: "the next key is another algorithm's", alg: auth.RS256, currentKID: "kid-rs-current", next: "kid-es-next", want: auth.ErrConflict},
		{name: "the current key is another algorithm's", alg: auth.RS256, currentKID: "kid-es-current", next: "kid-rs-next", want: auth.ErrConflict},
		{name: "the wrong algorithm", alg: auth.EdDSA, currentKID: "kid-rs-current", next: "kid-rs-next", want: auth.ErrConflict},
		{name: "an unknown next key", alg: auth.RS256, currentKID: "kid-rs-current", next: "kid-none", want: auth.ErrConflict},
		{name: "an unknown current key", alg: auth.RS256, currentKID: "kid-none", next: "kid-rs-next", want: auth.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			want := createKeys(t, s, t0, existing)
			err := s.RotateSigningKey(t.Context(), tt.alg, tt.currentKID, tt.next, at)
			checkErr(t, "RotateSigningKey", err, tt.want)
			if tt.want == nil {
				for i, k := range want {
					c := *k
					switch k.ID {
					case tt.retired:
						c.State, c.UpdatedAt = auth.KeyRetired, at
					case tt.promoted:
						c.State, c.UpdatedAt = auth.KeyCurrent, at
					}
					want[i] = &c
				}
			}
			if diff := gocmp.Diff(want, listKeys(t, s)); diff != "" {
				t.Errorf("ListSigningKeys after RotateSigningKey: mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testDeleteRetiredSigningKey(t *testing.T, open func(t *testing.T) auth.Store) {
	t0 := now()
	retiredAt := t0.Add(time.Hour)
	tests := []struct {
		name      string
		kid       string
		retiredBy time.Time
		want      error
	}{
		{"retired long enough ago", "kid-retired", retiredAt.Add(time.Minute), nil},
		{"retired at the time given", "kid-retired", retiredAt, nil},
		{"retired after the time given", "kid-retired", retiredAt.Add(-time.Millisecond), auth.ErrConflict},
		{"a current key", "kid-current", retiredAt.Add(time.Hour), auth.ErrConflict},
		{"a next key", "kid-next", retiredAt.Add(time.Hour), auth.ErrConflict},
		{"an unknown key", "kid-none", retiredAt.Add(time.Hour), auth.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			keys := []*auth.SigningKey{
				newKey("kid-current", auth.RS256, auth.KeyCurrent, t0),
				newKey("kid-next", auth.RS256, auth.KeyNext, t0.Add(time.Second)),
				newKey("kid-retired", auth.RS256, auth.KeyRetired, t0.Add(2*time.Second)),
			}
			keys[2].UpdatedAt = retiredAt
			mustCreateKey(t, s, keys...)
			err := s.DeleteRetiredSigningKey(t.Context(), tt.kid, tt.retiredBy)
			checkErr(t, "DeleteRetiredSigningKey", err, tt.want)
			want := keys
			if tt.want == nil {
				want = slices.DeleteFunc(slices.Clone(keys), func(k *auth.SigningKey) bool { return k.ID == tt.kid })
			}
			if diff := gocmp.Diff(want, listKeys(t, s)); diff != "" {
				t.Errorf("ListSigningKeys after DeleteRetiredSigningKey: mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// listRevocations returns every revocation changed after since, checking that the times are UTC.
func listRevocations(t *testing.T, s auth.Store, since time.Time) ([]auth.RevokedToken, []auth.SubjectCutoff) {
	t.Helper()
	tokens, cutoffs, err := s.ListRevocations(t.Context(), since)
	if err != nil {
		t.Fatalf("ListRevocations: %v", err)
	}
	for _, r := range tokens {
		checkUTC(t, "ListRevocations token "+r.JTI, r.ExpiresAt, r.RevokedAt)
	}
	for _, c := range cutoffs {
		checkUTC(t, "ListRevocations subject "+c.Subject, c.IssuedBefore, c.ExpiresAt, c.UpdatedAt)
	}
	return tokens, cutoffs
}

func testRevokeToken(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	first := auth.RevokedToken{JTI: "jti-1", ExpiresAt: t0.Add(time.Hour), RevokedAt: t0}
	other := auth.RevokedToken{JTI: "jti-2", ExpiresAt: t0.Add(2 * time.Hour), RevokedAt: t0.Add(time.Second)}
	for _, r := range []auth.RevokedToken{first, other} {
		if err := s.RevokeToken(ctx, r); err != nil {
			t.Fatalf("RevokeToken(%s): %v", r.JTI, err)
		}
	}
	// Revoking again is no error and keeps the first record.
	again := auth.RevokedToken{JTI: "jti-1", ExpiresAt: t0.Add(3 * time.Hour), RevokedAt: t0.Add(time.Minute)}
	if err := s.RevokeToken(ctx, again); err != nil {
		t.Fatalf("RevokeToken of a revoked jti: %v", err)
	}
	tokens, cutoffs := listRevocations(t, s, time.Time{})
	if diff := gocmp.Diff([]auth.RevokedToken{first, other}, tokens); diff != "" {
		t.Errorf("ListRevocations tokens: mismatch (-want +got):\n%s", diff)
	}
	if len(cutoffs) != 0 {
		t.Errorf("ListRevocations cut-offs = %v, want none", cutoffs)
	}
}

func testRevokeSubject(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	c := auth.SubjectCutoff{Subject: "client-1", IssuedBefore: t0, ExpiresAt: t0.Add(time.Hour), UpdatedAt: t0}
	if err := s.RevokeSubject(ctx, c); err != nil {
		t.Fatalf("RevokeSubject: %v", err)
	}
	other := auth.SubjectCutoff{Subject: "key_1", IssuedBefore: t0, ExpiresAt: t0.Add(time.Hour), UpdatedAt: t0.Add(time.Millisecond)}
	if err := s.RevokeSubject(ctx, other); err != nil {
		t.Fatalf("RevokeSubject: %v", err)
	}

	steps := []struct {
		name string
		set  auth.SubjectCutoff
		want auth.SubjectCutoff
	}{
		{
			name: "later",
			set:  auth.SubjectCutoff{Subject: "client-1", IssuedBefore: t0.Add(time.Minute), ExpiresAt: t0.Add(2 * time.Hour), UpdatedAt: t0.Add(time.Second)},
			want: auth.SubjectCutoff{Subject: "client-1", IssuedBefore: t0.Add(time.Minute), ExpiresAt: t0.Add(2 * time.Hour), UpdatedAt: t0.Add(time.Second)},
		},
		{
			name: "earlier: the later times stay",
			set:  auth.SubjectCutoff{Subject: "client-1", IssuedBefore: t0, ExpiresAt: t0.Add(time.Hour), UpdatedAt: t0.Add(2 * time.Second)},
			want: auth.SubjectCutoff{Subject: "client-1", IssuedBefore: t0.Add(time.Minute), ExpiresAt: t0.Add(2 * time.Hour), UpdatedAt: t0.Add(2 * time.Second)},
		},
		{
			name: "a later cut-off that expires earlier",
			set:  auth.SubjectCutoff{Subject: "client-1", IssuedBefore: t0.Add(2 * time.Minute), ExpiresAt: t0, UpdatedAt: t0.Add(3 * time.Second)},
			want: auth.SubjectCutoff{Subject: "client-1", IssuedBefore: t0.Add(2 * time.Minute), ExpiresAt: t0.Add(2 * time.Hour), UpdatedAt: t0.Add(3 * time.Second)},
		},
	}
	for _, st := range steps {
		if err := s.RevokeSubject(ctx, st.set); err != nil {
			t.Fatalf("%s: RevokeSubject: %v", st.name, err)
		}
		_, cutoffs := listRevocations(t, s, time.Time{})
		if diff := gocmp.Diff([]auth.SubjectCutoff{other, st.want}, cutoffs); diff != "" {
			t.Errorf("%s: ListRevocations cut-offs: mismatch (-want +got):\n%s", st.name, diff)
		}
	}
}

func testListRevocationsSince(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	var tokens []auth.RevokedToken
	var cutoffs []auth.SubjectCutoff
	// Inserted out of order; ties in time are ordered by jti or subject.
	for _, i := range []int{3, 1, 2, 0} {
		at := t0.Add(time.Duration(i/2) * time.Second)
		r := auth.RevokedToken{JTI: "jti-" + string(rune('a'+i)), ExpiresAt: t0.Add(time.Hour), RevokedAt: at}
		c := auth.SubjectCutoff{Subject: "sub-" + string(rune('a'+i)), IssuedBefore: at, ExpiresAt: t0.Add(time.Hour), UpdatedAt: at}
		if err := s.RevokeToken(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeSubject(ctx, c); err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, r)
		cutoffs = append(cutoffs, c)
	}
	slices.SortFunc(tokens, func(a, b auth.RevokedToken) int {
		return cmp.Or(a.RevokedAt.Compare(b.RevokedAt), strings.Compare(a.JTI, b.JTI))
	})
	slices.SortFunc(cutoffs, func(a, b auth.SubjectCutoff) int {
		return cmp.Or(a.UpdatedAt.Compare(b.UpdatedAt), strings.Compare(a.Subject, b.Subject))
	})
	tests := []struct {
		name  string
		since time.Time
		from  int // index of the first revocation returned
	}{
		{"zero", time.Time{}, 0},
		{"before all", t0.Add(-time.Millisecond), 0},
		{"at the first: strictly after", t0, 2},
		{"between", t0.Add(500 * time.Millisecond), 2},
		{"at the last", t0.Add(time.Second), 4},
	}
	for _, tt := range tests {
		gotTokens, gotCutoffs := listRevocations(t, s, tt.since)
		if diff := gocmp.Diff(tokens[tt.from:], gotTokens, equateEmpty); diff != "" {
			t.Errorf("ListRevocations(%s) tokens: mismatch (-want +got):\n%s", tt.name, diff)
		}
		if diff := gocmp.Diff(cutoffs[tt.from:], gotCutoffs, equateEmpty); diff != "" {
			t.Errorf("ListRevocations(%s) cut-offs: mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func testPruneRevocations(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	expired := auth.RevokedToken{JTI: "jti-old", ExpiresAt: t0.Add(-time.Second), RevokedAt: t0.Add(-time.Hour)}
	live := auth.RevokedToken{JTI: "jti-live", ExpiresAt: t0, RevokedAt: t0.Add(-time.Hour)}
	expiredCut := auth.SubjectCutoff{Subject: "sub-old", IssuedBefore: t0.Add(-time.Hour), ExpiresAt: t0.Add(-time.Millisecond), UpdatedAt: t0.Add(-time.Hour)}
	liveCut := auth.SubjectCutoff{Subject: "sub-live", IssuedBefore: t0.Add(-time.Hour), ExpiresAt: t0.Add(time.Hour), UpdatedAt: t0.Add(-time.Hour)}
	for _, r := range []auth.RevokedToken{expired, live} {
		if err := s.RevokeToken(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []auth.SubjectCutoff{expiredCut, liveCut} {
		if err := s.RevokeSubject(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PruneRevocations(ctx, t0)
	if err != nil {
		t.Fatalf("PruneRevocations: %v", err)
	}
	if n != 2 {
		t.Errorf("PruneRevocations deleted %d, want 2", n)
	}
	tokens, cutoffs := listRevocations(t, s, time.Time{})
	if diff := gocmp.Diff([]auth.RevokedToken{live}, tokens); diff != "" {
		t.Errorf("tokens after PruneRevocations: mismatch (-want +got):\n%s", diff)
	}
	if diff := gocmp.Diff([]auth.SubjectCutoff{liveCut}, cutoffs); diff != "" {
		t.Errorf("cut-offs after PruneRevocations: mismatch (-want +got):\n%s", diff)
	}
	if n, err := s.PruneRevocations(ctx, t0); err != nil || n != 0 {
		t.Errorf("PruneRevocations again = %d, %v; want 0, nil", n, err)
	}
}

// countStates returns how many keys are in each state.
func countStates(keys []*auth.SigningKey) map[auth.KeyState]int {
	n := map[auth.KeyState]int{}
	for _, k := range keys {
		n[k.State]++
	}
	return n
}

func testRaceCreateNextSigningKey(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	createKeys(t, s, t0, []keySpec{{"kid-current", auth.ES256, auth.KeyCurrent}})
	keys := make([]*auth.SigningKey, racers)
	for i := range keys {
		keys[i] = newKey("kid-"+string(rune('a'+i)), auth.ES256, auth.KeyNext, t0)
	}
	won, lost := race(t, racers, auth.ErrConflict, func(ctx context.Context, i int) error {
		return s.CreateNextSigningKey(ctx, keys[i], "kid-current")
	})
	if won != 1 || lost != racers-1 {
		t.Errorf("CreateNextSigningKey race: %d won, %d got ErrConflict; want 1 and %d", won, lost, racers-1)
	}
	if got := countStates(listKeys(t, s)); got[auth.KeyNext] != 1 || got[auth.KeyCurrent] != 1 {
		t.Errorf("keys after the race: %v, want one current and one next", got)
	}
}

func testRaceRotateSigningKey(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	specs := []keySpec{{"kid-current", auth.RS256, auth.KeyCurrent}}
	for i := range racers {
		specs = append(specs, keySpec{"kid-next-" + string(rune('a'+i)), auth.RS256, auth.KeyNext})
	}
	createKeys(t, s, t0, specs)
	// Each racer promotes its own next key: a rotation that happened twice would leave two keys retired.
	won, lost := race(t, racers, auth.ErrConflict, func(ctx context.Context, i int) error {
		return s.RotateSigningKey(ctx, auth.RS256, "kid-current", specs[i+1].id, t0.Add(time.Hour))
	})
	if won != 1 || lost != racers-1 {
		t.Errorf("RotateSigningKey race: %d won, %d got ErrConflict; want 1 and %d", won, lost, racers-1)
	}
	got := countStates(listKeys(t, s))
	if diff := gocmp.Diff(map[auth.KeyState]int{auth.KeyCurrent: 1, auth.KeyRetired: 1, auth.KeyNext: racers - 1}, got); diff != "" {
		t.Errorf("key states after the race: mismatch (-want +got):\n%s", diff)
	}
}

func testRaceDeleteRetiredSigningKey(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	createKeys(t, s, t0, []keySpec{{"kid-retired", auth.EdDSA, auth.KeyRetired}})
	var deleted, notFound atomic.Int32
	race(t, racers, auth.ErrConflict, func(ctx context.Context, i int) error {
		err := s.DeleteRetiredSigningKey(ctx, "kid-retired", t0.Add(time.Hour))
		switch {
		case err == nil:
			deleted.Add(1)
		case errors.Is(err, auth.ErrNotFound):
			notFound.Add(1)
			return nil
		}
		return err
	})
	if deleted.Load() != 1 || notFound.Load() != racers-1 {
		t.Errorf("DeleteRetiredSigningKey race: %d deleted, %d got ErrNotFound; want 1 and %d", deleted.Load(), notFound.Load(), racers-1)
	}
	if keys := listKeys(t, s); len(keys) != 0 {
		t.Errorf("keys after the race: %v, want none", keys)
	}
}
