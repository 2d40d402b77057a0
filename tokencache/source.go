package tokencache

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// AuthStyle says how a Source authenticates to the token endpoint.
type AuthStyle int

const (
	// AuthBasic sends client_id and client_secret in an HTTP Basic Authorization header (RFC 6749 §2.3.1,
	// "client_secret_basic"), as Amazon Cognito requires. It is the default.
	AuthBasic AuthStyle = iota
	// AuthBody sends client_id and client_secret in the request body ("client_secret_post"), as Auth0's
	// examples do.
	AuthBody
)

// Defaults for the zero values of Config.
const (
	// DefaultAdvisoryFraction: a background refresh starts when about a quarter of the lifetime is left.
	DefaultAdvisoryFraction = 0.25
	// DefaultFetchTimeout bounds one request to the token endpoint.
	DefaultFetchTimeout = 10 * time.Second

	// defaultMandatoryMax caps the default mandatory window: min(30s, 10% of the lifetime).
	defaultMandatoryMax = 30 * time.Second
	// advisoryJitter spreads the advisory point by ±20% of the advisory window, so that many processes holding
	// the same token do not refresh at the same moment.
	advisoryJitter = 0.2
	// defaultLifetime is assumed when the token endpoint omits expires_in (RFC 6749 makes it RECOMMENDED).
	defaultLifetime = 5 * time.Minute
	// maxLifetime caps absurd expires_in values.
	maxLifetime = 365 * 24 * time.Hour
	// backoffBase and backoffMax bound the retries of a failed refresh: the n-th consecutive failure waits a
	// uniformly random time in [0, min(backoffMax, backoffBase·2^(n-1))) ("full jitter").
	backoffBase = time.Second
	backoffMax  = time.Minute
	// minInvalidateInterval: a token is dropped after a 401 at most this often, so an API that rejects every
	// token cannot turn each of its requests into a paid token fetch.
	minInvalidateInterval = 5 * time.Second
)

// Config configures a Source. TokenURL, ClientID and ClientSecret are required.
type Config struct {
	// TokenURL is the token endpoint: https, or http on a loopback address (or anywhere with AllowInsecureHTTP).
	TokenURL     string
	ClientID     string
	ClientSecret string
	// Audience is sent as "audience" (Auth0, Gatehouse); Resource as "resource" (RFC 8707). Either may be empty.
	Audience string
	Resource string
	// Scopes are sent space-separated as "scope"; Cognito's are "identifier/scope".
	Scopes []string
	// AuthStyle is how the client authenticates; the zero value is AuthBasic.
	AuthStyle AuthStyle
	// JSONBody sends the request as a JSON object (Auth0 style) instead of an HTML form.
	JSONBody bool
	// AllowInsecureHTTP permits an http:// TokenURL on any host, not only loopback: for a token endpoint on a
	// private network, such as a service name inside a cluster. The client secret then crosses that network in
	// the clear (RFC 6749 §2.3.1 requires TLS); prefer https.
	AllowInsecureHTTP bool
	// HTTPClient makes the token requests; nil means http.DefaultClient. Redirects are not followed (they are
	// errors), so the client secret is sent only to TokenURL.
	HTTPClient *http.Client
	// Cache, if not nil, shares tokens with other Sources of the same configuration; see Cache and Coordinator.
	Cache Cache
	// AdvisoryFraction is the part of a token's lifetime, counted back from its expiry, in which a background
	// refresh starts (±20% jitter). Zero means DefaultAdvisoryFraction; it must be at most 0.5.
	AdvisoryFraction float64
	// MandatoryWindow is the time before expiry in which callers wait for a fresh token. Zero means
	// min(30s, 10% of the lifetime); it is capped at half the lifetime.
	MandatoryWindow time.Duration
	// FetchTimeout bounds one token request, and is the lease time when a Coordinator is used. Zero means
	// DefaultFetchTimeout.
	FetchTimeout time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Hooks are called as tokens are served and fetched.
	Hooks Hooks
}

// Hooks are optional functions a Source calls synchronously, for metrics or logs. They must be fast and safe
// for concurrent use; nil ones are skipped. They never see a secret or a token.
type Hooks struct {
	// Hit is called when a token is served from memory without waiting.
	Hit func()
	// Miss is called when a caller has to wait for a fetch (no token yet, or the mandatory window).
	Miss func()
	// SharedHit is called when a token is taken from the shared Cache instead of the token endpoint.
	SharedHit func()
	// Fetch is called after each request to the token endpoint, with its duration and error.
	Fetch func(d time.Duration, err error)
	// CacheError is called when the shared Cache fails; the Source carries on without it.
	CacheError func(err error)
}

// Stats counts what a Source did since it was created.
type Stats struct {
	Hits          uint64 // tokens served from memory without waiting
	Misses        uint64 // calls that waited for a fetch
	SharedHits    uint64 // tokens taken from the shared Cache
	Fetches       uint64 // requests to the token endpoint
	FetchErrors   uint64 // failed requests to the token endpoint
	Refreshes     uint64 // background refreshes started in the advisory window
	CacheErrors   uint64 // failed calls to the shared Cache
	Invalidations uint64 // tokens dropped because an API rejected them
}

// Token is an access token from the token endpoint. A Source hands the same *Token to every caller: do not
// modify it.
type Token struct {
	AccessToken string
	TokenType   string // as sent by the endpoint; "Bearer" if it sent none
	Scope       string // as sent by the endpoint; empty if it sent none
	// Expiry is when the token expires, counted from the moment the request was sent.
	Expiry time.Time
	// Raw is the token endpoint's response body, so extra members can be read or passed on.
	Raw []byte
	// issued is when the request that got the token was sent; Expiry-issued is the lifetime.
	issued time.Time
}

// Valid reports whether t is not nil and not expired at now.
func (t *Token) Valid(now time.Time) bool {
	return t != nil && t.AccessToken != "" && now.Before(t.Expiry)
}

// Source gets client-credentials tokens and caches them. It is safe for concurrent use; create one per
// configuration and keep it.
//
// A Source runs each fetch in a goroutine of its own, at most one at a time, so that callers can stop waiting
// (their context) without failing the others, and so that an advisory refresh does not hold up the caller that
// noticed it was due. That goroutine ends within 2×FetchTimeout plus a second; there is nothing to close.
// While the token is valid, a failed refresh is retried no sooner than the back-off allows; when there is no
// valid token, every call (concurrent calls collapsed into one) tries the token endpoint again.
type Source struct {
	client       *http.Client
	now          func() time.Time
	hooks        Hooks
	cache        Cache
	coord        Coordinator // cache, if it is one
	key          string      // the cache key
	aead         cipher.AEAD // seals values in the shared cache
	advisory     float64
	mandatory    time.Duration
	fetchTimeout time.Duration
	request      requestTemplate

	cur atomic.Pointer[state] // the hot path reads only this

	// retryAt (Unix nanoseconds) is when a failed refresh may be retried while the current token is valid;
	// fetching mirrors flight != nil. Both are written under mu and read without it.
	retryAt  atomic.Int64
	fetching atomic.Bool

	mu            sync.Mutex
	flight        *flight // the fetch in progress, if any
	failures      int     // consecutive failed fetches
	rejected      string  // the access token last dropped after a 401: never take it from the shared cache
	lastInvalidAt time.Time

	stats counters
}

type counters struct {
	hits, misses, sharedHits, fetches, fetchErrors, refreshes, cacheErrors, invalidations atomic.Uint64
}

// state is the current token and the moments it becomes due.
type state struct {
	tok         *Token
	o2          *oauth2.Token
	refreshAt   time.Time // from here one background refresh runs
	mandatoryAt time.Time // from here callers wait for a refresh
	sealed      []byte    // the value under the cache key, if any, for Coordinator.DeleteIf
}

// flight is one fetch; every caller that needs it waits on done.
type flight struct {
	done chan struct{}
	st   *state
	err  error
}

// New returns a Source for cfg. It makes no request.
func New(cfg Config) (*Source, error) {
	if err := checkTokenURL(cfg.TokenURL, cfg.AllowInsecureHTTP); err != nil {
		return nil, err
	}
	if cfg.ClientID == "" {
		return nil, errors.New("tokencache: ClientID is required")
	}
	if cfg.ClientSecret == "" {
		return nil, errors.New("tokencache: ClientSecret is required")
	}
	if cfg.AuthStyle != AuthBasic && cfg.AuthStyle != AuthBody {
		return nil, fmt.Errorf("tokencache: unknown AuthStyle %d", cfg.AuthStyle)
	}
	if cfg.AdvisoryFraction < 0 || cfg.AdvisoryFraction > 0.5 {
		return nil, fmt.Errorf("tokencache: AdvisoryFraction %v is not in [0, 0.5]", cfg.AdvisoryFraction)
	}
	if cfg.MandatoryWindow < 0 || cfg.FetchTimeout < 0 {
		return nil, errors.New("tokencache: MandatoryWindow and FetchTimeout must not be negative")
	}
	aead, err := newAEAD(cfg.ClientSecret)
	if err != nil {
		return nil, err
	}
	s := &Source{
		client:       cfg.HTTPClient,
		now:          cfg.Now,
		hooks:        cfg.Hooks,
		cache:        cfg.Cache,
		key:          cfg.CacheKey(),
		aead:         aead,
		advisory:     cfg.AdvisoryFraction,
		mandatory:    cfg.MandatoryWindow,
		fetchTimeout: cfg.FetchTimeout,
		request:      newRequestTemplate(cfg),
	}
	if s.client == nil {
		s.client = http.DefaultClient
	}
	// A token endpoint does not redirect; following one could send the client secret elsewhere.
	noRedirect := *s.client
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.client = &noRedirect
	if s.now == nil {
		s.now = time.Now
	}
	if s.advisory == 0 {
		s.advisory = DefaultAdvisoryFraction
	}
	if s.fetchTimeout == 0 {
		s.fetchTimeout = DefaultFetchTimeout
	}
	if c, ok := cfg.Cache.(Coordinator); ok {
		s.coord = c
	}
	return s, nil
}

func checkTokenURL(raw string, insecure bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("tokencache: TokenURL %q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" || insecure {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("tokencache: TokenURL %q: http is allowed only on loopback addresses; use https (or set AllowInsecureHTTP)", raw)
	}
	return fmt.Errorf("tokencache: TokenURL %q: scheme must be https", raw)
}

// Token returns a valid access token: the cached one, or a new one from the shared Cache or the token endpoint.
// It waits only when there is no token yet or the current one is in its mandatory window; then ctx bounds the
// wait (the fetch itself carries on for the other callers; see Source). If a refresh fails, the
// current token is returned while it is valid; after it expires, Token returns the error, never an expired token.
// Upstream errors can be examined with errors.As and *RetrieveError.
func (s *Source) Token(ctx context.Context) (*Token, error) {
	st, err := s.state(ctx)
	if err != nil {
		return nil, err
	}
	return st.tok, nil
}

// state is Token's hot path: one atomic load and one clock read while the token is fresh.
func (s *Source) state(ctx context.Context) (*state, error) {
	st := s.cur.Load()
	if st != nil {
		now := s.now()
		if now.Before(st.refreshAt) {
			s.hit()
			return st, nil
		}
		return s.slow(ctx, st, now)
	}
	return s.slow(ctx, nil, time.Time{})
}

func (s *Source) hit() {
	s.stats.hits.Add(1)
	if s.hooks.Hit != nil {
		s.hooks.Hit()
	}
}

// slow handles a token that is due, expired or missing.
func (s *Source) slow(ctx context.Context, st *state, now time.Time) (*state, error) {
	if st != nil && now.Before(st.tok.Expiry) {
		backingOff := now.UnixNano() < s.retryAt.Load()
		if now.Before(st.mandatoryAt) || backingOff {
			// Advisory window, or a refresh failed a moment ago: serve the valid token; refresh in the
			// background unless backing off or already refreshing.
			if !backingOff && !s.fetching.Load() {
				s.mu.Lock()
				if s.flight == nil {
					s.stats.refreshes.Add(1)
					s.startLocked(ctx)
				}
				s.mu.Unlock()
			}
			s.hit()
			return st, nil
		}
	}
	s.stats.misses.Add(1)
	if s.hooks.Miss != nil {
		s.hooks.Miss()
	}
	s.mu.Lock()
	f := s.flight
	if f == nil {
		f = s.startLocked(ctx)
	}
	s.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("tokencache: waiting for a token: %w", context.Cause(ctx))
	}
	if f.err == nil {
		return f.st, nil
	}
	// The refresh failed: the token we had is still good until it expires.
	if st != nil && s.now().Before(st.tok.Expiry) && s.cur.Load() == st {
		return st, nil
	}
	if st != nil {
		return nil, fmt.Errorf("tokencache: token expired at %s and no new one: %w", st.tok.Expiry.Format(time.RFC3339), f.err)
	}
	return nil, fmt.Errorf("tokencache: no token: %w", f.err)
}

// startLocked starts a fetch owned by the Source; it ends within about 2×FetchTimeout. s.mu must be held.
// The fetch keeps ctx's values but not its cancellation: other callers may be waiting for it.
func (s *Source) startLocked(ctx context.Context) *flight {
	f := &flight{done: make(chan struct{})}
	s.flight = f
	s.fetching.Store(true)
	go s.run(context.WithoutCancel(ctx), f)
	return f
}

func (s *Source) run(ctx context.Context, f *flight) {
	// A loser of a Coordinator lease may wait up to FetchTimeout and then fetch itself.
	ctx, cancel := context.WithTimeout(ctx, 2*s.fetchTimeout+time.Second)
	st, err := s.obtain(ctx)
	cancel()

	s.mu.Lock()
	if err == nil {
		s.cur.Store(st)
		s.failures = 0
		s.retryAt.Store(0)
	} else {
		s.failures++
		s.retryAt.Store(s.now().Add(backoff(s.failures, rand.Float64())).UnixNano())
	}
	f.st, f.err = st, err
	s.flight = nil
	s.fetching.Store(false)
	s.mu.Unlock()
	close(f.done)
}

// backoff is the wait after the n-th consecutive failure (n ≥ 1), for u uniform in [0, 1): full jitter over an
// exponentially growing, capped bound.
func backoff(n int, u float64) time.Duration {
	bound := backoffMax
	if n < 30 {
		if b := backoffBase << (n - 1); b < bound {
			bound = b
		}
	}
	return time.Duration(u * float64(bound))
}

// newState computes when tok becomes due, with u uniform in [0, 1) choosing the jitter.
func (s *Source) newState(tok *Token, sealed []byte, u float64) *state {
	life := tok.Expiry.Sub(tok.issued)
	if life < 0 {
		life = 0
	}
	mandatory := s.mandatory
	if mandatory == 0 {
		mandatory = min(defaultMandatoryMax, life/10)
	}
	mandatory = min(mandatory, life/2)
	advisory := time.Duration(float64(life) * s.advisory * (1 + advisoryJitter*(2*u-1)))
	advisory = max(advisory, mandatory)
	advisory = min(advisory, life)
	st := &state{
		tok:         tok,
		refreshAt:   tok.Expiry.Add(-advisory),
		mandatoryAt: tok.Expiry.Add(-mandatory),
		sealed:      sealed,
	}
	o2 := &oauth2.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Expiry: tok.Expiry}
	if extra := rawExtra(tok.Raw); extra != nil {
		o2 = o2.WithExtra(extra)
	}
	st.o2 = o2
	return st
}

// Invalidate drops t if it is still the Source's current token (a compare-and-swap), and from a shared Cache
// that is a Coordinator if it still holds it, so that the next Token call fetches a new one. Call it when an API
// rejects t as invalid (HTTP 401); Transport does. It reports whether t was dropped. To bound what an API that
// rejects every token can cost, a token is dropped at most once every 5 seconds per Source.
func (s *Source) Invalidate(ctx context.Context, t *Token) bool {
	st := s.cur.Load()
	if t == nil || st == nil || st.tok.AccessToken != t.AccessToken {
		return false
	}
	now := s.now()
	s.mu.Lock()
	if !s.lastInvalidAt.IsZero() && now.Sub(s.lastInvalidAt) < minInvalidateInterval {
		s.mu.Unlock()
		return false
	}
	if !s.cur.CompareAndSwap(st, nil) {
		s.mu.Unlock()
		return false
	}
	s.lastInvalidAt = now
	s.rejected = t.AccessToken
	s.failures = 0
	s.retryAt.Store(0)
	s.mu.Unlock()
	s.stats.invalidations.Add(1)
	if s.coord != nil && st.sealed != nil {
		if err := s.coord.DeleteIf(ctx, s.key, st.sealed); err != nil {
			s.cacheError(err)
		}
	}
	return true
}

// Stats returns the Source's counters.
func (s *Source) Stats() Stats {
	c := &s.stats
	return Stats{
		Hits:          c.hits.Load(),
		Misses:        c.misses.Load(),
		SharedHits:    c.sharedHits.Load(),
		Fetches:       c.fetches.Load(),
		FetchErrors:   c.fetchErrors.Load(),
		Refreshes:     c.refreshes.Load(),
		CacheErrors:   c.cacheErrors.Load(),
		Invalidations: c.invalidations.Load(),
	}
}

// TokenSource returns s as an oauth2.TokenSource, for code written against golang.org/x/oauth2 (such as
// oauth2.NewClient). oauth2.TokenSource has no context parameter (golang/oauth2#262), so ctx is used for every
// call; Source.Token is the better API. The same *oauth2.Token is returned to every caller until it changes: do
// not modify it. Do not wrap it in oauth2.ReuseTokenSource; it already caches.
func (s *Source) TokenSource(ctx context.Context) oauth2.TokenSource {
	return tokenSource{ctx: ctx, s: s}
}

type tokenSource struct {
	ctx context.Context
	s   *Source
}

func (ts tokenSource) Token() (*oauth2.Token, error) {
	st, err := ts.s.state(ts.ctx)
	if err != nil {
		return nil, err
	}
	return st.o2, nil
}
