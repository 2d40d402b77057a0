// Package keyset holds Gatehouse's token-signing keys. It generates them, stores them in an auth.Store with the
// private half sealed (AES-256-GCM under a key derived from the root key), signs access tokens with the current key
// of each algorithm, and publishes the public half of every key as a JWK Set.
//
// A key's state (auth.KeyState) says what it is for: a next key is published before it signs, so verifiers have it
// cached in time; the current key signs; a retired key stays published until the tokens it signed have expired.
// Every Gatehouse instance reads the same keys from the store, and the store lets one key per algorithm be current,
// so instances that start together agree on the key they sign with.
//
// Keys rotate on a schedule (see Run): per algorithm, a new key is published as next at least PublishAhead before
// it signs — longer than verifiers may cache the JWKS — then signs for RotateEvery, then stays published as retired
// until every token it signed has expired, then is removed. Each step is a compare-and-swap in the store, so that
// instances sharing a store rotate once, whichever of them acts. RotateNow, RotateImmediately and Revoke act at
// once, for operators.
//
// Sign, JWKS and Verify read an immutable snapshot of the keys through an atomic pointer: they take no lock. Load,
// Ensure, Run and the operator methods replace the snapshot.
package keyset

import (
	"bytes"
	"cmp"
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// ErrDecrypt means a stored signing key cannot be decrypted: the root key is not the one it was sealed under, or
// the stored data was changed.
var ErrDecrypt = errors.New("signing key cannot be decrypted: wrong root key or tampered data")

// tokenType is the JWS "typ" header of every token Sign makes: an RFC 9068 JWT access token.
const tokenType = "at+jwt"

// Options configures a Keyset. The zero value is ready to use.
type Options struct {
	Now         func() time.Time // the clock for key creation times and the rotation schedule; nil means time.Now
	JWKSMaxAge  time.Duration    // how long clients may cache the JWKS (MaxAge); zero or less means 5 minutes
	ReloadEvery time.Duration    // how often Run reloads the keys from the store; zero or less means 30 seconds
	Logger      *slog.Logger     // nil means slog.Default()

	// RotateEvery is how long a key signs before the next one takes over; zero or less means
	// DefaultRotateEvery (30 days). It may not be shorter than PublishAhead.
	RotateEvery time.Duration
	// PublishAhead is how long a next key is published before it signs. It may not be shorter than JWKSMaxAge plus
	// ReloadEvery: a verifier that fetched the JWKS from an instance that had not reloaded the new key yet keeps
	// that set for JWKSMaxAge. Zero or less means twice JWKSMaxAge plus ReloadEvery (10m30s with the defaults).
	PublishAhead time.Duration
	// Retention is the least time a retired key stays published. Whatever it says, a retired key stays until the
	// tokens it may have signed have expired: the longest token lifetime of the APIs in the store (24 hours if
	// there are none), plus ReloadEvery (an instance may sign with a key until it reloads) and RetireLeeway (the
	// clock skew verifiers allow on exp). Set it to cover tokens that outlive that bound: ones issued before an
	// API's token lifetime was shortened, or for an API since deleted.
	Retention time.Duration
}

// CheckSchedule reports whether opts describe a safe rotation schedule (see Options), as New does.
func CheckSchedule(opts Options) error {
	_, _, err := opts.schedule(cmp.Or(max(opts.JWKSMaxAge, 0), 5*time.Minute), cmp.Or(max(opts.ReloadEvery, 0), 30*time.Second))
	return err
}

// schedule returns the rotation period and the publication ahead that opts set, with their defaults, or why they
// are unsafe with this max-age and reload interval.
func (opts Options) schedule(maxAge, reloadEvery time.Duration) (rotateEvery, publishAhead time.Duration, err error) {
	rotateEvery, publishAhead = opts.RotateEvery, opts.PublishAhead
	if rotateEvery <= 0 {
		rotateEvery = DefaultRotateEvery
	}
	if publishAhead <= 0 {
		publishAhead = 2*maxAge + reloadEvery
	}
	if least := maxAge + reloadEvery; publishAhead < least {
		return 0, 0, fmt.Errorf("a next key must be published for at least the JWKS max-age plus the reload interval (%s) before it signs, not %s",
			least, publishAhead)
	}
	if rotateEvery < publishAhead {
		return 0, 0, fmt.Errorf("the rotation period (%s) is shorter than the time a next key is published before it signs (%s)",
			rotateEvery, publishAhead)
	}
	return rotateEvery, publishAhead, nil
}

// Keyset signs access tokens and publishes the JWKS. Its methods are safe for concurrent use.
type Keyset struct {
	store        auth.Store
	aead         cipher.AEAD
	now          func() time.Time
	maxAge       time.Duration
	reloadEvery  time.Duration
	rotateEvery  time.Duration
	publishAhead time.Duration
	retention    time.Duration
	log          *slog.Logger

	snap   atomic.Pointer[snapshot] // never nil
	loadMu sync.Mutex               // serializes Load, so an older listing never replaces a newer one
	loaded []*auth.SigningKey       // the listing snap was built from; guarded by loadMu
	flight singleflight.Group       // collapses concurrent key creation, per algorithm
}

// snapshot is the keys as of one Load. It is never modified after it is published.
type snapshot struct {
	current map[auth.Algorithm]*signer // the current key of each algorithm that has one
	algs    []auth.Algorithm           // the algorithms in current, in auth.Algorithms order
	jwks    []byte                     // {"keys":[…]}: current, then next, then retired keys
	etag    string
	public  map[string]verifyKey // every published key, by kid
	// verified remembers tokens Verify accepted with these keys. It is the one mutable part of a snapshot, and dies
	// with it: a key that leaves the set takes every remembered token with it.
	verified *verifiedCache
}

// verifyKey is a published key as Verify uses it.
type verifyKey struct {
	alg auth.Algorithm
	key any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// New returns a Keyset over store that seals private keys under encKey (32 bytes, used with AES-256-GCM). It holds
// no keys until Load or Ensure. It refuses a schedule that breaks the rules on Options.
func New(store auth.Store, encKey []byte, opts Options) (*Keyset, error) {
	if store == nil {
		return nil, errors.New("keyset: nil store")
	}
	aead, err := newAEAD(encKey)
	if err != nil {
		return nil, fmt.Errorf("keyset: %w", err)
	}
	k := &Keyset{
		store:        store,
		aead:         aead,
		now:          opts.Now,
		maxAge:       opts.JWKSMaxAge,
		reloadEvery:  opts.ReloadEvery,
		rotateEvery:  opts.RotateEvery,
		publishAhead: opts.PublishAhead,
		retention:    max(opts.Retention, 0),
		log:          cmp.Or(opts.Logger, slog.Default()),
	}
	if k.now == nil {
		k.now = time.Now
	}
	if k.maxAge <= 0 {
		k.maxAge = 5 * time.Minute
	}
	if k.reloadEvery <= 0 {
		k.reloadEvery = 30 * time.Second
	}
	if k.rotateEvery, k.publishAhead, err = opts.schedule(k.maxAge, k.reloadEvery); err != nil {
		return nil, fmt.Errorf("keyset: %w", err)
	}
	empty, err := k.build(nil)
	if err != nil {
		return nil, err
	}
	k.snap.Store(empty)
	return k, nil
}

// Load reads every signing key from the store, decrypts it, and replaces the keys Sign and JWKS use. It returns an
// error wrapping ErrDecrypt, naming the kid, if any key cannot be decrypted; on any error the keys in use are
// unchanged.
func (k *Keyset) Load(ctx context.Context) error {
	_, err := k.load(ctx)
	return err
}

// load is Load, returning the keys as listed. When they are the keys in use already, the snapshot (and what Verify
// remembers with it) is kept.
func (k *Keyset) load(ctx context.Context) ([]*auth.SigningKey, error) {
	k.loadMu.Lock()
	defer k.loadMu.Unlock()
	stored, err := k.store.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	if slices.EqualFunc(stored, k.loaded, sameKey) {
		return stored, nil
	}
	s, err := k.build(stored)
	if err != nil {
		return nil, err
	}
	k.loaded = stored
	if old := k.snap.Swap(s); old.etag != s.etag {
		k.log.Info("signing keys loaded", "keys", len(stored), "signing", s.algs)
	}
	return stored, nil
}

// sameKey reports whether two listings of a key are the same in every field.
func sameKey(a, b *auth.SigningKey) bool {
	return a.ID == b.ID && a.Alg == b.Alg && a.State == b.State && a.CreatedAt.Equal(b.CreatedAt) &&
		a.UpdatedAt.Equal(b.UpdatedAt) && bytes.Equal(a.PublicJWK, b.PublicJWK) && bytes.Equal(a.Private, b.Private)
}

// build decrypts the stored keys and makes a snapshot of them.
func (k *Keyset) build(stored []*auth.SigningKey) (*snapshot, error) {
	type published struct {
		sk  *auth.SigningKey
		jwk jose.JSONWebKey
	}
	keys := make([]published, 0, len(stored))
	s := &snapshot{
		current:  make(map[auth.Algorithm]*signer, len(auth.Algorithms)),
		public:   make(map[string]verifyKey, len(stored)),
		verified: newVerifiedCache(),
	}
	for _, sk := range stored {
		if !sk.State.Valid() {
			return nil, fmt.Errorf("signing key %q: unknown state %q", sk.ID, sk.State)
		}
		priv, jwk, err := k.open(sk)
		if err != nil {
			return nil, err
		}
		keys = append(keys, published{sk, jwk})
		s.public[sk.ID] = verifyKey{alg: sk.Alg, key: jwk.Key}
		if sk.State != auth.KeyCurrent {
			continue // only current keys sign; rotation makes a next key current with a store CAS, then Load
		}
		if other, ok := s.current[sk.Alg]; ok {
			return nil, fmt.Errorf("signing keys %q and %q are both current for %s", other.kid, sk.ID, sk.Alg)
		}
		sig, err := newSigner(sk.Alg, sk.ID, priv)
		if err != nil {
			return nil, fmt.Errorf("signing key %q: %w", sk.ID, err)
		}
		s.current[sk.Alg] = sig
	}
	for _, alg := range auth.Algorithms {
		if s.current[alg] != nil {
			s.algs = append(s.algs, alg)
		}
	}

	slices.SortStableFunc(keys, func(a, b published) int {
		return cmp.Or(
			cmp.Compare(stateRank(a.sk.State), stateRank(b.sk.State)),
			cmp.Compare(slices.Index(auth.Algorithms, a.sk.Alg), slices.Index(auth.Algorithms, b.sk.Alg)),
			a.sk.CreatedAt.Compare(b.sk.CreatedAt),
			cmp.Compare(a.sk.ID, b.sk.ID),
		)
	})
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, len(keys))}
	for i, p := range keys {
		set.Keys[i] = p.jwk
	}
	body, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("marshal JWKS: %w", err)
	}
	sum := sha256.Sum256(body)
	s.jwks = body
	s.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:]) + `"`
	return s, nil
}

// stateRank orders keys in the JWKS: the keys verifiers need most come first.
func stateRank(s auth.KeyState) int {
	switch s {
	case auth.KeyCurrent:
		return 0
	case auth.KeyNext:
		return 1
	}
	return 2
}

// Ensure makes sure alg has a current key, creating and storing one if it has none. Of several instances ensuring
// the same algorithm at once, one creates the key and the others load it; concurrent calls in one process share
// one attempt, made with the first caller's ctx.
func (k *Keyset) Ensure(ctx context.Context, alg auth.Algorithm) error {
	_, err := k.ensure(ctx, alg)
	return err
}

func (k *Keyset) ensure(ctx context.Context, alg auth.Algorithm) (*signer, error) {
	if !alg.Valid() {
		return nil, unsupported(alg)
	}
	if s := k.snap.Load().current[alg]; s != nil {
		return s, nil
	}
	v, err, _ := k.flight.Do(string(alg), func() (any, error) { return k.create(ctx, alg) })
	if err != nil {
		return nil, err
	}
	return v.(*signer), nil
}

// create makes alg's current key unless the store has one, and loads it.
func (k *Keyset) create(ctx context.Context, alg auth.Algorithm) (*signer, error) {
	// Another instance may have created it since the last Load.
	if err := k.Load(ctx); err != nil {
		return nil, err
	}
	if s := k.snap.Load().current[alg]; s != nil {
		return s, nil
	}
	sk, err := k.newKey(alg, auth.KeyCurrent, k.now())
	if err != nil {
		return nil, fmt.Errorf("generate %s signing key: %w", alg, err)
	}
	switch err := k.store.CreateSigningKey(ctx, sk); {
	case err == nil:
		k.log.Info("signing key created", "kid", sk.ID, "alg", alg)
	case errors.Is(err, auth.ErrConflict):
		// Another instance created the current key first: load theirs.
	default:
		return nil, fmt.Errorf("store %s signing key: %w", alg, err)
	}
	if err := k.Load(ctx); err != nil {
		return nil, err
	}
	if s := k.snap.Load().current[alg]; s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("no current %s signing key after creating one", alg)
}

// Sign returns claims, a JSON object signed as is, as a compact JWS with the current key for alg and the header
// {"alg", "kid", "typ": "at+jwt"}. If alg has no current key it calls Ensure first. An unsupported alg is an error.
func (k *Keyset) Sign(ctx context.Context, alg auth.Algorithm, claims []byte) (string, error) {
	s := k.snap.Load().current[alg]
	if s == nil {
		var err error
		if s, err = k.ensure(ctx, alg); err != nil {
			return "", err
		}
	}
	return s.sign(claims)
}

// JWKS returns the JWK Set of every published key (current, then next, then retired; public members only) and its
// quoted ETag. The body is shared: callers must not modify it.
func (k *Keyset) JWKS() (body []byte, etag string) {
	s := k.snap.Load()
	return s.jwks, s.etag
}

// MaxAge is how long clients may cache the JWKS: the Cache-Control max-age to serve it with.
func (k *Keyset) MaxAge() time.Duration { return k.maxAge }

// Algorithms returns the algorithms that have a current key, in auth.Algorithms order.
func (k *Keyset) Algorithms() []auth.Algorithm { return slices.Clone(k.snap.Load().algs) }

// Run reloads the keys from the store every ReloadEvery until ctx ends, then returns nil, and after each reload
// moves the keys along their schedule (see Maintain). A failed reload or step is logged and the keys in use are
// kept; the next round tries again.
func (k *Keyset) Run(ctx context.Context) error {
	t := time.NewTicker(k.reloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		roundCtx, cancel := context.WithTimeout(ctx, k.reloadEvery)
		stored, err := k.load(roundCtx)
		if err == nil {
			err = k.maintain(roundCtx, stored)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			k.log.Error("reload or rotation of signing keys failed; keeping the loaded keys", "err", err)
		}
	}
}
