// Package audit records Gatehouse's audit log. Management changes are written as they are made (Record); security
// events — failed client authentication, rate-limit refusals — are buffered, coalesced and written in batches by
// Run (Security), so the token endpoint never waits on the database, not even while it is flooded. Run also
// removes events older than the retention.
//
// Events never hold a secret. Details are a JSON object whose keys are checked against a denylist of names that
// hold secrets (see Forbidden): in a test binary a forbidden key panics, so the mistake is found in review; in
// production it is removed and logged, and the event is still recorded.
package audit

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// Security event actions. Management actions are named by their callers ("client.create", …).
const (
	// ActionAuthFailure: a client authentication failed. Details: "reason".
	ActionAuthFailure = "auth.failure"
	// ActionRateLimited: a token request was refused with 429. Details: "limit", and "rate" for a client's limit.
	ActionRateLimited = "token.rate_limited"
	// ActionAPIKeyFailure: an API key presented for exchange was refused. Details: "reason" (malformed,
	// not_found, expired, disabled); never the key.
	ActionAPIKeyFailure = "apikey.failure"
	// ActionDropped: security events were dropped because the buffer was full. Details: "count".
	ActionDropped = "audit.dropped"
)

// Defaults of Options.
const (
	DefaultRetention  = 90 * 24 * time.Hour
	DefaultFlushEvery = time.Second
	DefaultPruneEvery = time.Hour
	DefaultBuffer     = 10_000
)

// Options configure a Recorder. Zero values take the defaults.
type Options struct {
	// Retention is how long events are kept: Run removes older ones. Default DefaultRetention (90 days); negative
	// keeps every event.
	Retention time.Duration
	// FlushEvery is how often Run writes the buffered security events. Default DefaultFlushEvery.
	FlushEvery time.Duration
	// PruneEvery is how often Run removes events older than Retention. Default DefaultPruneEvery.
	PruneEvery time.Duration
	// Buffer is how many distinct security events may wait to be written; more are dropped and counted, and the
	// count is recorded as an audit.dropped event. Default DefaultBuffer.
	Buffer int
	Now    func() time.Time // default time.Now
	Logger *slog.Logger
}

// Recorder records audit events in an auth.AuditStore. It is safe for concurrent use. A nil *Recorder records
// nothing, so callers need not check.
type Recorder struct {
	store      auth.AuditStore
	retention  time.Duration
	flushEvery time.Duration
	pruneEvery time.Duration
	buffer     int
	now        func() time.Time
	log        *slog.Logger
	ids        idGen

	mu      sync.Mutex
	pending map[string]*pendingEvent // by coalescing key
	order   []*pendingEvent          // in the order they came, which is ID order
	dropped int64

	flushMu sync.Mutex         // one Flush at a time
	retry   []*auth.AuditEvent // a batch whose write failed, written again with the next; guarded by flushMu
}

// pendingEvent is a security event waiting to be written, with how many identical ones it stands for.
type pendingEvent struct {
	e     *auth.AuditEvent
	count int
	last  time.Time
}

// New returns a Recorder writing to store.
func New(store auth.AuditStore, o Options) *Recorder {
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = DefaultFlushEvery
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = DefaultPruneEvery
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Recorder{
		store: store, retention: o.Retention, flushEvery: o.FlushEvery, pruneEvery: o.PruneEvery, buffer: o.Buffer,
		now: o.Now, log: o.Logger, pending: make(map[string]*pendingEvent),
	}
}

// Record writes a management change now and returns the store's error. It sets e.Time (to now) and e.ID when
// they are empty, and removes forbidden keys from e.Details (in a test binary it panics on one instead).
func (r *Recorder) Record(ctx context.Context, e *auth.AuditEvent) error {
	if r == nil {
		return nil
	}
	if e.Time.IsZero() {
		e.Time = r.now()
	}
	if e.ID == "" {
		e.ID = r.ids.next(e.Time)
	}
	e.Details = r.clean(e.Action, e.Details)
	if err := r.store.AppendAuditEvents(ctx, []*auth.AuditEvent{e}); err != nil {
		return fmt.Errorf("record %s: %w", e.Action, err)
	}
	return nil
}

// Security takes a security event to be written by Run within about FlushEvery. It never blocks on the store:
// an event identical to one still waiting (same Action, Actor, Resource, OrgID, Address and Details) only adds
// to its count, written as "count" (and the time of the last as "last") in Details; when Buffer distinct events
// are waiting, the event is dropped and counted. Like Record it fills in Time and ID and checks Details. e is
// copied: the caller may reuse it.
func (r *Recorder) Security(e *auth.AuditEvent) {
	if r == nil {
		return
	}
	ev := *e
	if ev.Time.IsZero() {
		ev.Time = r.now()
	}
	ev.Details = r.clean(ev.Action, ev.Details)
	key := strings.Join([]string{ev.Action, ev.Actor, ev.Resource, ev.OrgID, ev.Address, string(ev.Details)}, "\x00")
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.pending[key]; p != nil {
		p.count++
		if ev.Time.After(p.last) {
			p.last = ev.Time
		}
		return
	}
	if len(r.pending) >= r.buffer {
		r.dropped++
		return
	}
	if ev.ID == "" {
		ev.ID = r.ids.next(ev.Time)
	}
	p := &pendingEvent{e: &ev, count: 1, last: ev.Time}
	r.pending[key] = p
	r.order = append(r.order, p)
}

// Flush writes the buffered security events now, with any batch whose write failed before. Run calls it every
// FlushEvery and once more when it ends; tests call it to see events at once. On a store error other than
// ErrConflict the batch is kept and written with the next one (up to Buffer events; the oldest beyond are
// dropped and counted); ErrConflict means the batch, or part of it, is stored already, and it is discarded.
func (r *Recorder) Flush(ctx context.Context) error {
	if r == nil {
		return nil
	}
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.Lock()
	batch, dropped := r.order, r.dropped
	r.order, r.dropped = nil, 0
	if len(batch) > 0 {
		r.pending = make(map[string]*pendingEvent, len(batch))
	}
	r.mu.Unlock()

	events := make([]*auth.AuditEvent, 0, len(r.retry)+len(batch)+1)
	events = append(events, r.retry...)
	for _, p := range batch {
		if p.count > 1 {
			p.e.Details = withCount(p.e.Details, p.count, p.last)
		}
		events = append(events, p.e)
	}
	if dropped > 0 {
		r.log.Warn("audit: the security event buffer was full; events were dropped", "dropped", dropped)
		now := r.now()
		d, _ := json.Marshal(map[string]int64{"count": dropped})
		events = append(events, &auth.AuditEvent{ID: r.ids.next(now), Time: now, Actor: "gatehouse", Action: ActionDropped, Details: d})
	}
	if len(events) == 0 {
		return nil
	}
	err := r.store.AppendAuditEvents(ctx, events)
	switch {
	case err == nil || errors.Is(err, auth.ErrConflict):
		r.retry = nil
	case len(events) > r.buffer:
		lost := len(events) - r.buffer
		r.retry = events[lost:]
		r.mu.Lock()
		r.dropped += int64(lost)
		r.mu.Unlock()
	default:
		r.retry = events
	}
	if err != nil {
		return fmt.Errorf("write %d audit events: %w", len(events), err)
	}
	return nil
}

// withCount adds the count of coalesced events, and the time of the last, to details (a JSON object or nil).
func withCount(details json.RawMessage, count int, last time.Time) json.RawMessage {
	m := map[string]any{}
	if len(details) > 0 {
		json.Unmarshal(details, &m) // clean made it an object
	}
	m["count"] = count
	m["last"] = last.UTC().Format(time.RFC3339Nano)
	b, _ := json.Marshal(m)
	return b
}

// Run writes buffered security events every FlushEvery and removes events older than Retention every
// PruneEvery (and once at the start), until ctx ends; then it writes what is buffered one last time (waiting up
// to 5 s) and returns nil. Store errors are logged, not returned: the audit log never stops the server.
func (r *Recorder) Run(ctx context.Context) error {
	if r == nil {
		<-ctx.Done()
		return nil
	}
	flush := time.NewTicker(r.flushEvery)
	defer flush.Stop()
	var pruneC <-chan time.Time
	if r.retention > 0 {
		prune := time.NewTicker(r.pruneEvery)
		defer prune.Stop()
		pruneC = prune.C
		r.prune(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := r.Flush(last); err != nil {
				r.log.Error("audit: writing security events at shutdown failed; they are lost", "err", err)
			}
			return nil
		case <-flush.C:
			if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
				r.log.Error("audit: writing security events failed; retrying with the next batch", "err", err)
			}
		case <-pruneC:
			r.prune(ctx)
		}
	}
}

func (r *Recorder) prune(ctx context.Context) {
	n, err := r.store.PruneAuditEvents(ctx, r.now().Add(-r.retention))
	switch {
	case err != nil && ctx.Err() == nil:
		r.log.Error("audit: removing old events failed", "err", err)
	case n > 0:
		r.log.Info("audit: removed old events", "count", n, "retention", r.retention)
	}
}

// idGen makes event IDs: "evt_" and 26 characters of lowercase Crockford base32 (which sorts as the values do)
// encoding a 48-bit Unix millisecond time and 80 random bits. IDs from one generator strictly increase: within a
// millisecond, or if the clock steps back, the random part is incremented instead.
type idGen struct {
	mu   sync.Mutex
	ms   uint64
	rand [10]byte
}

var crockford = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

func (g *idGen) next(t time.Time) string {
	ms := uint64(max(t.UnixMilli(), 0))
	g.mu.Lock()
	if ms > g.ms {
		g.ms = ms
		rand.Read(g.rand[:])
		g.rand[0] &= 0x7f // leave room to increment
	} else if !increment(g.rand[:]) {
		g.ms++
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], g.ms<<16)
	copy(b[6:], g.rand[:])
	g.mu.Unlock()
	return "evt_" + crockford.EncodeToString(b[:])
}

// increment adds one to the big-endian number b and reports whether it did not overflow.
func increment(b []byte) bool {
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return true
		}
	}
	return false
}

// Forbidden reports whether a Details key names a value that may be a secret: it is one of secret, password,
// passwd, token, key, hash, authorization, credential(s), api_key, apikey, or ends in _secret, _password, _token,
// _key or _hash (compared without case, with - read as _). Name identifiers and hints for what they are:
// secret_id, key_id, kid, hint.
func Forbidden(key string) bool {
	k := strings.ReplaceAll(strings.ToLower(key), "-", "_")
	switch k {
	case "secret", "password", "passwd", "token", "key", "hash", "authorization", "credential", "credentials",
		"apikey", "api_key":
		return true
	}
	for _, suffix := range []string{"_secret", "_password", "_token", "_key", "_hash"} {
		if strings.HasSuffix(k, suffix) {
			return true
		}
	}
	return false
}

// strict makes clean panic instead of removing: in a test binary, a forbidden key is a bug to find.
var strict = testing.Testing()

// clean returns details with every forbidden key removed, at any depth. Details that are not a JSON object are
// replaced by nil. In a test binary either panics.
func (r *Recorder) clean(action string, details json.RawMessage) json.RawMessage {
	if len(details) == 0 || string(details) == "null" {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(details, &m); err != nil || m == nil {
		r.violation(action, "details are not a JSON object")
		return nil
	}
	if !scrub(m, func(k string) { r.violation(action, "details key "+quote(k)+" may hold a secret") }) {
		return details
	}
	b, _ := json.Marshal(m)
	return b
}

func (r *Recorder) violation(action, what string) {
	if strict {
		panic("audit: " + action + ": " + what + "; see audit.Forbidden")
	}
	r.log.Error("audit: "+what+"; removed it", "action", action)
}

// scrub removes forbidden keys from v, at any depth, calling found for each, and reports whether it removed any.
func scrub(v any, found func(string)) bool {
	removed := false
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if Forbidden(k) {
				found(k)
				delete(v, k)
				removed = true
			} else if scrub(x, found) {
				removed = true
			}
		}
	case []any:
		for _, x := range v {
			if scrub(x, found) {
				removed = true
			}
		}
	}
	return removed
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return fmt.Sprintf("%q", s)
}
