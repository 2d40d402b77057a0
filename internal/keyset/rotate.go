package keyset

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// DefaultRotateEvery is how long a key signs before the next one takes over, unless Options say otherwise.
const DefaultRotateEvery = 30 * 24 * time.Hour

// RetireLeeway is how much longer than the tokens it signed a retired key stays published: the clock skew a
// verifier may allow on exp (verify allows 30 seconds; other libraries up to a few minutes).
const RetireLeeway = 5 * time.Minute

// KeyInfo describes a stored signing key and its schedule.
type KeyInfo struct {
	ID        string // the kid
	Alg       auth.Algorithm
	State     auth.KeyState
	CreatedAt time.Time // when it was created, and published
	Since     time.Time // when it entered its state
	// Next is when the key's next step is due: a next key starts signing, a current key has a successor published
	// (or, when it has one already, is retired), a retired key is removed. Run on any instance takes the step at
	// its first round after that time.
	Next time.Time
}

// generation is one algorithm's keys, as listed.
type generation struct {
	current *auth.SigningKey
	next    []*auth.SigningKey // oldest first
	retired []*auth.SigningKey
}

// generations groups stored keys, which are ordered by creation time, by algorithm.
func generations(stored []*auth.SigningKey) map[auth.Algorithm]*generation {
	g := make(map[auth.Algorithm]*generation)
	for _, sk := range stored {
		a := g[sk.Alg]
		if a == nil {
			a = &generation{}
			g[sk.Alg] = a
		}
		switch sk.State {
		case auth.KeyCurrent:
			a.current = sk
		case auth.KeyNext:
			a.next = append(a.next, sk)
		case auth.KeyRetired:
			a.retired = append(a.retired, sk)
		}
	}
	return g
}

// Maintain reloads the keys and takes every step of the schedule that is due; Run calls it every ReloadEvery. Per
// algorithm that has a current key:
//
//   - RotateEvery − PublishAhead after the current key began signing, a new key is published as next;
//   - once a next key has been published for PublishAhead, it becomes current and the current key is retired
//     (a next key exists only because a rotation is due or was asked for with RotateNow);
//   - a retired key is removed once every token it signed has expired (see Options.Retention).
//
// A next key of an algorithm without a current key becomes current at once. Every step is a compare-and-swap on
// the keys as listed: of several instances taking the same step, one does, and the others reload what it did.
func (k *Keyset) Maintain(ctx context.Context) error {
	stored, err := k.load(ctx)
	if err != nil {
		return err
	}
	return k.maintain(ctx, stored)
}

// maintain takes the steps that are due for the keys as listed in stored, and reloads if it took any.
func (k *Keyset) maintain(ctx context.Context, stored []*auth.SigningKey) error {
	now := k.now()
	var (
		errs      []error
		changed   bool
		retention time.Duration // computed when first needed
	)
	// step records the result of one compare-and-swap: ErrConflict and ErrNotFound mean another instance took the
	// step (or another step) first, which the reload below picks up.
	step := func(err error, msg string, args ...any) {
		switch {
		case err == nil:
			k.log.Info(msg, args...)
			changed = true
		case errors.Is(err, auth.ErrConflict) || errors.Is(err, auth.ErrNotFound):
			changed = true
		default:
			errs = append(errs, err)
		}
	}
	gens := generations(stored)
	for _, alg := range auth.Algorithms {
		g := gens[alg]
		if g == nil {
			continue
		}
		switch {
		case g.current == nil && len(g.next) > 0:
			n := g.next[0]
			step(k.store.UpdateSigningKeyState(ctx, n.ID, auth.KeyNext, auth.KeyCurrent, now),
				"signing key promoted: the algorithm had no current key", "alg", alg, "kid", n.ID)
		case g.current != nil && len(g.next) == 0 && !now.Before(g.current.UpdatedAt.Add(k.rotateEvery-k.publishAhead)):
			n, err := k.newKey(alg, auth.KeyNext, now)
			if err != nil {
				errs = append(errs, fmt.Errorf("generate next %s signing key: %w", alg, err))
				break
			}
			step(k.store.CreateNextSigningKey(ctx, n, g.current.ID),
				"next signing key published", "alg", alg, "kid", n.ID, "signs_from", now.Add(k.publishAhead).UTC())
		case g.current != nil && len(g.next) > 0 && !now.Before(g.next[0].CreatedAt.Add(k.publishAhead)):
			n := g.next[0]
			step(k.store.RotateSigningKey(ctx, alg, g.current.ID, n.ID, now),
				"signing key rotated", "alg", alg, "kid", n.ID, "retired", g.current.ID)
		}
		for _, r := range g.retired {
			if retention == 0 {
				var err error
				if retention, err = k.retentionFor(ctx); err != nil {
					errs = append(errs, err)
					break
				}
			}
			if now.Before(r.UpdatedAt.Add(retention)) {
				continue
			}
			step(k.store.DeleteRetiredSigningKey(ctx, r.ID, now.Add(-retention)),
				"retired signing key removed: the tokens it signed have expired", "alg", alg, "kid", r.ID)
		}
	}
	if changed {
		if _, err := k.load(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// retentionFor returns how long a retired key stays published: Options.Retention, but never less than the longest
// token lifetime of the APIs in the store (auth.DefaultTokenLifetime without APIs), plus ReloadEvery and
// RetireLeeway.
func (k *Keyset) retentionFor(ctx context.Context) (time.Duration, error) {
	apis, err := k.store.ListAPIs(ctx)
	if err != nil {
		return 0, fmt.Errorf("list apis for their token lifetimes: %w", err)
	}
	longest := auth.DefaultTokenLifetime
	if len(apis) > 0 {
		longest = 0
		for _, a := range apis {
			longest = max(longest, a.TokenLifetime)
		}
	}
	return max(k.retention, longest+k.reloadEvery+RetireLeeway), nil
}

// List returns the stored keys with their schedules, ordered as the store orders them (by creation time).
func (k *Keyset) List(ctx context.Context) ([]KeyInfo, error) {
	stored, err := k.load(ctx)
	if err != nil {
		return nil, err
	}
	var retention time.Duration
	if slices.ContainsFunc(stored, func(sk *auth.SigningKey) bool { return sk.State == auth.KeyRetired }) {
		if retention, err = k.retentionFor(ctx); err != nil {
			return nil, err
		}
	}
	gens := generations(stored)
	infos := make([]KeyInfo, len(stored))
	for i, sk := range stored {
		info := KeyInfo{ID: sk.ID, Alg: sk.Alg, State: sk.State, CreatedAt: sk.CreatedAt, Since: sk.UpdatedAt}
		switch sk.State {
		case auth.KeyNext:
			info.Next = sk.CreatedAt.Add(k.publishAhead)
		case auth.KeyCurrent:
			if g := gens[sk.Alg]; len(g.next) > 0 {
				info.Next = g.next[0].CreatedAt.Add(k.publishAhead)
			} else {
				info.Next = sk.UpdatedAt.Add(k.rotateEvery - k.publishAhead)
			}
		case auth.KeyRetired:
			info.Next = sk.UpdatedAt.Add(retention)
		}
		infos[i] = info
	}
	return infos, nil
}

// RotateNow starts a rotation of alg's key now, rather than at the end of the rotation period, without breaking
// any verifier: it publishes a next key, unless alg has one already, which signs once it has been published for
// PublishAhead (Run on any instance promotes it then). If alg's next key has been published that long already, it
// becomes current at once. It returns the key that signs next, with when it does (Next; zero if it signs now).
// An algorithm without a current key is an error wrapping auth.ErrNotFound.
func (k *Keyset) RotateNow(ctx context.Context, alg auth.Algorithm) (KeyInfo, error) {
	return k.rotate(ctx, alg, false)
}

// RotateImmediately makes a new key of alg current at once: alg's next key if it has one, else a new key, and
// retires the current key, whose tokens keep verifying until they expire. It breaks verifiers that cache the JWKS
// and do not refetch it for an unknown kid: tokens signed by the new key fail there until their cached JWKS
// expires (verify, and most libraries, refetch). Prefer RotateNow; this is for a key suspected to be exposed whose
// tokens may stay valid, and Revoke for one whose tokens may not. It returns the new current key.
func (k *Keyset) RotateImmediately(ctx context.Context, alg auth.Algorithm) (KeyInfo, error) {
	return k.rotate(ctx, alg, true)
}

func (k *Keyset) rotate(ctx context.Context, alg auth.Algorithm, immediately bool) (KeyInfo, error) {
	if !alg.Valid() {
		return KeyInfo{}, unsupported(alg)
	}
	// A concurrent step by another instance (ErrConflict) is reloaded and built on, a few times at most.
	for range 3 {
		stored, err := k.load(ctx)
		if err != nil {
			return KeyInfo{}, err
		}
		g := generations(stored)[alg]
		if g == nil || g.current == nil {
			return KeyInfo{}, fmt.Errorf("%s has no current signing key to rotate: %w", alg, auth.ErrNotFound)
		}
		now := k.now()
		if len(g.next) == 0 {
			n, err := k.newKey(alg, auth.KeyNext, now)
			if err != nil {
				return KeyInfo{}, fmt.Errorf("generate next %s signing key: %w", alg, err)
			}
			err = k.store.CreateNextSigningKey(ctx, n, g.current.ID)
			if errors.Is(err, auth.ErrConflict) {
				continue
			}
			if err != nil {
				return KeyInfo{}, err
			}
			k.log.Info("next signing key published on request", "alg", alg, "kid", n.ID, "immediately", immediately)
			g.next = []*auth.SigningKey{n}
		}
		n := g.next[0]
		signsFrom := n.CreatedAt.Add(k.publishAhead)
		if !immediately && now.Before(signsFrom) {
			if _, err := k.load(ctx); err != nil {
				return KeyInfo{}, err
			}
			return KeyInfo{ID: n.ID, Alg: alg, State: auth.KeyNext, CreatedAt: n.CreatedAt, Since: n.UpdatedAt, Next: signsFrom}, nil
		}
		err = k.store.RotateSigningKey(ctx, alg, g.current.ID, n.ID, now)
		if errors.Is(err, auth.ErrConflict) {
			continue
		}
		if err != nil {
			return KeyInfo{}, err
		}
		k.log.Info("signing key rotated on request", "alg", alg, "kid", n.ID, "retired", g.current.ID, "immediately", immediately)
		if _, err := k.load(ctx); err != nil {
			return KeyInfo{}, err
		}
		return KeyInfo{ID: n.ID, Alg: alg, State: auth.KeyCurrent, CreatedAt: n.CreatedAt, Since: now.UTC(),
			Next: now.Add(k.rotateEvery - k.publishAhead)}, nil
	}
	return KeyInfo{}, fmt.Errorf("rotate %s: the keys kept changing under this rotation: %w", alg, auth.ErrConflict)
}

// Revoke is the emergency removal of a key suspected to be compromised. The key is deleted from the store at once:
// it leaves this instance's JWKS and Verify before Revoke returns, and every other instance's at its next reload
// (within ReloadEvery). Tokens it signed stop verifying — at this server's introspection at once, at verifiers when
// their cached JWKS expires — which breaks their holders until they get new tokens: that is the point. If it was
// its algorithm's current key, the next key (published already) becomes current, or, without one, a new key is made
// current; verifiers that do not refetch the JWKS for an unknown kid fail its tokens until their cache expires.
// An unknown kid is an error wrapping auth.ErrNotFound.
func (k *Keyset) Revoke(ctx context.Context, kid string) error {
	stored, err := k.load(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(stored, func(sk *auth.SigningKey) bool { return sk.ID == kid })
	if i < 0 {
		return fmt.Errorf("signing key %q: %w", kid, auth.ErrNotFound)
	}
	sk := stored[i]
	if err := k.store.DeleteSigningKey(ctx, kid); err != nil && !errors.Is(err, auth.ErrNotFound) {
		return err
	}
	k.log.Warn("signing key revoked: its tokens no longer verify", "alg", sk.Alg, "kid", kid, "state", sk.State)
	if stored, err = k.load(ctx); err != nil {
		return err
	}
	if sk.State != auth.KeyCurrent {
		return nil
	}
	// The algorithm needs a signing key again. Another instance may be doing the same: ErrConflict means it did.
	g := generations(stored)[sk.Alg]
	switch {
	case g != nil && g.current != nil:
	case g != nil && len(g.next) > 0:
		n := g.next[0]
		err = k.store.UpdateSigningKeyState(ctx, n.ID, auth.KeyNext, auth.KeyCurrent, k.now())
		if err == nil {
			k.log.Info("next signing key promoted in place of a revoked one", "alg", sk.Alg, "kid", n.ID)
		}
	default:
		var n *auth.SigningKey
		if n, err = k.newKey(sk.Alg, auth.KeyCurrent, k.now()); err != nil {
			return fmt.Errorf("generate %s signing key: %w", sk.Alg, err)
		}
		if err = k.store.CreateSigningKey(ctx, n); err == nil {
			k.log.Info("signing key created in place of a revoked one", "alg", sk.Alg, "kid", n.ID)
		}
	}
	if err != nil && !errors.Is(err, auth.ErrConflict) && !errors.Is(err, auth.ErrNotFound) {
		return err
	}
	_, err = k.load(ctx)
	return err
}
