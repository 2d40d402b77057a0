package authtest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// racers is how many goroutines a race runs. Each race starts its goroutines at once, on one store, as instances
// of a cluster would.
const racers = 8

// race runs f(i) for i in [0, n) on n goroutines released at once, and returns how many returned nil and how many
// an error matching loss (ErrConflict, or ErrStale for compare-and-swap updates). Any other error fails the test.
func race(t *testing.T, n int, loss error, f func(ctx context.Context, i int) error) (won, lost int) {
	t.Helper()
	ctx := t.Context()
	var (
		start = make(chan struct{})
		wg    sync.WaitGroup
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(ctx, i)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, loss):
			lost++
		default:
			t.Errorf("goroutine %d: %v, want nil or %v", i, err, loss)
		}
	}
	return won, lost
}

func testRaceCreateCurrentKey(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	keys := make([]*auth.SigningKey, racers)
	for i := range keys {
		keys[i] = newKey("kid-"+string(rune('a'+i)), auth.RS256, auth.KeyCurrent, t0)
	}
	won, lost := race(t, racers, auth.ErrConflict, func(ctx context.Context, i int) error {
		return s.CreateSigningKey(ctx, keys[i])
	})
	if won != 1 || lost != racers-1 {
		t.Errorf("CreateSigningKey(current) race: %d won, %d got ErrConflict; want 1 and %d", won, lost, racers-1)
	}
	got := listKeys(t, s)
	if len(got) != 1 || got[0].State != auth.KeyCurrent {
		t.Fatalf("ListSigningKeys after the race = %v, want one current key", got)
	}
	i := slices.IndexFunc(keys, func(k *auth.SigningKey) bool { return k.ID == got[0].ID })
	if i < 0 {
		t.Fatalf("the current key %q is none of the racers' keys", got[0].ID)
	}
	if diff := cmp.Diff(keys[i], got[0]); diff != "" {
		t.Errorf("the winning key: mismatch (-want +got):\n%s", diff)
	}
}

func testRaceMakeKeyCurrent(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	keys := make([]*auth.SigningKey, racers)
	for i := range keys {
		keys[i] = newKey("kid-"+string(rune('a'+i)), auth.ES256, auth.KeyNext, t0)
	}
	mustCreateKey(t, s, keys...)
	won, lost := race(t, racers, auth.ErrConflict, func(ctx context.Context, i int) error {
		return s.UpdateSigningKeyState(ctx, keys[i].ID, auth.KeyNext, auth.KeyCurrent, t0.Add(time.Minute))
	})
	if won != 1 || lost != racers-1 {
		t.Errorf("UpdateSigningKeyState(next→current) race: %d won, %d got ErrConflict; want 1 and %d", won, lost, racers-1)
	}
	current := 0
	for _, k := range listKeys(t, s) {
		if k.State == auth.KeyCurrent {
			current++
		}
	}
	if current != 1 {
		t.Errorf("current keys after the race: %d, want 1", current)
	}
}

func testRaceCreateSetting(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	var (
		mu     sync.Mutex
		winner []byte
	)
	won, lost := race(t, racers, auth.ErrConflict, func(ctx context.Context, i int) error {
		v := []byte{byte(i), 'v'}
		err := s.CreateSetting(ctx, "root_key_check", v)
		if err == nil {
			mu.Lock()
			winner = v
			mu.Unlock()
		}
		return err
	})
	if won != 1 || lost != racers-1 {
		t.Errorf("CreateSetting race: %d won, %d got ErrConflict; want 1 and %d", won, lost, racers-1)
	}
	got, err := s.FindSetting(t.Context(), "root_key_check")
	if err != nil {
		t.Fatalf("FindSetting: %v", err)
	}
	if diff := cmp.Diff(winner, got); diff != "" {
		t.Errorf("FindSetting after the race: mismatch (-winner +got):\n%s", diff)
	}
}

func testRaceDeleteClientSecret(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	secrets := make([]auth.Secret, racers)
	for i := range secrets {
		secrets[i] = newSecret("sec_000"+string(rune('a'+i)), t0)
	}
	mustCreateClient(t, s, newClient("client-1", t0, secrets...))
	won, lost := race(t, racers, auth.ErrConflict, func(ctx context.Context, i int) error {
		return s.DeleteClientSecret(ctx, "client-1", secrets[i].ID)
	})
	if won != racers-1 || lost != 1 {
		t.Errorf("DeleteClientSecret race: %d won, %d got ErrConflict; want %d and 1", won, lost, racers-1)
	}
	if got := findClient(t, s, "client-1"); len(got.Secrets) != 1 {
		t.Errorf("secrets after the race: %d, want 1", len(got.Secrets))
	}
}
