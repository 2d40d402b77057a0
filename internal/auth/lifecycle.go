package auth

import (
	"context"
	"time"
)

// RevokedToken is an access token revoked before it expired, known by its jti.
type RevokedToken struct {
	JTI       string
	ExpiresAt time.Time // the token's exp: once it has passed (and a leeway with it), the record may be pruned
	RevokedAt time.Time
}

// SubjectCutoff revokes every token of one subject — the sub claim: a client's id, or an API key's id for tokens
// exchanged for an API key — issued before a time.
type SubjectCutoff struct {
	Subject      string
	IssuedBefore time.Time // tokens whose iat is before this are revoked
	ExpiresAt    time.Time // when every token it revokes has expired: then the record may be pruned
	UpdatedAt    time.Time // when it was set or last moved forward
}

// LifecycleStore keeps what the token lifecycle needs beyond SigningKeyStore: the compare-and-swap steps of key
// rotation, and revocations.
//
// The rotation steps are each one atomic compare-and-swap on the state the caller saw, so that of several instances
// that see the same rotation due and act at once, exactly one changes anything and the others get ErrConflict.
type LifecycleStore interface {
	// CreateNextSigningKey stores k, a key in state KeyNext, if currentKID is the current key of k.Alg and k.Alg has
	// no next key yet; otherwise, or if k.ID is taken, it stores nothing and returns ErrConflict.
	CreateNextSigningKey(ctx context.Context, k *SigningKey, currentKID string) error
	// RotateSigningKey retires currentKID and makes nextKID current, setting the UpdatedAt of both to at, in one
	// transaction. ErrConflict, and no change, unless currentKID is alg's current key and nextKID is one of alg's
	// next keys.
	RotateSigningKey(ctx context.Context, alg Algorithm, currentKID, nextKID string, at time.Time) error
	// DeleteRetiredSigningKey removes kid if it is retired and was retired (UpdatedAt) at or before retiredBy.
	// ErrNotFound if there is no such key; ErrConflict, and no change, if it is in another state or was retired
	// later.
	DeleteRetiredSigningKey(ctx context.Context, kid string, retiredBy time.Time) error

	// RevokeToken records a revoked token. Revoking a jti already recorded changes nothing and is not an error.
	RevokeToken(ctx context.Context, r RevokedToken) error
	// RevokeSubject records a subject's cut-off. If the subject has one already, IssuedBefore and ExpiresAt each
	// keep the later of the stored and the given value (a cut-off only moves forward), and UpdatedAt becomes the
	// given one.
	RevokeSubject(ctx context.Context, c SubjectCutoff) error
	// ListRevocations returns the revoked tokens whose RevokedAt, and the cut-offs whose UpdatedAt, is after since
	// (every one for the zero time), ordered by that time, then by JTI or Subject.
	ListRevocations(ctx context.Context, since time.Time) ([]RevokedToken, []SubjectCutoff, error)
	// PruneRevocations deletes the revoked tokens and cut-offs whose ExpiresAt is before before, and returns how
	// many it deleted.
	PruneRevocations(ctx context.Context, before time.Time) (int64, error)
}
