package authtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// versioned is a stored value of a kind with compare-and-swap updates (APIs, clients, grants, organizations), and
// what the checks below need to change it, update it and read it back.
type versioned[T any] struct {
	kind    string
	stored  *T // as the store holds it
	version func(*T) *int64
	// changed returns a copy of v with every field its update replaces changed after tag, and no other.
	changed func(v *T, tag string) *T
	update  func(ctx context.Context, v *T) error
	find    func(t *testing.T) *T
}

func apiVersioned(s auth.Store, a *auth.API) versioned[auth.API] {
	return versioned[auth.API]{
		kind:    "API",
		stored:  a,
		version: func(a *auth.API) *int64 { return &a.Version },
		changed: func(a *auth.API, tag string) *auth.API {
			c := *a
			c.Identifier = "urn:example:" + tag
			c.Name = "API " + tag
			c.Scopes = []auth.Scope{{Name: "scope", Description: tag}}
			c.TokenLifetime += time.Minute
			c.KeyTokenLifetime += time.Minute
			c.SigningAlg = auth.RS256
			c.UpdatedAt = a.UpdatedAt.Add(time.Minute)
			return &c
		},
		update: s.UpdateAPI,
		find:   func(t *testing.T) *auth.API { return findAPI(t, s, a.ID) },
	}
}

func clientVersioned(s auth.Store, c *auth.Client) versioned[auth.Client] {
	return versioned[auth.Client]{
		kind:    "client",
		stored:  c,
		version: func(c *auth.Client) *int64 { return &c.Version },
		changed: func(c *auth.Client, tag string) *auth.Client {
			d := *c
			d.Name = "Client " + tag
			d.Description = tag
			d.Disabled = !c.Disabled
			d.RateLimit = auth.RateLimit{Count: c.RateLimit.Count + 1, Per: c.RateLimit.Per + time.Second}
			d.UpdatedAt = c.UpdatedAt.Add(time.Minute)
			return &d
		},
		update: s.UpdateClient,
		find:   func(t *testing.T) *auth.Client { return findClient(t, s, c.ID) },
	}
}

func grantVersioned(s auth.Store, g *auth.Grant) versioned[auth.Grant] {
	return versioned[auth.Grant]{
		kind:    "grant",
		stored:  g,
		version: func(g *auth.Grant) *int64 { return &g.Version },
		changed: func(g *auth.Grant, tag string) *auth.Grant {
			h := *g
			h.Scopes = []string{"read:items", tag}
			h.UpdatedAt = g.UpdatedAt.Add(time.Minute)
			return &h
		},
		update: s.UpdateGrant,
		find:   func(t *testing.T) *auth.Grant { return findGrant(t, s, g.ID) },
	}
}

func orgVersioned(s auth.Store, o *auth.Org) versioned[auth.Org] {
	return versioned[auth.Org]{
		kind:    "organization",
		stored:  o,
		version: func(o *auth.Org) *int64 { return &o.Version },
		changed: func(o *auth.Org, tag string) *auth.Org {
			p := *o
			p.Name = "Org " + tag
			p.Description = tag
			p.APIKeyPrefix = o.APIKeyPrefix + "x"
			p.AllowedGrants = []auth.OrgGrant{{APIID: "api_" + tag, Scopes: []string{tag}}}
			p.UpdatedAt = o.UpdatedAt.Add(time.Minute)
			return &p
		},
		update: s.UpdateOrg,
		find:   func(t *testing.T) *auth.Org { return findOrg(t, s, o.ID) },
	}
}

// checkCAS checks an update's compare-and-swap: a Version other than the stored one is refused with ErrStale and
// changes nothing, the caller's Version included; the stored one succeeds and increments the Version, stored and
// the caller's; and the Version read before that success is stale afterwards, so that the lost update it would
// make is refused.
func checkCAS[T any](t *testing.T, v versioned[T]) {
	t.Helper()
	ctx := t.Context()
	v0 := *v.version(v.stored)
	for _, stale := range []int64{v0 - 1, v0 + 1, v0 + 100, 0} {
		u := v.changed(v.stored, fmt.Sprintf("stale-%d", stale))
		*v.version(u) = stale
		call := fmt.Sprintf("update %s at version %d (stored: %d)", v.kind, stale, v0)
		checkErr(t, call, v.update(ctx, u), auth.ErrStale)
		if got := *v.version(u); got != stale {
			t.Errorf("%s: the Version is %d afterwards, want %d (unchanged)", call, got, stale)
		}
	}
	if diff := cmp.Diff(v.stored, v.find(t), equateEmpty); diff != "" {
		t.Errorf("%s after updates at stale versions: mismatch (-want +got):\n%s", v.kind, diff)
	}

	first := v.changed(v.stored, "first")
	if err := v.update(ctx, first); err != nil {
		t.Fatalf("update %s at version %d: %v", v.kind, v0, err)
	}
	if got := *v.version(first); got != v0+1 {
		t.Errorf("update %s at version %d: the Version is %d afterwards, want %d", v.kind, v0, got, v0+1)
	}
	if diff := cmp.Diff(first, v.find(t), equateEmpty); diff != "" {
		t.Errorf("%s after an update: mismatch (-want +got):\n%s", v.kind, diff)
	}

	lost := v.changed(v.stored, "lost")
	checkErr(t, fmt.Sprintf("update %s at the version read before an update", v.kind), v.update(ctx, lost), auth.ErrStale)
	if diff := cmp.Diff(first, v.find(t), equateEmpty); diff != "" {
		t.Errorf("%s after an update at the version read before another: mismatch (-want +got):\n%s", v.kind, diff)
	}

	second := v.changed(first, "second")
	if err := v.update(ctx, second); err != nil {
		t.Fatalf("update %s at version %d: %v", v.kind, v0+1, err)
	}
	if got := *v.version(second); got != v0+2 {
		t.Errorf("second update of %s: the Version is %d afterwards, want %d", v.kind, got, v0+2)
	}
	if diff := cmp.Diff(second, v.find(t), equateEmpty); diff != "" {
		t.Errorf("%s after a second update: mismatch (-want +got):\n%s", v.kind, diff)
	}
}

// raceUpdate has racers update the same stored value at its Version at once, and checks that exactly one wins and
// the others get ErrStale, keeping their Versions.
func raceUpdate[T any](t *testing.T, v versioned[T]) {
	t.Helper()
	v0 := *v.version(v.stored)
	updates := make([]*T, racers)
	for i := range updates {
		updates[i] = v.changed(v.stored, fmt.Sprintf("racer-%d", i))
	}
	won, lost := race(t, racers, auth.ErrStale, func(ctx context.Context, i int) error {
		return v.update(ctx, updates[i])
	})
	if won != 1 || lost != racers-1 {
		t.Errorf("update %s race: %d won, %d got ErrStale; want 1 and %d", v.kind, won, lost, racers-1)
	}
	winner := slices.IndexFunc(updates, func(u *T) bool { return *v.version(u) == v0+1 })
	if winner < 0 {
		t.Fatalf("update %s race: no racer's Version is %d afterwards", v.kind, v0+1)
	}
	for i, u := range updates {
		if got := *v.version(u); i != winner && got != v0 {
			t.Errorf("update %s race: racer %d's Version is %d afterwards, want %d (unchanged)", v.kind, i, got, v0)
		}
	}
	if diff := cmp.Diff(updates[winner], v.find(t), equateEmpty); diff != "" {
		t.Errorf("%s after the race: mismatch (-winner +got):\n%s", v.kind, diff)
	}
}

func testAPIVersion(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	a := newAPI("api_1", "urn:example:one", now())
	mustCreateAPI(t, s, a)
	checkCAS(t, apiVersioned(s, a))
}

func testClientVersion(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	c := newClient("client-1", t0, newSecret("sec_0001", t0))
	mustCreateClient(t, s, c)
	checkCAS(t, clientVersioned(s, c))

	// Secrets are not the client's fields UpdateClient compares and swaps.
	c = findClient(t, s, "client-1")
	if err := s.AddClientSecret(t.Context(), "client-1", newSecret("sec_0002", t0), time.Time{}); err != nil {
		t.Fatalf("AddClientSecret: %v", err)
	}
	if got := findClient(t, s, "client-1").Version; got != c.Version {
		t.Errorf("Version after AddClientSecret = %d, want %d (unchanged)", got, c.Version)
	}
}

func testGrantVersion(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0))
	mustCreateClient(t, s, newClient("client-1", t0, newSecret("sec_0001", t0)))
	g := newGrant("grt_1", "client-1", "api_1", t0, "read:items")
	if err := s.CreateGrant(ctx, g); err != nil {
		t.Fatalf("CreateGrant: %v", err)
	}
	checkCAS(t, grantVersioned(s, g))
	checkErr(t, "UpdateGrant(unknown)", s.UpdateGrant(ctx, newGrant("grt_none", "client-1", "api_1", t0)), auth.ErrNotFound)

	// PutGrant increments the version too, so that an update at the version read before it is stale.
	before := findGrant(t, s, "grt_1")
	put := newGrant("grt_new", "client-1", "api_1", t0, "write:items")
	mustPutGrant(t, s, put)
	if put.ID != "grt_1" || put.Version != before.Version+1 {
		t.Errorf("PutGrant over grt_1 wrote back ID %q, Version %d; want grt_1, %d", put.ID, put.Version, before.Version+1)
	}
	if got := findGrant(t, s, "grt_1"); got.Version != before.Version+1 {
		t.Errorf("stored Version after PutGrant = %d, want %d", got.Version, before.Version+1)
	}
	stale := *before
	stale.Scopes = []string{"stale"}
	checkErr(t, "UpdateGrant at the version read before PutGrant", s.UpdateGrant(ctx, &stale), auth.ErrStale)
	// The version PutGrant wrote back is the stored one.
	put.Scopes = []string{"read:items"}
	if err := s.UpdateGrant(ctx, put); err != nil {
		t.Errorf("UpdateGrant at the version PutGrant wrote back: %v", err)
	}
}

func testOrgVersion(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	o := newOrg("org_01", "acme", now())
	mustCreateOrg(t, s, o)
	checkCAS(t, orgVersioned(s, o))
}

func testRaceUpdateAPI(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	a := newAPI("api_1", "urn:example:one", now())
	mustCreateAPI(t, s, a)
	raceUpdate(t, apiVersioned(s, a))
}

func testRaceUpdateClient(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	c := newClient("client-1", t0, newSecret("sec_0001", t0))
	mustCreateClient(t, s, c)
	raceUpdate(t, clientVersioned(s, c))
}

func testRaceUpdateGrant(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0))
	mustCreateClient(t, s, newClient("client-1", t0, newSecret("sec_0001", t0)))
	g := newGrant("grt_1", "client-1", "api_1", t0, "read:items")
	mustPutGrant(t, s, g)
	raceUpdate(t, grantVersioned(s, g))
}

func testRaceUpdateOrg(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	o := newOrg("org_01", "acme", now())
	mustCreateOrg(t, s, o)
	raceUpdate(t, orgVersioned(s, o))
}

// testRacePutGrant has racers put the same grant at once: every put succeeds, each increments the version once
// (none is lost), and the last one's scopes are stored.
func testRacePutGrant(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0))
	mustCreateClient(t, s, newClient("client-1", t0, newSecret("sec_0001", t0)))
	first := newGrant("grt_1", "client-1", "api_1", t0)
	mustPutGrant(t, s, first)

	puts := make([]*auth.Grant, racers)
	for i := range puts {
		puts[i] = newGrant(fmt.Sprintf("grt_racer%d", i), "client-1", "api_1", t0.Add(time.Hour), fmt.Sprintf("scope-%d", i))
	}
	won, _ := race(t, racers, auth.ErrConflict, func(ctx context.Context, i int) error { return s.PutGrant(ctx, puts[i]) })
	if won != racers {
		t.Errorf("PutGrant race: %d of %d succeeded, want all", won, racers)
	}
	var versions []int64
	for _, p := range puts {
		versions = append(versions, p.Version)
	}
	slices.Sort(versions)
	var want []int64
	for i := range racers {
		want = append(want, first.Version+1+int64(i))
	}
	if diff := cmp.Diff(want, versions); diff != "" {
		t.Errorf("Versions PutGrant wrote back: mismatch (-want +got):\n%s", diff)
	}
	last := slices.IndexFunc(puts, func(g *auth.Grant) bool { return g.Version == first.Version+racers })
	got := findGrant(t, s, "grt_1")
	if last < 0 || got.Version != first.Version+racers || !slices.Equal(got.Scopes, puts[last].Scopes) {
		t.Errorf("grant after the race: Version %d, scopes %v; want %d and those of the put that wrote back that Version",
			got.Version, got.Scopes, first.Version+racers)
	}
}
