package verify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ErrNoToken means a request carries no bearer token: no Authorization header, or one with another scheme.
var ErrNoToken = errors.New("no bearer token")

// ErrInsufficientScope means a valid token lacks a scope the request needs. The errors that wrap it are
// *ScopeError.
var ErrInsufficientScope = errors.New("insufficient scope")

// ScopeError reports the scopes a request needed and its token lacked. errors.Is(err, ErrInsufficientScope) holds.
type ScopeError struct {
	Scopes []string // the scopes the request needs
	Any    bool     // one of Scopes suffices; otherwise all are needed
}

func (e *ScopeError) Error() string {
	if e.Any {
		return "insufficient scope: one of " + strings.Join(e.Scopes, " ") + " is required"
	}
	return "insufficient scope: " + strings.Join(e.Scopes, " ") + " required"
}

// Is makes errors.Is(err, ErrInsufficientScope) hold.
func (e *ScopeError) Is(target error) bool { return target == ErrInsufficientScope }

// TokenVerifier checks a bearer token and returns its claims. *Verifier (JWT access tokens, offline) and
// *APIKeyVerifier (Gatehouse API keys, online) are ones; Any combines them. Verify must be safe for concurrent use
// and return errors that wrap this package's Err* values.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*Claims, error)
}

// BearerToken returns the token of an Authorization header value using the Bearer scheme (RFC 6750 §2.1; the
// scheme name is case-insensitive). It returns ErrNoToken for an empty value or another scheme, and an error
// wrapping ErrMalformed when the token is empty or not b64token syntax.
func BearerToken(header string) (string, error) {
	scheme, tok, _ := strings.Cut(strings.TrimLeft(header, " "), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoToken
	}
	tok = strings.Trim(tok, " ")
	if tok == "" {
		return "", fmt.Errorf("%w: Bearer with no token", ErrMalformed)
	}
	// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
	end := len(tok)
	for end > 0 && tok[end-1] == '=' {
		end--
	}
	if end == 0 {
		return "", fmt.Errorf("%w: the bearer token is not b64token syntax", ErrMalformed)
	}
	for i := 0; i < end; i++ {
		c := tok[i]
		if !(b64url[c] || c == '.' || c == '~' || c == '+' || c == '/') {
			return "", fmt.Errorf("%w: the bearer token is not b64token syntax", ErrMalformed)
		}
	}
	return tok, nil
}

type claimsKey struct{}

// WithClaims returns a copy of ctx carrying c, as Middleware passes claims to the handlers it protects.
func WithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFrom returns the claims Middleware (or WithClaims) put in ctx.
func ClaimsFrom(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}

// MiddlewareOption configures Middleware.
type MiddlewareOption func(*middleware)

type middleware struct {
	v         TokenVerifier
	keyHeader string // a header holding an API key, or ""
	realm     string
	all       []string
	anyOf     []string
	onError   func(*http.Request, error)
}

// RequireScopes makes Middleware answer 403 insufficient_scope unless the token has every one of the scopes.
func RequireScopes(all ...string) MiddlewareOption {
	return func(m *middleware) { m.all = append(m.all, all...) }
}

// RequireAnyScope makes Middleware answer 403 insufficient_scope unless the token has at least one of the scopes.
func RequireAnyScope(anyOf ...string) MiddlewareOption {
	return func(m *middleware) { m.anyOf = append(m.anyOf, anyOf...) }
}

// Realm sets the realm of the WWW-Authenticate challenges (RFC 6750 §3); by default they have none.
func Realm(realm string) MiddlewareOption {
	return func(m *middleware) { m.realm = realm }
}

// APIKeyHeader makes Middleware also take an API key from the named request header, such as "X-API-Key", as many
// API-key clients send it: the header holds the key alone, without a scheme, and is checked by the verifier as a
// bearer token would be (use an *APIKeyVerifier, or Any). A value that is not in the Gatehouse API key format is
// refused as an invalid key, whatever else the verifier accepts. A request with the header and an Authorization
// header, or with the header twice, is refused (400 invalid_request), lest parties read different credentials.
func APIKeyHeader(name string) MiddlewareOption {
	return func(m *middleware) { m.keyHeader = http.CanonicalHeaderKey(name) }
}

// OnError sets a function called with every request Middleware refuses and the reason, e.g. to log it: the
// responses themselves say little, so as not to help an attacker.
func OnError(f func(r *http.Request, err error)) MiddlewareOption {
	return func(m *middleware) { m.onError = f }
}

// Middleware returns middleware that lets a request through only with a valid bearer token in its Authorization
// header (or an API key in the header APIKeyHeader names; never from the query string or body), with the scopes the
// options require, and puts the token's claims in the request's context for ClaimsFrom. A request whose query string
// holds a value in the Gatehouse API key format is refused (400 invalid_request) without checking the key: URLs end
// up in logs. Refusals are answered by WriteError.
func Middleware(v TokenVerifier, opts ...MiddlewareOption) func(http.Handler) http.Handler {
	m := &middleware{v: v}
	for _, o := range opts {
		o(m)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := m.check(r)
			if err != nil {
				if m.onError != nil {
					m.onError(r, err)
				}
				WriteError(w, m.realm, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithClaims(r.Context(), c)))
		})
	}
}

func (m *middleware) check(r *http.Request) (*Claims, error) {
	if KeyInQuery(r.URL.RawQuery) {
		return nil, errKeyInURL
	}
	hs := r.Header.Values("Authorization")
	var ks []string
	if m.keyHeader != "" {
		ks = r.Header[m.keyHeader]
	}
	switch {
	case len(hs) == 0 && len(ks) == 0:
		return nil, ErrNoToken
	case len(hs) > 1:
		return nil, errSeveralCredentials
	case len(ks) > 0 && len(hs)+len(ks) > 1:
		return nil, errSeveralKeys
	}
	var tok string
	if len(ks) == 1 {
		if tok = strings.Trim(ks[0], " \t"); !IsAPIKey(tok) {
			return nil, errKeyFormat
		}
	} else {
		var err error
		if tok, err = BearerToken(hs[0]); err != nil {
			return nil, err
		}
	}
	c, err := m.v.Verify(r.Context(), tok)
	if err != nil {
		return nil, err
	}
	if !c.HasScopes(m.all...) {
		return nil, &ScopeError{Scopes: m.all}
	}
	if len(m.anyOf) > 0 && !c.HasAnyScope(m.anyOf...) {
		return nil, &ScopeError{Scopes: m.anyOf, Any: true}
	}
	return c, nil
}

// Requests refused with 400 invalid_request, whose messages are their error_description. A request with more than
// one credential is refused lest two parties read different ones.
var (
	errSeveralCredentials = errors.New("more than one Authorization header")
	errSeveralKeys        = errors.New("more than one credential: an API key header and an Authorization header, or two")
	errKeyInURL           = errors.New("an API key must not be sent in a URL, where logs keep it: send it in a header")
)

// KeyInQuery reports whether a raw query string holds a name or value in the Gatehouse API key format (IsAPIKey):
// a key that logs and proxies have seen, which a server should refuse rather than use.
func KeyInQuery(rawQuery string) bool {
	if len(rawQuery) < keyPrefixMin+1+keyTailLen {
		return false
	}
	for part := range strings.SplitSeq(rawQuery, "&") {
		name, value, _ := strings.Cut(part, "=")
		for _, s := range [2]string{name, value} {
			if strings.ContainsAny(s, "%+") {
				if u, err := url.QueryUnescape(s); err == nil {
					s = u
				}
			}
			if IsAPIKey(strings.TrimSpace(s)) {
				return true
			}
		}
	}
	return false
}

// WriteError answers a request refused because of err, as RFC 6750 §3 says, with a challenge carrying realm (none
// when ""):
//
//   - ErrNoToken: 401, WWW-Authenticate: Bearer realm="…" (no error code: the client did not try).
//   - ErrInsufficientScope (a *ScopeError): 403, error="insufficient_scope" and scope="…" naming the scopes needed.
//   - ErrUnavailable (ErrJWKSUnavailable, ErrAPIKeyUnavailable) and ErrRevocationsUnavailable: 503 with
//     Retry-After: the credential could not be checked, which is no fault of the client.
//   - more than one Authorization header (or API key header), or an API key in the query string: 400 invalid_request.
//   - any other error: 401, error="invalid_token", with an error_description naming what failed (expired, wrong
//     audience, …) and no detail beyond that.
//
// The body is a short plain-text message.
func WriteError(w http.ResponseWriter, realm string, err error) {
	h := w.Header()
	var params []string
	if realm != "" {
		params = append(params, "realm="+quote(realm))
	}
	challenge := func(code, desc string, extra ...string) {
		p := append(params, "error="+quote(code), "error_description="+quote(desc))
		p = append(p, extra...)
		h.Set("WWW-Authenticate", "Bearer "+strings.Join(p, ", "))
	}
	status := http.StatusUnauthorized
	var se *ScopeError
	switch {
	case errors.Is(err, ErrNoToken):
		h.Set("WWW-Authenticate", strings.TrimSpace("Bearer "+strings.Join(params, ", ")))
	case errors.As(err, &se):
		status = http.StatusForbidden
		challenge("insufficient_scope", "the token lacks a scope this request needs", "scope="+quote(strings.Join(se.Scopes, " ")))
	case errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRevocationsUnavailable):
		status = http.StatusServiceUnavailable
		h.Set("Retry-After", "5")
	case errors.Is(err, errSeveralCredentials), errors.Is(err, errSeveralKeys), errors.Is(err, errKeyInURL):
		status = http.StatusBadRequest
		for _, e := range []error{errSeveralCredentials, errSeveralKeys, errKeyInURL} {
			if errors.Is(err, e) {
				challenge("invalid_request", e.Error())
			}
		}
	default:
		challenge("invalid_token", describe(err))
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, http.StatusText(status))
}

// describe says what is wrong with a token in words safe to send back: no kid, URL or internal detail.
func describe(err error) string {
	if errors.Is(err, ErrInvalidAPIKey) {
		switch {
		case errors.Is(err, ErrMalformed):
			return "the API key is malformed"
		case errors.Is(err, ErrExpired):
			return "the API key has expired"
		case errors.Is(err, ErrAudience):
			return "the API key is not valid for this API"
		}
		return "the API key is not valid"
	}
	for _, d := range []struct {
		err  error
		desc string
	}{
		{ErrTooLarge, "the token is too large"},
		{ErrCritical, "the token has critical header parameters"},
		{ErrUnsupportedAlg, "the token's signing algorithm is not accepted"},
		{ErrType, "the token is not an access token of an accepted type"},
		{ErrUnknownKey, "the token's signing key is unknown"},
		{ErrSignature, "the token's signature is invalid"},
		{ErrExpired, "the token has expired"},
		{ErrRevoked, "the token has been revoked"},
		{ErrNotYetValid, "the token is not valid yet"},
		{ErrIssuedInFuture, "the token is issued in the future"},
		{ErrIssuer, "the token is from another issuer"},
		{ErrAudience, "the token is for another audience"},
		{ErrMalformed, "the token is malformed"},
	} {
		if errors.Is(err, d.err) {
			return d.desc
		}
	}
	return "the token is invalid"
}

// quote returns s as an HTTP quoted-string (RFC 9110 §5.6.4), dropping control characters.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 && c != '\t' || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
