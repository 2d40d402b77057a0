// Package verify checks OAuth 2.0 JWT access tokens (RFC 9068) offline against an issuer's JSON Web Key Set, for
// APIs that receive them: strict JWS parsing, a JWKS cache that refreshes itself and cannot be made to hammer the
// issuer, scope checks and net/http middleware answering as RFC 6750 says.
//
// It works with any issuer that publishes a JWKS: Gatehouse, Auth0, Okta, Amazon Cognito, Keycloak and others.
//
// A Verifier is built once from a Config and shared: it is safe for concurrent use. Its JWKS cache is filled on the
// first Verify and refreshed in the background, either by Run (started by the program that owns the Verifier) or,
// without Run, by Verify itself when the set is due; Verify never waits for a refresh while it holds a usable set.
// A refresh that Verify starts runs in a goroutine of its own that ends with the fetch, within
// DefaultFetchTimeout; so does a fetch whose callers all stopped waiting.
//
// With Config.Revocations, Verify also refuses tokens the issuer revoked, from a list it polls (see RevocationFeed
// for the bound and what happens when the issuer cannot be reached).
//
// The cache cannot be turned against the issuer: a kid the set lacks causes at most one fetch per
// Config.RefetchInterval, shared by every caller that asks meanwhile; a kid found missing from a fresh set is
// refused without a fetch for a minute; a signature that fails with a known key causes no fetch; a refresh that
// fails leaves the last good set in use and is retried with backoff.
//
// Gatehouse API keys, long-lived secrets that cannot be checked offline, are checked online by an APIKeyVerifier,
// which asks the Gatehouse server and caches its answer for a bounded time (APIKeyConfig.CacheTTL: the delay before a
// deleted, rotated or disabled key is refused). Any lets one Middleware accept both, telling them apart by their
// shape (IsAPIKey).
package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Errors returned by Verify, wrapped with detail: test them with errors.Is. Every error but ErrJWKSUnavailable
// means the token is not acceptable; ErrJWKSUnavailable means the verifier could not get the issuer's keys, and
// says nothing about the token. It matches ErrUnavailable, as ErrAPIKeyUnavailable does.
var (
	ErrMalformed      = errors.New("malformed token")               // not a compact JWS with JSON header and claims
	ErrTooLarge       = errors.New("token too large")               // longer than Config.MaxTokenSize
	ErrUnsupportedAlg = errors.New("unsupported algorithm")         // alg not allowed, or not the key's algorithm
	ErrUnknownKey     = errors.New("unknown signing key")           // no kid, or the kid is not in the JWKS
	ErrSignature      = errors.New("invalid signature")             // the signature does not verify with the key
	ErrExpired        = errors.New("token expired")                 // exp is past (beyond the leeway)
	ErrNotYetValid    = errors.New("token not yet valid")           // nbf is in the future (beyond the leeway)
	ErrIssuedInFuture = errors.New("token issued in the future")    // iat is in the future (beyond the leeway)
	ErrIssuer         = errors.New("wrong issuer")                  // iss is not Config.Issuer
	ErrAudience       = errors.New("wrong audience")                // aud names none of Config.Audiences
	ErrType           = errors.New("wrong token type")              // typ is not one of Config.Types
	ErrCritical       = errors.New("critical header not supported") // the header has crit

	ErrJWKSUnavailable error = &unavailableError{"JWKS unavailable"} // the key set could not be fetched yet
)

// ErrUnavailable means a credential could not be checked at all — the issuer's keys could not be fetched
// (ErrJWKSUnavailable), or the Gatehouse server could not be asked about an API key (ErrAPIKeyUnavailable) — and
// says nothing about the credential. Middleware answers it with 503: fail closed, and no fault of the client.
var ErrUnavailable = errors.New("verifier unavailable")

// unavailableError is an error that matches ErrUnavailable.
type unavailableError struct{ msg string }

func (e *unavailableError) Error() string        { return e.msg }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// Defaults for Config fields left zero, and the bounds the JWKS cache works within.
const (
	DefaultMaxTokenSize    = 16 << 10         // bytes
	DefaultLeeway          = 30 * time.Second // clock skew tolerated on exp, nbf and iat
	DefaultRefetchInterval = 10 * time.Second // least time between fetches caused by unknown kids
	DefaultFetchTimeout    = 10 * time.Second // one JWKS or discovery request

	// A JWKS is kept for its Cache-Control max-age (less any Age), bounded to [MinRefresh, MaxRefresh]; without
	// max-age, for DefaultRefresh. It is refreshed a little ahead of that, and kept in use while refreshes fail.
	DefaultRefresh = 5 * time.Minute
	MinRefresh     = 30 * time.Second
	MaxRefresh     = 24 * time.Hour

	maxJWKSSize     = 1 << 20 // bytes of a JWKS or discovery document
	maxUnknownKids  = 4096    // kids remembered as unknown
	unknownKidTTL   = time.Minute
	firstFetchRetry = time.Second // least time between failed fetches while there is no key set yet
)

// Config configures a Verifier. Issuer and Audiences are required.
type Config struct {
	// Issuer is the exact iss every token must carry, e.g. "https://auth.example.com/". Without JWKSURL, the JWKS
	// location is discovered from it (OpenID Connect Discovery, then RFC 8414), and the discovery document must name
	// exactly this issuer.
	Issuer string
	// Audiences are the audiences accepted: a token's aud must contain at least one of them.
	Audiences []string
	// JWKSURL is where the issuer publishes its keys, e.g. "https://auth.example.com/.well-known/jwks.json".
	JWKSURL string
	// Algorithms are the JWS algorithms accepted, from RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384,
	// ES512 and EdDSA. Empty means all of them. Whatever is set, a token's alg must also be the algorithm its key
	// declares (or, for a key declaring none, one its key type implies); "none" and HMAC are never accepted.
	Algorithms []string
	// Leeway is the clock skew tolerated on exp, nbf and iat: DefaultLeeway when zero; negative means none.
	Leeway time.Duration
	// Types are the accepted values of the typ header, compared without case and with any "application/" prefix
	// removed. Nil means []string{"at+jwt"} (RFC 9068). For issuers that do not set typ (Amazon Cognito), include
	// "": an absent typ is then accepted; Auth0's default access tokens need "JWT".
	Types []string
	// MaxTokenSize bounds a token's length in bytes: DefaultMaxTokenSize when zero.
	MaxTokenSize int
	// RefetchInterval is the least time between two JWKS fetches caused by tokens with unknown kids:
	// DefaultRefetchInterval when zero.
	RefetchInterval time.Duration
	// HTTPClient fetches the JWKS and discovery documents: http.DefaultClient when nil. Each request is also
	// bounded by DefaultFetchTimeout.
	HTTPClient *http.Client
	// Now is the clock: time.Now when nil.
	Now func() time.Time
	// Logger receives failed JWKS refreshes (the verifier keeps the keys it has): slog.Default() when nil.
	Logger *slog.Logger
	// Revocations, when set, makes Verify refuse revoked tokens too (see RevocationFeed). Nil checks none.
	Revocations *RevocationFeed
	// OnRefresh, when set, is called after every JWKS fetch — by Run, by Verify on first use, when the set is due
	// or for an unknown kid — with nil on success (a 304 Not Modified included) or the fetch's error (a set with no
	// usable key included), e.g. to count refreshes. It is called from one goroutine at a time and must not block.
	OnRefresh func(err error)
}

// Verifier verifies access tokens from one issuer. It is safe for concurrent use.
type Verifier struct {
	iss       string
	auds      []string
	types     []string
	algs      algSet // allowed by the configuration
	leeway    time.Duration
	maxSize   int
	refetch   time.Duration
	client    *http.Client
	now       func() time.Time
	log       *slog.Logger
	onRefresh func(error)
	jwksURL   atomic.Pointer[string] // set by New or by discovery
	running   atomic.Int32           // Runs refreshing the set: while any does, Verify does not
	fetches   singleflight.Group     // one fetch at a time, shared by whoever asks meanwhile
	set       atomic.Pointer[keySet] // the set in use; nil until the first fetch succeeds
	nextTry   atomic.Int64           // Unix ns when the set is due for a refresh, or after a failure, may be retried

	mu        sync.Mutex
	lastFetch time.Time            // start of the last fetch, successful or not
	fetching  bool                 // a fetch is under way
	failures  int                  // consecutive failed fetches
	lastErr   error                // of the last failed fetch
	unknown   map[string]time.Time // kids missing from a set fetched after they were asked for, until when

	revs *revocations // nil without Config.Revocations
}

// New returns a Verifier for cfg. It does no I/O: the JWKS is fetched on first use, or by Run.
func New(cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("verify: Config.Issuer is required")
	}
	if len(cfg.Audiences) == 0 || slices.Contains(cfg.Audiences, "") {
		return nil, errors.New("verify: Config.Audiences is required and may not contain \"\"")
	}
	algs := allAlgs
	if len(cfg.Algorithms) > 0 {
		algs = 0
		for _, a := range cfg.Algorithms {
			b := algBit(a)
			if b == 0 {
				return nil, fmt.Errorf("verify: algorithm %q is not supported (use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA)", a)
			}
			algs |= b
		}
	}
	v := &Verifier{
		iss:       cfg.Issuer,
		auds:      slices.Clone(cfg.Audiences),
		algs:      algs,
		leeway:    cfg.Leeway,
		maxSize:   cfg.MaxTokenSize,
		refetch:   cfg.RefetchInterval,
		client:    cfg.HTTPClient,
		now:       cfg.Now,
		log:       cfg.Logger,
		onRefresh: cfg.OnRefresh,
		unknown:   make(map[string]time.Time),
	}
	if cfg.Types == nil {
		v.types = []string{"at+jwt"}
	} else {
		for _, t := range cfg.Types {
			v.types = append(v.types, normalType(t))
		}
	}
	if v.leeway == 0 {
		v.leeway = DefaultLeeway
	} else if v.leeway < 0 {
		v.leeway = 0
	}
	if v.maxSize <= 0 {
		v.maxSize = DefaultMaxTokenSize
	}
	if v.refetch <= 0 {
		v.refetch = DefaultRefetchInterval
	}
	if v.client == nil {
		v.client = http.DefaultClient
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.Default()
	}
	if cfg.JWKSURL != "" {
		u := cfg.JWKSURL
		v.jwksURL.Store(&u)
	}
	if cfg.Revocations != nil {
		var err error
		if v.revs, err = newRevocations(*cfg.Revocations, v.client, v.now, v.log, v.leeway); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// normalType puts a typ value in the form Types are compared in (RFC 7515 §4.1.9).
func normalType(t string) string {
	t = strings.ToLower(t)
	return strings.TrimPrefix(t, "application/")
}

// Claims are the claims of a verified access token, or those APIKeyVerifier.Verify makes for an API key.
type Claims struct {
	Issuer    string    // iss
	Subject   string    // sub
	Audience  []string  // aud, a string or an array in the token
	ExpiresAt time.Time // exp
	NotBefore time.Time // nbf; zero when absent
	IssuedAt  time.Time // iat; zero when absent
	ID        string    // jti
	ClientID  string    // client_id (RFC 9068), or cid (Okta), or azp
	Scopes    []string  // scope, space-separated (RFC 9068), or scp, an array (Okta) or a string (Entra ID)
	OrgID     string    // org_id (Gatehouse, Auth0 Organizations)
	// Raw is the token's payload as received: a JSON object. Decode reads claims without a field here from it.
	Raw json.RawMessage
}

// Decode unmarshals the token's payload into v, as json.Unmarshal does, for claims Claims has no field for.
func (c *Claims) Decode(v any) error {
	return json.Unmarshal(c.Raw, v)
}

// HasScopes reports whether the token carries every one of the scopes (true when none are given).
func (c *Claims) HasScopes(all ...string) bool {
	for _, s := range all {
		if !slices.Contains(c.Scopes, s) {
			return false
		}
	}
	return true
}

// HasAnyScope reports whether the token carries at least one of the scopes (false when none are given).
func (c *Claims) HasAnyScope(anyOf ...string) bool {
	for _, s := range anyOf {
		if slices.Contains(c.Scopes, s) {
			return true
		}
	}
	return false
}

// Verify checks token — a compact JWS, without the "Bearer " prefix — and returns its claims. It checks, in order:
// size, compact syntax (three base64url parts without padding, JSON objects), crit (refused), alg (allowed and the
// key's own), typ, the key (by kid, from the JWKS only: jku, x5u, jwk and x5c in the header are ignored), the
// signature, iss (exact), aud, exp (required), nbf and iat, with Config.Leeway; and, with Config.Revocations,
// that the token is not revoked.
//
// The errors wrap the Err* values above. Verify blocks only to fetch the JWKS on first use or for a kid it does
// not know (at most once per Config.RefetchInterval, shared by concurrent callers), and for no longer than ctx and
// DefaultFetchTimeout allow.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	t, err := v.parse(token)
	if err != nil {
		return nil, err
	}
	k, err := v.key(ctx, t.kid, t.alg)
	if err != nil {
		return nil, err
	}
	if err := k.verify(t.alg, t.signingInput, t.sig); err != nil {
		return nil, err
	}
	c, err := decodeClaims(t.payload)
	if err != nil {
		return nil, err
	}
	if err := v.validate(c); err != nil {
		return nil, err
	}
	if v.revs != nil {
		if err := v.revs.check(ctx, c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// validate checks the registered claims of a token whose signature is good.
func (v *Verifier) validate(c *Claims) error {
	if c.Issuer != v.iss {
		return fmt.Errorf("%w: %q", ErrIssuer, truncate(c.Issuer, 100))
	}
	ok := false
	for _, a := range c.Audience {
		if slices.Contains(v.auds, a) {
			ok = true
			break
		}
	}
	if !ok {
		if len(c.Audience) == 0 {
			return fmt.Errorf("%w: the token has no aud", ErrAudience)
		}
		return fmt.Errorf("%w: %q", ErrAudience, truncate(strings.Join(c.Audience, " "), 100))
	}
	now := v.now()
	if c.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: no exp claim", ErrMalformed)
	}
	if !now.Before(c.ExpiresAt.Add(v.leeway)) {
		return fmt.Errorf("%w: at %s", ErrExpired, c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if !c.NotBefore.IsZero() && now.Add(v.leeway).Before(c.NotBefore) {
		return fmt.Errorf("%w: not before %s", ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339))
	}
	if !c.IssuedAt.IsZero() && now.Add(v.leeway).Before(c.IssuedAt) {
		return fmt.Errorf("%w: issued at %s", ErrIssuedInFuture, c.IssuedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
