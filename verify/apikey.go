package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/gatehouse/gatehouse/tokencache"
)

// Defaults of APIKeyConfig.
const (
	// DefaultAPIKeyCacheTTL is how long a key the server accepted is trusted without asking it again. It is the
	// revocation delay at the edge: a key deleted, rotated out, disabled or stripped of a grant goes on being accepted
	// by an APIKeyVerifier that checked it less than this long ago.
	DefaultAPIKeyCacheTTL = 30 * time.Second
	// DefaultAPIKeyNegativeTTL is how long a key the server refused is refused without asking it again: the delay
	// before a key re-enabled on the server is accepted again.
	DefaultAPIKeyNegativeTTL = 5 * time.Second
	// DefaultAPIKeyCacheEntries bounds each of an APIKeyVerifier's two caches, of accepted and of refused keys.
	DefaultAPIKeyCacheEntries = 10000

	maxAPIKeyAnswer    = 1 << 20 // bytes of the server's answer to a check
	apiKeyCheckPath    = "/api/v1/apikeys/verify"
	apiKeyTokenPath    = "/oauth/token"
	managementAudience = "urn:gatehouse:management"
	scopeVerifyAPIKeys = "verify:apikeys"
)

// ErrInvalidAPIKey means an API key is not acceptable: not in the key format (the error then also matches
// ErrMalformed), unknown to the server (never made, deleted or rotated out: the server does not say which), disabled,
// expired (also ErrExpired), of an organization the verifier's client may not see, or without a grant for the
// verifier's audience (also ErrAudience). The errors that wrap it never contain the key.
var ErrInvalidAPIKey = errors.New("invalid API key")

// ErrAPIKeyUnavailable means the Gatehouse server could not be asked about an API key: unreachable, too slow, or
// refusing the verifier's own credentials. It says nothing about the key, and matches ErrUnavailable: Middleware
// answers 503 rather than accept a key it could not check.
var ErrAPIKeyUnavailable error = &unavailableError{"API key check unavailable"}

// keyError is a refused API key: why, in words that never hold the key, and a sentinel it matches besides
// ErrInvalidAPIKey.
type keyError struct {
	msg  string
	also error // ErrMalformed, ErrExpired, ErrAudience or nil
}

func (e *keyError) Error() string { return "invalid API key: " + e.msg }

func (e *keyError) Is(target error) bool {
	return target == ErrInvalidAPIKey || (e.also != nil && target == e.also)
}

// The refusals, built once.
var (
	errKeyFormat   = &keyError{"not in the Gatehouse API key format", ErrMalformed}
	errKeyNotFound = &keyError{"unknown to the server (never made, deleted or rotated out)", nil}
	errKeyDisabled = &keyError{"disabled", nil}
	errKeyExpired  = &keyError{"expired", ErrExpired}
)

// APIKeyConfig configures an APIKeyVerifier. ServerURL, ClientID, ClientSecret and Audience are required.
type APIKeyConfig struct {
	// ServerURL is the Gatehouse server that issued the keys, e.g. "https://auth.example.com". Keys are checked with
	// POST ServerURL/api/v1/apikeys/verify, with a management token from ServerURL/oauth/token. It must be https, or
	// http on a loopback address (or anywhere with AllowInsecureHTTP): the keys and the client secret travel to it.
	ServerURL string
	// ClientID and ClientSecret are a Gatehouse client granted the scope verify:apikeys of the management API
	// (urn:gatehouse:management); its tokens are requested with that scope alone. A client of an organization checks
	// only that organization's keys: the server answers any other as unknown.
	ClientID     string
	ClientSecret string
	// Audience is the identifier of the API being protected: a key is accepted only if it holds a grant for it, and
	// its claims carry that grant's scopes. ForAudience makes verifiers for other APIs that share the caches.
	Audience string
	// CacheTTL is how long a key the server accepted is trusted without asking again, and so the revocation delay:
	// DefaultAPIKeyCacheTTL when zero; negative for no cache, every Verify then asks the server.
	CacheTTL time.Duration
	// NegativeCacheTTL is how long a key the server refused is refused without asking again:
	// DefaultAPIKeyNegativeTTL when zero, never more than CacheTTL; negative for no cache of refusals.
	NegativeCacheTTL time.Duration
	// MaxCacheEntries bounds each cache (accepted keys, refused keys), evicting the least recently used:
	// DefaultAPIKeyCacheEntries when zero. A flood of made-up keys fills only the cache of refusals.
	MaxCacheEntries int
	// AllowInsecureHTTP permits an http:// ServerURL on any host, not only loopback, such as a service name inside
	// a cluster. Keys and the client secret then cross that network in the clear; prefer https.
	AllowInsecureHTTP bool
	// HTTPClient makes the requests: http.DefaultClient when nil. Redirects are never followed, so keys and the
	// client secret go only to ServerURL. Each check, the token request included, is also bounded by
	// DefaultFetchTimeout.
	HTTPClient *http.Client
	// Now is the clock: time.Now when nil.
	Now func() time.Time
}

// APIKeyVerifier checks Gatehouse API keys online, with the Gatehouse server that issued them, for one API. It is a
// TokenVerifier, so Middleware (alone or through Any), the forward-auth server and the Lambda authorizer accept keys
// with it as they accept access tokens. It is safe for concurrent use and starts no goroutine that outlives a check.
//
// A key's answer is cached, keyed by the SHA-256 of the key (the key itself is never kept, logged or put in an
// error), for APIKeyConfig.CacheTTL when the server accepted it and NegativeCacheTTL when it refused it, in two
// bounded LRUs. Concurrent checks of the same key share one request. When the server cannot be asked, Verify fails
// with ErrAPIKeyUnavailable: a key is never accepted on an expired answer (fail closed).
type APIKeyVerifier struct {
	c   *keyChecker
	aud string
}

// keyChecker is what verifiers for several audiences share: the server, the management token, the caches.
type keyChecker struct {
	server   string       // ServerURL without a trailing slash: the Issuer of the claims
	checkURL string       // server + apiKeyCheckPath
	client   *http.Client // sends the management token, follows no redirect
	ttl      time.Duration
	negTTL   time.Duration
	good     *lru.Cache[[sha256.Size]byte, *keyAnswer]  // nil: accepted keys are not cached
	bad      *lru.Cache[[sha256.Size]byte, *keyRefusal] // nil: refused keys are not cached
	flights  singleflight.Group                         // by the key's hash: one request per key at a time
	now      func() time.Time
}

// keyAnswer is the server's acceptance of a key, for every API the key holds a grant for.
type keyAnswer struct {
	keyID, orgID string
	grants       map[string][]string // audience → scopes
	raw          json.RawMessage     // the server's answer
	checked      time.Time           // when the server was asked
	until        time.Time           // when the answer stops being trusted
}

// keyRefusal is the server's refusal of a key.
type keyRefusal struct {
	err   error
	until time.Time
}

// NewAPIKeyVerifier returns an APIKeyVerifier for cfg. It makes no request: the management token is fetched with
// the first check, and renewed ahead of its expiry (package tokencache).
func NewAPIKeyVerifier(cfg APIKeyConfig) (*APIKeyVerifier, error) {
	u, err := url.Parse(cfg.ServerURL)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("verify: APIKeyConfig.ServerURL %q is not the base URL of a Gatehouse server", cfg.ServerURL)
	}
	if cfg.Audience == "" {
		return nil, errors.New("verify: APIKeyConfig.Audience is required")
	}
	if cfg.MaxCacheEntries < 0 {
		return nil, errors.New("verify: APIKeyConfig.MaxCacheEntries must not be negative")
	}
	server := strings.TrimSuffix(cfg.ServerURL, "/")
	src, err := tokencache.New(tokencache.Config{
		TokenURL:          server + apiKeyTokenPath,
		ClientID:          cfg.ClientID,
		ClientSecret:      cfg.ClientSecret,
		Audience:          managementAudience,
		Scopes:            []string{scopeVerifyAPIKeys},
		AllowInsecureHTTP: cfg.AllowInsecureHTTP,
		HTTPClient:        cfg.HTTPClient,
		FetchTimeout:      DefaultFetchTimeout,
		Now:               cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("verify: APIKeyConfig: %w", err)
	}
	var base http.RoundTripper
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if cfg.HTTPClient != nil {
		base, client.Timeout = cfg.HTTPClient.Transport, cfg.HTTPClient.Timeout
	}
	client.Transport = src.Transport(base) // on a 401, a new management token and one retry
	c := &keyChecker{
		server:   server,
		checkURL: server + apiKeyCheckPath,
		client:   client,
		ttl:      cfg.CacheTTL,
		negTTL:   cfg.NegativeCacheTTL,
		now:      cfg.Now,
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.ttl == 0 {
		c.ttl = DefaultAPIKeyCacheTTL
	}
	if c.negTTL == 0 {
		c.negTTL = DefaultAPIKeyNegativeTTL
	}
	c.ttl, c.negTTL = max(c.ttl, 0), max(min(c.negTTL, c.ttl), 0)
	size := cfg.MaxCacheEntries
	if size == 0 {
		size = DefaultAPIKeyCacheEntries
	}
	if c.ttl > 0 {
		c.good, _ = lru.New[[sha256.Size]byte, *keyAnswer](size) // errors only for size <= 0
	}
	if c.negTTL > 0 {
		c.bad, _ = lru.New[[sha256.Size]byte, *keyRefusal](size)
	}
	return &APIKeyVerifier{c: c, aud: cfg.Audience}, nil
}

// ForAudience returns a verifier of keys for another API, sharing v's server, management token, caches and
// requests in flight: for a gateway in front of several APIs. One answer of the server serves them all, since it
// lists every grant of the key.
func (v *APIKeyVerifier) ForAudience(audience string) *APIKeyVerifier {
	return &APIKeyVerifier{c: v.c, aud: audience}
}

// Verify checks key — the API key alone, without a scheme — and returns claims shaped like those of an access token
// exchanged for the key, so that Middleware, scope checks and handlers need not tell them apart:
//
//   - Subject and ClientID are the key's id (key_…), OrgID its organization ("" for none);
//   - Audience is the verifier's audience alone, and Scopes are the key's scopes for it (possibly none);
//   - Issuer is APIKeyConfig.ServerURL, IssuedAt when the server was asked;
//   - ExpiresAt is when this answer stops being trusted: IssuedAt + CacheTTL, or the key's own expiry if sooner. A
//     cache that keeps the claims until ExpiresAt, as `gatehouse authorize` does, adds nothing to the revocation
//     delay;
//   - Raw is the server's answer, a JSON object with key_id, org_id, owner, grants, expires_at and metadata: read
//     owner and metadata with Decode (owner is also the claim tokens exchanged for a key carry).
//
// Its errors match ErrInvalidAPIKey (see there; Verify checks the format itself, without a request) or
// ErrAPIKeyUnavailable. Verify waits for the server at most until ctx ends and DefaultFetchTimeout passes; a
// request whose callers all stopped waiting finishes in the background, within DefaultFetchTimeout, and its answer
// is cached.
func (v *APIKeyVerifier) Verify(ctx context.Context, key string) (*Claims, error) {
	if !IsAPIKey(key) {
		return nil, errKeyFormat
	}
	a, err := v.c.check(ctx, key)
	if err != nil {
		return nil, err
	}
	scopes, ok := a.grants[v.aud]
	if !ok {
		return nil, &keyError{"the key holds no grant for " + truncate(v.aud, 100), ErrAudience}
	}
	return &Claims{
		Issuer:    v.c.server,
		Subject:   a.keyID,
		Audience:  []string{v.aud},
		ExpiresAt: a.until,
		IssuedAt:  a.checked,
		ClientID:  a.keyID,
		Scopes:    slices.Clone(scopes),
		OrgID:     a.orgID,
		Raw:       slices.Clone(a.raw),
	}, nil
}

// check returns the server's acceptance of key: from the cache while it is trusted, else from the server, one
// request per key at a time. A refusal is an error wrapping ErrInvalidAPIKey.
func (c *keyChecker) check(ctx context.Context, key string) (*keyAnswer, error) {
	h := sha256.Sum256([]byte(key))
	now := c.now()
	if c.good != nil {
		if a, ok := c.good.Get(h); ok && now.Before(a.until) {
			return a, nil
		}
	}
	if c.bad != nil {
		if r, ok := c.bad.Get(h); ok && now.Before(r.until) {
			return nil, r.err
		}
	}
	ch := c.flights.DoChan(string(h[:]), func() (any, error) {
		// The request is the flight's, not the first caller's: it carries on for the others if that one leaves.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultFetchTimeout)
		defer cancel()
		return c.fetch(ctx, key, h)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*keyAnswer), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrAPIKeyUnavailable, ctx.Err())
	}
}

// keyCheckAnswer is the server's answer to POST /api/v1/apikeys/verify (the members Verify reads).
type keyCheckAnswer struct {
	Valid  bool   `json:"valid"`
	Code   string `json:"code"`
	KeyID  string `json:"key_id"`
	OrgID  string `json:"org_id"`
	Grants []struct {
		Audience string   `json:"audience"`
		Scopes   []string `json:"scopes"`
	} `json:"grants"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// fetch asks the server about key, whose SHA-256 is h, and caches the answer.
func (c *keyChecker) fetch(ctx context.Context, key string, h [sha256.Size]byte) (*keyAnswer, error) {
	body, err := json.Marshal(struct {
		Key string `json:"key"`
	}{key})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAPIKeyUnavailable, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.checkURL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAPIKeyUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	checked := c.now() // before the request: a change the server makes meanwhile counts against the TTL
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAPIKeyUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIKeyAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer of %s: %w", ErrAPIKeyUnavailable, c.checkURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s answered %s%s", ErrAPIKeyUnavailable, c.checkURL, resp.Status, statusHint(resp.StatusCode, data, key))
	}
	if len(data) > maxAPIKeyAnswer {
		return nil, fmt.Errorf("%w: the answer of %s is larger than %d bytes", ErrAPIKeyUnavailable, c.checkURL, maxAPIKeyAnswer)
	}
	var ans keyCheckAnswer
	if err := json.Unmarshal(data, &ans); err != nil || (ans.Valid && ans.KeyID == "") || (!ans.Valid && ans.Code == "") {
		return nil, fmt.Errorf("%w: %s did not answer as a Gatehouse key check does", ErrAPIKeyUnavailable, c.checkURL)
	}
	if !ans.Valid {
		err := refusal(ans.Code)
		if c.bad != nil {
			c.bad.Add(h, &keyRefusal{err: err, until: checked.Add(c.negTTL)})
		}
		return nil, err
	}
	a := &keyAnswer{keyID: ans.KeyID, orgID: ans.OrgID, grants: make(map[string][]string, len(ans.Grants)),
		raw: data, checked: checked, until: checked.Add(c.ttl)}
	for _, g := range ans.Grants {
		if g.Scopes == nil {
			g.Scopes = []string{}
		}
		a.grants[g.Audience] = g.Scopes
	}
	if ans.ExpiresAt != nil && ans.ExpiresAt.Before(a.until) {
		a.until = *ans.ExpiresAt
	}
	if c.bad != nil {
		c.bad.Remove(h)
	}
	if c.good != nil && c.now().Before(a.until) {
		c.good.Add(h, a)
	}
	return a, nil
}

// refusal is the error for a refusal code of the server.
func refusal(code string) error {
	switch code {
	case "not_found":
		return errKeyNotFound
	case "disabled":
		return errKeyDisabled
	case "expired":
		return errKeyExpired
	case "malformed":
		return errKeyFormat
	}
	return &keyError{"refused by the server (" + truncate(code, 40) + ")", nil}
}

// statusHint explains a failed check to whoever reads the log: the problem's detail (RFC 9457) when the server sent
// one that does not hold the key, and what a 401 or 403 usually means.
func statusHint(status int, body []byte, key string) string {
	var p struct {
		Detail string `json:"detail"`
	}
	var hint string
	if json.Unmarshal(body, &p) == nil && p.Detail != "" && !strings.Contains(p.Detail, key) {
		hint = ": " + truncate(p.Detail, 200)
	}
	switch status {
	case http.StatusUnauthorized:
		hint += " (the management token was refused)"
	case http.StatusForbidden:
		hint += " (the client needs the scope " + scopeVerifyAPIKeys + " of " + managementAudience + ")"
	}
	return hint
}

// Any returns a TokenVerifier that passes Gatehouse API keys — strings IsAPIKey accepts — to keys (an
// *APIKeyVerifier) and every other credential to tokens (a *Verifier), so that one Middleware accepts both. It never
// tries one credential with both: a JWT, which has dots, never has the shape of a key.
func Any(tokens, keys TokenVerifier) TokenVerifier {
	if tokens == nil || keys == nil {
		panic("verify: Any with a nil verifier")
	}
	return anyVerifier{tokens: tokens, keys: keys}
}

type anyVerifier struct{ tokens, keys TokenVerifier }

func (a anyVerifier) Verify(ctx context.Context, credential string) (*Claims, error) {
	if IsAPIKey(credential) {
		return a.keys.Verify(ctx, credential)
	}
	return a.tokens.Verify(ctx, credential)
}

// The Gatehouse API key format: <prefix>_<body><checksum>.
const (
	keyPrefixMin   = 2  // prefix: lowercase letters and digits, starting with a letter
	keyPrefixMax   = 12 //
	keyBodyLen     = 33 // base62
	keyChecksumLen = 6  // base62, big-endian, left-padded with "0"
	keyTailLen     = keyBodyLen + keyChecksumLen
	base62Digits   = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// IsAPIKey reports whether s has the shape of a Gatehouse API key: a prefix of 2 to 12 lowercase letters and digits
// starting with a letter, "_", 33 base62 characters (0-9 A-Z a-z), and the CRC-32 (IEEE) of everything before it as
// 6 base62 digits, big-endian. It does not say whether the key exists, which only the server knows; the checksum is
// not a secret, and only lets typos and made-up strings be refused without a request.
func IsAPIKey(s string) bool {
	if len(s) < keyPrefixMin+1+keyTailLen || len(s) > keyPrefixMax+1+keyTailLen {
		return false
	}
	sep := len(s) - keyTailLen - 1
	if s[sep] != '_' || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < sep; i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	for i := sep + 1; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') {
			return false
		}
	}
	var buf [keyPrefixMax + 1 + keyBodyLen]byte
	sum := crc32.ChecksumIEEE(buf[:copy(buf[:], s[:len(s)-keyChecksumLen])])
	for i := len(s) - 1; i >= len(s)-keyChecksumLen; i-- {
		if s[i] != base62Digits[sum%62] {
			return false
		}
		sum /= 62
	}
	return true
}
