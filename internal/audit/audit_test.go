package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/sqlstore"
)

var (
	ctx   = context.Background()
	t0    = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
)

func openStore(t *testing.T) auth.Store {
	t.Helper()
	db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func list(t *testing.T, s auth.AuditStore, f auth.AuditFilter) []*auth.AuditEvent {
	t.Helper()
	events, err := s.ListAuditEvents(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// clock is a synthetic clock the test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); c.now = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

func details(t *testing.T, e *auth.AuditEvent) map[string]any {
	t.Helper()
	var m map[string]any
	if len(e.Details) > 0 {
		if err := json.Unmarshal(e.Details, &m); err != nil {
			t.Fatalf("details %s: %v", e.Details, err)
		}
	}
	return m
}

func TestRecord(t *testing.T) {
	s := openStore(t)
	clk := &clock{now: t0}
	r := audit.New(s, audit.Options{Now: clk.Now, Logger: quiet})
	e := &auth.AuditEvent{Actor: "admin", Action: "client.create", Resource: "client/svc", RequestID: "req-1",
		Details: json.RawMessage(`{"name":"Service","rate_limit":{"count":100,"per":60}}`)}
	if err := r.Record(ctx, e); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^evt_[0-9a-z]{26}$`).MatchString(e.ID) || !e.Time.Equal(t0) {
		t.Errorf("Record set ID %q and Time %v, want evt_ and 26 base32 characters, and %v", e.ID, e.Time, t0)
	}
	got := list(t, s, auth.AuditFilter{})
	if len(got) != 1 {
		t.Fatalf("%d events stored, want 1", len(got))
	}
	if diff := cmp.Diff(e, got[0]); diff != "" {
		t.Errorf("stored event differs (-recorded +stored):\n%s", diff)
	}
}

// TestIDsSortByTime: ID order is time order, also within a millisecond and when the clock steps back.
func TestIDsSortByTime(t *testing.T) {
	s := openStore(t)
	clk := &clock{now: t0}
	r := audit.New(s, audit.Options{Now: clk.Now, Logger: quiet})
	var want []string
	for i, step := range []time.Duration{0, 0, time.Microsecond, time.Millisecond, 0, time.Hour, -time.Minute, 0, 24 * time.Hour} {
		clk.Add(step)
		e := &auth.AuditEvent{Actor: "admin", Action: "api.update", Resource: fmt.Sprint("api/", i)}
		if i%2 == 0 {
			if err := r.Record(ctx, e); err != nil {
				t.Fatal(err)
			}
		} else {
			r.Security(e)
			if err := r.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		want = append(want, e.Resource)
	}
	slices.Reverse(want)
	var got []string
	for _, e := range list(t, s, auth.AuditFilter{}) {
		got = append(got, e.Resource)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("newest first by ID (-recorded order, reversed +listed):\n%s", diff)
	}
}

// TestSecurityCoalesces: a flood of identical security events within a flush is one row with a count; events
// that differ in client, address or details stay apart.
func TestSecurityCoalesces(t *testing.T) {
	s := openStore(t)
	clk := &clock{now: t0}
	r := audit.New(s, audit.Options{Now: clk.Now, Logger: quiet})
	failure := func(client, addr, reason string) *auth.AuditEvent {
		return &auth.AuditEvent{Actor: client, Action: audit.ActionAuthFailure, Resource: "client/" + client, Address: addr,
			Details: json.RawMessage(`{"reason":"` + reason + `"}`)}
	}
	for range 1000 {
		r.Security(failure("svc", "192.0.2.1", "wrong_secret"))
		clk.Add(time.Millisecond)
	}
	r.Security(failure("svc", "192.0.2.2", "wrong_secret"))
	r.Security(failure("svc", "192.0.2.1", "expired_secret"))
	r.Security(failure("other", "192.0.2.1", "unknown_client"))
	if n := len(list(t, s, auth.AuditFilter{})); n != 0 {
		t.Fatalf("%d events written before Flush", n)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := list(t, s, auth.AuditFilter{})
	if len(got) != 4 {
		t.Fatalf("%d events, want 4", len(got))
	}
	flood := got[3]
	d := details(t, flood)
	if flood.Actor != "svc" || flood.Address != "192.0.2.1" || d["reason"] != "wrong_secret" || d["count"] != float64(1000) ||
		!flood.Time.Equal(t0) || d["last"] != t0.Add(999*time.Millisecond).Format(time.RFC3339Nano) {
		t.Errorf("the flood is %+v with details %v; want svc from 192.0.2.1, wrong_secret, count 1000, from t0 to t0+999ms", flood, d)
	}
	for _, e := range got[:3] {
		if _, ok := details(t, e)["count"]; ok {
			t.Errorf("a single event has a count: %s", e.Details)
		}
	}
	// The next flush starts counting again.
	r.Security(failure("svc", "192.0.2.1", "wrong_secret"))
	r.Flush(ctx)
	if got := list(t, s, auth.AuditFilter{}); len(got) != 5 || details(t, got[0])["count"] != nil {
		t.Errorf("after the next flush: %d events, newest %s; want 5, the newest without a count", len(got), got[0].Details)
	}
}

// TestBufferFull: Security never blocks; past the buffer, events are dropped, counted and the count recorded.
func TestBufferFull(t *testing.T) {
	s := openStore(t)
	r := audit.New(s, audit.Options{Buffer: 10, Now: (&clock{now: t0}).Now, Logger: quiet})
	for i := range 25 {
		r.Security(&auth.AuditEvent{Actor: fmt.Sprint("guess-", i), Action: audit.ActionAuthFailure, Address: "192.0.2.1"})
	}
	r.Security(&auth.AuditEvent{Actor: "guess-0", Action: audit.ActionAuthFailure, Address: "192.0.2.1"}) // coalesces
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(list(t, s, auth.AuditFilter{Action: audit.ActionAuthFailure})); n != 10 {
		t.Errorf("%d failures stored, want the buffer's 10", n)
	}
	dropped := list(t, s, auth.AuditFilter{Action: audit.ActionDropped})
	if len(dropped) != 1 || details(t, dropped[0])["count"] != float64(15) {
		t.Errorf("dropped events: %v, want one with count 15", dropped)
	}
}

// flakyStore fails the writes it is told to.
type flakyStore struct {
	auth.Store
	mu    sync.Mutex
	fails int
}

var errDown = errors.New("database is down")

func (s *flakyStore) AppendAuditEvents(ctx context.Context, events []*auth.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fails > 0 {
		s.fails--
		return errDown
	}
	return s.Store.AppendAuditEvents(ctx, events)
}

// TestFlushRetries: a batch whose write failed is written with the next one.
func TestFlushRetries(t *testing.T) {
	s := &flakyStore{Store: openStore(t), fails: 1}
	r := audit.New(s, audit.Options{Now: (&clock{now: t0}).Now, Logger: quiet})
	r.Security(&auth.AuditEvent{Actor: "a", Action: audit.ActionAuthFailure})
	if err := r.Flush(ctx); !errors.Is(err, errDown) {
		t.Fatalf("Flush = %v, want the store's error", err)
	}
	r.Security(&auth.AuditEvent{Actor: "b", Action: audit.ActionAuthFailure})
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := list(t, s, auth.AuditFilter{}); len(got) != 2 || got[0].Actor != "b" || got[1].Actor != "a" {
		t.Errorf("stored %v, want a then b", got)
	}
	s.fails = 1
	if err := r.Record(ctx, &auth.AuditEvent{Actor: "admin", Action: "api.delete"}); !errors.Is(err, errDown) {
		t.Errorf("Record = %v, want the store's error", err)
	}
}

func TestForbidden(t *testing.T) {
	for key, want := range map[string]bool{
		"secret": true, "client_secret": true, "Client-Secret": true, "password": true, "token": true,
		"access_token": true, "refresh_token": true, "key": true, "api_key": true, "private_key": true, "root_key": true,
		"hash": true, "secret_hash": true, "authorization": true, "credentials": true,
		"secret_id": false, "secret_hint": false, "hint": false, "key_id": false, "kid": false, "name": false,
		"token_lifetime": false, "key_token_lifetime": false, "api_key_prefix": false, "count": false, "reason": false,
	} {
		if got := audit.Forbidden(key); got != want {
			t.Errorf("Forbidden(%q) = %v, want %v", key, got, want)
		}
	}
}

// TestNoSecrets: in a test binary a forbidden key panics, at any depth; in production it is removed and the event
// recorded.
func TestNoSecrets(t *testing.T) {
	s := openStore(t)
	r := audit.New(s, audit.Options{Now: (&clock{now: t0}).Now, Logger: quiet})
	bad := []string{
		`{"client_secret":"s3cret"}`,
		`{"changed":{"name":"x","secret":"s3cret"}}`,
		`{"secrets":[{"id":"sec_1","hash":"aGFzaA"}]}`,
		`"not an object"`,
	}
	for _, d := range bad {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("details %s: no panic in a test binary", d)
				}
			}()
			r.Record(ctx, &auth.AuditEvent{Actor: "admin", Action: "client.update", Details: json.RawMessage(d)})
		}()
	}
	if n := len(list(t, s, auth.AuditFilter{})); n != 0 {
		t.Errorf("%d events with secrets were stored", n)
	}

	defer audit.SetStrict(false)()
	for i, d := range bad {
		r.Record(ctx, &auth.AuditEvent{Actor: "admin", Action: "client.update", Resource: fmt.Sprint(i), Details: json.RawMessage(d)})
		r.Security(&auth.AuditEvent{Actor: "svc", Action: audit.ActionAuthFailure, Resource: fmt.Sprint(i), Details: json.RawMessage(d)})
	}
	r.Flush(ctx)
	got := list(t, s, auth.AuditFilter{})
	if len(got) != 2*len(bad) {
		t.Fatalf("%d events stored, want %d: removing a key must not lose the event", len(got), 2*len(bad))
	}
	want := map[string]string{"0": `{}`, "1": `{"changed":{"name":"x"}}`, "2": `{"secrets":[{"id":"sec_1"}]}`, "3": ``}
	for _, e := range got {
		if string(e.Details) != want[e.Resource] {
			t.Errorf("%s %s: details %s, want %s", e.Action, e.Resource, e.Details, want[e.Resource])
		}
	}
}

// TestRun: Run writes security events about every second, removes events past the retention, and writes what
// is left when it ends. Time is synthetic (testing/synctest).
func TestRun(t *testing.T) {
	s := openStore(t) // outside the bubble: the store's goroutines are not the test's
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		for i, age := range []time.Duration{91 * 24 * time.Hour, 89 * 24 * time.Hour, 200 * 24 * time.Hour} {
			old := &auth.AuditEvent{ID: fmt.Sprint("evt_0", i), Time: now.Add(-age), Actor: "admin", Action: "api.create"}
			if err := s.AppendAuditEvents(ctx, []*auth.AuditEvent{old}); err != nil {
				t.Fatal(err)
			}
		}
		r := audit.New(s, audit.Options{Logger: quiet})
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { done <- r.Run(runCtx) }()
		synctest.Wait()
		if got := list(t, s, auth.AuditFilter{}); len(got) != 1 || got[0].ID != "evt_01" {
			t.Errorf("after pruning: %v, want only the event 89 days old", got)
		}

		r.Security(&auth.AuditEvent{Actor: "svc", Action: audit.ActionAuthFailure})
		synctest.Wait()
		if n := len(list(t, s, auth.AuditFilter{Action: audit.ActionAuthFailure})); n != 0 {
			t.Fatalf("written before a second passed")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(list(t, s, auth.AuditFilter{Action: audit.ActionAuthFailure})); n != 1 {
			t.Fatalf("%d failures written after a second, want 1", n)
		}

		// A day later, the event 89 days old is 90 days old and pruned at the next hourly pass.
		time.Sleep(24*time.Hour + time.Hour)
		synctest.Wait()
		if got := list(t, s, auth.AuditFilter{Action: "api.create"}); len(got) != 0 {
			t.Errorf("events past the retention remain: %v", got)
		}

		r.Security(&auth.AuditEvent{Actor: "late", Action: audit.ActionAuthFailure})
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if n := len(list(t, s, auth.AuditFilter{Actor: "late"})); n != 1 {
			t.Errorf("the event buffered at shutdown was not written")
		}
	})
}

func TestNilRecorder(t *testing.T) {
	var r *audit.Recorder
	r.Security(&auth.AuditEvent{Action: audit.ActionAuthFailure})
	if err := r.Record(ctx, &auth.AuditEvent{Action: "api.create"}); err != nil {
		t.Error(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Error(err)
	}
}
