package keyset

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// memStore is an in-memory auth.Store with only the signing-key and setting methods, honouring their contract:
// ErrConflict for a taken kid or a second current key per algorithm, compare-and-swap state changes, and copies in
// and out. Calling any other method panics (nil embedded Store).
type memStore struct {
	auth.Store

	mu       sync.Mutex
	keys     []*auth.SigningKey
	settings map[string][]byte
	creates  int // CreateSigningKey calls, successful or not
}

func newMemStore() *memStore { return &memStore{settings: map[string][]byte{}} }

func copyKey(k *auth.SigningKey) *auth.SigningKey {
	c := *k
	c.PublicJWK = bytes.Clone(k.PublicJWK)
	c.Private = bytes.Clone(k.Private)
	return &c
}

func (s *memStore) CreateSigningKey(ctx context.Context, k *auth.SigningKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creates++
	for _, e := range s.keys {
		if e.ID == k.ID {
			return fmt.Errorf("signing key %q: %w", k.ID, auth.ErrConflict)
		}
		if k.State == auth.KeyCurrent && e.State == auth.KeyCurrent && e.Alg == k.Alg {
			return fmt.Errorf("%s already has a current key: %w", k.Alg, auth.ErrConflict)
		}
	}
	c := copyKey(k)
	c.CreatedAt = c.CreatedAt.UTC().Truncate(time.Millisecond)
	c.UpdatedAt = c.UpdatedAt.UTC().Truncate(time.Millisecond)
	s.keys = append(s.keys, c)
	return nil
}

func (s *memStore) ListSigningKeys(ctx context.Context) ([]*auth.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*auth.SigningKey, len(s.keys))
	for i, k := range s.keys {
		out[i] = copyKey(k)
	}
	slices.SortFunc(out, func(a, b *auth.SigningKey) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func (s *memStore) UpdateSigningKeyState(ctx context.Context, kid string, from, to auth.KeyState, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.keys, func(k *auth.SigningKey) bool { return k.ID == kid })
	if i < 0 {
		return fmt.Errorf("signing key %q: %w", kid, auth.ErrNotFound)
	}
	k := s.keys[i]
	if k.State != from {
		return fmt.Errorf("signing key %q is %s, not %s: %w", kid, k.State, from, auth.ErrConflict)
	}
	if to == auth.KeyCurrent {
		for _, e := range s.keys {
			if e.ID != kid && e.Alg == k.Alg && e.State == auth.KeyCurrent {
				return fmt.Errorf("%s already has a current key: %w", k.Alg, auth.ErrConflict)
			}
		}
	}
	k.State = to
	k.UpdatedAt = at.UTC().Truncate(time.Millisecond)
	return nil
}

func (s *memStore) DeleteSigningKey(ctx context.Context, kid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.keys, func(k *auth.SigningKey) bool { return k.ID == kid })
	if i < 0 {
		return fmt.Errorf("signing key %q: %w", kid, auth.ErrNotFound)
	}
	s.keys = slices.Delete(s.keys, i, i+1)
	return nil
}

func (s *memStore) FindSetting(ctx context.Context, name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.settings[name]
	if !ok {
		return nil, fmt.Errorf("setting %q: %w", name, auth.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

func (s *memStore) CreateSetting(ctx context.Context, name string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.settings[name]; ok {
		return fmt.Errorf("setting %q: %w", name, auth.ErrConflict)
	}
	s.settings[name] = bytes.Clone(value)
	return nil
}

// edit changes the stored key kid in place, as someone with write access to the database could.
func (s *memStore) edit(kid string, f func(k *auth.SigningKey)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if k.ID == kid {
			f(k)
			return
		}
	}
	panic("no signing key " + kid)
}

// stored returns a copy of every stored key.
func (s *memStore) stored() []*auth.SigningKey {
	keys, _ := s.ListSigningKeys(context.Background())
	return keys
}

func (s *memStore) createCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creates
}
