package authtest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// newEvents returns n audit events a second apart from t0, oldest (lowest ID) first, with actors, actions,
// resources and organizations in cycles of different lengths, so that filters combine in every way.
func newEvents(n int, t0 time.Time) []*auth.AuditEvent {
	actors := []string{"admin", "config", "client-1"}
	actions := []string{"client.create", "client.update", "auth.failure", "api.delete"}
	resources := []string{"client/a", "client/b", "api/api_1", "", "grant/grt_1"}
	orgs := []string{"org_a", "", "org_b"}
	events := make([]*auth.AuditEvent, n)
	for i := range events {
		e := &auth.AuditEvent{
			ID:        fmt.Sprintf("evt_%06d", i),
			Time:      t0.Add(time.Duration(i) * time.Second),
			Actor:     actors[i%len(actors)],
			Action:    actions[i%len(actions)],
			Resource:  resources[i%len(resources)],
			OrgID:     orgs[i%len(orgs)],
			RequestID: fmt.Sprintf("req-%d", i),
			Address:   fmt.Sprintf("192.0.2.%d:%d", i%256, 40000+i),
		}
		if i%2 == 0 {
			e.Details = json.RawMessage(fmt.Sprintf(`{"n":%d,"name":"ünïcode \"quoted\""}`, i))
		}
		events[i] = e
	}
	return events
}

// newestFirst returns a copy of events ordered by ID, highest first.
func newestFirst(events []*auth.AuditEvent) []*auth.AuditEvent {
	out := slices.Clone(events)
	slices.SortFunc(out, func(a, b *auth.AuditEvent) int { return strings.Compare(b.ID, a.ID) })
	return out
}

func mustAppendEvents(t *testing.T, s auth.Store, events ...*auth.AuditEvent) {
	t.Helper()
	if err := s.AppendAuditEvents(t.Context(), events); err != nil {
		t.Fatalf("AppendAuditEvents(%d events): %v", len(events), err)
	}
}

func listEvents(t *testing.T, s auth.Store, f auth.AuditFilter) []*auth.AuditEvent {
	t.Helper()
	events, err := s.ListAuditEvents(t.Context(), f)
	if err != nil {
		t.Fatalf("ListAuditEvents(%+v): %v", f, err)
	}
	for _, e := range events {
		checkUTC(t, "ListAuditEvents event "+e.ID, e.Time)
	}
	return events
}

func testAuditAppendList(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	events := newEvents(10, now())
	// In two batches, each out of order: the list is ordered by ID, not by insertion.
	mustAppendEvents(t, s, events[3], events[0], events[4], events[1], events[2])
	mustAppendEvents(t, s, events[9], events[5], events[8], events[6], events[7])
	if err := s.AppendAuditEvents(t.Context(), nil); err != nil {
		t.Errorf("AppendAuditEvents(none): %v", err)
	}
	got := listEvents(t, s, auth.AuditFilter{})
	if diff := cmp.Diff(newestFirst(events), got, equateEmpty); diff != "" {
		t.Errorf("ListAuditEvents mismatch (-want +got):\n%s", diff)
	}
	for _, e := range got {
		if (e.ID[len(e.ID)-1]-'0')%2 == 1 && e.Details != nil {
			t.Errorf("event %s: Details = %q, want nil", e.ID, e.Details)
		}
	}
}

func testAuditAppendConflict(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	events := newEvents(6, now())
	mustAppendEvents(t, s, events[0], events[1])
	tests := []struct {
		name  string
		batch []*auth.AuditEvent
	}{
		{"an ID stored before", []*auth.AuditEvent{events[2], events[1], events[3]}},
		{"an ID twice in the batch", []*auth.AuditEvent{events[4], events[5], events[4]}},
	}
	for _, tt := range tests {
		checkErr(t, "AppendAuditEvents: "+tt.name, s.AppendAuditEvents(t.Context(), tt.batch), auth.ErrConflict)
	}
	// None of a failed batch is stored.
	if diff := cmp.Diff(newestFirst(events[:2]), listEvents(t, s, auth.AuditFilter{}), equateEmpty); diff != "" {
		t.Errorf("ListAuditEvents after failed appends: mismatch (-want +got):\n%s", diff)
	}
}

func testAuditFilter(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	events := newEvents(60, t0)
	mustAppendEvents(t, s, events...)
	at := func(i int) time.Time { return events[i].Time }

	tests := []struct {
		name string
		f    auth.AuditFilter
		want func(i int, e *auth.AuditEvent) bool
	}{
		{"all", auth.AuditFilter{}, func(int, *auth.AuditEvent) bool { return true }},
		{"from", auth.AuditFilter{From: at(10)}, func(i int, _ *auth.AuditEvent) bool { return i >= 10 }},
		{"to", auth.AuditFilter{To: at(20)}, func(i int, _ *auth.AuditEvent) bool { return i < 20 }},
		{"from and to", auth.AuditFilter{From: at(10), To: at(20)}, func(i int, _ *auth.AuditEvent) bool { return i >= 10 && i < 20 }},
		{"between events", auth.AuditFilter{From: at(10).Add(time.Millisecond), To: at(20).Add(time.Millisecond)},
			func(i int, _ *auth.AuditEvent) bool { return i > 10 && i <= 20 }},
		{"empty range", auth.AuditFilter{From: at(20), To: at(20)}, func(int, *auth.AuditEvent) bool { return false }},
		{"actor", auth.AuditFilter{Actor: "config"}, func(_ int, e *auth.AuditEvent) bool { return e.Actor == "config" }},
		{"action", auth.AuditFilter{Action: "auth.failure"}, func(_ int, e *auth.AuditEvent) bool { return e.Action == "auth.failure" }},
		{"resource", auth.AuditFilter{Resource: "client/b"}, func(_ int, e *auth.AuditEvent) bool { return e.Resource == "client/b" }},
		{"organization", auth.AuditFilter{OrgID: "org_b"}, func(_ int, e *auth.AuditEvent) bool { return e.OrgID == "org_b" }},
		{"unknown actor", auth.AuditFilter{Actor: "nobody"}, func(int, *auth.AuditEvent) bool { return false }},
		{"before", auth.AuditFilter{Before: events[30].ID}, func(i int, _ *auth.AuditEvent) bool { return i < 30 }},
		{"before a key between events", auth.AuditFilter{Before: events[30].ID + "0"},
			func(i int, _ *auth.AuditEvent) bool { return i <= 30 }},
		{"everything", auth.AuditFilter{From: at(5), To: at(55), Actor: "admin", Action: "client.create", Resource: "client/a",
			OrgID: "org_a", Before: events[50].ID}, func(i int, e *auth.AuditEvent) bool {
			return i >= 5 && i < 50 && e.Actor == "admin" && e.Action == "client.create" && e.Resource == "client/a" && e.OrgID == "org_a"
		}},
		{"organization and action", auth.AuditFilter{OrgID: "org_a", Action: "client.update"},
			func(_ int, e *auth.AuditEvent) bool { return e.OrgID == "org_a" && e.Action == "client.update" }},
	}
	for _, tt := range tests {
		var want []*auth.AuditEvent
		for i, e := range events {
			if tt.want(i, e) {
				want = append(want, e)
			}
		}
		want = newestFirst(want)
		if diff := cmp.Diff(want, listEvents(t, s, tt.f), equateEmpty); diff != "" {
			t.Errorf("ListAuditEvents, %s (%+v): mismatch (-want +got):\n%s", tt.name, tt.f, diff)
		}
		// Limit keeps the newest.
		for _, limit := range []int{1, 3} {
			f := tt.f
			f.Limit = limit
			if diff := cmp.Diff(want[:min(limit, len(want))], listEvents(t, s, f), equateEmpty); diff != "" {
				t.Errorf("ListAuditEvents, %s, Limit %d: mismatch (-want +got):\n%s", tt.name, limit, diff)
			}
		}
	}
}

// testAuditPages walks the log from the newest event back, a page at a time, with the last ID of a page as the
// Before of the next.
func testAuditPages(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	events := newEvents(300, now())
	batch := make([]*auth.AuditEvent, len(events))
	for i, j := range permutation(len(events)) {
		batch[i] = events[j]
	}
	mustAppendEvents(t, s, batch...)

	for _, org := range []string{"", "org_b"} {
		want := newestFirst(slices.DeleteFunc(slices.Clone(events), func(e *auth.AuditEvent) bool {
			return org != "" && e.OrgID != org
		}))
		for _, limit := range []int{1, 7, 100} {
			var got []*auth.AuditEvent
			f := auth.AuditFilter{OrgID: org, Limit: limit}
			for calls := 0; ; calls++ {
				if calls > len(want)+1 {
					t.Fatalf("ListAuditEvents with Limit %d: more pages than events; is Before ignored?", limit)
				}
				page := listEvents(t, s, f)
				if len(page) > limit {
					t.Errorf("ListAuditEvents(%+v): %d events, want at most %d", f, len(page), limit)
				}
				got = append(got, page...)
				if len(page) < limit {
					break
				}
				f.Before = page[len(page)-1].ID
			}
			if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
				t.Errorf("ListAuditEvents, all pages of organization %q with Limit %d: mismatch (-want +got):\n%s", org, limit, diff)
			}
		}
	}
}

func testAuditPrune(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	// Enough events that a backend pruning in batches needs several.
	events := newEvents(2500, now().Add(-time.Hour))
	mustAppendEvents(t, s, events...)

	prune := func(before time.Time, want int64) {
		t.Helper()
		n, err := s.PruneAuditEvents(ctx, before)
		if err != nil || n != want {
			t.Errorf("PruneAuditEvents(%v) = %d, %v; want %d", before, n, err, want)
		}
	}
	// Older than before: the event at before stays.
	prune(events[2100].Time, 2100)
	if diff := cmp.Diff(newestFirst(events[2100:]), listEvents(t, s, auth.AuditFilter{}), equateEmpty); diff != "" {
		t.Errorf("ListAuditEvents after PruneAuditEvents: mismatch (-want +got):\n%s", diff)
	}
	prune(events[2100].Time, 0)
	prune(events[2100].Time.Add(time.Millisecond), 1)
	prune(events[0].Time, 0)
	prune(events[len(events)-1].Time.Add(time.Hour), int64(len(events)-2101))
	if got := listEvents(t, s, auth.AuditFilter{}); len(got) != 0 {
		t.Errorf("ListAuditEvents after pruning everything: %d events, want none", len(got))
	}
}
