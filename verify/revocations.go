package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Errors of the revocation check (Config.Revocations).
var (
	// ErrRevoked means the issuer revoked the token: by its jti, or every token of its subject issued before a time.
	ErrRevoked = errors.New("token revoked")
	// ErrRevocationsUnavailable means the check fails closed (RevocationFeed.MaxStale) and the revocation list is
	// older than it allows, or was never fetched. Like ErrJWKSUnavailable, it says nothing about the token.
	ErrRevocationsUnavailable = errors.New("revocation list unavailable")
)

// Defaults and bounds of the revocation feed.
const (
	DefaultRevocationPoll = 30 * time.Second // how often the feed is polled
	MinRevocationPoll     = time.Second
	maxFeedSize           = 32 << 20 // bytes of one feed answer
)

// RevocationFeed configures the optional revocation check: Verify also refuses tokens that the issuer revoked before
// they expired, from a compact feed of revoked token ids (jti) and per-subject cut-off times that the verifier
// polls: Gatehouse's GET /oauth/revocations. Revocation lookups are two map reads on a list held in memory; the
// network is used only by the poll.
//
// The bound: a token revoked at the issuer is refused here within PollInterval of the revocation (plus the time it
// takes the issuer to spread it among its own instances; Gatehouse's --revocation-poll, 5 seconds by default, when
// the revocation was made on another instance than the one polled), once the verifier has the list: Run polls it,
// and without Run, Verify starts a poll in the background when one is due.
//
// When the feed cannot be fetched, the check fails open by default: Verify keeps checking against the last list it
// got, however old, and before the first successful fetch it checks nothing — revocation is then no worse than
// without the feed, and an outage of the issuer does not take the API down. Set MaxStale to fail closed instead.
type RevocationFeed struct {
	// URL is the feed, e.g. "https://auth.example.com/oauth/revocations". It must be https, except on loopback or
	// with AllowInsecureHTTP, since the client secret is sent to it.
	URL string
	// ClientID and ClientSecret authenticate the verifier with HTTP Basic; the client needs the introspect:tokens
	// scope of urn:gatehouse:management.
	ClientID, ClientSecret string
	// PollInterval is how often the feed is polled: DefaultRevocationPoll when zero, at least MinRevocationPoll.
	PollInterval time.Duration
	// MaxStale, when positive, makes the check fail closed: while the last successful fetch is older than MaxStale
	// (or there has been none yet; the first Verify then waits for one), Verify refuses every token with
	// ErrRevocationsUnavailable. Zero fails open (see above).
	MaxStale time.Duration
	// AllowInsecureHTTP allows an http:// URL beyond loopback, for a feed inside a private network.
	AllowInsecureHTTP bool
}

// revocations is the verifier's copy of the revocation list and what keeps it fresh.
type revocations struct {
	cfg     RevocationFeed
	client  *http.Client
	now     func() time.Time
	log     *slog.Logger
	leeway  time.Duration
	running atomic.Int32                  // Runs polling: while any does, Verify does not
	list    atomic.Pointer[revocationSet] // nil until the first successful fetch
	nextTry atomic.Int64                  // Unix ns when a poll is due
	fetches singleflight.Group

	mu       sync.Mutex // guards the fields below, and serializes merges
	cursor   string
	failures int
}

// revocationSet is one version of the list. It is never modified once stored.
type revocationSet struct {
	tokens   map[string]int64         // jti → exp, unix seconds
	subjects map[string]subjectCutoff // by sub
	fetched  time.Time
}

type subjectCutoff struct {
	iatBelow int64 // tokens whose iat is below this are revoked
	exp      int64 // unix seconds: the entry may go once this has passed
}

func newRevocations(cfg RevocationFeed, client *http.Client, now func() time.Time, log *slog.Logger, leeway time.Duration) (*revocations, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("verify: Config.Revocations.URL %q is not an absolute http(s) URL", cfg.URL)
	}
	if u.Scheme == "http" && !cfg.AllowInsecureHTTP && !loopback(u.Hostname()) {
		return nil, fmt.Errorf("verify: Config.Revocations.URL %q is plain http beyond loopback; use https or set AllowInsecureHTTP", cfg.URL)
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("verify: Config.Revocations needs ClientID and ClientSecret")
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultRevocationPoll
	}
	cfg.PollInterval = max(cfg.PollInterval, MinRevocationPoll)
	return &revocations{cfg: cfg, client: client, now: now, log: log, leeway: leeway}, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// check returns ErrRevoked if c is revoked, or ErrRevocationsUnavailable if the check fails closed and the list is
// too old. It blocks only for the first fetch of a list that fails closed.
func (r *revocations) check(ctx context.Context, c *Claims) error {
	s := r.list.Load()
	if r.running.Load() == 0 && !r.now().Before(time.Unix(0, r.nextTry.Load())) {
		r.fetches.DoChan("feed", func() (any, error) { return nil, r.poll(context.Background()) })
	}
	if r.cfg.MaxStale > 0 {
		if s == nil {
			ch := r.fetches.DoChan("feed", func() (any, error) { return nil, r.poll(context.WithoutCancel(ctx)) })
			select {
			case res := <-ch:
				if res.Err != nil {
					return fmt.Errorf("%w: %w", ErrRevocationsUnavailable, res.Err)
				}
			case <-ctx.Done():
				return fmt.Errorf("%w: %w", ErrRevocationsUnavailable, ctx.Err())
			}
			s = r.list.Load()
		}
		if s == nil || r.now().Sub(s.fetched) > r.cfg.MaxStale {
			return fmt.Errorf("%w: no list fetched in the last %s", ErrRevocationsUnavailable, r.cfg.MaxStale)
		}
	}
	if s == nil {
		return nil // failing open, before the first fetch
	}
	if _, ok := s.tokens[c.ID]; ok && c.ID != "" {
		return fmt.Errorf("%w: by its jti", ErrRevoked)
	}
	if cut, ok := s.subjects[c.Subject]; ok && c.IssuedAt.Unix() < cut.iatBelow {
		return fmt.Errorf("%w: every token of its subject issued before %s is", ErrRevoked,
			time.Unix(cut.iatBelow, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// run polls the feed every PollInterval (sooner after a failure, with backoff) until ctx ends.
func (r *revocations) run(ctx context.Context) {
	r.running.Add(1)
	defer r.running.Add(-1)
	for {
		if err := r.poll(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("verify: revocation feed poll failed; keeping the list in use", "url", r.cfg.URL, "err", err)
		}
		wait := time.Unix(0, r.nextTry.Load()).Sub(r.now())
		t := time.NewTimer(max(wait, 10*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// feedAnswer is the feed's JSON.
type feedAnswer struct {
	Cursor string `json:"cursor"`
	Tokens []struct {
		JTI string `json:"jti"`
		Exp int64  `json:"exp"`
	} `json:"revoked_tokens"`
	Subjects []struct {
		Sub          string `json:"sub"`
		IssuedBefore int64  `json:"issued_before"`
		Exp          int64  `json:"exp"`
	} `json:"revoked_subjects"`
}

// poll fetches the revocations since the last cursor and stores a new list with them, without the entries that
// have expired.
func (r *revocations) poll(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ans, err := r.fetch(ctx, r.cursor)
	now := r.now()
	if err != nil {
		r.failures++
		backoff := min(MinRevocationPoll<<min(r.failures-1, 16), r.cfg.PollInterval)
		r.nextTry.Store(now.Add(backoff).UnixNano())
		return err
	}
	r.failures = 0
	prev := r.list.Load()
	expired := now.Add(-r.leeway).Unix()
	next := &revocationSet{tokens: make(map[string]int64), subjects: make(map[string]subjectCutoff), fetched: now}
	if prev != nil {
		for jti, exp := range prev.tokens {
			if exp >= expired {
				next.tokens[jti] = exp
			}
		}
		for sub, c := range prev.subjects {
			if c.exp >= expired {
				next.subjects[sub] = c
			}
		}
	}
	for _, t := range ans.Tokens {
		if t.JTI != "" && t.Exp >= expired {
			next.tokens[t.JTI] = max(t.Exp, next.tokens[t.JTI])
		}
	}
	for _, s := range ans.Subjects {
		if s.Sub == "" || s.Exp < expired {
			continue
		}
		c := next.subjects[s.Sub]
		next.subjects[s.Sub] = subjectCutoff{iatBelow: max(c.iatBelow, s.IssuedBefore), exp: max(c.exp, s.Exp)}
	}
	r.list.Store(next)
	r.cursor = ans.Cursor
	r.nextTry.Store(now.Add(r.cfg.PollInterval).UnixNano())
	return nil
}

// fetch gets the feed's answer since cursor.
func (r *revocations) fetch(ctx context.Context, cursor string) (*feedAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultFetchTimeout)
	defer cancel()
	u := r.cfg.URL
	if cursor != "" {
		u += "?since=" + url.QueryEscape(cursor)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(r.cfg.ClientID), url.QueryEscape(r.cfg.ClientSecret))
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the revocation feed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("fetch the revocation feed: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFeedSize+1))
	if err != nil {
		return nil, fmt.Errorf("read the revocation feed: %w", err)
	}
	if len(body) > maxFeedSize {
		return nil, fmt.Errorf("the revocation feed is larger than %d bytes", maxFeedSize)
	}
	var ans feedAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("the revocation feed: %w", err)
	}
	return &ans, nil
}
