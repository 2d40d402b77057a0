// Package issuer implements the grants: it authenticates the client, chooses the API and scopes from what the
// client was granted, and mints an RFC 9068 access token. It writes nothing to the store.
//
// Clients, with their secrets, grants and APIs, are read through a small in-process cache so the hot path costs no
// database round trip. Changes made through this process call Invalidate; the cache's TTL bounds how long a change
// made by another process can go unseen.
package issuer

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/gatehouse/gatehouse/internal/apikey"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/limit"
)

// TokenVerifier checks the signature of a token this server signed, with any published key, and returns its
// payload.
type TokenVerifier interface {
	Verify(token string) ([]byte, error)
}

// Signer signs access-token claims (a JSON object) with the current key for alg and returns a compact JWS whose
// header carries typ "at+jwt" and the key's kid.
type Signer interface {
	Sign(ctx context.Context, alg auth.Algorithm, claims []byte) (string, error)
}

// OAuth 2.0 error codes (RFC 6749 §5.2, RFC 8707 §2).
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidClient        = "invalid_client"
	CodeInvalidGrant         = "invalid_grant"
	CodeUnauthorizedClient   = "unauthorized_client"
	CodeUnsupportedGrantType = "unsupported_grant_type"
	CodeInvalidScope         = "invalid_scope"
	CodeInvalidTarget        = "invalid_target"
	// CodeTooManyRequests is not in RFC 6749: it is what Auth0 answers, with HTTP 429 and Retry-After, when a
	// client is over its rate limit. Gatehouse also answers it while failed authentications are throttled.
	CodeTooManyRequests = "too_many_requests"
)

// Error is an OAuth error for the caller: a code from RFC 6749 §5.2 and a description safe to show.
type Error struct {
	Code        string
	Description string
	// RetryAfter is, for CodeTooManyRequests, how long the caller should wait: whole seconds, at least one.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func oauthErr(code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

// errBadClient is the one answer for an unknown client, a wrong or expired secret and a disabled client, so a
// caller cannot tell which client_ids exist.
var errBadClient = &Error{Code: CodeInvalidClient, Description: "client authentication failed"}

// Options configure an Issuer.
type Options struct {
	Issuer   string           // the iss claim, e.g. "http://127.0.0.1:8080/"
	Now      func() time.Time // default time.Now
	CacheTTL time.Duration    // how long a client read from the store is reused; default 5s; negative disables
	// StaleIfError is how much longer than CacheTTL a cached client is still used while the store cannot be
	// reached (auth.ErrUnavailable), so that a database outage does not stop the clients this instance knows
	// from getting tokens. While the store is down for every instance, nothing in it can change meanwhile; but an
	// instance cut off from a store that others still reach keeps a client they changed for up to this long past
	// CacheTTL. Zero or less: never.
	StaleIfError time.Duration
	Logger       *slog.Logger
	// Verifier checks tokens for Check; Check refuses every token without one.
	Verifier TokenVerifier
	// Revocations, if set, is consulted by Check: a revoked token is not valid.
	Revocations RevocationChecker

	// Limiter, when set, holds each client to its RateLimit: a client over it gets too_many_requests. Its keys
	// are client_ids.
	Limiter limit.Limiter
	// Throttle, when set, counts failed client authentications and refuses, with too_many_requests and before
	// the secret is checked, requests from a source that has failed too often.
	Throttle *limit.Throttle
	// Audit, when set, receives a security event for every failed client authentication and every refusal.
	Audit SecurityLog
	// APIKeys checks the API keys of token exchange; nil disables the grant.
	APIKeys *apikey.Checker
}

// Issuer mints access tokens. It is safe for concurrent use.
type Issuer struct {
	store  auth.Store
	signer Signer
	hasher *auth.SecretHasher
	iss    string
	now    func() time.Time
	ttl    time.Duration
	stale  time.Duration // StaleIfError
	log    *slog.Logger
	verify TokenVerifier
	revoke RevocationChecker

	limiter  limit.Limiter
	throttle *limit.Throttle
	audit    SecurityLog
	keys     *apikey.Checker

	mu      sync.RWMutex
	clients map[string]cacheEntry
	gen     uint64 // bumped by every invalidation; a load that started before one is not cached
	// nextEvict is when a full cache is next worth scanning for expired entries.
	nextEvict time.Time
	loads     singleflight.Group
	dummy     []byte // a hash no secret matches, compared for unknown clients so they cost what known ones do
}

// loadTimeout bounds one read of a client from the store, which requests waiting for it share: past it, the read
// fails (auth.ErrUnavailable) rather than hold requests.
const loadTimeout = 5 * time.Second

// maxCached bounds the client cache, so a flood of made-up client_ids cannot grow it without limit.
const maxCached = 100_000

type cacheEntry struct {
	view    *clientView // nil: no such client
	expires time.Time
}

// clientView is a client with its grants resolved to APIs, as the token endpoint needs it.
type clientView struct {
	client *auth.Client
	grants map[string]*grant // by API identifier
	only   *grant            // the grant, when there is exactly one
}

type grant struct {
	api    *auth.API
	scopes []string // granted scopes the API still defines, sorted
}

// New returns an Issuer reading from store, signing with signer and checking secrets with hasher.
func New(store auth.Store, signer Signer, hasher *auth.SecretHasher, opts Options) *Issuer {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Issuer{
		store: store, signer: signer, hasher: hasher,
		iss: opts.Issuer, now: opts.Now, ttl: opts.CacheTTL, stale: max(opts.StaleIfError, 0), log: opts.Logger, verify: opts.Verifier, revoke: opts.Revocations,
		limiter: opts.Limiter, throttle: opts.Throttle, audit: opts.Audit, keys: opts.APIKeys,
		clients: make(map[string]cacheEntry),
		dummy:   hasher.Hash(auth.NewSecret()),
	}
}

// Request is a client credentials token request, already parsed from HTTP.
type Request struct {
	ClientID     string
	ClientSecret string
	Audience     string // from audience or resource; "" when absent
	Scope        string // space-separated; "" when absent
	// Address is the caller's IP address (IP:port is accepted too), which failed authentications are counted
	// by and security events record; "" when unknown.
	Address   string
	RequestID string // for security events; "" when none
}

// Token is an issued access token.
type Token struct {
	AccessToken string
	ExpiresIn   int64  // seconds
	Scope       string // the granted scopes, space-separated
	Audience    string
}

// Claims is the payload of a Gatehouse access token (RFC 9068 §2.2).
type Claims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"`
	ExpiresAt int64  `json:"exp"`
	NotBefore int64  `json:"nbf"`
	IssuedAt  int64  `json:"iat"`
	ID        string `json:"jti"`
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope,omitempty"`
	OrgID     string `json:"org_id,omitempty"`
}

// Scopes returns the token's scopes.
func (c *Claims) Scopes() []string { return strings.Fields(c.Scope) }

// HasScope reports whether the token carries scope.
func (c *Claims) HasScope(scope string) bool { return slices.Contains(c.Scopes(), scope) }

// maxScopes bounds how many scope tokens one request may carry.
const maxScopes = 100

// ClientCredentials runs the client credentials grant (RFC 6749 §4.4). OAuth failures are *Error; any other error
// is a failure of the store or signer.
//
// With a Throttle, a source that has failed too often is refused before its secret is checked; with a Limiter, a
// client over its RateLimit is refused after its request is found valid, so only tokens it would get count.
func (i *Issuer) ClientCredentials(ctx context.Context, r Request) (*Token, error) {
	now := i.now()
	if err := i.checkThrottle(ctx, r, now); err != nil {
		return nil, err
	}
	view, reason, err := i.authenticate(ctx, r.ClientID, r.ClientSecret, now)
	if reason != "" {
		i.authFailed(ctx, r, view, reason, now)
	}
	if err != nil {
		return nil, err
	}
	g, scopes, err := i.resolve(view, r.Audience, r.Scope)
	if err != nil {
		return nil, err
	}
	if err := i.checkRateLimit(ctx, r, view.client, now); err != nil {
		return nil, err
	}
	c := Claims{
		Issuer:    i.iss,
		Subject:   view.client.ID,
		Audience:  g.api.Identifier,
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		ExpiresAt: now.Add(g.api.TokenLifetime).Unix(),
		ID:        newJTI(),
		ClientID:  view.client.ID,
		Scope:     strings.Join(scopes, " "),
		OrgID:     view.client.OrgID,
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("marshal claims: %w", err)
	}
	tok, err := i.signer.Sign(ctx, g.api.SigningAlg, payload)
	if err != nil {
		return nil, fmt.Errorf("sign token for %s: %w", g.api.Identifier, err)
	}
	return &Token{AccessToken: tok, ExpiresIn: int64(g.api.TokenLifetime / time.Second), Scope: c.Scope, Audience: c.Audience}, nil
}

// authenticate checks the client's secret in constant time against each of its active secrets. Unknown clients,
// wrong or expired secrets and disabled clients all get errBadClient; reason says which, for the audit log only
// (one of the reason constants, "" on success). view is the client when it exists.
func (i *Issuer) authenticate(ctx context.Context, clientID, secret string, now time.Time) (view *clientView, reason string, err error) {
	if clientID == "" || secret == "" || len(clientID) > auth.MaxClientIDLen || len(secret) > auth.MaxSecretLen {
		return nil, reasonMalformed, errBadClient
	}
	view, err = i.client(ctx, clientID)
	if err != nil {
		return nil, "", err
	}
	sum := i.hasher.Hash(secret)
	if view == nil {
		subtle.ConstantTimeCompare(sum, i.dummy)
		return nil, reasonUnknownClient, errBadClient
	}
	ok, expired := 0, 0
	for _, s := range view.client.Secrets {
		match := subtle.ConstantTimeCompare(sum, s.Hash)
		if s.Active(now) {
			ok |= match
		} else {
			expired |= match
		}
	}
	switch {
	case ok == 0 && expired == 0:
		return view, reasonWrongSecret, errBadClient
	case view.client.Disabled:
		return view, reasonDisabled, errBadClient
	case ok == 0:
		return view, reasonExpiredSecret, errBadClient
	}
	return view, "", nil
}

// resolve picks the API from the audience, from Cognito-style scopes (<api identifier>/<scope>), or from the
// client's only grant, and the scopes from the request or, when none were asked for, every granted scope.
func (i *Issuer) resolve(view *clientView, audience, scope string) (*grant, []string, error) {
	names, scopeAPI, err := parseScope(scope)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case audience != "" && scopeAPI != "" && audience != scopeAPI:
		return nil, nil, oauthErr(CodeInvalidScope, "the scopes name API %q but the audience is %q", scopeAPI, audience)
	case audience == "":
		audience = scopeAPI
	}
	var g *grant
	switch {
	case audience != "":
		g = view.grants[audience]
		if g == nil {
			if scopeAPI != "" {
				return nil, nil, oauthErr(CodeInvalidScope, "scopes for %q are not granted to this client", audience)
			}
			return nil, nil, oauthErr(CodeInvalidTarget, "%q is not an API this client may get tokens for", audience)
		}
	case view.only != nil:
		g = view.only
	case len(view.grants) == 0:
		return nil, nil, oauthErr(CodeUnauthorizedClient, "this client has no grants; grant it an API first")
	default:
		return nil, nil, oauthErr(CodeInvalidRequest, "audience (or resource) is required: this client is granted several APIs")
	}
	if names == nil {
		return g, g.scopes, nil
	}
	for _, n := range names {
		if _, ok := slices.BinarySearch(g.scopes, n); !ok {
			return nil, nil, oauthErr(CodeInvalidScope, "scope %q is not granted to this client for %s", n, g.api.Identifier)
		}
	}
	slices.Sort(names)
	return g, slices.Compact(names), nil
}

// parseScope splits a scope parameter (RFC 6749 §3.3). Scopes of the form <api identifier>/<name> (Cognito) are
// reduced to their names, and the identifier they share is returned; names is nil when scope is empty.
func parseScope(scope string) (names []string, api string, err error) {
	if scope == "" {
		return nil, "", nil
	}
	toks := strings.Split(scope, " ")
	if len(toks) > maxScopes {
		return nil, "", oauthErr(CodeInvalidScope, "more than %d scopes requested", maxScopes)
	}
	names = make([]string, 0, len(toks))
	for _, t := range toks {
		if t == "" {
			continue // tolerate doubled spaces
		}
		if k := strings.LastIndexByte(t, '/'); k >= 0 {
			if api != "" && api != t[:k] {
				return nil, "", oauthErr(CodeInvalidScope, "scopes name more than one API; a token is for one API")
			}
			api, t = t[:k], t[k+1:]
		}
		if err := auth.ValidateScopeName("scope", t); err != nil {
			return nil, "", oauthErr(CodeInvalidScope, "malformed scope %q", truncate(t, 64))
		}
		names = append(names, t)
	}
	if len(names) == 0 {
		return nil, "", nil
	}
	return names, api, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// client returns the client's view from the cache or the store; nil (no error) when there is no such client.
func (i *Issuer) client(ctx context.Context, id string) (*clientView, error) {
	now := i.now()
	i.mu.RLock()
	e, ok := i.clients[id]
	i.mu.RUnlock()
	if ok && now.Before(e.expires) {
		return e.view, nil
	}
	v, err, _ := i.loads.Do(id, func() (any, error) {
		i.mu.RLock()
		gen := i.gen
		i.mu.RUnlock()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		view, err := i.load(lctx, id)
		if err != nil {
			if ok && errors.Is(err, auth.ErrUnavailable) && now.Before(e.expires.Add(i.stale)) {
				return e.view, nil // stale if error: see Options.StaleIfError
			}
			return nil, err
		}
		if i.ttl > 0 {
			i.mu.Lock()
			defer i.mu.Unlock()
			if gen != i.gen {
				return view, nil // invalidated while loading: use it for this request, do not keep it
			}
			if len(i.clients) >= maxCached && !now.Before(i.nextEvict) {
				i.evictExpired(now)
			}
			if len(i.clients) < maxCached {
				i.clients[id] = cacheEntry{view: view, expires: now.Add(i.ttl)}
			}
		}
		return view, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*clientView), nil
}

// evictExpired drops the expired entries, and notes when the next one expires: a full cache of live entries is not
// scanned again before then, so a flood of made-up client_ids costs one scan per expiry, not one per request.
func (i *Issuer) evictExpired(now time.Time) {
	next := now.Add(i.ttl)
	for id, e := range i.clients {
		if !now.Before(e.expires) {
			delete(i.clients, id)
		} else if e.expires.Before(next) {
			next = e.expires
		}
	}
	i.nextEvict = next
}

func (i *Issuer) load(ctx context.Context, id string) (*clientView, error) {
	c, err := i.store.FindClient(ctx, id)
	if errors.Is(err, auth.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find client: %w", err)
	}
	gs, err := i.store.ListGrants(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("list grants of %q: %w", id, err)
	}
	view := &clientView{client: c, grants: make(map[string]*grant, len(gs))}
	for _, g := range gs {
		api, err := i.store.FindAPI(ctx, g.APIID)
		if errors.Is(err, auth.ErrNotFound) {
			continue // deleted between the two reads
		}
		if err != nil {
			return nil, fmt.Errorf("find api %q: %w", g.APIID, err)
		}
		scopes := make([]string, 0, len(g.Scopes))
		for _, s := range g.Scopes {
			if api.HasScope(s) { // a scope the API no longer defines is not granted
				scopes = append(scopes, s)
			}
		}
		slices.Sort(scopes)
		gr := &grant{api: api, scopes: slices.Compact(scopes)}
		view.grants[api.Identifier] = gr
	}
	if len(view.grants) == 1 {
		for _, g := range view.grants {
			view.only = g
		}
	}
	return view, nil
}

// Invalidate drops a client from the cache, so the next request reads it again. Call it after changing the
// client, its secrets or its grants.
func (i *Issuer) Invalidate(clientID string) {
	i.mu.Lock()
	delete(i.clients, clientID)
	i.gen++
	i.mu.Unlock()
	i.loads.Forget(clientID)
}

// InvalidateAll empties the cache. Call it after changing an API, which many clients may share.
func (i *Issuer) InvalidateAll() {
	i.mu.Lock()
	clear(i.clients)
	i.gen++
	i.mu.Unlock()
}

// newJTI returns a token id with 128 random bits.
func newJTI() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
