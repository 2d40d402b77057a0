// Package auth is Gatehouse's domain: APIs (resource servers) with their scopes, OAuth clients with their hashed
// secrets, grants that join the two, signing keys, and the Store contract that every storage backend implements.
//
// It imports only the standard library. Adapters (sqlstore, server) and services (keyset, issuer) import it; it
// imports none of them.
package auth

import (
	"context"
	"errors"
	"time"
)

// Errors callers test with errors.Is. Stores return ErrNotFound and ErrConflict; ErrInvalid comes from validation
// (Normalize and the Validate functions), which callers run before they write: a Store never returns it.
var (
	// ErrNotFound: the thing asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique value is taken, or a compare-and-swap lost its race.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: input failed validation; the error is a *ValidationError naming the field.
	ErrInvalid = errors.New("invalid")
	// ErrStale: an update named a Version that is no longer the stored one (someone else changed it first).
	ErrStale = errors.New("stale version")
	// ErrUnavailable: the store could not be reached, or did not answer in time. Nothing was changed, or the
	// change's outcome is unknown; the caller may try again later (503).
	ErrUnavailable = errors.New("store unavailable")
)

// ValidationError says which field of an input is wrong and why. It matches ErrInvalid with errors.Is.
type ValidationError struct {
	Field   string // dotted path, e.g. "scopes[2].name"
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// Is reports whether target is ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Message: sprintf(format, args...)}
}

// Algorithm is a JWS signing algorithm Gatehouse signs access tokens with.
type Algorithm string

// The signing algorithms Gatehouse supports. RS256 is the default because every JWT library verifies it.
const (
	RS256 Algorithm = "RS256"
	ES256 Algorithm = "ES256"
	EdDSA Algorithm = "EdDSA"
)

// Algorithms lists the supported algorithms in a stable order.
var Algorithms = []Algorithm{RS256, ES256, EdDSA}

// Valid reports whether a is a supported algorithm.
func (a Algorithm) Valid() bool {
	switch a {
	case RS256, ES256, EdDSA:
		return true
	}
	return false
}

// Token lifetime bounds for an API.
const (
	DefaultTokenLifetime = 24 * time.Hour
	MinTokenLifetime     = time.Minute
	MaxTokenLifetime     = 30 * 24 * time.Hour
)

// API is a resource server: something that accepts access tokens. Its Identifier is the token audience.
type API struct {
	ID            string // stable internal id, "api_…"; the Identifier may change, the ID never does
	Identifier    string // the audience (aud): an absolute URI or a URN
	Name          string
	Scopes        []Scope
	TokenLifetime time.Duration
	SigningAlg    Algorithm
	// KeyTokenLifetime is the lifetime of tokens an API key is exchanged for (RFC 8693): zero means
	// DefaultKeyTokenLifetime, and it is never longer than TokenLifetime.
	KeyTokenLifetime time.Duration
	Version          int64 // bumped by every update; the ETag of the management API, and its compare-and-swap
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// Scope is a permission an API defines.
type Scope struct {
	Name        string
	Description string
}

// HasScope reports whether the API defines the named scope.
func (a *API) HasScope(name string) bool {
	for _, s := range a.Scopes {
		if s.Name == name {
			return true
		}
	}
	return false
}

// Client is an OAuth 2.0 confidential client that gets tokens with the client credentials grant.
type Client struct {
	ID          string // the client_id
	Name        string
	Description string
	Disabled    bool
	OrgID       string    // the organization that owns the client; "" for none
	RateLimit   RateLimit // how many tokens it may get; the zero value is no limit
	Secrets     []Secret  // at least one; several during a rotation
	Version     int64     // bumped by every update
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Secret is one of a client's secrets. Only its hash is stored.
type Secret struct {
	ID        string // "sec_…"
	Hash      []byte // SecretHasher.Hash of the secret
	Hint      string // the last four characters, to tell secrets apart
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never
}

// Active reports whether the secret may be used at now.
func (s Secret) Active(now time.Time) bool { return s.ExpiresAt.IsZero() || now.Before(s.ExpiresAt) }

// Grant lets a client get tokens for an API with some of its scopes.
type Grant struct {
	ID        string // "grt_…"
	ClientID  string
	APIID     string
	Scopes    []string // a subset of the API's scope names; may be empty (audience only)
	Version   int64    // bumped by every update
	CreatedAt time.Time
	UpdatedAt time.Time
}

// KeyState is where a signing key is in its life.
type KeyState string

// Signing key states. A key is published in the JWKS in every state: next keys before they sign, so verifiers
// have them cached in time; retired keys until every token they signed has expired.
const (
	KeyNext    KeyState = "next"    // published, not yet signing
	KeyCurrent KeyState = "current" // published and signing; at most one per algorithm
	KeyRetired KeyState = "retired" // published, no longer signing
)

// Valid reports whether s is a known state.
func (s KeyState) Valid() bool { return s == KeyNext || s == KeyCurrent || s == KeyRetired }

// SigningKey is a token-signing key pair. The private half is stored only encrypted.
type SigningKey struct {
	ID        string // the kid
	Alg       Algorithm
	State     KeyState
	PublicJWK []byte // the public key as a JSON Web Key
	Private   []byte // the private key, sealed with AES-256-GCM under a key derived from the root key
	CreatedAt time.Time
	UpdatedAt time.Time // when State last changed
}

// Store is the persistence contract. Every backend runs the conformance suite in authtest.
//
// Methods are safe for concurrent use. Times are returned in UTC with millisecond precision. Slices and pointers
// returned are the caller's to keep; empty lists are empty slices, never nil. Callers validate (Normalize) and
// keep the invariants that need no store to check, such as a client having at least one secret when created. Errors wrap ErrNotFound or ErrConflict where those apply; any other error is
// a failure of the backend.
type Store interface {
	APIStore
	ClientStore
	GrantStore
	SigningKeyStore
	SettingStore
	OrgStore
	APIKeyStore
	AuditStore
	LifecycleStore

	// Ping reports whether the backend is reachable.
	Ping(ctx context.Context) error
	// Close releases the backend's resources.
	Close() error
}

// APIStore keeps APIs.
type APIStore interface {
	// CreateAPI stores a new API. ErrConflict if its ID or Identifier is taken.
	CreateAPI(ctx context.Context, api *API) error
	// UpdateAPI replaces the stored API with the same ID (all fields but ID and CreatedAt), if its stored Version
	// is api.Version, and then increments api.Version. ErrNotFound if there is none; ErrStale if the version
	// differs; ErrConflict if the new Identifier is taken by another API.
	UpdateAPI(ctx context.Context, api *API) error
	// FindAPI returns the API with the given ID, or ErrNotFound.
	FindAPI(ctx context.Context, id string) (*API, error)
	// FindAPIByIdentifier returns the API whose Identifier (audience) is exactly identifier, or ErrNotFound.
	FindAPIByIdentifier(ctx context.Context, identifier string) (*API, error)
	// ListAPIs returns every API ordered by Identifier.
	ListAPIs(ctx context.Context) ([]*API, error)
	// ListAPIsPage returns a page of APIs ordered by ID.
	ListAPIsPage(ctx context.Context, p Page) ([]*API, error)
	// DeleteAPI removes the API and every grant for it, if version is 0 or its stored Version is version, as one
	// compare-and-delete. ErrNotFound if there is none; ErrStale if the version differs (then nothing is removed).
	DeleteAPI(ctx context.Context, id string, version int64) error
}

// ClientStore keeps clients and their secrets.
type ClientStore interface {
	// CreateClient stores a new client with its secrets. ErrConflict if the ID or a secret ID is taken.
	CreateClient(ctx context.Context, c *Client) error
	// UpdateClient replaces Name, Description, Disabled, RateLimit and UpdatedAt of the client with the same ID
	// (OrgID and secrets are untouched), if its stored Version is c.Version, and then increments c.Version.
	// ErrNotFound if there is none; ErrStale if the version differs.
	UpdateClient(ctx context.Context, c *Client) error
	// FindClient returns the client with its secrets (ordered by CreatedAt, then ID), or ErrNotFound.
	FindClient(ctx context.Context, id string) (*Client, error)
	// ListClients returns every client, with secrets, ordered by ID.
	ListClients(ctx context.Context) ([]*Client, error)
	// ListClientsPage returns the clients f selects, with secrets, ordered by ID.
	ListClientsPage(ctx context.Context, f ClientFilter) ([]*Client, error)
	// DeleteClient removes the client, its secrets and its grants, if version is 0 or its stored Version is
	// version, as one compare-and-delete. ErrNotFound if there is none; ErrStale if the version differs (then
	// nothing is removed).
	DeleteClient(ctx context.Context, id string, version int64) error
	// AddClientSecret adds a secret to a client and, if othersExpireAt is not zero, makes each of its other
	// secrets that would live longer expire then, in one transaction: a rotation with a grace period.
	// ErrNotFound if the client does not exist; ErrConflict if the secret ID is taken.
	AddClientSecret(ctx context.Context, clientID string, s Secret, othersExpireAt time.Time) error
	// UpdateClientSecretExpiry sets when a secret stops working (zero: never). ErrNotFound if the client has no
	// secret with that ID.
	UpdateClientSecretExpiry(ctx context.Context, clientID, secretID string, expiresAt time.Time) error
	// DeleteClientSecret removes one secret. ErrNotFound if the client has no secret with that ID; ErrConflict if
	// it is the client's last secret (a client always keeps one).
	DeleteClientSecret(ctx context.Context, clientID, secretID string) error
}

// GrantStore keeps grants.
type GrantStore interface {
	// PutGrant creates the grant for (ClientID, APIID), or replaces its Scopes and UpdatedAt if one exists (keeping
	// the stored ID and CreatedAt, which are written back into g). ErrNotFound if the client or API does not exist;
	// ErrConflict if a new grant's ID is taken by another grant.
	PutGrant(ctx context.Context, g *Grant) error
	// CreateGrant stores a new grant. ErrConflict if its ID is taken or the client already has a grant for the
	// API; ErrNotFound if the client or API does not exist.
	CreateGrant(ctx context.Context, g *Grant) error
	// UpdateGrant replaces Scopes and UpdatedAt of the grant with the same ID, if its stored Version is g.Version,
	// and then increments g.Version. ErrNotFound if there is none; ErrStale if the version differs.
	UpdateGrant(ctx context.Context, g *Grant) error
	// FindGrant returns the grant with the given ID, or ErrNotFound.
	FindGrant(ctx context.Context, id string) (*Grant, error)
	// ListGrants returns the client's grants ordered by APIID. An unknown client has none.
	ListGrants(ctx context.Context, clientID string) ([]*Grant, error)
	// ListGrantsPage returns the grants f selects, ordered by ID.
	ListGrantsPage(ctx context.Context, f GrantFilter) ([]*Grant, error)
	// DeleteGrant removes the grant with the given ID, if version is 0 or its stored Version is version, as one
	// compare-and-delete. ErrNotFound if there is none; ErrStale if the version differs (then nothing is removed).
	DeleteGrant(ctx context.Context, id string, version int64) error
}

// SigningKeyStore keeps signing keys.
type SigningKeyStore interface {
	// CreateSigningKey stores a new key. ErrConflict if the ID is taken, or if k.State is KeyCurrent and the
	// algorithm already has a current key: of several instances racing to create the first key, one wins.
	CreateSigningKey(ctx context.Context, k *SigningKey) error
	// ListSigningKeys returns every key ordered by CreatedAt, then ID.
	ListSigningKeys(ctx context.Context) ([]*SigningKey, error)
	// UpdateSigningKeyState moves a key from state from to state to, setting UpdatedAt to at, as one
	// compare-and-swap. ErrNotFound if there is no such key; ErrConflict if its state is not from, or if to is
	// KeyCurrent and the algorithm already has a current key.
	UpdateSigningKeyState(ctx context.Context, kid string, from, to KeyState, at time.Time) error
	// DeleteSigningKey removes a key. ErrNotFound if there is none.
	DeleteSigningKey(ctx context.Context, kid string) error
}

// SettingStore keeps named values.
type SettingStore interface {
	// FindSetting returns a named value, or ErrNotFound.
	FindSetting(ctx context.Context, name string) ([]byte, error)
	// CreateSetting stores a named value once. ErrConflict if the name is taken.
	CreateSetting(ctx context.Context, name string, value []byte) error
}

// ManagementAudience is the identifier of Gatehouse's built-in management API: tokens for it, with its scopes,
// authorize the management API (/api/v1), introspection and revocation.
const ManagementAudience = "urn:gatehouse:management"

// Management scopes.
const (
	ScopeReadAPIs      = "read:apis"
	ScopeWriteAPIs     = "write:apis"
	ScopeReadClients   = "read:clients"
	ScopeWriteClients  = "write:clients"
	ScopeReadGrants    = "read:grants"
	ScopeWriteGrants   = "write:grants"
	ScopeReadOrgs      = "read:orgs"
	ScopeWriteOrgs     = "write:orgs"
	ScopeReadAPIKeys   = "read:apikeys"
	ScopeWriteAPIKeys  = "write:apikeys"
	ScopeVerifyAPIKeys = "verify:apikeys"
	ScopeReadKeys      = "read:keys"
	ScopeWriteKeys     = "write:keys"
	ScopeReadAudit     = "read:audit"
	ScopeIntrospect    = "introspect:tokens" // RFC 7662 introspection of any token
	ScopeRevokeTokens  = "revoke:tokens"     // RFC 7009 revocation of any token, and of every token of a subject
)

// ManagementScopes lists the management API's scopes in a stable order.
var ManagementScopes = []string{
	ScopeReadAPIs, ScopeWriteAPIs, ScopeReadClients, ScopeWriteClients, ScopeReadGrants, ScopeWriteGrants,
	ScopeReadOrgs, ScopeWriteOrgs, ScopeReadAPIKeys, ScopeWriteAPIKeys, ScopeVerifyAPIKeys, ScopeReadKeys,
	ScopeWriteKeys, ScopeReadAudit, ScopeIntrospect, ScopeRevokeTokens,
}
