// Package forwardauth answers the authorization checks of reverse proxies — nginx auth_request, Traefik
// ForwardAuth, Caddy forward_auth and Envoy ext_authz (HTTP service) — for `gatehouse authorize`.
//
// A proxy asks about each request before passing it on. The handler reads the original method, host and path
// (from the headers that proxy sends, or from the check request itself for Envoy), finds the most specific rule of
// the rules file, verifies the bearer token with package verify and checks the rule's audience and scopes:
//
//   - 200, with X-Auth-Subject, X-Auth-Client-Id, X-Auth-Org-Id and X-Auth-Scopes for the proxy to copy upstream;
//   - 401 with WWW-Authenticate: Bearer realm="…" when the request has no bearer token, and error="invalid_token"
//     when the token is not acceptable (malformed, bad signature, expired, another issuer or another API's);
//   - 403 with error="insufficient_scope" and scope="…" when the token lacks a scope the rule requires;
//   - 403 without a challenge when no rule matches (deny by default) or the original request cannot be read
//     unambiguously (see cleanRequestPath);
//   - 503 when the issuer's keys could not be fetched yet, or the Gatehouse server could not be asked about an API key.
//
// A rule with api_keys: true also accepts Gatehouse API keys, as "Bearer <key>" or in the header Options.APIKeyHeader
// names, checked online by a verify.APIKeyVerifier for the rule's audience; the headers of a 200 then name the key
// (X-Auth-Subject and X-Auth-Client-Id: its id). A request whose query string holds an API key is refused (403).
//
// Verified tokens are kept in a bounded LRU, keyed by the SHA-256 of the token, until they expire, so a token seen
// before costs a hash and a map lookup instead of a signature verification. Accepted API keys are kept in the same
// LRU, keyed by the SHA-256 of the audience and the key, until their claims' ExpiresAt: at most the API key
// verifier's CacheTTL, the revocation delay, after the server was asked.
package forwardauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/verify"
)

// DefaultCacheSize is how many verified tokens the handler keeps when Options.CacheSize is zero.
const DefaultCacheSize = 10000

// Options configures a Handler. The zero value is usable.
type Options struct {
	CacheSize   int              // verified tokens kept: DefaultCacheSize when zero; negative for no cache
	EnvoyPrefix string           // the path_prefix of Envoy's http_service: "/envoy" when ""
	Metrics     *Metrics         // where decisions are counted: none when nil
	Logger      *slog.Logger     // decisions at debug level, misconfigured proxies at warn: discarded when nil
	Now         func() time.Time // the clock for cache expiry: time.Now when nil

	// APIKeys checks the API keys of rules with api_keys: true, each rule's for its audience (ForAudience). New
	// refuses rules accepting keys without it.
	APIKeys *verify.APIKeyVerifier
	// APIKeyHeader names a header, such as "X-API-Key", from which rules accepting API keys also take a key: "" for
	// keys as bearer tokens only. A request with the header and an Authorization header is refused.
	APIKeyHeader string
}

// Handler answers forward-auth checks. It is safe for concurrent use.
type Handler struct {
	rules       *Rules
	v           verify.TokenVerifier
	keys        map[string]verify.TokenVerifier       // API key verifiers by audience, for rules accepting keys
	keyHeader   string                                // canonical; "" for none
	cache       *lru.Cache[[sha256.Size]byte, *entry] // nil: no cache
	envoyPrefix string
	m           *Metrics
	log         *slog.Logger
	now         func() time.Time
	counters    map[*Rule]*[numResults]prometheus.Counter // decisions, resolved once; the nil rule: none matched
}

// entry is a verified token: its claims, and the headers a 200 carries, built once.
type entry struct {
	claims  *verify.Claims
	expires time.Time
	headers [4][]string // X-Auth-Subject, X-Auth-Client-Id, X-Auth-Org-Id, X-Auth-Scopes
}

// The headers of an allowed request, in entry.headers order, in canonical form.
var authHeaders = [4]string{"X-Auth-Subject", "X-Auth-Client-Id", "X-Auth-Org-Id", "X-Auth-Scopes"}

// New returns a Handler checking requests against rules with v, usually a *verify.Verifier whose Config.Audiences
// are rules.Audiences(): v accepts a token for any of them, and the handler checks the matched rule's.
func New(rules *Rules, v verify.TokenVerifier, opts Options) (*Handler, error) {
	h := &Handler{
		rules:       rules,
		v:           v,
		envoyPrefix: opts.EnvoyPrefix,
		m:           opts.Metrics,
		log:         opts.Logger,
		now:         opts.Now,
	}
	if h.envoyPrefix == "" {
		h.envoyPrefix = "/envoy"
	}
	if !strings.HasPrefix(h.envoyPrefix, "/") || strings.HasSuffix(h.envoyPrefix, "/") {
		return nil, errors.New("forwardauth: the Envoy prefix must start with / and not end with one")
	}
	for _, r := range rules.rules {
		if !r.APIKeys {
			continue
		}
		if opts.APIKeys == nil {
			return nil, fmt.Errorf("forwardauth: the rule %q (line %d) accepts API keys, but no API key verifier is configured", r.Name, r.Line)
		}
		if h.keys == nil {
			h.keys = make(map[string]verify.TokenVerifier)
		}
		if h.keys[r.Audience] == nil {
			h.keys[r.Audience] = opts.APIKeys.ForAudience(r.Audience)
		}
	}
	if name := opts.APIKeyHeader; name != "" {
		h.keyHeader = http.CanonicalHeaderKey(name)
		if !validHeaderName(name) || h.keyHeader == "Authorization" {
			return nil, fmt.Errorf("forwardauth: %q cannot be the API key header: use a header name such as X-API-Key", name)
		}
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	size := opts.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	if size > 0 {
		c, err := lru.New[[sha256.Size]byte, *entry](size)
		if err != nil {
			return nil, err
		}
		h.cache = c
	}
	if h.m != nil {
		h.counters = make(map[*Rule]*[numResults]prometheus.Counter, len(rules.rules)+1)
		for _, r := range append([]*Rule{nil}, rules.rules...) {
			var cs [numResults]prometheus.Counter
			name := noRule
			if r != nil {
				name = r.Name
			}
			for res := range numResults {
				cs[res] = h.m.decisions.WithLabelValues(res.String(), name)
			}
			h.counters[r] = &cs
		}
	}
	return h, nil
}

// Endpoints returns an http.Handler answering the checks at one endpoint per way of telling the original request,
// and passing any other request to other (404 when nil):
//
//	/nginx              nginx auth_request: X-Original-Method, X-Original-URI, Host
//	/traefik, /caddy    X-Forwarded-Method, X-Forwarded-Uri, X-Forwarded-Host
//	/envoy/…            Envoy ext_authz: the check request's own method, path (after the prefix) and Host
//
// Each answers any method: nginx's subrequest and Envoy's check keep the original one. It dispatches on the path
// itself rather than through an http.ServeMux, which would answer a path with dot segments or double slashes
// with a redirect instead of a refusal.
func (h *Handler) Endpoints(other http.Handler) http.Handler {
	if other == nil {
		other = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/nginx":
			h.check(w, r, nginx)
		case p == "/traefik" || p == "/caddy":
			h.check(w, r, forwarded)
		case p == h.envoyPrefix || strings.HasPrefix(p, h.envoyPrefix+"/"):
			h.check(w, r, envoy)
		default:
			other.ServeHTTP(w, r)
		}
	})
}

func (h *Handler) check(w http.ResponseWriter, r *http.Request, p proxy) {
	orig, err := originalRequest(r, p, h.envoyPrefix)
	if err != nil {
		if errors.Is(err, errNoOriginal) {
			h.log.Warn("forward-auth check without the original request: check the proxy configuration (see gatehouse authorize --help)",
				"endpoint", r.URL.Path)
		} else {
			h.log.Debug("forward-auth: unreadable original request", "err", err)
		}
		h.deny(w, resultBadRequest, "the original request cannot be read unambiguously")
		return
	}
	if verify.KeyInQuery(orig.query) { // the key is in the proxy's logs already: do not let it work
		h.deny(w, resultBadRequest, "an API key must not be sent in a URL, where logs keep it: send it in a header")
		return
	}
	rule := h.rules.Match(orig.host, orig.path, orig.method)
	if rule == nil {
		h.deny(w, resultNoRule, "no rule allows this request")
		return
	}
	e, err := h.authenticate(r, rule)
	switch {
	case err != nil:
		if errors.Is(err, verify.ErrUnavailable) {
			h.log.Error("forward-auth: cannot verify credentials", "err", err)
			h.refuse(w, rule, resultError, err)
		} else if errors.Is(err, verify.ErrNoToken) {
			h.refuse(w, rule, resultNoToken, err)
		} else {
			h.log.Debug("forward-auth: token refused", "rule", rule.Name, "err", err)
			h.refuse(w, rule, resultInvalidToken, err)
		}
		return
	case !slices.Contains(e.claims.Audience, rule.Audience):
		h.refuse(w, rule, resultInvalidToken, fmt.Errorf("%w: the rule needs %s", verify.ErrAudience, rule.Audience))
		return
	case !e.claims.HasScopes(rule.Scopes...):
		h.refuse(w, rule, resultInsufficientScope, &verify.ScopeError{Scopes: rule.Scopes})
		return
	}
	hdr := w.Header()
	for i, name := range authHeaders {
		hdr[name] = e.headers[i]
	}
	w.WriteHeader(http.StatusOK)
	h.count(rule, resultAllow)
}

// verify returns the entry of a credential: from the cache while it has not expired, else checked by v and cached.
// audience is "" for an access token, whose entry serves every rule, and the rule's audience for an API key, whose
// claims hold for that audience only.
func (h *Handler) verify(ctx context.Context, v verify.TokenVerifier, audience, token string) (*entry, error) {
	var key [sha256.Size]byte
	if h.cache != nil {
		if audience == "" {
			key = sha256.Sum256([]byte(token))
		} else { // a token has no NUL, so this is no token's key
			key = sha256.Sum256([]byte(audience + "\x00" + token))
		}
		if e, ok := h.cache.Get(key); ok {
			if h.now().Before(e.expires) {
				if h.m != nil {
					h.m.cacheHits.Inc()
				}
				return e, nil
			}
			h.cache.Remove(key)
		}
	}
	if h.m != nil {
		h.m.verifications.Inc()
	}
	c, err := v.Verify(ctx, token)
	if err != nil {
		return nil, err
	}
	e := &entry{claims: c, expires: c.ExpiresAt}
	for i, v := range []string{c.Subject, c.ClientID, c.OrgID, strings.Join(c.Scopes, " ")} {
		if !headerSafe(v) {
			return nil, fmt.Errorf("%w: a claim holds characters a header cannot carry", verify.ErrMalformed)
		}
		e.headers[i] = []string{v}
	}
	if h.cache != nil && h.now().Before(e.expires) { // a token accepted within the leeway past exp is not kept
		h.cache.Add(key, e)
	}
	return e, nil
}

// authenticate returns the verified credential of r for rule: the token of its Authorization header or, where the
// rule accepts API keys, a key there or in the API key header. The errors wrap verify's: ErrNoToken when there is
// none, ErrMalformed for a bad header or several credentials, ErrUnavailable, or why the credential is refused.
func (h *Handler) authenticate(r *http.Request, rule *Rule) (*entry, error) {
	values := r.Header.Values("Authorization")
	var keys []string
	if rule.APIKeys && h.keyHeader != "" {
		keys = r.Header[h.keyHeader]
	}
	switch { // several: lest the proxy, this handler and the upstream read different ones
	case len(values)+len(keys) == 0:
		return nil, verify.ErrNoToken
	case len(values) > 1:
		return nil, fmt.Errorf("%w: more than one Authorization header", verify.ErrMalformed)
	case len(values)+len(keys) > 1:
		return nil, fmt.Errorf("%w: more than one credential (%s and Authorization headers, or two %[2]s)", verify.ErrMalformed, h.keyHeader)
	}
	if len(keys) == 1 { // the key verifier refuses a value that is not a key, without a request
		return h.verify(r.Context(), h.keys[rule.Audience], rule.Audience, strings.Trim(keys[0], " \t"))
	}
	token, err := verify.BearerToken(values[0])
	if err != nil {
		return nil, err
	}
	if rule.APIKeys && verify.IsAPIKey(token) {
		return h.verify(r.Context(), h.keys[rule.Audience], rule.Audience, token)
	}
	return h.verify(r.Context(), h.v, "", token)
}

// validHeaderName reports whether s is a header field name (RFC 9110 §5.1) of letters, digits and dashes.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// refuse answers a check refused because of err, as verify.WriteError does (RFC 6750).
func (h *Handler) refuse(w http.ResponseWriter, rule *Rule, res result, err error) {
	verify.WriteError(w, h.rules.Realm, err)
	h.count(rule, res)
}

// deny answers 403 without a challenge: no rule allows the request, or it could not be read. No token would help.
func (h *Handler) deny(w http.ResponseWriter, res result, msg string) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusForbidden)
	io.WriteString(w, "Forbidden: "+msg+"\n")
	h.count(nil, res)
}

func (h *Handler) count(rule *Rule, res result) {
	if h.counters != nil {
		h.counters[rule][res].Inc()
	}
}

// headerSafe reports whether v can be sent as a header value unchanged: no control characters.
func headerSafe(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
