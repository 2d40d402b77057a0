// Package proxy is `gatehouse proxy`: a caching token endpoint in front of any OAuth 2.0 token endpoint (Auth0,
// Amazon Cognito, Okta, Gatehouse), for programs in any language. A program points its token URL at the proxy and
// changes nothing else.
//
// The proxy answers POST /oauth/token and /oauth2/token. A client-credentials request is answered from the cache
// when a token for the same upstream, client_id, client secret, audience, resource and scopes is there; otherwise
// it is forwarded to the upstream in the shape the caller used (JSON stays JSON, Basic stays Basic) and a
// successful answer is cached. Answers are the upstream's JSON with expires_in cut to the whole seconds actually
// left. Each cache key has a tokencache.Source (refresh ahead, one fetch for concurrent callers, sharing through
// Redis when Config.Cache is a rediscache.Cache); the Sources live in a bounded LRU.
//
// A cached token is returned only to a caller presenting the same client secret: the cache key includes the
// secret's fingerprint, and the fingerprint stored with the Source is compared in constant time before any
// token is returned. A caller with a wrong secret misses, is forwarded, and gets the upstream's refusal.
// Upstream errors are passed through (status, body and headers) and never cached. Other grant types are refused
// with unsupported_grant_type: the proxy does not relay requests it does not cache.
package proxy

import (
	"container/list"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse/gatehouse/internal/accesslog"
	"github.com/gatehouse/gatehouse/tokencache"
)

// DefaultMaxSources is the default bound on the number of cache keys held at once.
const DefaultMaxSources = 10_000

// Config is what a Proxy needs. Upstream is required.
type Config struct {
	// Upstream is the token endpoint requests are forwarded to, e.g. https://TENANT.auth0.com/oauth/token or
	// https://DOMAIN.auth.REGION.amazoncognito.com/oauth2/token: https, or http on a loopback address (or anywhere
	// with InsecureUpstream).
	Upstream string
	// InsecureUpstream permits an http:// Upstream on any host (tokencache.Config.AllowInsecureHTTP).
	InsecureUpstream bool
	// Cache, if not nil, shares tokens with other proxy instances (and tokencache Sources) through it: a
	// rediscache.Cache. Without it each instance caches in its own memory.
	Cache tokencache.Cache
	// HTTPClient sends requests to the upstream; nil means a client with pooled keep-alive connections.
	HTTPClient *http.Client
	// MaxSources bounds the cache keys held in memory (least recently used go first); 0 means DefaultMaxSources.
	MaxSources int
	// Logger receives one line per request (never a secret or a token); nil discards.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now. For tests.
	Now func() time.Time
}

// Proxy is the caching token endpoint. It is safe for concurrent use.
type Proxy struct {
	upstream string
	insecure bool // http:// upstreams beyond loopback are allowed
	cache    tokencache.Cache
	client   *http.Client
	log      *slog.Logger
	now      func() time.Time
	metrics  *metrics

	mu      sync.Mutex
	max     int
	entries map[string]*list.Element // of *entry
	lru     list.List                // front: most recently used
}

// entry is one cache key's Source.
type entry struct {
	key         string
	fingerprint []byte // tokencache.Fingerprint of the client secret
	src         *tokencache.Source
	// fetched counts successful upstream fetches not yet charged to an answer: the next answer pays for one (a
	// miss); answers that find none cost no upstream call (a hit).
	fetched   atomic.Int64
	errHeader atomic.Pointer[http.Header] // headers of the last failed upstream answer
	rendered  atomic.Pointer[rendered]    // the current token's answer, minus expires_in
}

// New returns a Proxy for cfg. It makes no request.
func New(cfg Config) (*Proxy, error) {
	// Check the upstream as tokencache will, so that a bad URL stops the proxy at start rather than per request.
	if _, err := tokencache.New(tokencache.Config{TokenURL: cfg.Upstream, ClientID: "check", ClientSecret: "check", AllowInsecureHTTP: cfg.InsecureUpstream}); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	p := &Proxy{
		upstream: cfg.Upstream,
		insecure: cfg.InsecureUpstream,
		cache:    cfg.Cache,
		client:   cfg.HTTPClient,
		log:      cfg.Logger,
		now:      cfg.Now,
		max:      cfg.MaxSources,
		entries:  map[string]*list.Element{},
		metrics:  newMetrics(),
	}
	if p.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		p.client = &http.Client{Transport: t}
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.max <= 0 {
		p.max = DefaultMaxSources
	}
	return p, nil
}

// Handler returns the proxy's routes: the token endpoint at /oauth/token and /oauth2/token, GET /healthz and
// GET /metrics (Prometheus), with one log line per request.
func (p *Proxy) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/oauth/token", p.handleToken)
	mux.HandleFunc("/oauth2/token", p.handleToken)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.metrics.registry, promhttp.HandlerOpts{}))
	return accesslog.Handler(p.log, mux)
}

// Request results, the values of the result label of gatehouse_proxy_requests_total.
const (
	resultHit           = "hit"            // a token, without an upstream call of its own
	resultMiss          = "miss"           // a token, paid for by an upstream call
	resultUpstreamError = "upstream_error" // the upstream's refusal, passed through
	resultUnavailable   = "unavailable"    // the upstream could not be reached or answered nonsense
	resultRefused       = "refused"        // refused by the proxy: not a valid client-credentials request
	resultCanceled      = "canceled"       // the caller went away
)

func (p *Proxy) handleToken(w http.ResponseWriter, r *http.Request) {
	info := accesslog.From(r.Context())
	req, oerr := parseRequest(w, r)
	if oerr != nil {
		info.Result, info.Error = resultRefused, oerr.code
		p.metrics.requests.WithLabelValues(resultRefused).Inc()
		writeOAuthError(w, oerr)
		return
	}
	info.ClientID = req.clientID

	cfg := tokencache.Config{
		TokenURL: p.upstream, ClientID: req.clientID, ClientSecret: req.clientSecret,
		Audience: req.audience, Resource: req.resource, Scopes: req.scopes,
		AuthStyle: tokencache.AuthBody, JSONBody: req.json,
		Cache: p.cache, Now: p.now, AllowInsecureHTTP: p.insecure,
	}
	if req.basic {
		cfg.AuthStyle = tokencache.AuthBasic
	}
	e, err := p.entry(cfg)
	if err != nil {
		p.log.Error("create token source", "err", err)
		p.unavailable(w, info)
		return
	}
	tok, err := e.src.Token(r.Context())
	if err != nil {
		if r.Context().Err() == nil {
			// Nothing valid is cached for this key: forget it, so that the next request goes upstream afresh
			// and a caller with a wrong secret leaves nothing behind.
			p.drop(e)
		}
		p.tokenError(w, r, e, err, info)
		return
	}
	result := resultHit
	if e.charge() {
		result = resultMiss
	}
	info.Result = result
	p.metrics.requests.WithLabelValues(result).Inc()
	if result == resultHit {
		p.metrics.hits.Inc()
		p.metrics.saved.Inc()
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.Write(e.answer(tok, p.now()))
}

// entry returns the Source for cfg's cache key, creating it (and evicting the least recently used) if needed.
// The key includes the secret's fingerprint; the fingerprint stored with the Source is compared again, in
// constant time, so that a token is never handed to a caller with another secret.
func (p *Proxy) entry(cfg tokencache.Config) (*entry, error) {
	key := cfg.CacheKey()
	fp := tokencache.Fingerprint(cfg.ClientSecret)
	p.mu.Lock()
	if el, ok := p.entries[key]; ok {
		e := el.Value.(*entry)
		if subtle.ConstantTimeCompare(e.fingerprint, fp) == 1 {
			p.lru.MoveToFront(el)
			p.mu.Unlock()
			return e, nil
		}
		// Only a hash collision gets here: replace the entry rather than use it.
		p.lru.Remove(el)
		delete(p.entries, key)
	}
	p.mu.Unlock()

	e := &entry{key: key, fingerprint: fp}
	cfg.HTTPClient = &http.Client{Transport: &recordErrors{base: p.client.Transport, e: e}, Timeout: p.client.Timeout}
	cfg.Hooks = tokencache.Hooks{
		Fetch: func(_ time.Duration, err error) {
			p.metrics.upstream.Inc()
			if err == nil {
				e.fetched.Add(1)
			}
		},
		CacheError: func(err error) {
			p.metrics.cacheErrors.Inc()
			p.log.Warn("shared cache failed; serving without it", "err", err)
		},
	}
	src, err := tokencache.New(cfg)
	if err != nil {
		return nil, err
	}
	e.src = src

	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.entries[key]; ok { // another request created it meanwhile: use that one
		if e2 := el.Value.(*entry); subtle.ConstantTimeCompare(e2.fingerprint, fp) == 1 {
			p.lru.MoveToFront(el)
			return e2, nil
		}
		p.lru.Remove(el)
	}
	p.entries[key] = p.lru.PushFront(e)
	for p.lru.Len() > p.max {
		oldest := p.lru.Back()
		p.lru.Remove(oldest)
		delete(p.entries, oldest.Value.(*entry).key)
	}
	return e, nil
}

// charge takes one upstream fetch not yet charged to an answer, and reports whether there was one: the answer
// being written is then a miss, else a hit. Each successful fetch is charged to exactly one answer, so the hits
// are exactly the answers that cost no upstream call: concurrent callers collapsed into one fetch count one miss
// and the rest hits, and a background refresh is charged to the next answer.
func (e *entry) charge() bool {
	for {
		n := e.fetched.Load()
		if n <= 0 {
			return false
		}
		if e.fetched.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// drop removes e from the LRU if it is still there.
func (p *Proxy) drop(e *entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.entries[e.key]; ok && el.Value.(*entry) == e {
		p.lru.Remove(el)
		delete(p.entries, e.key)
	}
}

// tokenError answers a failed Token call: the upstream's own answer when it refused, 502 when it could not be
// reached or answered nonsense.
func (p *Proxy) tokenError(w http.ResponseWriter, r *http.Request, e *entry, err error, info *accesslog.Info) {
	var re *tokencache.RetrieveError
	switch {
	case errors.As(err, &re):
		info.Result, info.Error = resultUpstreamError, truncate(re.ErrorCode, 64)
		p.metrics.requests.WithLabelValues(resultUpstreamError).Inc()
		h := w.Header()
		if up := e.errHeader.Load(); up != nil {
			for k, vs := range *up {
				if !dropHeaders[k] {
					h[k] = vs
				}
			}
		}
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "application/json")
		}
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(re.StatusCode)
		w.Write(re.Body)
	case r.Context().Err() != nil:
		info.Result = resultCanceled
		p.metrics.requests.WithLabelValues(resultCanceled).Inc()
	default:
		p.log.Warn("upstream token request failed", "err", err, "client_id", info.ClientID)
		p.unavailable(w, info)
	}
}

func (p *Proxy) unavailable(w http.ResponseWriter, info *accesslog.Info) {
	info.Result, info.Error = resultUnavailable, "temporarily_unavailable"
	p.metrics.requests.WithLabelValues(resultUnavailable).Inc()
	w.Header().Set("Retry-After", "1")
	writeOAuthError(w, &oauthError{status: http.StatusBadGateway, code: "temporarily_unavailable",
		description: "the upstream token endpoint could not be reached or gave an unusable answer; retry shortly"})
}

// dropHeaders are the upstream response headers not passed on: hop-by-hop ones, those that describe the
// upstream's encoding of the body (it was decoded), and cookies of the upstream's origin.
var dropHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true, "Content-Encoding": true,
	"Date": true, "Set-Cookie": true,
}

// recordErrors keeps the headers of the upstream's failed answers for e, so that they can be passed on with the
// status and body tokencache reports. A Source runs one fetch at a time, so the last one is the one that failed.
type recordErrors struct {
	base http.RoundTripper
	e    *entry
}

func (t *recordErrors) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err == nil && resp.StatusCode != http.StatusOK {
		h := resp.Header.Clone()
		t.e.errHeader.Store(&h)
	}
	return resp, err
}

// rendered is a token's JSON answer without expires_in, which changes every second.
type rendered struct {
	tok  *tokencache.Token
	rest []byte // the JSON object's members after expires_in, with the closing brace: `,"access_token":…}` or `}`
}

// answer returns the upstream's JSON answer for tok with expires_in set to the whole seconds left at now (at
// least 1: to many clients 0 means "never expires").
func (e *entry) answer(tok *tokencache.Token, now time.Time) []byte {
	r := e.rendered.Load()
	if r == nil || r.tok != tok {
		r = &rendered{tok: tok, rest: render(tok)}
		e.rendered.Store(r)
	}
	left := max(int64(tok.Expiry.Sub(now)/time.Second), 1)
	b := make([]byte, 0, len(`{"expires_in":`)+20+len(r.rest)+1)
	b = append(b, `{"expires_in":`...)
	b = strconv.AppendInt(b, left, 10)
	b = append(b, r.rest...)
	return append(b, '\n')
}

// metrics are the proxy's Prometheus metrics, in a registry of its own.
type metrics struct {
	registry    *prometheus.Registry
	requests    *prometheus.CounterVec
	hits        prometheus.Counter
	upstream    prometheus.Counter
	saved       prometheus.Counter
	cacheErrors prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_proxy_requests_total",
			Help: "Token requests, by result: hit (a token without an upstream call of its own), miss (a token paid for by an upstream call), upstream_error (the upstream's refusal, passed through), unavailable (the upstream could not be reached), refused (not a valid client-credentials request), canceled.",
		}, []string{"result"}),
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_proxy_cache_hits_total",
			Help: "Token requests answered from the cache (this instance's memory or the shared Redis, or a fetch another request started) without an upstream call of their own.",
		}),
		upstream: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_proxy_upstream_requests_total",
			Help: "Requests sent to the upstream token endpoint, including refreshes ahead of expiry and failed ones.",
		}),
		saved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_proxy_upstream_requests_saved_total",
			Help: "Upstream token requests the cache saved: every hit is one request (and, with per-token billing, one token) the caller would otherwise have sent upstream.",
		}),
		cacheErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_proxy_shared_cache_errors_total",
			Help: "Failed calls to the shared cache (Redis); the proxy carries on without it.",
		}),
	}
	for _, r := range []string{resultHit, resultMiss, resultUpstreamError, resultUnavailable, resultRefused, resultCanceled} {
		m.requests.WithLabelValues(r) // export every result from the start, at 0
	}
	m.registry.MustRegister(m.requests, m.hits, m.upstream, m.saved, m.cacheErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
