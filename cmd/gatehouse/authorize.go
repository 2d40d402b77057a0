package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/forwardauth"
	"github.com/gatehouse/gatehouse/verify"
)

// Authorize is the wiring of `gatehouse authorize`, in the order it happens. Tests use it to run the real thing.
type Authorize struct {
	Addr        string   // listen address; ":0" picks a free port
	RulesFile   string   // required
	Issuer      string   // required: the iss of accepted tokens
	JWKSURL     string   // "" to discover it from Issuer
	Types       []string // accepted typ headers; nil for at+jwt
	CacheSize   int      // verified tokens kept; 0 for forwardauth.DefaultCacheSize, negative for none
	EnvoyPrefix string   // Envoy's path_prefix; "" for /envoy
	Logger      *slog.Logger

	// Gatehouse API keys, for rules with api_keys: true: the server that checks them, and a client granted
	// verify:apikeys of its management API. Without Server, Open refuses rules that accept keys.
	Server         string
	ClientID       string
	ClientSecret   string
	InsecureServer bool          // allow an http:// Server on a host other than loopback
	APIKeyCacheTTL time.Duration // how long an accepted key is trusted (the revocation delay): 0 for the default, negative for none
	APIKeyHeader   string        // a header that may carry a key besides Authorization, e.g. X-API-Key; "" for none

	Rules     *forwardauth.Rules
	Verifier  *verify.Verifier
	APIKeys   *verify.APIKeyVerifier // nil when no rule accepts API keys
	Handler   *forwardauth.Handler
	Registry  *prometheus.Registry // what /metrics serves
	URL       string               // the base URL it listens on, known after Open
	listener  net.Listener
	http      *http.Server
	transport *http.Transport // the verifier's, to the issuer
}

// Open reads the rules, builds the verifier and the handler and starts listening. It does not wait for the
// issuer: the JWKS is fetched by Serve (and on first use), so the proxy and the issuer may start in any order.
func (a *Authorize) Open() (err error) {
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}
	if a.Rules, err = forwardauth.Load(a.RulesFile); err != nil {
		return err
	}
	a.Registry = prometheus.NewRegistry()
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := forwardauth.NewMetrics(a.Registry)
	a.transport = http.DefaultTransport.(*http.Transport).Clone()
	a.Verifier, err = verify.New(verify.Config{
		Issuer:     a.Issuer,
		Audiences:  a.Rules.Audiences(),
		JWKSURL:    a.JWKSURL,
		Types:      a.Types,
		HTTPClient: &http.Client{Transport: a.transport},
		Logger:     a.Logger,
		OnRefresh:  metrics.JWKSRefreshed,
	})
	if err != nil {
		return err
	}
	if a.APIKeys, err = a.apiKeyVerifier(); err != nil {
		return err
	}
	a.Handler, err = forwardauth.New(a.Rules, a.Verifier, forwardauth.Options{
		CacheSize: a.CacheSize, EnvoyPrefix: a.EnvoyPrefix, Metrics: metrics, Logger: a.Logger,
		APIKeys: a.APIKeys, APIKeyHeader: a.APIKeyHeader,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(a.Logger.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })

	if a.listener, err = net.Listen("tcp", a.Addr); err != nil {
		return err
	}
	a.URL = "http://" + hostPort(a.listener.Addr().String())
	a.http = &http.Server{
		Handler:           a.Handler.Endpoints(mux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Room for everything nginx accepts by default (4 buffers of 8 KiB), and a bound on what a check costs.
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(a.Logger.Handler(), slog.LevelWarn),
	}
	return nil
}

// apiKeyVerifier returns the checker of the API keys that rules with api_keys: true accept, or nil when no rule
// does. Such rules without a server to check keys are refused, naming the first of them.
func (a *Authorize) apiKeyVerifier() (*verify.APIKeyVerifier, error) {
	var first *forwardauth.Rule
	for _, r := range a.Rules.All() {
		if r.APIKeys && (first == nil || r.Line < first.Line) {
			first = r
		}
	}
	switch {
	case first == nil:
		if a.Server != "" {
			a.Logger.Info("no rule accepts API keys (api_keys: true): --server is not used")
		}
		return nil, nil
	case a.Server == "":
		return nil, fmt.Errorf("%s:%d: the rule %q accepts API keys (api_keys: true), but no Gatehouse server is configured to "+
			"check them: set --server (GATEHOUSE_SERVER), GATEHOUSE_CLIENT_ID and GATEHOUSE_CLIENT_SECRET (a client granted %s of %s), "+
			"or remove api_keys", a.RulesFile, first.Line, first.Name, auth.ScopeVerifyAPIKeys, auth.ManagementAudience)
	case a.ClientID == "" || a.ClientSecret == "":
		return nil, fmt.Errorf("--server %s checks API keys as a client: set GATEHOUSE_CLIENT_ID and GATEHOUSE_CLIENT_SECRET "+
			"to a client granted %s of %s", a.Server, auth.ScopeVerifyAPIKeys, auth.ManagementAudience)
	}
	return verify.NewAPIKeyVerifier(verify.APIKeyConfig{
		ServerURL:         a.Server,
		ClientID:          a.ClientID,
		ClientSecret:      a.ClientSecret,
		Audience:          first.Audience, // each rule's own, through ForAudience
		CacheTTL:          a.APIKeyCacheTTL,
		AllowInsecureHTTP: a.InsecureServer,
		HTTPClient:        &http.Client{Transport: a.transport},
	})
}

// Serve answers checks and keeps the JWKS fresh until ctx ends, then shuts down gracefully.
func (a *Authorize) Serve(ctx context.Context) error {
	attrs := []any{"addr", a.listener.Addr().String(), "issuer", a.Issuer, "rules", len(a.Rules.All())}
	if a.APIKeys != nil {
		attrs = append(attrs, "api_key_server", a.Server)
	}
	a.Logger.Info("gatehouse authorize serving", attrs...)
	return serveHTTP(ctx, a.http, a.listener, a.Verifier.Run)
}

// Close releases what Open acquired.
func (a *Authorize) Close() error {
	if a.transport != nil {
		a.transport.CloseIdleConnections()
	}
	if a.listener != nil {
		return a.listener.Close()
	}
	return nil
}

// authorizeFlags are the flags of authorize. Each also reads GATEHOUSE_<FLAG>.
type authorizeFlags struct {
	rules, addr, issuer, jwksURL, typ, envoyPrefix string
	logFormat, logLevel                            string
	cacheSize                                      int
	server, apiKeyHeader                           string
	insecureServer                                 bool
	apiKeyCacheTTL                                 time.Duration
}

func newAuthorizeCmd(_, stderr io.Writer) *cobra.Command {
	var f authorizeFlags
	cmd := &cobra.Command{
		Use:   "authorize",
		Short: "Run a forward-auth server for nginx, Traefik, Caddy and Envoy",
		Long: `Run a forward-auth server: a reverse proxy asks it about each request, and it answers from a rules
file and the request's bearer token, which it verifies offline against the issuer's JWKS.

  200  allowed, with X-Auth-Subject, X-Auth-Client-Id, X-Auth-Org-Id and X-Auth-Scopes for the proxy to pass upstream
  401  no bearer token (WWW-Authenticate: Bearer realm="…"), or a token that is not acceptable (error="invalid_token")
  403  a valid token without a required scope (error="insufficient_scope", scope="…"), or no rule matches the
       request (deny by default), or the original request is ambiguous (dot segments, encoded slashes, …)
  503  the issuer's keys could not be fetched yet, or the Gatehouse server could not be asked about an API key

Endpoints, one per way a proxy tells the original request:
  /nginx            nginx auth_request: proxy_set_header X-Original-Method $request_method;
                    X-Original-URI $request_uri; Host $host
  /traefik, /caddy  Traefik ForwardAuth, Caddy forward_auth: X-Forwarded-Method, X-Forwarded-Uri,
                    X-Forwarded-Host (both proxies set them)
  /envoy/…          Envoy ext_authz http_service with path_prefix: /envoy (the original method, path and Host)
  /metrics          Prometheus metrics; /healthz

Rules file (YAML); the most specific rule wins (exact host, *.suffix, any host; then the longest path prefix; then a
rule naming the method), and a request no rule matches is denied:

  realm: api.example.com
  rules:
    - name: items-write
      host: api.example.com
      path: /v1/items
      methods: [POST, PUT, DELETE]
      audience: https://api.example.com/v1
      scopes: [write]
      api_keys: true     # Gatehouse API keys too, with a grant for the audience holding the scopes

API keys are checked online with --server, as the client in GATEHOUSE_CLIENT_ID and GATEHOUSE_CLIENT_SECRET
(granted verify:apikeys of urn:gatehouse:management); an accepted key is trusted for --api-key-cache-ttl, which is
how long a deleted, rotated or disabled key may still be accepted. A key in a query string is refused (403).

See docs/authorize.md for the full format and proxy configurations.
Every flag also reads the environment variable GATEHOUSE_<FLAG> (e.g. GATEHOUSE_RULES, GATEHOUSE_ISSUER).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := f.authorize(cmd, stderr)
			if err != nil {
				return err
			}
			if err := a.Open(); err != nil {
				return err
			}
			defer a.Close()
			return a.Serve(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.rules, "rules", "", "rules file (YAML): which requests need which audience and scopes (required)")
	fl.StringVar(&f.addr, "addr", "127.0.0.1:9090", "address to listen on")
	fl.StringVar(&f.issuer, "issuer", "", "issuer URL: the exact iss of accepted tokens (required)")
	fl.StringVar(&f.jwksURL, "jwks-url", "", "the issuer's JWKS URL (default: discovered from the issuer)")
	fl.StringVar(&f.typ, "typ", "at+jwt", "accepted typ headers, comma-separated; an empty item accepts tokens without typ (--typ=at+jwt,)")
	fl.IntVar(&f.cacheSize, "cache-size", forwardauth.DefaultCacheSize, "verified tokens kept until they expire (0: no cache)")
	fl.StringVar(&f.envoyPrefix, "envoy-prefix", "/envoy", "the path_prefix Envoy's ext_authz http_service puts before the original path")
	fl.StringVar(&f.server, "server", "", "the Gatehouse server that checks API keys, for rules with api_keys: true (as GATEHOUSE_CLIENT_ID with GATEHOUSE_CLIENT_SECRET)")
	fl.BoolVar(&f.insecureServer, "insecure-server", false, "allow an http:// --server on a host other than loopback (keys and the client secret cross the network in the clear)")
	fl.DurationVar(&f.apiKeyCacheTTL, "api-key-cache-ttl", verify.DefaultAPIKeyCacheTTL, "how long an accepted API key is trusted without asking --server again: the most a deleted key stays accepted (0: ask every time)")
	fl.StringVar(&f.apiKeyHeader, "api-key-header", "", "a header that may carry an API key instead of Authorization: Bearer, e.g. X-API-Key")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// authorize returns the Authorize that cmd's flags (or their GATEHOUSE_<FLAG> variables) describe.
func (f *authorizeFlags) authorize(cmd *cobra.Command, stderr io.Writer) (*Authorize, error) {
	if err := bindEnv(cmd, os.LookupEnv); err != nil {
		return nil, err
	}
	log, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return nil, err
	}
	if f.rules == "" {
		return nil, usageError{errors.New("--rules is required: the file of rules saying which requests need which audience and scopes")}
	}
	if err := checkURL("--issuer", f.issuer, true); err != nil {
		return nil, err
	}
	if err := checkURL("--jwks-url", f.jwksURL, false); err != nil {
		return nil, err
	}
	if f.cacheSize < 0 {
		return nil, usageError{errors.New("--cache-size must not be negative")}
	}
	if err := checkURL("--server", f.server, false); err != nil {
		return nil, err
	}
	if f.apiKeyCacheTTL < 0 {
		return nil, usageError{errors.New("--api-key-cache-ttl must not be negative (0: no cache)")}
	}
	if p := f.envoyPrefix; !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return nil, usageError{fmt.Errorf("--envoy-prefix %q: use a path like /envoy (no trailing slash)", p)}
	}
	a := &Authorize{Addr: f.addr, RulesFile: f.rules, Issuer: f.issuer, JWKSURL: f.jwksURL, CacheSize: f.cacheSize,
		EnvoyPrefix: f.envoyPrefix, Logger: log, Types: strings.Split(f.typ, ","),
		Server: f.server, ClientID: os.Getenv("GATEHOUSE_CLIENT_ID"), ClientSecret: os.Getenv("GATEHOUSE_CLIENT_SECRET"),
		InsecureServer: f.insecureServer, APIKeyCacheTTL: f.apiKeyCacheTTL, APIKeyHeader: f.apiKeyHeader}
	if f.cacheSize == 0 {
		a.CacheSize = -1
	}
	if f.apiKeyCacheTTL == 0 {
		a.APIKeyCacheTTL = -1
	}
	return a, nil
}

// checkURL refuses a flag value that is not an http(s) URL; "" is refused only when required.
func checkURL(flag, s string, required bool) error {
	if s == "" {
		if required {
			return usageError{fmt.Errorf("%s is required", flag)}
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
		return usageError{fmt.Errorf("%s %q: use an http or https URL", flag, s)}
	}
	return nil
}
