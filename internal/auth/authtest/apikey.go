package authtest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// newAPIKey returns a key with every field set, times with milliseconds included. Its Metadata has spacing and key
// order that a backend normalizing JSON would change.
func newAPIKey(id, orgID string, created time.Time) *auth.APIKey {
	return &auth.APIKey{
		ID:    id,
		OrgID: orgID,
		Owner: "user|" + id,
		Name:  "Key " + id,
		Hint:  "gate_" + id[len(id)-2:] + "…",
		Grants: []auth.KeyGrant{
			{APIID: "api_1", Scopes: []string{"read:items", "write:items"}},
			{APIID: "api_2", Scopes: []string{}},
		},
		ExpiresAt: created.Add(30*24*time.Hour + 123*time.Millisecond),
		Metadata:  json.RawMessage(`{"z": 1,  "a": [true, null], "s": "é\u00e9"}`),
		Version:   4,
		CreatedAt: created,
		UpdatedAt: created.Add(time.Second),
	}
}

// keyHash stands in for the hash of an API key: 32 bytes, with a zero and a high byte.
func keyHash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	h[0], h[1] = 0, 0xff
	return h[:]
}

func mustCreateAPIKey(t *testing.T, s auth.Store, k *auth.APIKey, hash []byte) {
	t.Helper()
	if err := s.CreateAPIKey(t.Context(), k, hash); err != nil {
		t.Fatalf("CreateAPIKey(%q): %v", k.ID, err)
	}
}

func checkAPIKeyUTC(t *testing.T, what string, k *auth.APIKey) {
	t.Helper()
	checkUTC(t, what, k.ExpiresAt, k.CreatedAt, k.UpdatedAt, k.LastUsedAt)
}

func findAPIKey(t *testing.T, s auth.Store, id string) *auth.APIKey {
	t.Helper()
	k, err := s.FindAPIKey(t.Context(), id)
	if err != nil {
		t.Fatalf("FindAPIKey(%q): %v", id, err)
	}
	checkAPIKeyUTC(t, "FindAPIKey "+id, k)
	return k
}

// checkHash checks that hash belongs to the key keyID, expiring at expires (zero: the current hash), and that the
// key returned with it is the one FindAPIKey returns.
func checkHash(t *testing.T, s auth.Store, what string, hash []byte, keyID string, expires time.Time) {
	t.Helper()
	k, h, err := s.FindAPIKeyByHash(t.Context(), hash)
	if err != nil {
		t.Errorf("%s: FindAPIKeyByHash: %v", what, err)
		return
	}
	checkAPIKeyUTC(t, what+": FindAPIKeyByHash", k)
	checkUTC(t, what+": FindAPIKeyByHash hash", h.ExpiresAt)
	want := &auth.APIKeyHash{Hash: hash, KeyID: keyID, ExpiresAt: expires}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("%s: FindAPIKeyByHash's hash record: mismatch (-want +got):\n%s", what, diff)
	}
	if diff := cmp.Diff(findAPIKey(t, s, keyID), k, equateEmpty); diff != "" {
		t.Errorf("%s: FindAPIKeyByHash's key: mismatch (-FindAPIKey +got):\n%s", what, diff)
	}
}

// checkNoHash checks that no key has hash.
func checkNoHash(t *testing.T, s auth.Store, what string, hash []byte) {
	t.Helper()
	_, _, err := s.FindAPIKeyByHash(t.Context(), hash)
	checkErr(t, what+": FindAPIKeyByHash", err, auth.ErrNotFound)
}

func testAPIKeyCreateFind(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateOrg(t, s, newOrg("org_01", "acme", t0))
	k := newAPIKey("key_01", "org_01", t0)
	bare := newAPIKey("key_02", "", t0)
	bare.Owner, bare.Grants, bare.ExpiresAt, bare.Metadata, bare.Disabled = "", nil, time.Time{}, nil, true
	h1, h2 := keyHash("one"), keyHash("two")
	mustCreateAPIKey(t, s, k, h1)
	mustCreateAPIKey(t, s, bare, h2)

	want := *k
	want.Grants = []auth.KeyGrant{
		{APIID: "api_1", Scopes: []string{"read:items", "write:items"}},
		{APIID: "api_2", Scopes: []string{}},
	}
	want.Metadata = slices.Clone(k.Metadata)
	if diff := cmp.Diff(&want, findAPIKey(t, s, "key_01")); diff != "" {
		t.Errorf("FindAPIKey mismatch (-want +got):\n%s", diff)
	}
	gotBare := findAPIKey(t, s, "key_02")
	if diff := cmp.Diff(bare, gotBare, equateEmpty); diff != "" {
		t.Errorf("FindAPIKey of a key without organization, owner, grants, expiry or metadata: mismatch (-want +got):\n%s", diff)
	}
	if gotBare.Metadata != nil {
		t.Errorf("FindAPIKey of a key without metadata: Metadata = %q, want nil", gotBare.Metadata)
	}
	if gotBare.Grants == nil {
		t.Errorf("FindAPIKey of a key without grants: Grants = nil, want an empty slice")
	}

	checkHash(t, s, "the first key's hash", h1, "key_01", time.Time{})
	checkHash(t, s, "the second key's hash", h2, "key_02", time.Time{})
	if k, _, err := s.FindAPIKeyByHash(ctx, h1); err == nil && k.Metadata == nil {
		t.Errorf("FindAPIKeyByHash: Metadata = nil, want %q", want.Metadata)
	}
	checkNoHash(t, s, "an unknown hash", keyHash("unknown"))
	checkNoHash(t, s, "a prefix of a hash", h1[:len(h1)-1])
	checkNoHash(t, s, "an empty hash", nil)
	_, err := s.FindAPIKey(ctx, "key_none")
	checkErr(t, "FindAPIKey(unknown)", err, auth.ErrNotFound)

	// The store keeps no reference to what it is given or returns.
	k.Grants[0].Scopes[0] = "changed"
	k.Metadata[1] = 'x'
	h1[2] ^= 0xff
	if got, err := s.FindAPIKey(ctx, "key_01"); err == nil && len(got.Grants) == 2 && len(got.Grants[0].Scopes) > 0 && len(got.Metadata) > 1 {
		got.Grants[0].Scopes[0] = "changed"
		got.Metadata[1] = 'x'
	}
	if got, h, err := s.FindAPIKeyByHash(ctx, keyHash("one")); err == nil && len(got.Grants) > 0 && len(h.Hash) > 2 {
		got.Grants[0].APIID = "changed"
		h.Hash[2] ^= 0xff
	}
	if keys, err := s.ListAPIKeys(ctx, auth.APIKeyFilter{}); err == nil && len(keys) > 0 && len(keys[0].Grants) > 0 {
		keys[0].Grants[0].APIID = "changed"
	}
	if diff := cmp.Diff(&want, findAPIKey(t, s, "key_01")); diff != "" {
		t.Errorf("FindAPIKey after changing values given and returned: mismatch (-want +got):\n%s", diff)
	}
	checkHash(t, s, "the first key's hash after changing values given and returned", keyHash("one"), "key_01", time.Time{})
}

func testAPIKeyCreateConflict(t *testing.T, open func(t *testing.T) auth.Store) {
	t0 := now()
	tests := []struct {
		name string
		key  *auth.APIKey
		hash []byte
		want error
	}{
		{"same ID", newAPIKey("key_01", "", t0), keyHash("new"), auth.ErrConflict},
		{"hash of another key", newAPIKey("key_02", "", t0), keyHash("first"), auth.ErrConflict},
		{"unknown organization", newAPIKey("key_02", "org_none", t0), keyHash("new"), auth.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			ctx := t.Context()
			first := newAPIKey("key_01", "", t0)
			mustCreateAPIKey(t, s, first, keyHash("first"))
			checkErr(t, "CreateAPIKey", s.CreateAPIKey(ctx, tt.key, tt.hash), tt.want)

			// Nothing of the failed key was stored: not the key, not its hash.
			keys, err := s.ListAPIKeys(ctx, auth.APIKeyFilter{})
			if err != nil {
				t.Fatalf("ListAPIKeys: %v", err)
			}
			if diff := cmp.Diff([]*auth.APIKey{first}, keys, equateEmpty); diff != "" {
				t.Errorf("ListAPIKeys after a failed create: mismatch (-want +got):\n%s", diff)
			}
			checkHash(t, s, "the first key's hash after a failed create", keyHash("first"), "key_01", time.Time{})
			checkNoHash(t, s, "the new hash after a failed create", keyHash("new"))
		})
	}
}

func testAPIKeyList(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	orgs := []string{"org_a", "org_b", ""}
	owners := []string{"alice", "bob", "carol", ""}
	mustCreateOrg(t, s, newOrg("org_a", "a", t0), newOrg("org_b", "b", t0), newOrg("org_c", "c", t0))
	const n = 300
	keys := make([]*auth.APIKey, n)
	for _, i := range permutation(n) {
		// Every combination of organization and owner; creation times in neither ID nor creation order.
		keys[i] = newAPIKey(fmt.Sprintf("key_%04d", i), orgs[i%len(orgs)], t0.Add(time.Duration(i%7)*time.Second))
		keys[i].Owner = owners[i%len(owners)]
		mustCreateAPIKey(t, s, keys[i], keyHash(keys[i].ID))
	}
	tests := []auth.APIKeyFilter{
		{},
		{OrgID: "org_a"},
		{OrgID: "org_c"},
		{OrgID: "org_none"},
		{Owner: "alice"},
		{Owner: "nobody"},
		{OrgID: "org_b", Owner: "bob"},
		{OrgID: "org_a", Owner: "carol"},
		{OrgID: "org_c", Owner: "alice"},
	}
	for _, f := range tests {
		want := slices.DeleteFunc(slices.Clone(keys), func(k *auth.APIKey) bool {
			return f.OrgID != "" && k.OrgID != f.OrgID || f.Owner != "" && k.Owner != f.Owner
		})
		checkPages(t, fmt.Sprintf("ListAPIKeys(%+v)", f), want, func(k *auth.APIKey) string { return k.ID },
			func(p auth.Page) ([]*auth.APIKey, error) {
				f.Page = p
				got, err := s.ListAPIKeys(t.Context(), f)
				for _, k := range got {
					checkAPIKeyUTC(t, "ListAPIKeys "+k.ID, k)
				}
				return got, err
			})
	}
}

func apiKeyVersioned(s auth.Store, k *auth.APIKey) versioned[auth.APIKey] {
	return versioned[auth.APIKey]{
		kind:    "API key",
		stored:  k,
		version: func(k *auth.APIKey) *int64 { return &k.Version },
		changed: func(k *auth.APIKey, tag string) *auth.APIKey {
			l := *k
			l.Name = "Key " + tag
			l.Grants = []auth.KeyGrant{{APIID: "api_" + tag, Scopes: []string{tag}}}
			l.ExpiresAt = k.ExpiresAt.Add(time.Hour)
			l.Metadata = json.RawMessage(`{"tag": "` + tag + `"}`)
			l.Disabled = !k.Disabled
			l.UpdatedAt = k.UpdatedAt.Add(time.Minute)
			return &l
		},
		update: s.UpdateAPIKey,
		find:   func(t *testing.T) *auth.APIKey { return findAPIKey(t, s, k.ID) },
	}
}

func testAPIKeyVersion(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	k := newAPIKey("key_01", "", now())
	mustCreateAPIKey(t, s, k, keyHash("one"))
	checkCAS(t, apiKeyVersioned(s, k))
}

// testAPIKeyUpdate checks the fields UpdateAPIKey replaces, clears and leaves alone, hashes included.
func testAPIKeyUpdate(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateOrg(t, s, newOrg("org_01", "acme", t0), newOrg("org_02", "globex", t0))
	k := newAPIKey("key_01", "org_01", t0)
	mustCreateAPIKey(t, s, k, keyHash("old"))
	grace := t0.Add(time.Hour)
	if err := s.RotateAPIKey(ctx, k, keyHash("new"), grace); err != nil {
		t.Fatalf("RotateAPIKey: %v", err)
	}
	used := t0.Add(2 * time.Minute)
	if err := s.TouchAPIKeys(ctx, map[string]time.Time{"key_01": used}); err != nil {
		t.Fatalf("TouchAPIKeys: %v", err)
	}
	before := findAPIKey(t, s, "key_01")

	update := &auth.APIKey{
		ID:         "key_01",
		OrgID:      "org_02",  // ignored: a key never moves
		Owner:      "someone", // ignored
		Name:       "Renamed",
		Hint:       "changed…", // ignored: only a rotation changes it
		Grants:     []auth.KeyGrant{{APIID: "api_9", Scopes: []string{"admin"}}},
		ExpiresAt:  t0.Add(time.Hour + 7*time.Millisecond),
		Metadata:   json.RawMessage(`{"b":2}`),
		Disabled:   true,
		Version:    before.Version,
		CreatedAt:  t0.Add(time.Hour), // ignored
		UpdatedAt:  t0.Add(time.Minute),
		LastUsedAt: t0.Add(time.Hour), // ignored: only TouchAPIKeys sets it
	}
	if err := s.UpdateAPIKey(ctx, update); err != nil {
		t.Fatalf("UpdateAPIKey: %v", err)
	}
	if update.Version != before.Version+1 {
		t.Errorf("Version after UpdateAPIKey = %d, want %d", update.Version, before.Version+1)
	}
	want := *before
	want.Name, want.Grants, want.ExpiresAt, want.Metadata, want.Disabled, want.UpdatedAt =
		update.Name, update.Grants, update.ExpiresAt, update.Metadata, true, update.UpdatedAt
	want.Version = before.Version + 1
	if diff := cmp.Diff(&want, findAPIKey(t, s, "key_01")); diff != "" {
		t.Errorf("FindAPIKey after UpdateAPIKey: mismatch (-want +got):\n%s", diff)
	}
	checkHash(t, s, "the current hash after UpdateAPIKey", keyHash("new"), "key_01", time.Time{})
	checkHash(t, s, "the rotated-out hash after UpdateAPIKey", keyHash("old"), "key_01", grace)

	// And back: Grants, ExpiresAt, Metadata and Disabled can be cleared.
	update.Grants, update.ExpiresAt, update.Metadata, update.Disabled = nil, time.Time{}, nil, false
	if err := s.UpdateAPIKey(ctx, update); err != nil {
		t.Fatalf("UpdateAPIKey: %v", err)
	}
	got := findAPIKey(t, s, "key_01")
	if len(got.Grants) != 0 || !got.ExpiresAt.IsZero() || got.Metadata != nil || got.Disabled || got.Version != before.Version+2 {
		t.Errorf("after clearing with UpdateAPIKey: Grants %v, ExpiresAt %v, Metadata %q, Disabled %v, Version %d; "+
			"want none, zero, nil, false, %d", got.Grants, got.ExpiresAt, got.Metadata, got.Disabled, got.Version, before.Version+2)
	}

	checkErr(t, "UpdateAPIKey(unknown)", s.UpdateAPIKey(ctx, newAPIKey("key_none", "", t0)), auth.ErrNotFound)
	_, err := s.FindAPIKey(ctx, "key_none")
	checkErr(t, "FindAPIKey after UpdateAPIKey(unknown)", err, auth.ErrNotFound)
}

func testAPIKeyRotate(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	k := newAPIKey("key_01", "", t0)
	mustCreateAPIKey(t, s, k, keyHash("h0"))
	other := newAPIKey("key_02", "", t0)
	mustCreateAPIKey(t, s, other, keyHash("other"))

	// rotate rotates the stored key to hash, with a new hint and UpdatedAt, and checks that only those and the
	// Version changed, in the store and in what it was given.
	step := 0
	rotate := func(hash []byte, oldExpireAt time.Time) {
		t.Helper()
		step++
		before := findAPIKey(t, s, "key_01")
		r := *before
		r.Hint = fmt.Sprintf("gate_%d…", step)
		r.UpdatedAt = before.UpdatedAt.Add(time.Minute)
		r.Name = "ignored" // RotateAPIKey changes only the hint and UpdatedAt
		if err := s.RotateAPIKey(ctx, &r, hash, oldExpireAt); err != nil {
			t.Fatalf("rotation %d: RotateAPIKey: %v", step, err)
		}
		if r.Version != before.Version+1 {
			t.Errorf("rotation %d: Version afterwards = %d, want %d", step, r.Version, before.Version+1)
		}
		want := *before
		want.Hint, want.UpdatedAt, want.Version = r.Hint, r.UpdatedAt, before.Version+1
		if diff := cmp.Diff(&want, findAPIKey(t, s, "key_01")); diff != "" {
			t.Errorf("rotation %d: FindAPIKey afterwards: mismatch (-want +got):\n%s", step, diff)
		}
		checkHash(t, s, fmt.Sprintf("rotation %d: the new hash", step), hash, "key_01", time.Time{})
	}
	g1, g2, g3 := t0.Add(time.Hour), t0.Add(2*time.Hour), t0.Add(30*time.Minute+5*time.Millisecond)

	// With a grace period the old hash works until it ends.
	rotate(keyHash("h1"), g1)
	checkHash(t, s, "the first hash after a rotation with grace", keyHash("h0"), "key_01", g1)
	// A hash whose grace ends earlier keeps its end.
	rotate(keyHash("h2"), g2)
	checkHash(t, s, "the first hash after a later grace", keyHash("h0"), "key_01", g1)
	checkHash(t, s, "the second hash after a later grace", keyHash("h1"), "key_01", g2)
	// A shorter grace shortens every old hash's.
	rotate(keyHash("h3"), g3)
	for _, h := range []string{"h0", "h1", "h2"} {
		checkHash(t, s, "hash "+h+" after a shorter grace", keyHash(h), "key_01", g3)
	}

	// A stale version, an unknown key or a taken hash changes nothing.
	stored := findAPIKey(t, s, "key_01")
	for _, tt := range []struct {
		name    string
		id      string
		version int64
		hash    []byte
		want    error
	}{
		{"stale version", "key_01", stored.Version - 1, keyHash("h4"), auth.ErrStale},
		{"newer version", "key_01", stored.Version + 1, keyHash("h4"), auth.ErrStale},
		{"unknown key", "key_none", stored.Version, keyHash("h4"), auth.ErrNotFound},
		{"hash of another key", "key_01", stored.Version, keyHash("other"), auth.ErrConflict},
	} {
		for _, oldExpireAt := range []time.Time{{}, g1} {
			r := *stored
			r.ID, r.Version, r.Hint = tt.id, tt.version, "refused…"
			call := fmt.Sprintf("RotateAPIKey(%s, old expire at %v)", tt.name, oldExpireAt)
			checkErr(t, call, s.RotateAPIKey(ctx, &r, tt.hash, oldExpireAt), tt.want)
			if r.Version != tt.version {
				t.Errorf("%s: Version afterwards = %d, want %d (unchanged)", call, r.Version, tt.version)
			}
			if diff := cmp.Diff(stored, findAPIKey(t, s, "key_01")); diff != "" {
				t.Errorf("%s: FindAPIKey afterwards: mismatch (-want +got):\n%s", call, diff)
			}
			checkHash(t, s, call+": the current hash", keyHash("h3"), "key_01", time.Time{})
			for _, h := range []string{"h0", "h1", "h2"} {
				checkHash(t, s, call+": hash "+h, keyHash(h), "key_01", g3)
			}
			checkHash(t, s, call+": the other key's hash", keyHash("other"), "key_02", time.Time{})
			checkNoHash(t, s, call+": the refused hash", keyHash("h4"))
		}
	}
	_, err := s.FindAPIKey(ctx, "key_none")
	checkErr(t, "FindAPIKey after RotateAPIKey(unknown)", err, auth.ErrNotFound)

	// Without a grace period every old hash stops working at once.
	rotate(keyHash("h4"), time.Time{})
	for _, h := range []string{"h0", "h1", "h2", "h3"} {
		checkNoHash(t, s, "hash "+h+" after a rotation without grace", keyHash(h))
	}
	if diff := cmp.Diff(other, findAPIKey(t, s, "key_02")); diff != "" {
		t.Errorf("the other key after the rotations: mismatch (-want +got):\n%s", diff)
	}
	checkHash(t, s, "the other key's hash after the rotations", keyHash("other"), "key_02", time.Time{})
}

func testAPIKeyDelete(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	deleted := newAPIKey("key_01", "", t0)
	kept := newAPIKey("key_02", "", t0)
	mustCreateAPIKey(t, s, deleted, keyHash("old"))
	mustCreateAPIKey(t, s, kept, keyHash("kept"))
	if err := s.RotateAPIKey(ctx, deleted, keyHash("new"), t0.Add(time.Hour)); err != nil {
		t.Fatalf("RotateAPIKey: %v", err)
	}

	if err := s.DeleteAPIKey(ctx, "key_01", 0); err != nil {
		t.Fatalf("DeleteAPIKey: %v", err)
	}
	_, err := s.FindAPIKey(ctx, "key_01")
	checkErr(t, "FindAPIKey(deleted)", err, auth.ErrNotFound)
	checkNoHash(t, s, "the deleted key's current hash", keyHash("new"))
	checkNoHash(t, s, "the deleted key's rotated-out hash", keyHash("old"))
	checkErr(t, "DeleteAPIKey(deleted)", s.DeleteAPIKey(ctx, "key_01", 0), auth.ErrNotFound)
	checkErr(t, "DeleteAPIKey(unknown)", s.DeleteAPIKey(ctx, "key_none", 0), auth.ErrNotFound)
	if diff := cmp.Diff(kept, findAPIKey(t, s, "key_02")); diff != "" {
		t.Errorf("the other key after DeleteAPIKey: mismatch (-want +got):\n%s", diff)
	}
	checkHash(t, s, "the other key's hash after DeleteAPIKey", keyHash("kept"), "key_02", time.Time{})

	// The hashes are gone, not just unreachable: they, and the ID, can be taken again.
	again := newAPIKey("key_01", "", t0)
	mustCreateAPIKey(t, s, again, keyHash("old"))
	if err := s.RotateAPIKey(ctx, again, keyHash("new"), time.Time{}); err != nil {
		t.Errorf("RotateAPIKey to a deleted key's hash: %v", err)
	}
	if n, err := s.PruneAPIKeyHashes(ctx, t0.Add(24*time.Hour)); err != nil || n != 0 {
		t.Errorf("PruneAPIKeyHashes after DeleteAPIKey = %d, %v; want 0: the deleted key's rotated-out hash is gone", n, err)
	}
}

func testAPIKeyTouch(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	k1, k2 := newAPIKey("key_01", "", t0), newAPIKey("key_02", "", t0)
	mustCreateAPIKey(t, s, k1, keyHash("one"))
	mustCreateAPIKey(t, s, k2, keyHash("two"))

	touch := func(used map[string]time.Time, want1, want2 time.Time) {
		t.Helper()
		if err := s.TouchAPIKeys(ctx, used); err != nil {
			t.Fatalf("TouchAPIKeys(%v): %v", used, err)
		}
		for _, w := range []struct {
			k    *auth.APIKey
			want time.Time
		}{{k1, want1}, {k2, want2}} {
			want := *w.k
			want.LastUsedAt = w.want // and nothing else: not the Version, not UpdatedAt
			if diff := cmp.Diff(&want, findAPIKey(t, s, w.k.ID)); diff != "" {
				t.Errorf("FindAPIKey after TouchAPIKeys(%v): mismatch (-want +got):\n%s", used, diff)
			}
		}
	}
	t1 := t0.Add(time.Minute + 3*time.Millisecond)
	touch(nil, time.Time{}, time.Time{})
	touch(map[string]time.Time{}, time.Time{}, time.Time{})
	touch(map[string]time.Time{"key_01": t1, "key_none": t1}, t1, time.Time{}) // unknown keys are skipped
	touch(map[string]time.Time{"key_01": t0, "key_02": t1.Add(time.Minute)}, t1, t1.Add(time.Minute))
	touch(map[string]time.Time{"key_01": t1}, t1, t1.Add(time.Minute))
	touch(map[string]time.Time{"key_01": t1.Add(time.Millisecond), "key_02": t1}, t1.Add(time.Millisecond), t1.Add(time.Minute))
	touch(map[string]time.Time{"key_none": t1}, t1.Add(time.Millisecond), t1.Add(time.Minute))

	// FindAPIKeyByHash reads it too, and UpdateAPIKey at the version read before the touches succeeds.
	if k, _, err := s.FindAPIKeyByHash(ctx, keyHash("two")); err != nil {
		t.Errorf("FindAPIKeyByHash after TouchAPIKeys: %v", err)
	} else if !k.LastUsedAt.Equal(t1.Add(time.Minute)) {
		t.Errorf("FindAPIKeyByHash after TouchAPIKeys: LastUsedAt %v, want %v", k.LastUsedAt, t1.Add(time.Minute))
	}
	if err := s.UpdateAPIKey(ctx, k2); err != nil {
		t.Errorf("UpdateAPIKey at the version read before TouchAPIKeys: %v", err)
	}
}

func testAPIKeyPrune(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	if n, err := s.PruneAPIKeyHashes(ctx, t0); err != nil || n != 0 {
		t.Errorf("PruneAPIKeyHashes of an empty store = %d, %v; want 0", n, err)
	}
	k := newAPIKey("key_01", "", t0)
	mustCreateAPIKey(t, s, k, keyHash("h0"))
	mustCreateAPIKey(t, s, newAPIKey("key_02", "", t0), keyHash("other"))
	e1, e2 := t0.Add(time.Hour), t0.Add(2*time.Hour)
	for _, r := range []struct {
		hash  string
		grace time.Time
	}{{"h1", e1}, {"h2", e2}} {
		if err := s.RotateAPIKey(ctx, k, keyHash(r.hash), r.grace); err != nil {
			t.Fatalf("RotateAPIKey: %v", err)
		}
	}
	stored := findAPIKey(t, s, "key_01")

	prune := func(before time.Time, want int64) {
		t.Helper()
		n, err := s.PruneAPIKeyHashes(ctx, before)
		if err != nil || n != want {
			t.Errorf("PruneAPIKeyHashes(%v) = %d, %v; want %d", before, n, err, want)
		}
	}
	prune(t0, 0)
	prune(e1, 0) // expired before before: the hash that expires at before stays
	checkHash(t, s, "the hash that expires at before", keyHash("h0"), "key_01", e1)
	prune(e1.Add(time.Millisecond), 1)
	checkNoHash(t, s, "the pruned hash", keyHash("h0"))
	checkHash(t, s, "the hash that expires later", keyHash("h1"), "key_01", e2)
	prune(e1.Add(time.Millisecond), 0)
	prune(t0.Add(365*24*time.Hour), 1) // current hashes never expire
	checkNoHash(t, s, "the hash pruned last", keyHash("h1"))
	checkHash(t, s, "the current hash after pruning", keyHash("h2"), "key_01", time.Time{})
	checkHash(t, s, "the other key's hash after pruning", keyHash("other"), "key_02", time.Time{})
	if diff := cmp.Diff(stored, findAPIKey(t, s, "key_01")); diff != "" {
		t.Errorf("the key after pruning its hashes: mismatch (-want +got):\n%s", diff)
	}
}

// testAPIKeyOrg checks that an organization that owns API keys cannot be deleted, down to the last key.
func testAPIKeyOrg(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateOrg(t, s, newOrg("org_01", "acme", t0), newOrg("org_02", "globex", t0))
	mustCreateAPIKey(t, s, newAPIKey("key_01", "org_01", t0), keyHash("one"))
	mustCreateAPIKey(t, s, newAPIKey("key_02", "org_01", t0), keyHash("two"))
	mustCreateAPIKey(t, s, newAPIKey("key_03", "org_02", t0), keyHash("three"))
	mustCreateAPIKey(t, s, newAPIKey("key_04", "", t0), keyHash("four"))

	checkErr(t, "DeleteOrg(with two API keys)", s.DeleteOrg(ctx, "org_01", 0), auth.ErrConflict)
	if err := s.DeleteAPIKey(ctx, "key_01", 0); err != nil {
		t.Fatalf("DeleteAPIKey: %v", err)
	}
	checkErr(t, "DeleteOrg(with one API key)", s.DeleteOrg(ctx, "org_01", 0), auth.ErrConflict)
	findOrg(t, s, "org_01")
	checkHash(t, s, "the organization's last key's hash after a refused DeleteOrg", keyHash("two"), "key_02", time.Time{})

	if err := s.DeleteAPIKey(ctx, "key_02", 0); err != nil {
		t.Fatalf("DeleteAPIKey: %v", err)
	}
	if err := s.DeleteOrg(ctx, "org_01", 0); err != nil {
		t.Fatalf("DeleteOrg(without API keys): %v", err)
	}
	for _, id := range []string{"key_03", "key_04"} {
		findAPIKey(t, s, id)
	}
	checkErr(t, "CreateAPIKey(in the deleted organization)",
		s.CreateAPIKey(ctx, newAPIKey("key_05", "org_01", t0), keyHash("five")), auth.ErrNotFound)
}

func testRaceUpdateAPIKey(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	k := newAPIKey("key_01", "", now())
	mustCreateAPIKey(t, s, k, keyHash("one"))
	raceUpdate(t, apiKeyVersioned(s, k))
}

// testRaceRotateAPIKey has racers rotate the same key at its Version at once: exactly one wins, the others get
// ErrStale and leave no trace, and the old hash is in its grace period once, for the winner.
func testRaceRotateAPIKey(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	k := newAPIKey("key_01", "", t0)
	mustCreateAPIKey(t, s, k, keyHash("old"))
	grace := t0.Add(time.Hour)

	rotations := make([]*auth.APIKey, racers)
	for i := range rotations {
		r := *k
		r.Hint = fmt.Sprintf("racer-%d…", i)
		r.UpdatedAt = t0.Add(time.Duration(i+1) * time.Minute)
		rotations[i] = &r
	}
	hash := func(i int) []byte { return keyHash(fmt.Sprintf("racer-%d", i)) }
	won, lost := race(t, racers, auth.ErrStale, func(ctx context.Context, i int) error {
		return s.RotateAPIKey(ctx, rotations[i], hash(i), grace.Add(time.Duration(i)*time.Minute))
	})
	if won != 1 || lost != racers-1 {
		t.Errorf("RotateAPIKey race: %d won, %d got ErrStale; want 1 and %d", won, lost, racers-1)
	}
	winner := slices.IndexFunc(rotations, func(r *auth.APIKey) bool { return r.Version == k.Version+1 })
	if winner < 0 {
		t.Fatalf("RotateAPIKey race: no racer's Version is %d afterwards", k.Version+1)
	}
	for i, r := range rotations {
		if i == winner {
			checkHash(t, s, "the winner's hash", hash(i), "key_01", time.Time{})
			continue
		}
		if r.Version != k.Version {
			t.Errorf("RotateAPIKey race: racer %d's Version is %d afterwards, want %d (unchanged)", i, r.Version, k.Version)
		}
		checkNoHash(t, s, fmt.Sprintf("racer %d's hash", i), hash(i))
	}
	want := *k
	want.Hint, want.UpdatedAt, want.Version = rotations[winner].Hint, rotations[winner].UpdatedAt, k.Version+1
	if diff := cmp.Diff(&want, findAPIKey(t, s, "key_01")); diff != "" {
		t.Errorf("the key after the race: mismatch (-want +got):\n%s", diff)
	}
	checkHash(t, s, "the old hash after the race", keyHash("old"), "key_01", grace.Add(time.Duration(winner)*time.Minute))
}
