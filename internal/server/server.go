// Package server is Gatehouse's HTTP surface: the token endpoint, introspection, revocation and the revocation
// feed, the JWKS, discovery and health. Every route is in routes(); every error becomes an HTTP status in one place
// (writeOAuthError for OAuth endpoints, writeProblem for the rest). No input produces a 500 or a stack trace.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/accesslog"
	"github.com/gatehouse/gatehouse/internal/apikey"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/issuer"
	"github.com/gatehouse/gatehouse/internal/keyset"
	"github.com/gatehouse/gatehouse/internal/revocation"
)

// Config is what a Server needs.
type Config struct {
	Issuer *issuer.Issuer
	Keys   *keyset.Keyset
	Store  auth.Store // for /readyz, and to disable a client
	// Revocations is the revocation list that /oauth/revoke writes and /oauth/revocations serves.
	Revocations *revocation.List
	// IssuerURL is the iss of every token and the base of every advertised endpoint, e.g. "http://127.0.0.1:8080/".
	IssuerURL string
	Logger    *slog.Logger
	// Hasher hashes the client secrets the management API makes.
	Hasher *auth.SecretHasher
	// Audit records management changes; nil records nothing.
	Audit Auditor
	// APIKeys checks API keys; the management API invalidates it in the same step as every key change.
	APIKeys *apikey.Checker
	// APIKeyPrefix is the prefix of new API keys of organizations that have not chosen one: apikey.DefaultPrefix
	// when empty.
	APIKeyPrefix string
	// TrustedProxies are the networks of reverse proxies whose X-Forwarded-For is believed: the token endpoint
	// takes the caller's address (for throttling and the audit log) from the rightmost X-Forwarded-For entry
	// outside them. Empty (the default): the peer address, X-Forwarded-For ignored.
	TrustedProxies []netip.Prefix
	// Checks are the lines /readyz adds to those of the store and the signing keys: the shared backends an
	// instance of several depends on (the rate limits' Redis, the change listener).
	Checks []Check
}

// Check is one line of /readyz: a component's state in a few words, and whether the server can serve with it. A
// component that has fallen back on something that works (per-instance rate limits while Redis is down) reports
// ready, with its state saying so.
type Check struct {
	Name string
	Run  func(ctx context.Context) (state string, ready bool)
}

// Server serves Gatehouse's HTTP API.
type Server struct {
	Config
	base string // IssuerURL without its trailing slash
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{Config: cfg, base: strings.TrimSuffix(cfg.IssuerURL, "/")}
}

// Handler returns the root handler: every route, wrapped in request logging and panic recovery.
func (s *Server) Handler() http.Handler {
	return accesslog.Handler(s.Logger, refuseKeysInURL(withDeadline(s.routes())))
}

// requestTimeout bounds the work of one request, the database's included: a database that stops answering fails
// the request (503) in this time rather than holding it until the write timeout cuts the connection.
const requestTimeout = 10 * time.Second

// withDeadline gives each request's context the deadline requestTimeout.
func withDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// refuseKeysInURL refuses any request whose query string carries an API key (one that passes the format's
// checksum), with a message saying where to send it instead: URLs end up in access logs, proxies' logs and browser
// histories. The key is not looked up, and the refusal does not repeat it.
func refuseKeysInURL(next http.Handler) http.Handler {
	const msg = "an API key must not be sent in a URL, where logs and proxies keep it: send it in the Authorization header or the request body"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery == "" || !keyInQuery(r.URL.Query()) {
			next.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == "/oauth/token" || r.URL.Path == "/oauth2/token" {
			w.Header().Set("Cache-Control", "no-store")
			writeJSON(w, http.StatusBadRequest, oauthBody{Error: "invalid_request", Description: msg})
			return
		}
		writeProblem(w, http.StatusBadRequest, "Bad Request", msg)
	})
}

// keyInQuery reports whether any query value is a well-formed API key.
func keyInQuery(q url.Values) bool {
	for _, vs := range q {
		for _, v := range vs {
			if _, err := apikey.Parse(v); err == nil {
				return true
			}
		}
	}
	return false
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/oauth/token", s.handleToken)
	mux.HandleFunc("/oauth2/token", s.handleToken)
	mux.HandleFunc("/oauth/introspect", s.handleIntrospect)
	mux.HandleFunc("/oauth/revoke", s.handleRevoke)
	mux.HandleFunc("GET /oauth/revocations", s.handleRevocations)
	mux.HandleFunc("GET /.well-known/jwks.json", s.handleJWKS)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.handleDiscovery)
	mux.HandleFunc("GET /.well-known/openid-configuration", s.handleDiscovery)
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET /readyz", s.handleReady)
	s.registerManage(mux)
	mux.HandleFunc("/", s.handleNotFound)
	return mux
}

// NewHTTPServer returns an http.Server for h with timeouts and limits suited to an internet-facing token service.
func NewHTTPServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	body, etag := s.Keys.JWKS()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(s.Keys.MaxAge()/time.Second)))
	h.Set("ETag", etag)
	h.Set("Access-Control-Allow-Origin", "*")
	if match := r.Header.Get("If-None-Match"); match != "" && match == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(body)
}

// metadata is the RFC 8414 authorization server metadata document.
type metadata struct {
	Issuer                   string   `json:"issuer"`
	TokenEndpoint            string   `json:"token_endpoint"`
	JWKSURI                  string   `json:"jwks_uri"`
	GrantTypesSupported      []string `json:"grant_types_supported"`
	ResponseTypesSupported   []string `json:"response_types_supported"`
	TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	IntrospectionEndpoint    string   `json:"introspection_endpoint"`
	IntrospectionAuthMethods []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpoint       string   `json:"revocation_endpoint"`
	RevocationAuthMethods    []string `json:"revocation_endpoint_auth_methods_supported"`
	SigningAlgValues         []string `json:"id_token_signing_alg_values_supported"`
	AccessTokenSigningAlgs   []string `json:"access_token_signing_alg_values_supported"`
	SubjectTypesSupported    []string `json:"subject_types_supported"`
}

func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	algs := s.Keys.Algorithms()
	names := make([]string, len(algs))
	for i, a := range algs {
		names[i] = string(a)
	}
	md := metadata{
		Issuer:                   s.IssuerURL,
		TokenEndpoint:            s.base + "/oauth/token",
		JWKSURI:                  s.base + "/.well-known/jwks.json",
		GrantTypesSupported:      []string{"client_credentials", issuer.GrantTokenExchange},
		ResponseTypesSupported:   []string{}, // no authorization endpoint: machine-to-machine only
		TokenEndpointAuthMethods: []string{"client_secret_basic", "client_secret_post"},
		IntrospectionEndpoint:    s.base + "/oauth/introspect",
		IntrospectionAuthMethods: authMethods,
		RevocationEndpoint:       s.base + "/oauth/revoke",
		RevocationAuthMethods:    authMethods,
		SigningAlgValues:         names,
		AccessTokenSigningAlgs:   names,
		SubjectTypesSupported:    []string{"public"},
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, md)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady answers 200 once the server can issue tokens: the store answers, a signing key is loaded, and every
// Check is ready. The body names the state of each.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"store": "ok", "signing_keys": "ok"}
	ok := true
	if err := s.Store.Ping(ctx); err != nil {
		s.Logger.Warn("readiness: store unreachable", "err", err)
		checks["store"], ok = "unreachable", false
	}
	if len(s.Keys.Algorithms()) == 0 {
		checks["signing_keys"], ok = "none loaded", false
	}
	for _, c := range s.Checks {
		state, ready := c.Run(ctx)
		checks[c.Name] = state
		ok = ok && ready
	}
	status := http.StatusOK
	checks["status"] = "ready"
	if !ok {
		status = http.StatusServiceUnavailable
		checks["status"] = "not ready"
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, checks)
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, http.StatusNotFound, "Not Found", "no such endpoint: "+truncate(r.URL.Path, 100))
}

// writeJSON writes v as JSON with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error","error_description":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// problem is an RFC 9457 problem details object.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, title, detail string) {
	b, _ := json.Marshal(problem{Type: "about:blank", Title: title, Status: status, Detail: detail})
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeOAuthError writes an RFC 6749 §5.2 error. invalid_client is 401 (with a Basic challenge when the client used
// Basic or sent no credentials); a store outage is 503 temporarily_unavailable; anything else unexpected is logged
// and answered 500 server_error without detail.
func (s *Server) writeOAuthError(w http.ResponseWriter, r *http.Request, err error, basicChallenge bool) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	var oe *issuer.Error
	if errors.As(err, &oe) {
		accesslog.From(r.Context()).Error = oe.Code
	}
	if !errors.As(err, &oe) {
		if errors.Is(err, context.Canceled) {
			return // the caller went away
		}
		level := slog.LevelError
		if errors.Is(err, auth.ErrUnavailable) {
			level = slog.LevelWarn // an outage, said once per request in the access log too: not a bug to look into
		}
		s.Logger.Log(r.Context(), level, "token request failed", "err", err, "request_id", accesslog.From(r.Context()).ID)
		h.Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, oauthBody{Error: "temporarily_unavailable", Description: "the server cannot issue tokens right now; retry shortly"})
		return
	}
	status := http.StatusBadRequest
	if oe.Code == issuer.CodeInvalidClient {
		status = http.StatusUnauthorized
		if basicChallenge {
			h.Set("WWW-Authenticate", `Basic realm="gatehouse", charset="UTF-8"`)
		}
	}
	if oe.Code == issuer.CodeTooManyRequests { // as Auth0 answers: 429, too_many_requests, Retry-After in seconds
		status = http.StatusTooManyRequests
		h.Set("Retry-After", strconv.FormatInt(max(1, int64(oe.RetryAfter/time.Second)), 10))
	}
	writeJSON(w, status, oauthBody{Error: oe.Code, Description: oe.Description})
}

type oauthBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
