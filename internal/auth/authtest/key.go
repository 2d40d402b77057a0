package authtest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

func testSigningKeyCreateList(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	k3 := newKey("kid-3", auth.RS256, auth.KeyCurrent, t0)
	k3.UpdatedAt = t0.Add(time.Minute)
	k1 := newKey("kid-1", auth.ES256, auth.KeyNext, t0.Add(time.Second))
	k2 := newKey("kid-2", auth.EdDSA, auth.KeyRetired, t0)
	mustCreateKey(t, s, k3, k1, k2)

	// Ordered by CreatedAt, then ID.
	if diff := cmp.Diff([]*auth.SigningKey{k2, k3, k1}, listKeys(t, s)); diff != "" {
		t.Errorf("ListSigningKeys mismatch (-want +got):\n%s", diff)
	}
}

func testSigningKeyCreateConflict(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	current := newKey("kid-1", auth.RS256, auth.KeyCurrent, t0)
	mustCreateKey(t, s, current)

	tests := []struct {
		name string
		key  *auth.SigningKey
		want error
	}{
		{"same ID", newKey("kid-1", auth.ES256, auth.KeyNext, t0), auth.ErrConflict},
		{"second current key of an algorithm", newKey("kid-2", auth.RS256, auth.KeyCurrent, t0), auth.ErrConflict},
		{"current key of another algorithm", newKey("kid-3", auth.ES256, auth.KeyCurrent, t0), nil},
		{"next key of an algorithm with a current one", newKey("kid-4", auth.RS256, auth.KeyNext, t0), nil},
		{"another next key", newKey("kid-5", auth.RS256, auth.KeyNext, t0), nil},
		{"retired key", newKey("kid-6", auth.RS256, auth.KeyRetired, t0), nil},
	}
	var want []*auth.SigningKey
	want = append(want, current)
	for _, tt := range tests {
		err := s.CreateSigningKey(ctx, tt.key)
		checkErr(t, "CreateSigningKey: "+tt.name, err, tt.want)
		if tt.want == nil {
			want = append(want, tt.key)
		}
	}
	if diff := cmp.Diff(want, listKeys(t, s)); diff != "" {
		t.Errorf("ListSigningKeys mismatch (-want +got):\n%s", diff)
	}
}

func testUpdateSigningKeyState(t *testing.T, open func(t *testing.T) auth.Store) {
	t0 := now()
	at := t0.Add(time.Hour)
	type key struct {
		id    string
		alg   auth.Algorithm
		state auth.KeyState
	}
	tests := []struct {
		name     string
		keys     []key
		kid      string
		from, to auth.KeyState
		want     error
	}{
		{
			name: "next to current",
			keys: []key{{"kid-1", auth.RS256, auth.KeyNext}},
			kid:  "kid-1", from: auth.KeyNext, to: auth.KeyCurrent,
		},
		{
			name: "current to retired",
			keys: []key{{"kid-1", auth.RS256, auth.KeyCurrent}},
			kid:  "kid-1", from: auth.KeyCurrent, to: auth.KeyRetired,
		},
		{
			name: "next to current after the current key retired",
			keys: []key{{"kid-1", auth.RS256, auth.KeyRetired}, {"kid-2", auth.RS256, auth.KeyNext}},
			kid:  "kid-2", from: auth.KeyNext, to: auth.KeyCurrent,
		},
		{
			name: "next to current while another algorithm has a current key",
			keys: []key{{"kid-1", auth.ES256, auth.KeyCurrent}, {"kid-2", auth.RS256, auth.KeyNext}},
			kid:  "kid-2", from: auth.KeyNext, to: auth.KeyCurrent,
		},
		{
			name: "wrong from",
			keys: []key{{"kid-1", auth.RS256, auth.KeyNext}},
			kid:  "kid-1", from: auth.KeyCurrent, to: auth.KeyRetired,
			want: auth.ErrConflict,
		},
		{
			name: "wrong from, lost a race already",
			keys: []key{{"kid-1", auth.RS256, auth.KeyCurrent}},
			kid:  "kid-1", from: auth.KeyNext, to: auth.KeyCurrent,
			want: auth.ErrConflict,
		},
		{
			name: "unknown kid",
			keys: []key{{"kid-1", auth.RS256, auth.KeyNext}},
			kid:  "kid-none", from: auth.KeyNext, to: auth.KeyCurrent,
			want: auth.ErrNotFound,
		},
		{
			name: "next to current while the algorithm has a current key",
			keys: []key{{"kid-1", auth.RS256, auth.KeyCurrent}, {"kid-2", auth.RS256, auth.KeyNext}},
			kid:  "kid-2", from: auth.KeyNext, to: auth.KeyCurrent,
			want: auth.ErrConflict,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			var want []*auth.SigningKey
			for i, k := range tt.keys {
				sk := newKey(k.id, k.alg, k.state, t0.Add(time.Duration(i)*time.Second))
				mustCreateKey(t, s, sk)
				want = append(want, sk)
				if tt.want == nil && k.id == tt.kid {
					sk := *sk
					sk.State, sk.UpdatedAt = tt.to, at
					want[i] = &sk
				}
			}
			err := s.UpdateSigningKeyState(t.Context(), tt.kid, tt.from, tt.to, at)
			checkErr(t, "UpdateSigningKeyState", err, tt.want)
			if diff := cmp.Diff(want, listKeys(t, s)); diff != "" {
				t.Errorf("ListSigningKeys after UpdateSigningKeyState: mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testDeleteSigningKey(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	current := newKey("kid-1", auth.RS256, auth.KeyCurrent, t0)
	kept := newKey("kid-2", auth.RS256, auth.KeyNext, t0.Add(time.Second))
	mustCreateKey(t, s, current, kept)

	if err := s.DeleteSigningKey(ctx, "kid-1"); err != nil {
		t.Fatalf("DeleteSigningKey: %v", err)
	}
	if diff := cmp.Diff([]*auth.SigningKey{kept}, listKeys(t, s)); diff != "" {
		t.Errorf("ListSigningKeys after DeleteSigningKey: mismatch (-want +got):\n%s", diff)
	}
	checkErr(t, "DeleteSigningKey(deleted)", s.DeleteSigningKey(ctx, "kid-1"), auth.ErrNotFound)
	checkErr(t, "DeleteSigningKey(unknown)", s.DeleteSigningKey(ctx, "kid-none"), auth.ErrNotFound)

	// With the current key gone, another key may become current, and the ID is free.
	if err := s.UpdateSigningKeyState(ctx, "kid-2", auth.KeyNext, auth.KeyCurrent, t0); err != nil {
		t.Errorf("UpdateSigningKeyState after deleting the current key: %v", err)
	}
	if err := s.CreateSigningKey(ctx, newKey("kid-1", auth.ES256, auth.KeyNext, t0)); err != nil {
		t.Errorf("CreateSigningKey with a deleted key's ID: %v", err)
	}
}
