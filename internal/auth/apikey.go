package auth

import (
	"context"
	"encoding/json"
	"time"
)

// API key bounds.
const (
	MaxOwnerLen       = 256     // an owner is a subject from the customer's own user system
	MaxKeyMetadata    = 4 << 10 // bytes of a key's metadata JSON object
	MaxKeyGracePeriod = 7 * 24 * time.Hour
)

// APIKey is a long-lived credential for an organization's user or system, with its own grants. The key itself
// is shown once; the store keeps only keyed hashes of it (APIKeyHash).
type APIKey struct {
	ID         string // "key_…": the sub of the tokens it is exchanged for
	OrgID      string // the organization that owns it; "" for none
	Owner      string // a subject in the customer's own user system; "" for none
	Name       string
	Hint       string          // the prefix and first characters of the current key, to tell keys apart
	Grants     []KeyGrant      // what the key may do: per API, scopes
	ExpiresAt  time.Time       // zero: never
	Metadata   json.RawMessage // a small JSON object the caller keeps with the key; nil for none
	Disabled   bool
	Version    int64 // bumped by every update and rotation
	CreatedAt  time.Time
	UpdatedAt  time.Time
	LastUsedAt time.Time // zero: never used; written in batches, so it lags by up to a flush interval
}

// KeyGrant is an API and the scopes of it that an API key holds.
type KeyGrant struct {
	APIID  string   `json:"api_id"`
	Scopes []string `json:"scopes"`
}

// Active reports whether the key may be used at now.
func (k *APIKey) Active(now time.Time) bool {
	return !k.Disabled && (k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt))
}

// APIKeyHash is one stored hash of an API key: the current key's (ExpiresAt zero), or a rotated-out key's that
// works until ExpiresAt (a rotation's grace period).
type APIKeyHash struct {
	Hash      []byte
	KeyID     string
	ExpiresAt time.Time
}

// APIKeyFilter selects API keys.
type APIKeyFilter struct {
	OrgID string
	Owner string
	Page  // ordered by ID
}

// APIKeyStore keeps API keys and their hashes.
type APIKeyStore interface {
	// CreateAPIKey stores a new key with the hash of its secret. ErrConflict if the ID or hash is taken;
	// ErrNotFound if its organization does not exist.
	CreateAPIKey(ctx context.Context, k *APIKey, hash []byte) error
	// FindAPIKey returns the key with the given ID, or ErrNotFound.
	FindAPIKey(ctx context.Context, id string) (*APIKey, error)
	// FindAPIKeyByHash returns the key a hash belongs to, with that hash's record, or ErrNotFound. It does not
	// look at expiry: the caller does.
	FindAPIKeyByHash(ctx context.Context, hash []byte) (*APIKey, *APIKeyHash, error)
	// ListAPIKeys returns the keys f selects, ordered by ID.
	ListAPIKeys(ctx context.Context, f APIKeyFilter) ([]*APIKey, error)
	// UpdateAPIKey replaces Name, Grants, ExpiresAt, Metadata, Disabled and UpdatedAt of the key with the same
	// ID, if its stored Version is k.Version, and then increments k.Version. ErrNotFound if there is none;
	// ErrStale if the version differs.
	UpdateAPIKey(ctx context.Context, k *APIKey) error
	// RotateAPIKey gives the key a new hash and hint, in one transaction: the key's other hashes are removed if
	// oldExpireAt is zero, or else expire at oldExpireAt (or earlier, if they already did); Version is
	// incremented (also in k) and UpdatedAt set. ErrNotFound if there is no such key; ErrStale if the stored
	// Version is not k.Version; ErrConflict if the hash is taken.
	RotateAPIKey(ctx context.Context, k *APIKey, hash []byte, oldExpireAt time.Time) error
	// DeleteAPIKey removes a key and its hashes, if version is 0 or its stored Version is version, as one
	// compare-and-delete. ErrNotFound if there is none; ErrStale if the version differs (then nothing is removed).
	DeleteAPIKey(ctx context.Context, id string, version int64) error
	// TouchAPIKeys sets LastUsedAt of each key named to the time given, if later than the stored one. Keys that
	// no longer exist are skipped.
	TouchAPIKeys(ctx context.Context, used map[string]time.Time) error
	// PruneAPIKeyHashes removes hashes that expired before before, and returns how many it removed.
	PruneAPIKeyHashes(ctx context.Context, before time.Time) (int64, error)
}
