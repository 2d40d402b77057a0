package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/gatehouse/gatehouse/internal/apikey"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/changes"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/issuer"
	"github.com/gatehouse/gatehouse/internal/keyset"
	"github.com/gatehouse/gatehouse/internal/limit"
	"github.com/gatehouse/gatehouse/internal/pgnotify"
	"github.com/gatehouse/gatehouse/internal/revocation"
	"github.com/gatehouse/gatehouse/internal/rootkey"
	"github.com/gatehouse/gatehouse/internal/server"
)

// Main is the wiring of `gatehouse serve`, in the order it happens. End-to-end tests use it to run the real thing.
type Main struct {
	Addr       string        // listen address; ":0" picks a free port
	DB         string        // sqlite:PATH or postgres://…
	Redis      string        // redis://… to share rate limits across instances; "" for per-instance limits
	IssuerURL  string        // default http://<addr>/
	ConfigFile string        // declarative file applied at start, or ""
	RootKey    *rootkey.Key  // required
	JWKSMaxAge time.Duration // Cache-Control max-age of the JWKS
	CacheTTL   time.Duration // how long a client read from the store is reused
	// StaleIfError is how much longer than CacheTTL a cached client or API key is still used while the database
	// cannot be reached; 0 for never.
	StaleIfError time.Duration
	Logger       *slog.Logger
	Stderr       io.Writer // where generated secrets are printed once
	LookupEnv    func(string) (string, bool)
	extra        *config.File // applied after ConfigFile (gatehouse dev's demo resources)

	// The signing key schedule (keyset.Options): rotation period, publication ahead, least retention; zero values
	// are the defaults.
	RotateEvery, PublishAhead, KeyRetention time.Duration
	RevocationPoll                          time.Duration // how often revocations made by other instances are read
	// Issuance limits and the audit log. The limits are kept in process, or shared through Redis.
	AuditRetention time.Duration         // how long audit events are kept: 0 for 90 days, negative for ever
	AuthThrottle   limit.ThrottleOptions // limits on failed client authentication; zero for the defaults
	TrustedProxies []netip.Prefix        // reverse proxies whose X-Forwarded-For is believed
	Audit          *audit.Recorder       // set by Open; Serve runs it
	APIKeyPrefix   string                // prefix of new API keys for organizations without their own; "" for apikey.DefaultPrefix
	APIKeys        *apikey.Checker       // set by Open; Serve runs it (last-used times, pruning)

	Store    auth.Store
	store    *openedStore
	limits   *limiters
	applier  *changes.Applier // applies the changes other instances publish; nil on SQLite
	Keys     *keyset.Keyset
	Issuer   *issuer.Issuer
	Hasher   *auth.SecretHasher
	URL      string // the base URL the server listens on, known after Open
	listener net.Listener
	http     *http.Server

	Revocations *revocation.List
}

// Open opens the store, checks the root key, applies the declarative file, loads the signing keys and the
// revocation list and starts listening. Close undoes it.
func (m *Main) Open(ctx context.Context) (err error) {
	if m.Logger == nil {
		m.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m.Stderr == nil {
		m.Stderr = io.Discard
	}
	if m.LookupEnv == nil {
		m.LookupEnv = os.LookupEnv
	}
	if m.RootKey == nil {
		return errors.New("no root key: set GATEHOUSE_ROOT_KEY to 32 random bytes in base64 (openssl rand -base64 32) " +
			"or pass --root-key-file; `gatehouse dev` makes one for you")
	}
	// Read the file first, so a mistake in it stops the server before anything is written.
	var file *config.File
	if m.ConfigFile != "" {
		if file, err = config.Load(m.ConfigFile, m.LookupEnv); err != nil {
			return err
		}
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if m.limits, err = newLimiters(m.Redis, m.Logger); err != nil {
		return err
	}
	if err = m.openStore(ctx); err != nil {
		return err
	}
	if err = config.EnsureManagementAPI(ctx, m.Store, time.Now()); err != nil {
		return err
	}
	m.Audit = audit.New(m.Store, audit.Options{Retention: m.AuditRetention, Logger: m.Logger})
	for _, f := range []*config.File{file, m.extra} {
		if f == nil {
			continue
		}
		res, err := f.Apply(ctx, m.Store, m.Hasher, time.Now())
		if res != nil {
			m.report(res) // also after a partial failure: a secret generated for a created client is shown once
			m.auditApply(ctx, res)
		}
		if err != nil {
			return fmt.Errorf("apply declarative file: %w", err)
		}
	}

	if err = m.openKeys(ctx); err != nil {
		return err
	}
	if err = m.ensureKeys(ctx); err != nil {
		return err
	}
	m.Revocations = revocation.New(m.Store, revocation.Options{PollEvery: m.RevocationPoll, Logger: m.Logger})
	if err = m.Revocations.Load(ctx); err != nil {
		return err
	}

	if m.listener, err = net.Listen("tcp", m.Addr); err != nil {
		return err
	}
	m.URL = "http://" + hostPort(m.listener.Addr().String())
	if m.IssuerURL == "" {
		m.IssuerURL = m.URL + "/"
	}
	m.APIKeys = apikey.NewChecker(m.Store, auth.NewSecretHasher(m.RootKey.Derive("api key hashing")),
		apikey.CheckerOptions{CacheTTL: m.CacheTTL, StaleIfError: m.StaleIfError, Logger: m.Logger})
	m.Issuer = issuer.New(m.Store, m.Keys, m.Hasher, issuer.Options{Issuer: m.IssuerURL, CacheTTL: m.CacheTTL, StaleIfError: m.StaleIfError,
		Logger: m.Logger, Verifier: m.Keys, Revocations: m.Revocations,
		Limiter: m.limits.rate, Throttle: limit.NewThrottle(m.limits.throttle, m.AuthThrottle), Audit: m.Audit,
		APIKeys: m.APIKeys})
	checks := []server.Check{{Name: "rate_limits", Run: m.limits.check}}
	if bus := m.store.bus; bus != nil {
		m.applier = changes.NewApplier()
		m.applier.Clients, m.applier.APIKeys, m.applier.Logger = m.Issuer, m.APIKeys, m.Logger
		m.applier.SigningKeys, m.applier.Revocations = m.Keys.Load, m.Revocations.Poll
		checks = append(checks, server.Check{Name: "changes", Run: changesCheck(bus)})
	}
	srv := server.New(server.Config{Issuer: m.Issuer, Keys: m.Keys, Store: m.Store, Revocations: m.Revocations, IssuerURL: m.IssuerURL, Logger: m.Logger,
		Hasher: m.Hasher, Audit: m.Audit, TrustedProxies: m.TrustedProxies, APIKeys: m.APIKeys, APIKeyPrefix: m.APIKeyPrefix,
		Checks: checks})
	m.http = server.NewHTTPServer(m.Addr, srv.Handler(), m.Logger)
	return nil
}

// openStore opens the database and checks that it belongs to the root key.
func (m *Main) openStore(ctx context.Context) (err error) {
	if m.store, err = openStore(ctx, m.DB, m.Logger); err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	m.Store = m.store
	if err = m.RootKey.Check(ctx, m.Store); err != nil {
		return err
	}
	m.Hasher = auth.NewSecretHasher(m.RootKey.Derive("client secret hashing"))
	return nil
}

// openKeys loads the signing keys, with the schedule m describes.
func (m *Main) openKeys(ctx context.Context) (err error) {
	m.Keys, err = keyset.New(m.Store, m.RootKey.Derive("signing key encryption"), m.keysetOptions())
	if err != nil {
		return err
	}
	if err = m.Keys.Load(ctx); err != nil {
		if errors.Is(err, keyset.ErrDecrypt) {
			return fmt.Errorf("%w (%v)", rootkey.ErrMismatch, err)
		}
		return err
	}
	return nil
}

func (m *Main) keysetOptions() keyset.Options {
	return keyset.Options{JWKSMaxAge: m.JWKSMaxAge, Logger: m.Logger,
		RotateEvery: m.RotateEvery, PublishAhead: m.PublishAhead, Retention: m.KeyRetention}
}

// ensureKeys makes sure every algorithm an API uses, and RS256, has a current signing key.
func (m *Main) ensureKeys(ctx context.Context) error {
	apis, err := m.Store.ListAPIs(ctx)
	if err != nil {
		return fmt.Errorf("list apis: %w", err)
	}
	need := map[auth.Algorithm]bool{auth.RS256: true}
	for _, a := range apis {
		need[a.SigningAlg] = true
	}
	for _, alg := range auth.Algorithms {
		if need[alg] {
			if err := m.Keys.Ensure(ctx, alg); err != nil {
				return fmt.Errorf("signing key for %s: %w", alg, err)
			}
		}
	}
	return nil
}

// report prints what applying a declarative file did, and any generated secret, once, on Stderr.
func (m *Main) report(res *config.Result) {
	for _, s := range res.Created {
		m.Logger.Info("config: created " + s)
	}
	for _, s := range res.Updated {
		m.Logger.Info("config: updated " + s)
	}
	for id, secret := range res.Generated {
		fmt.Fprintf(m.Stderr, "WARNING: generated a secret for client %s; it is shown only this once, store it now:\n  client_secret=%s\n", id, secret)
	}
}

// auditApply records what applying the declarative file created and changed, with the actor "config": changes
// made at start are on the record like those made through the management API.
func (m *Main) auditApply(ctx context.Context, res *config.Result) {
	for _, r := range []struct {
		action string
		lines  []string
	}{{"config.create", res.Created}, {"config.update", res.Updated}} {
		for _, line := range r.lines {
			kind, name, _ := strings.Cut(line, " ") // "client billing" → client/billing, as the management API names it
			e := &auth.AuditEvent{Time: time.Now().UTC(), Actor: "config", Action: r.action, Resource: kind + "/" + name}
			if err := m.Audit.Record(ctx, e); err != nil {
				m.Logger.Error("audit: recording a change of the declarative file failed", "err", err, "resource", line)
			}
		}
	}
}

// Serve serves HTTP and runs the background work until ctx ends, then shuts down gracefully: in-flight requests
// finish (up to 15 s) before it returns.
func (m *Main) Serve(ctx context.Context) error {
	m.Logger.Info("gatehouse serving", "addr", m.listener.Addr().String(), "issuer", m.IssuerURL)
	jobs := []func(context.Context) error{m.Keys.Run, m.Revocations.Run, m.Audit.Run, m.APIKeys.Run}
	if m.applier != nil {
		bus := m.store.bus
		jobs = append(jobs, m.applier.Run, func(ctx context.Context) error { return bus.Run(ctx, m.applier.Apply) })
	}
	return serveHTTP(ctx, m.http, m.listener, jobs...)
}

// shutdownTimeout bounds how long a stopping server waits for requests in flight.
const shutdownTimeout = 15 * time.Second

// serveHTTP serves srv on l and runs the background jobs until ctx ends or one of them fails; then it stops srv
// gracefully, letting requests in flight finish (up to shutdownTimeout), and returns when everything has ended.
func serveHTTP(ctx context.Context, srv *http.Server, l net.Listener, jobs ...func(context.Context) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	for _, job := range jobs {
		g.Go(func() error { return job(ctx) })
	}
	g.Go(func() error {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
	return g.Wait()
}

// Close releases what Open acquired.
func (m *Main) Close() error {
	if m.listener != nil {
		m.listener.Close()
	}
	var err error
	if m.limits != nil {
		err = m.limits.Close()
	}
	if m.Store != nil {
		err = errors.Join(m.Store.Close(), err)
	}
	return err
}

// changesCheck is the changes line of /readyz: whether this instance hears other instances' changes. Ready
// either way: while it does not, cached clients and keys still expire within the cache TTL.
func changesCheck(bus *pgnotify.Bus) func(context.Context) (string, bool) {
	return func(context.Context) (string, bool) {
		listening, since, _ := bus.Status()
		if listening {
			return "listening (PostgreSQL LISTEN/NOTIFY)", true
		}
		return "not listening since " + since.UTC().Format("2006-01-02T15:04:05Z") + ": other instances' changes reach this one within the cache TTL", true
	}
}

// hostPort turns a listen address into one a client can dial: an unspecified host becomes localhost.
func hostPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// serveFlags are the flags of serve (and dev). Each also reads GATEHOUSE_<FLAG>.
type serveFlags struct {
	addr, db, redis, issuer, config, rootKeyFile string
	logFormat, logLevel                          string
	jwksMaxAge, cacheTTL, staleIfError           time.Duration
	keys                                         keyScheduleFlags
	revocationPoll                               time.Duration
	// Issuance limits and the audit log.
	auditRetention                                time.Duration
	authFailuresPerClient, authFailuresPerAddress int
	trustedProxies                                []string
	apiKeyPrefix                                  string
}

// keyScheduleFlags are the signing key schedule's flags, shared by serve, dev and the signing-key commands.
type keyScheduleFlags struct {
	rotateEvery, publishAhead, retention time.Duration
}

func (f *keyScheduleFlags) register(fl *pflag.FlagSet) {
	fl.DurationVar(&f.rotateEvery, "key-rotation-period", keyset.DefaultRotateEvery,
		"how long a signing key signs before the next one takes over")
	fl.DurationVar(&f.publishAhead, "key-publish-ahead", 0,
		"how long a next signing key is in the JWKS before it signs, at least --jwks-max-age plus 30s (default 2 × --jwks-max-age + 30s)")
	fl.DurationVar(&f.retention, "key-retention", 0,
		"least time a retired key stays in the JWKS; never less than the longest token lifetime of the APIs plus 5m30s")
}

// check validates the schedule for a JWKS max-age; its errors are usage errors.
func (f *keyScheduleFlags) check(jwksMaxAge time.Duration) error {
	if f.rotateEvery < 0 || f.publishAhead < 0 || f.retention < 0 {
		return usageError{errors.New("durations must not be negative")}
	}
	if err := keyset.CheckSchedule(keyset.Options{JWKSMaxAge: jwksMaxAge, RotateEvery: f.rotateEvery, PublishAhead: f.publishAhead}); err != nil {
		return usageError{fmt.Errorf("--key-rotation-period, --key-publish-ahead: %w", err)}
	}
	return nil
}

func (f *serveFlags) register(cmd *cobra.Command, defaultDB string) {
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8080", "address to listen on")
	fl.StringVar(&f.db, "db", defaultDB, "database: sqlite:PATH, or postgres://USER@HOST/DB shared by several instances")
	fl.StringVar(&f.redis, "redis", "", "Redis URL (redis://HOST:PORT) to share rate limits across instances; per-instance limits without it")
	fl.StringVar(&f.issuer, "issuer", "", "issuer URL, the iss of every token (default http://<addr>/)")
	fl.StringVar(&f.config, "config", "", "declarative YAML file of APIs and clients, applied at start (upsert)")
	fl.StringVar(&f.rootKeyFile, "root-key-file", "", "file holding the base64 root key (else GATEHOUSE_ROOT_KEY)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.DurationVar(&f.jwksMaxAge, "jwks-max-age", 5*time.Minute, "Cache-Control max-age of the JWKS")
	fl.DurationVar(&f.cacheTTL, "client-cache-ttl", 5*time.Second, "how long a client or API key read from the database is reused")
	fl.DurationVar(&f.staleIfError, "stale-if-error", 30*time.Second,
		"how much longer than --client-cache-ttl a cached client or API key is still used while the database is unreachable (0: never)")
	f.keys.register(fl)
	fl.DurationVar(&f.revocationPoll, "revocation-poll", revocation.DefaultPollEvery,
		"how often revocations made through other instances are read: how long a token revoked elsewhere stays valid here")

	// Issuance limits and the audit log.
	fl.DurationVar(&f.auditRetention, "audit-retention", audit.DefaultRetention, "how long audit events are kept (0: for ever)")
	fl.IntVar(&f.authFailuresPerClient, "auth-failures-per-client", limit.DefaultPerClient.Count,
		"failed client authentications a minute per client_id and source address before 429 (0: no limit)")
	fl.IntVar(&f.authFailuresPerAddress, "auth-failures-per-address", limit.DefaultPerSource.Count,
		"failed client authentications a minute per source address, whatever the client_id, before 429 (0: no limit)")
	fl.StringVar(&f.apiKeyPrefix, "api-key-prefix", apikey.DefaultPrefix,
		"prefix of new API keys for organizations that have not chosen one (2-12 lowercase letters and digits)")
	fl.StringSliceVar(&f.trustedProxies, "trusted-proxies", nil,
		"networks (CIDR) of reverse proxies whose X-Forwarded-For gives the caller's address")
}

func (f *serveFlags) logger(w io.Writer) (*slog.Logger, error) {
	return newLogger(w, f.logFormat, f.logLevel)
}

// newLogger returns the logger that --log-format and --log-level describe, writing to w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: use debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: use text or json", format)}
}

// main returns the Main that cmd's flags (or their GATEHOUSE_<FLAG> variables) describe, reading the root key
// from the file flag or GATEHOUSE_ROOT_KEY.
func (f *serveFlags) main(cmd *cobra.Command, stderr io.Writer) (*Main, error) {
	if err := bindEnv(cmd, os.LookupEnv); err != nil {
		return nil, err
	}
	log, err := f.logger(stderr)
	if err != nil {
		return nil, err
	}
	if f.jwksMaxAge < 0 || f.cacheTTL < 0 || f.revocationPoll < 0 || f.staleIfError < 0 {
		return nil, usageError{errors.New("durations must not be negative")}
	}
	if err := f.keys.check(f.jwksMaxAge); err != nil {
		return nil, err
	}
	if f.issuer != "" {
		u, err := url.Parse(f.issuer)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, usageError{fmt.Errorf("--issuer %q: use the server's public URL, e.g. https://auth.example.com/", f.issuer)}
		}
	}
	if err := checkDB(f.db); err != nil {
		return nil, err
	}
	if err := checkRedis(f.redis); err != nil {
		return nil, err
	}
	m := &Main{Addr: f.addr, DB: f.db, Redis: f.redis, IssuerURL: f.issuer, ConfigFile: f.config, JWKSMaxAge: f.jwksMaxAge,
		CacheTTL: f.cacheTTL, StaleIfError: f.staleIfError, Logger: log, Stderr: stderr,
		RotateEvery: f.keys.rotateEvery, PublishAhead: f.keys.publishAhead, KeyRetention: f.keys.retention,
		RevocationPoll: f.revocationPoll}
	if err := f.limits(m); err != nil {
		return nil, err
	}
	if err := apikey.ValidatePrefix("--api-key-prefix", f.apiKeyPrefix); err != nil {
		return nil, usageError{err}
	}
	m.APIKeyPrefix = f.apiKeyPrefix
	if m.RootKey, err = readRootKey(f.rootKeyFile); err != nil {
		return nil, err
	}
	return m, nil
}

// readRootKey reads the root key from file, or else from GATEHOUSE_ROOT_KEY; nil if neither is set.
func readRootKey(file string) (*rootkey.Key, error) {
	switch {
	case file != "":
		return rootkey.ReadFile(file)
	case os.Getenv("GATEHOUSE_ROOT_KEY") != "":
		k, err := rootkey.Parse(os.Getenv("GATEHOUSE_ROOT_KEY"))
		if err != nil {
			return nil, fmt.Errorf("GATEHOUSE_ROOT_KEY: %w", err)
		}
		return k, nil
	}
	return nil, nil
}

// limits sets m's issuance limits and audit retention from the flags.
func (f *serveFlags) limits(m *Main) error {
	if f.auditRetention < 0 || f.authFailuresPerClient < 0 || f.authFailuresPerAddress < 0 {
		return usageError{errors.New("--audit-retention and --auth-failures-* must not be negative")}
	}
	m.AuditRetention = f.auditRetention
	if m.AuditRetention == 0 {
		m.AuditRetention = -1 // for ever
	}
	perMinute := func(n int) limit.Rate {
		if n == 0 {
			return limit.Rate{Count: -1} // no limit
		}
		return limit.Rate{Count: n, Per: time.Minute}
	}
	m.AuthThrottle = limit.ThrottleOptions{PerClient: perMinute(f.authFailuresPerClient), PerSource: perMinute(f.authFailuresPerAddress)}
	for _, s := range f.trustedProxies {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			if ip, ierr := netip.ParseAddr(strings.TrimSpace(s)); ierr == nil {
				p = netip.PrefixFrom(ip, ip.BitLen())
			} else {
				return usageError{fmt.Errorf("--trusted-proxies %q: use CIDRs such as 10.0.0.0/8 or single addresses", s)}
			}
		}
		m.TrustedProxies = append(m.TrustedProxies, p.Masked())
	}
	return nil
}

func newServeCmd(stdout, stderr io.Writer) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the authorization server",
		Long: `Run the authorization server.

Every flag also reads the environment variable GATEHOUSE_<FLAG> (e.g. GATEHOUSE_ADDR, GATEHOUSE_DB).
The root key comes from GATEHOUSE_ROOT_KEY (base64 of 32 random bytes: openssl rand -base64 32) or --root-key-file.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := f.main(cmd, stderr)
			if err != nil {
				return err
			}
			return runMain(cmd.Context(), m)
		},
	}
	f.register(cmd, "sqlite:gatehouse.db")
	return cmd
}

// runMain opens m, serves until ctx ends and closes it.
func runMain(ctx context.Context, m *Main) error {
	if err := m.Open(ctx); err != nil {
		return err
	}
	defer m.Close()
	return m.Serve(ctx)
}
