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
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/proxy"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/tokencache"
	"github.com/gatehouse/gatehouse/tokencache/rediscache"
)

// ProxyMain is the wiring of `gatehouse proxy`, in the order it happens. End-to-end tests use it to run the real
// thing.
type ProxyMain struct {
	Addr        string // listen address; ":0" picks a free port
	Upstream    string // the upstream token endpoint
	Insecure    bool   // allow an http:// upstream beyond loopback
	RedisURL    string // redis://… or rediss://… to share the cache between instances; "" keeps it in memory
	RedisPrefix string // key prefix in Redis; "" means rediscache's default
	MaxKeys     int    // cache keys held in memory; 0 means proxy.DefaultMaxSources
	Logger      *slog.Logger

	Proxy    *proxy.Proxy
	URL      string // the base URL the proxy listens on, known after Open
	redis    *redis.Client
	listener net.Listener
	http     *http.Server
}

// Open connects to Redis (if configured), builds the proxy and starts listening. Close undoes it. Redis being
// down is not an error: the proxy logs it and serves from memory and the upstream until Redis answers.
func (m *ProxyMain) Open(ctx context.Context) (err error) {
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	var cache tokencache.Cache
	if m.RedisURL != "" {
		opts, err := redis.ParseURL(m.RedisURL)
		if err != nil {
			// Not the parser's message: it may quote the URL, and with it a password.
			return usageError{errors.New("--redis: use redis://[[USER]:PASSWORD@]HOST:PORT/DB or rediss://…")}
		}
		m.redis = redis.NewClient(opts)
		redis.SetLogger(redisLogger{m.Logger})
		pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := m.redis.Ping(pingCtx).Err(); err != nil {
			m.Logger.Warn("redis does not answer; serving from memory and the upstream until it does", "redis", opts.Addr, "err", err)
		}
		cancel()
		cache = rediscache.New(m.redis, rediscache.Options{Prefix: m.RedisPrefix})
	}
	m.Proxy, err = proxy.New(proxy.Config{Upstream: m.Upstream, InsecureUpstream: m.Insecure, Cache: cache, MaxSources: m.MaxKeys, Logger: m.Logger})
	if err != nil {
		return usageError{fmt.Errorf("--upstream: %w", err)}
	}
	if m.listener, err = net.Listen("tcp", m.Addr); err != nil {
		return err
	}
	m.URL = "http://" + hostPort(m.listener.Addr().String())
	m.http = server.NewHTTPServer(m.Addr, m.Proxy.Handler(), m.Logger)
	return nil
}

// Serve serves HTTP until ctx ends, then shuts down gracefully: in-flight requests finish (up to 15 s).
func (m *ProxyMain) Serve(ctx context.Context) error {
	cache := "memory"
	if m.redis != nil {
		cache = "redis " + m.redis.Options().Addr // never the URL: it may hold a password
	}
	m.Logger.Info("gatehouse proxy serving", "addr", m.listener.Addr().String(), "upstream", m.Upstream, "cache", cache)
	return serveHTTP(ctx, m.http, m.listener)
}

// Close releases what Open acquired.
func (m *ProxyMain) Close() error {
	if m.listener != nil {
		m.listener.Close()
	}
	if m.redis != nil {
		return m.redis.Close()
	}
	return nil
}

// redisLogger sends go-redis's own messages (such as failed dials) to the proxy's log.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...), "component", "redis")
}

// proxyFlags are the flags of gatehouse proxy. Each also reads GATEHOUSE_<FLAG>.
type proxyFlags struct {
	addr, upstream, redis, redisPrefix string
	insecure                           bool
	logFormat, logLevel                string
	maxKeys                            int
}

func newProxyCmd(stdout, stderr io.Writer) *cobra.Command {
	var f proxyFlags
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run a caching token endpoint in front of Auth0, Cognito, Okta or Gatehouse",
		Long: `Run a caching token endpoint for programs in any language: point a program's token URL at the proxy
(http://<addr>/oauth/token or /oauth2/token) and change nothing else.

Client-credentials requests are answered from the cache when a token for the same client_id, client secret,
audience, resource and scopes is there, with expires_in cut to the time left; otherwise they are forwarded to
--upstream in the shape the program used (JSON or form, HTTP Basic or body credentials) and the answer is cached.
A cached token goes only to a caller presenting the same secret. Upstream errors are passed through, never cached.
Other grant types are refused (unsupported_grant_type): send them to the upstream directly.

With --redis, proxy instances (and Go services using tokencache with rediscache) share tokens: one instance
fetches while the others wait for its result. Tokens in Redis are encrypted with a key derived from the client
secret. If Redis is down the proxy carries on with its memory and the upstream.

GET /metrics serves Prometheus metrics (requests by result, cache hits, upstream requests and upstream requests
saved); GET /healthz answers while the process lives.

Every flag also reads the environment variable GATEHOUSE_<FLAG> (e.g. GATEHOUSE_UPSTREAM, GATEHOUSE_REDIS).
Examples:
  gatehouse proxy --upstream https://TENANT.auth0.com/oauth/token
  gatehouse proxy --upstream https://DOMAIN.auth.us-east-1.amazoncognito.com/oauth2/token --redis redis://redis:6379/0`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd, os.LookupEnv); err != nil {
				return err
			}
			m, err := f.main(stderr)
			if err != nil {
				return err
			}
			if err := m.Open(cmd.Context()); err != nil {
				return err
			}
			defer m.Close()
			return m.Serve(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.upstream, "upstream", "", "the upstream token endpoint URL (required), e.g. https://TENANT.auth0.com/oauth/token")
	fl.BoolVar(&f.insecure, "insecure-upstream", false, "allow an http:// upstream on a non-loopback host (secrets cross the network in the clear)")
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8081", "address to listen on")
	fl.StringVar(&f.redis, "redis", "", "Redis URL (redis://[:PASSWORD@]HOST:PORT/DB or rediss://…) to share the cache between instances")
	fl.StringVar(&f.redisPrefix, "redis-prefix", "", "prefix of the proxy's keys in Redis (default gatehouse:tokencache:, shared with tokencache)")
	fl.IntVar(&f.maxKeys, "max-keys", proxy.DefaultMaxSources, "cache keys (client, secret, audience, scopes) held in memory; the least recently used go first")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// main returns the ProxyMain these flags describe.
func (f *proxyFlags) main(stderr io.Writer) (*ProxyMain, error) {
	log, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return nil, err
	}
	if f.upstream == "" {
		return nil, usageError{errors.New("--upstream (or GATEHOUSE_UPSTREAM) is required: the token endpoint to forward to")}
	}
	if u, err := url.Parse(f.upstream); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, usageError{fmt.Errorf("--upstream %q is not an http(s) URL", f.upstream)}
	}
	if f.maxKeys < 1 {
		return nil, usageError{fmt.Errorf("--max-keys %d: must be at least 1", f.maxKeys)}
	}
	return &ProxyMain{Addr: f.addr, Upstream: f.upstream, Insecure: f.insecure, RedisURL: f.redis, RedisPrefix: f.redisPrefix, MaxKeys: f.maxKeys, Logger: log}, nil
}
