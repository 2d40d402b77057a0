// Package revocation keeps the list of revoked access tokens: single tokens by jti (RFC 7009), and every token of
// a subject issued before a cut-off time. The list lives in the store, shared by every instance, and in memory,
// so that checking a token costs two map lookups and no database read.
//
// A revocation made through a List is in its memory before the call returns. Revocations made through other
// instances are read by Run every PollEvery (5 seconds by default): that bounds how long a token revoked elsewhere
// stays valid here. Records are pruned, from memory and the store, once the tokens they revoke have expired.
package revocation

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// Defaults and bounds.
const (
	// DefaultPollEvery is how often Run reads the revocations other instances made.
	DefaultPollEvery = 5 * time.Second
	// DefaultPruneEvery is how often Run deletes the records of expired tokens.
	DefaultPruneEvery = 10 * time.Minute
	// Leeway is how long a record outlives the tokens it revokes: verifiers accept a token a little past its exp.
	Leeway = 5 * time.Minute
	// pollOverlap is how far before the previous poll each poll reads again, so that a revocation stamped by a clock
	// running up to this much behind, or committed this much after it was stamped, is not missed.
	pollOverlap = time.Minute
)

// Options configure a List.
type Options struct {
	Now        func() time.Time // time.Now when nil
	PollEvery  time.Duration    // DefaultPollEvery when zero or less
	PruneEvery time.Duration    // DefaultPruneEvery when zero or less
	Logger     *slog.Logger     // slog.Default() when nil
}

// List is the revocation list. It is safe for concurrent use.
type List struct {
	store      auth.LifecycleStore
	now        func() time.Time
	pollEvery  time.Duration
	pruneEvery time.Duration
	log        *slog.Logger

	pollMu sync.Mutex // serializes reads from the store
	cursor time.Time  // the start of the last successful read; zero before the first; guarded by pollMu

	mu       sync.RWMutex
	tokens   map[string]tokenEntry  // by jti
	subjects map[string]cutoffEntry // by subject
}

type tokenEntry struct {
	exp  time.Time
	seen time.Time // when this instance learned of it
}

type cutoffEntry struct {
	before   time.Time // IssuedBefore
	iatBelow int64     // IatBelow(before)
	exp      time.Time
	seen     time.Time
}

// IatBelow returns the iat, in unix seconds, below which a cut-off at t revokes tokens. iat counts whole seconds, so
// a token issued in the cut-off's second, before or after it, counts as revoked.
func IatBelow(t time.Time) int64 { return t.Unix() + 1 }

// New returns an empty List on store. Load fills it.
func New(store auth.LifecycleStore, opts Options) *List {
	l := &List{
		store:      store,
		now:        opts.Now,
		pollEvery:  opts.PollEvery,
		pruneEvery: opts.PruneEvery,
		log:        cmp.Or(opts.Logger, slog.Default()),
		tokens:     make(map[string]tokenEntry),
		subjects:   make(map[string]cutoffEntry),
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.pollEvery <= 0 {
		l.pollEvery = DefaultPollEvery
	}
	if l.pruneEvery <= 0 {
		l.pruneEvery = DefaultPruneEvery
	}
	return l
}

// PollEvery is how often Run reads revocations made through other instances.
func (l *List) PollEvery() time.Duration { return l.pollEvery }

// Revoked reports whether the token with this jti, subject and iat (unix seconds) is revoked: its jti is, or its
// subject has a cut-off in or after the second it was issued in (see IatBelow). It reads memory only.
func (l *List) Revoked(jti, sub string, iat int64) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if _, ok := l.tokens[jti]; ok && jti != "" {
		return true
	}
	c, ok := l.subjects[sub]
	return ok && iat < c.iatBelow
}

// RevokeToken revokes the token with this jti, which expires at exp. Revoking a token twice is not an error.
func (l *List) RevokeToken(ctx context.Context, jti string, exp time.Time) error {
	if jti == "" {
		return errors.New("revoke token: no jti")
	}
	now := l.now()
	if err := l.store.RevokeToken(ctx, auth.RevokedToken{JTI: jti, ExpiresAt: exp, RevokedAt: now}); err != nil {
		return err
	}
	l.mu.Lock()
	l.addToken(jti, exp, now)
	l.mu.Unlock()
	return nil
}

// RevokeSubject revokes every token of subject (the sub claim) issued before issuedBefore. A subject's cut-off only
// moves forward: an earlier one than it has changes nothing. The record is kept until the last token it may revoke
// has expired: auth.MaxTokenLifetime after issuedBefore.
func (l *List) RevokeSubject(ctx context.Context, subject string, issuedBefore time.Time) error {
	if subject == "" {
		return errors.New("revoke subject: no subject")
	}
	now := l.now()
	c := auth.SubjectCutoff{Subject: subject, IssuedBefore: issuedBefore, ExpiresAt: issuedBefore.Add(auth.MaxTokenLifetime), UpdatedAt: now}
	if err := l.store.RevokeSubject(ctx, c); err != nil {
		return err
	}
	l.mu.Lock()
	l.addCutoff(c, now)
	l.mu.Unlock()
	return nil
}

// addToken and addCutoff add a record to memory, seen at seen. They are called with mu held.
func (l *List) addToken(jti string, exp, seen time.Time) {
	if _, ok := l.tokens[jti]; !ok {
		l.tokens[jti] = tokenEntry{exp: exp, seen: seen}
	}
}

func (l *List) addCutoff(c auth.SubjectCutoff, seen time.Time) {
	e, ok := l.subjects[c.Subject]
	if ok && !e.before.Before(c.IssuedBefore) && !e.exp.Before(c.ExpiresAt) {
		return // nothing new
	}
	if ok && e.before.After(c.IssuedBefore) {
		c.IssuedBefore = e.before
	}
	if ok && e.exp.After(c.ExpiresAt) {
		c.ExpiresAt = e.exp
	}
	l.subjects[c.Subject] = cutoffEntry{before: c.IssuedBefore, iatBelow: IatBelow(c.IssuedBefore), exp: c.ExpiresAt, seen: seen}
}

// Load reads every revocation from the store into memory. Call it once before serving; Run keeps the list up to
// date after that.
func (l *List) Load(ctx context.Context) error { return l.Poll(ctx) }

// Poll reads the revocations made since the last read (every one, the first time) into memory.
func (l *List) Poll(ctx context.Context) error {
	l.pollMu.Lock()
	defer l.pollMu.Unlock()
	start := l.now()
	var since time.Time
	if !l.cursor.IsZero() {
		since = l.cursor.Add(-pollOverlap)
	}
	tokens, cutoffs, err := l.store.ListRevocations(ctx, since)
	if err != nil {
		return fmt.Errorf("read revocations: %w", err)
	}
	expired := start.Add(-Leeway)
	l.mu.Lock()
	for _, r := range tokens {
		if r.ExpiresAt.After(expired) {
			l.addToken(r.JTI, r.ExpiresAt, start)
		}
	}
	for _, c := range cutoffs {
		if c.ExpiresAt.After(expired) {
			l.addCutoff(c, start)
		}
	}
	l.mu.Unlock()
	l.cursor = start
	return nil
}

// Prune forgets, in memory and in the store, the revocations of tokens that expired more than Leeway ago.
func (l *List) Prune(ctx context.Context) error {
	expired := l.now().Add(-Leeway)
	l.mu.Lock()
	for jti, e := range l.tokens {
		if !e.exp.After(expired) {
			delete(l.tokens, jti)
		}
	}
	for sub, e := range l.subjects {
		if !e.exp.After(expired) {
			delete(l.subjects, sub)
		}
	}
	l.mu.Unlock()
	n, err := l.store.PruneRevocations(ctx, expired)
	if err != nil {
		return err
	}
	if n > 0 {
		l.log.Info("revocations of expired tokens pruned", "records", n)
	}
	return nil
}

// Run reads the revocations other instances made every PollEvery, and prunes expired ones every PruneEvery, until
// ctx ends; then it returns nil. Failures are logged, and the list in memory is kept.
func (l *List) Run(ctx context.Context) error {
	poll := time.NewTicker(l.pollEvery)
	defer poll.Stop()
	prune := time.NewTicker(l.pruneEvery)
	defer prune.Stop()
	for {
		var (
			what string
			f    func(context.Context) error
		)
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			what, f = "read revocations", l.Poll
		case <-prune.C:
			what, f = "prune revocations", l.Prune
		}
		stepCtx, cancel := context.WithTimeout(ctx, max(l.pollEvery, 10*time.Second))
		err := f(stepCtx)
		cancel()
		if err != nil && ctx.Err() == nil {
			l.log.Error(what+" failed; keeping the list in memory", "err", err)
		}
	}
}

// Changes returns the unexpired revocations this instance learned of after since, less FeedOverlap (every one for
// the zero time), and the time to pass as since next: the revocation feed of verifiers. Asking again with the
// returned cursor misses nothing that this instance, or another one asked with it, learned in between (within
// FeedOverlap); a revocation may be returned more than once.
func (l *List) Changes(since time.Time) (tokens []auth.RevokedToken, cutoffs []auth.SubjectCutoff, cursor time.Time) {
	now := l.now()
	expired := now.Add(-Leeway)
	if !since.IsZero() {
		since = since.Add(-l.FeedOverlap())
	}
	tokens, cutoffs = []auth.RevokedToken{}, []auth.SubjectCutoff{}
	l.mu.RLock()
	defer l.mu.RUnlock()
	for jti, e := range l.tokens {
		if e.seen.After(since) && e.exp.After(expired) {
			tokens = append(tokens, auth.RevokedToken{JTI: jti, ExpiresAt: e.exp})
		}
	}
	for sub, e := range l.subjects {
		if e.seen.After(since) && e.exp.After(expired) {
			cutoffs = append(cutoffs, auth.SubjectCutoff{Subject: sub, IssuedBefore: e.before, ExpiresAt: e.exp})
		}
	}
	return tokens, cutoffs, now
}

// FeedOverlap is how far before a feed cursor Changes looks: long enough for a revocation made on another
// instance to reach this one (PollEvery, plus the overlap of each poll for clock skew and slow commits).
func (l *List) FeedOverlap() time.Duration { return l.pollEvery + pollOverlap }
