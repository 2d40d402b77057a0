// Package changes tells every instance of Gatehouse about the store writes that invalidate what instances cache,
// so that a rotated, deleted or disabled credential stops working everywhere at once, not when a cache expires.
//
// Store wraps an auth.Store and publishes a Change after each such write, unless the store said that it wrote
// nothing (a write that failed on the way back may still have committed, and one extra invalidation costs only a
// read). A transport
// (PostgreSQL LISTEN/NOTIFY, internal/pgnotify) carries the Change to every instance, this one included, where
// Apply hands it to the caches. A message can still be lost (the database restarts between the write and the
// notification, or an instance's listener is reconnecting): the listener answers every reconnection with Reset,
// which drops everything cached, and the caches' short TTL bounds what is left.
package changes

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// Kind is what changed.
type Kind string

// The kinds of change.
const (
	// Client is a client, one of its secrets or one of its grants; the ID is the client's.
	Client Kind = "client"
	// APIKey is an API key: updated, rotated or deleted; the ID is the key's.
	APIKey Kind = "apikey"
	// API is an API, which many clients and keys may name: everything cached about clients and keys goes.
	API Kind = "api"
	// SigningKeys is any change to the signing keys: the keys are read again.
	SigningKeys Kind = "signing_keys"
	// Revocations is a revoked token or subject: the revocations are read again.
	Revocations Kind = "revocations"
	// Reset is the loss of any number of changes (a listener that reconnected): every cache is dropped and
	// everything read again. It is never published, only applied.
	Reset Kind = "reset"
)

// Change is one write that other instances must learn of.
type Change struct {
	Kind Kind
	ID   string // the client's or key's ID; "" for the other kinds
}

// MaxLen bounds an encoded change: far more than any ID the store accepts, and far less than the 8000 bytes
// PostgreSQL allows a notification's payload.
const MaxLen = 512

// String encodes c as KIND or KIND:ID, its form on the wire.
func (c Change) String() string {
	if c.ID == "" {
		return string(c.Kind)
	}
	return string(c.Kind) + ":" + c.ID
}

// ErrMalformed is returned by Parse for anything that is not an encoded Change of a known kind.
var ErrMalformed = errors.New("malformed change")

// Parse decodes a change encoded by String.
func Parse(s string) (Change, error) {
	if len(s) > MaxLen {
		return Change{}, ErrMalformed
	}
	kind, id, _ := strings.Cut(s, ":")
	c := Change{Kind: Kind(kind), ID: id}
	switch c.Kind {
	case Client, APIKey:
		if id == "" {
			return Change{}, ErrMalformed
		}
	case API, SigningKeys, Revocations:
		if id != "" {
			return Change{}, ErrMalformed
		}
	default:
		return Change{}, ErrMalformed
	}
	return c, nil
}

// Publisher sends a change to every instance. It must not block for long: Store calls it in the request that made
// the write. An error is logged by the caller and otherwise ignored (the caches' TTL bounds the harm).
type Publisher interface {
	Publish(ctx context.Context, c Change) error
}

// publishTimeout bounds how long a write's caller waits for its change to be published.
const publishTimeout = 2 * time.Second

// Store is an auth.Store that publishes a Change after each write that instances cache the result of.
type Store struct {
	auth.Store
	pub Publisher
	// OnError, when set, is told of every change that could not be published.
	OnError func(c Change, err error)
}

// NewStore returns s publishing through pub.
func NewStore(s auth.Store, pub Publisher) *Store { return &Store{Store: s, pub: pub} }

// publish sends c, on a context that outlives a request canceled after its write (the write may have committed).
func (s *Store) publish(ctx context.Context, c Change) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	if err := s.pub.Publish(ctx, c); err != nil && s.OnError != nil {
		s.OnError(c, err)
	}
}

// after publishes c once the write whose error is err has returned, unless err says that nothing was written,
// and returns err.
func (s *Store) after(ctx context.Context, c Change, err error) error {
	if errors.Is(err, auth.ErrNotFound) || errors.Is(err, auth.ErrConflict) || errors.Is(err, auth.ErrStale) ||
		errors.Is(err, auth.ErrInvalid) {
		return err
	}
	s.publish(ctx, c)
	return err
}

// APIs.

func (s *Store) UpdateAPI(ctx context.Context, a *auth.API) error {
	return s.after(ctx, Change{Kind: API}, s.Store.UpdateAPI(ctx, a))
}

func (s *Store) DeleteAPI(ctx context.Context, id string, version int64) error {
	return s.after(ctx, Change{Kind: API}, s.Store.DeleteAPI(ctx, id, version))
}

// Clients: a created one too, which an instance may have cached as unknown.

func (s *Store) CreateClient(ctx context.Context, c *auth.Client) error {
	return s.after(ctx, Change{Kind: Client, ID: c.ID}, s.Store.CreateClient(ctx, c))
}

func (s *Store) UpdateClient(ctx context.Context, c *auth.Client) error {
	return s.after(ctx, Change{Kind: Client, ID: c.ID}, s.Store.UpdateClient(ctx, c))
}

func (s *Store) DeleteClient(ctx context.Context, id string, version int64) error {
	return s.after(ctx, Change{Kind: Client, ID: id}, s.Store.DeleteClient(ctx, id, version))
}

func (s *Store) AddClientSecret(ctx context.Context, clientID string, sec auth.Secret, othersExpireAt time.Time) error {
	return s.after(ctx, Change{Kind: Client, ID: clientID}, s.Store.AddClientSecret(ctx, clientID, sec, othersExpireAt))
}

func (s *Store) UpdateClientSecretExpiry(ctx context.Context, clientID, secretID string, expiresAt time.Time) error {
	return s.after(ctx, Change{Kind: Client, ID: clientID}, s.Store.UpdateClientSecretExpiry(ctx, clientID, secretID, expiresAt))
}

func (s *Store) DeleteClientSecret(ctx context.Context, clientID, secretID string) error {
	return s.after(ctx, Change{Kind: Client, ID: clientID}, s.Store.DeleteClientSecret(ctx, clientID, secretID))
}

// Grants belong to a client.

func (s *Store) PutGrant(ctx context.Context, g *auth.Grant) error {
	return s.after(ctx, Change{Kind: Client, ID: g.ClientID}, s.Store.PutGrant(ctx, g))
}

func (s *Store) CreateGrant(ctx context.Context, g *auth.Grant) error {
	return s.after(ctx, Change{Kind: Client, ID: g.ClientID}, s.Store.CreateGrant(ctx, g))
}

func (s *Store) UpdateGrant(ctx context.Context, g *auth.Grant) error {
	return s.after(ctx, Change{Kind: Client, ID: g.ClientID}, s.Store.UpdateGrant(ctx, g))
}

// DeleteGrant reads the grant first, for its client. A grant it cannot read (already gone, or the store is down)
// is deleted without a change: there is nothing left to invalidate, or the delete fails too.
func (s *Store) DeleteGrant(ctx context.Context, id string, version int64) error {
	g, err := s.Store.FindGrant(ctx, id)
	if err != nil {
		return s.Store.DeleteGrant(ctx, id, version)
	}
	return s.after(ctx, Change{Kind: Client, ID: g.ClientID}, s.Store.DeleteGrant(ctx, id, version))
}

// API keys. A created key needs no change: its hash is new, so no instance has it cached.

func (s *Store) UpdateAPIKey(ctx context.Context, k *auth.APIKey) error {
	return s.after(ctx, Change{Kind: APIKey, ID: k.ID}, s.Store.UpdateAPIKey(ctx, k))
}

func (s *Store) RotateAPIKey(ctx context.Context, k *auth.APIKey, hash []byte, oldExpireAt time.Time) error {
	return s.after(ctx, Change{Kind: APIKey, ID: k.ID}, s.Store.RotateAPIKey(ctx, k, hash, oldExpireAt))
}

func (s *Store) DeleteAPIKey(ctx context.Context, id string, version int64) error {
	return s.after(ctx, Change{Kind: APIKey, ID: id}, s.Store.DeleteAPIKey(ctx, id, version))
}

// Signing keys.

var signingKeys = Change{Kind: SigningKeys}

func (s *Store) CreateSigningKey(ctx context.Context, k *auth.SigningKey) error {
	return s.after(ctx, signingKeys, s.Store.CreateSigningKey(ctx, k))
}

func (s *Store) UpdateSigningKeyState(ctx context.Context, kid string, from, to auth.KeyState, at time.Time) error {
	return s.after(ctx, signingKeys, s.Store.UpdateSigningKeyState(ctx, kid, from, to, at))
}

func (s *Store) DeleteSigningKey(ctx context.Context, kid string) error {
	return s.after(ctx, signingKeys, s.Store.DeleteSigningKey(ctx, kid))
}

func (s *Store) CreateNextSigningKey(ctx context.Context, k *auth.SigningKey, currentKID string) error {
	return s.after(ctx, signingKeys, s.Store.CreateNextSigningKey(ctx, k, currentKID))
}

func (s *Store) RotateSigningKey(ctx context.Context, alg auth.Algorithm, currentKID, nextKID string, at time.Time) error {
	return s.after(ctx, signingKeys, s.Store.RotateSigningKey(ctx, alg, currentKID, nextKID, at))
}

func (s *Store) DeleteRetiredSigningKey(ctx context.Context, kid string, retiredBy time.Time) error {
	return s.after(ctx, signingKeys, s.Store.DeleteRetiredSigningKey(ctx, kid, retiredBy))
}

// Revocations.

var revocations = Change{Kind: Revocations}

func (s *Store) RevokeToken(ctx context.Context, r auth.RevokedToken) error {
	return s.after(ctx, revocations, s.Store.RevokeToken(ctx, r))
}

func (s *Store) RevokeSubject(ctx context.Context, c auth.SubjectCutoff) error {
	return s.after(ctx, revocations, s.Store.RevokeSubject(ctx, c))
}
