package issuer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/issuer"
	"github.com/gatehouse/gatehouse/internal/limit"
)

// eventLog is a SecurityLog that keeps what it is given.
type eventLog struct {
	mu     sync.Mutex
	events []auth.AuditEvent
}

func (l *eventLog) Security(e *auth.AuditEvent) {
	l.mu.Lock()
	l.events = append(l.events, *e)
	l.mu.Unlock()
}

// take returns the events so far, as "action actor address details", and forgets them.
func (l *eventLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		out = append(out, fmt.Sprintf("%s %s %s %s", e.Action, e.Actor, e.Address, e.Details))
	}
	l.events = nil
	return out
}

// limited returns an issuer over f's store with a Limiter, a Throttle with its defaults and an event log.
func (f *fixture) limited(t *testing.T) (*issuer.Issuer, *eventLog) {
	t.Helper()
	log := &eventLog{}
	return issuer.New(f.store, &recordingSigner{}, f.hasher, issuer.Options{
		Now: func() time.Time { return f.now }, Limiter: limit.NewMemory(0),
		Throttle: limit.NewThrottle(limit.NewMemory(0), limit.ThrottleOptions{}), Audit: log,
	}), log
}

func (f *fixture) setRateLimit(t *testing.T, id string, r auth.RateLimit) {
	t.Helper()
	c, err := f.store.FindClient(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	c.RateLimit = r
	if err := f.store.UpdateClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func tooMany(t *testing.T, err error) time.Duration {
	t.Helper()
	var oe *issuer.Error
	if !errors.As(err, &oe) || oe.Code != issuer.CodeTooManyRequests {
		t.Fatalf("err = %v, want too_many_requests", err)
	}
	return oe.RetryAfter
}

// TestRateLimit: a client limited to 3 a minute gets 3 tokens, then too_many_requests with a whole-second
// Retry-After, then one more token when that has passed. Requests refused for other reasons take nothing.
func TestRateLimit(t *testing.T) {
	f := newFixture(t)
	f.setRateLimit(t, "c1", auth.RateLimit{Count: 3, Per: time.Minute})
	iss, log := f.limited(t)
	ctx := context.Background()
	ok := issuer.Request{ClientID: "c1", ClientSecret: secretA, Address: "192.0.2.1"}
	bad := issuer.Request{ClientID: "c1", ClientSecret: secretA, Address: "192.0.2.1", Scope: "admin"}
	for range 10 {
		if _, err := iss.ClientCredentials(ctx, bad); code(err) != "invalid_scope" {
			t.Fatalf("bad scope: %v", err)
		}
	}
	for i := range 3 {
		if _, err := iss.ClientCredentials(ctx, ok); err != nil {
			t.Fatalf("token %d: %v", i+1, err)
		}
	}
	_, err := iss.ClientCredentials(ctx, ok)
	if wait := tooMany(t, err); wait != 20*time.Second {
		t.Errorf("Retry-After %v, want 20s", wait)
	}
	f.now = f.now.Add(19500 * time.Millisecond)
	if wait := tooMany(t, func() error { _, err := iss.ClientCredentials(ctx, ok); return err }()); wait != time.Second {
		t.Errorf("0.5s before: Retry-After %v, want it rounded up to 1s", wait)
	}
	f.now = f.now.Add(500 * time.Millisecond)
	if _, err := iss.ClientCredentials(ctx, ok); err != nil {
		t.Errorf("after Retry-After: %v", err)
	}
	want := `token.rate_limited c1 192.0.2.1 {"limit":"client","rate":"3 per 1m0s"}`
	if got := log.take(); len(got) != 2 || got[0] != want || got[1] != want {
		t.Errorf("events %q, want twice %q", got, want)
	}
}

func TestNoRateLimit(t *testing.T) {
	f := newFixture(t)
	iss, log := f.limited(t)
	for i := range 1000 {
		if _, err := iss.ClientCredentials(context.Background(), issuer.Request{ClientID: "c1", ClientSecret: secretA, Address: "192.0.2.1"}); err != nil {
			t.Fatalf("token %d: %v", i+1, err)
		}
	}
	if got := log.take(); len(got) != 0 {
		t.Errorf("events %q, want none", got)
	}
}

// TestThrottle: a flood of wrong secrets from one address is refused after ten, without a token and without the
// secret being checked (nothing more is counted as a failure), also for the right secret from that address; the
// right secret from another address still works.
func TestThrottle(t *testing.T) {
	f := newFixture(t)
	iss, log := f.limited(t)
	ctx := context.Background()
	wrong := issuer.Request{ClientID: "c1", ClientSecret: "wrong-0123456789abcdefghijklmnopqrstuvwxyz", Address: "192.0.2.1", RequestID: "r1"}
	counts := map[string]int{}
	for range 1000 {
		tok, err := iss.ClientCredentials(ctx, wrong)
		if tok != nil {
			t.Fatal("a wrong secret got a token")
		}
		counts[code(err)]++
	}
	if counts["invalid_client"] != 10 || counts["too_many_requests"] != 990 {
		t.Errorf("answers %v, want 10 invalid_client then too_many_requests", counts)
	}
	_, err := iss.ClientCredentials(ctx, issuer.Request{ClientID: "c1", ClientSecret: secretA, Address: "192.0.2.1"})
	if wait := tooMany(t, err); wait != 6*time.Second {
		t.Errorf("the right secret from the flooding address: Retry-After %v, want 6s", wait)
	}
	if _, err := iss.ClientCredentials(ctx, issuer.Request{ClientID: "c1", ClientSecret: secretA, Address: "192.0.2.2"}); err != nil {
		t.Errorf("the right secret from another address: %v", err)
	}
	events := log.take()
	failures, refusals := 0, 0
	for _, e := range events {
		switch e {
		case `auth.failure c1 192.0.2.1 {"reason":"wrong_secret"}`:
			failures++
		case `token.rate_limited c1 192.0.2.1 {"limit":"auth_failures"}`:
			refusals++
		default:
			t.Errorf("unexpected event %q", e)
		}
	}
	if failures != 10 || refusals != 991 {
		t.Errorf("%d failures and %d refusals recorded, want 10 and 991", failures, refusals)
	}
	f.now = f.now.Add(6 * time.Second)
	if _, err := iss.ClientCredentials(ctx, issuer.Request{ClientID: "c1", ClientSecret: secretA, Address: "192.0.2.1"}); err != nil {
		t.Errorf("6s later, the right secret from the address: %v", err)
	}
}

// TestThrottleSpray: wrong secrets for many client_ids from one address throttle the address.
func TestThrottleSpray(t *testing.T) {
	f := newFixture(t)
	iss, _ := f.limited(t)
	ctx := context.Background()
	for i := range 100 {
		iss.ClientCredentials(ctx, issuer.Request{ClientID: fmt.Sprint("guess-", i), ClientSecret: secretA, Address: "192.0.2.1"})
	}
	_, err := iss.ClientCredentials(ctx, issuer.Request{ClientID: "c1", ClientSecret: secretA, Address: "192.0.2.1"})
	tooMany(t, err)
}

// TestFailureReasons: the audit log says why an authentication failed; the caller never learns it.
func TestFailureReasons(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const secretB = "secret-b-0123456789abcdefghijklmnopqrstuvwxyz"
	if err := f.store.AddClientSecret(ctx, "c1", auth.Secret{ID: "sec_b", Hash: f.hasher.Hash(secretB), Hint: "wxyz",
		CreatedAt: f.now, ExpiresAt: f.now.Add(-time.Second)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	f.addClient(t, "off", nil)
	c, _ := f.store.FindClient(ctx, "off")
	c.Disabled = true
	if err := f.store.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	iss, log := f.limited(t)
	for _, tc := range []struct {
		r    issuer.Request
		want string
	}{
		{issuer.Request{ClientID: "c1", ClientSecret: "nope"}, `auth.failure c1 192.0.2.1 {"reason":"wrong_secret"}`},
		{issuer.Request{ClientID: "c1", ClientSecret: secretB}, `auth.failure c1 192.0.2.1 {"reason":"expired_secret"}`},
		{issuer.Request{ClientID: "ghost", ClientSecret: secretA}, `auth.failure ghost 192.0.2.1 {"reason":"unknown_client"}`},
		{issuer.Request{ClientID: "off", ClientSecret: secretA}, `auth.failure off 192.0.2.1 {"reason":"disabled"}`},
		{issuer.Request{ClientID: "off", ClientSecret: "nope"}, `auth.failure off 192.0.2.1 {"reason":"wrong_secret"}`},
		{issuer.Request{ClientID: "c1"}, `auth.failure c1 192.0.2.1 {"reason":"malformed"}`},
	} {
		tc.r.Address = "192.0.2.1"
		_, err := iss.ClientCredentials(ctx, tc.r)
		if code(err) != "invalid_client" || err.Error() != "invalid_client: client authentication failed" {
			t.Errorf("%+v: %v, want the one invalid_client answer", tc.r, err)
		}
		if got := log.take(); len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s/%s: events %q, want %q", tc.r.ClientID, tc.r.ClientSecret, got, tc.want)
		}
	}
}

// TestSecurityEventsHoldNoSecret: whatever a caller sends, the events carry no secret, and details are the JSON
// objects the audit log accepts.
func TestSecurityEventsHoldNoSecret(t *testing.T) {
	f := newFixture(t)
	iss, log := f.limited(t)
	const guess = "guess-0123456789abcdefghijklmnopqrstuvwxyz"
	for range 20 {
		iss.ClientCredentials(context.Background(), issuer.Request{ClientID: "c1", ClientSecret: guess, Address: "192.0.2.1"})
	}
	for _, e := range log.events {
		b, _ := json.Marshal(e)
		var d map[string]any
		if json.Unmarshal(e.Details, &d) != nil {
			t.Errorf("details %s are not a JSON object", e.Details)
		}
		for k := range d {
			if audit.Forbidden(k) {
				t.Errorf("details key %q is forbidden", k)
			}
		}
		if s := string(b); strings.Contains(s, guess) || strings.Contains(s, secretA) {
			t.Errorf("event %s holds a secret", s)
		}
	}
}
