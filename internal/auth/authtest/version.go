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

// deletion is what checkCAD needs of a kind's delete: the delete itself, and the store's lookup of a value by ID,
// for its error.
type deletion struct {
	del    func(ctx context.Context, id string, version int64) error
	lookup func(ctx context.Context, id string) error
}

// checkCAD checks a delete's compare-and-delete on v, stored with ID id: a Version other than the stored one is
// refused with ErrStale and deletes nothing, the Version read before an update included; the stored one deletes;
// and a missing value is ErrNotFound at any version. Then it checks that version 0 deletes other (stored with ID
// otherID) whatever its Version, after an update.
func checkCAD[T any](t *testing.T, d deletion, v versioned[T], id string, other versioned[T], otherID string) {
	t.Helper()
	ctx := t.Context()
	v0 := *v.version(v.stored)
	for _, stale := range []int64{v0 - 1, v0 + 1, v0 + 100} {
		call := fmt.Sprintf("delete %s at version %d (stored: %d)", v.kind, stale, v0)
		checkErr(t, call, d.del(ctx, id, stale), auth.ErrStale)
	}
	if diff := cmp.Diff(v.stored, v.find(t), equateEmpty); diff != "" {
		t.Errorf("%s after deletes at stale versions: mismatch (-want +got):\n%s", v.kind, diff)
	}

	// The lost update If-Match guards against: a change between the caller's read and its delete.
	first := v.changed(v.stored, "first")
	if err := v.update(ctx, first); err != nil {
		t.Fatalf("update %s at version %d: %v", v.kind, v0, err)
	}
	checkErr(t, fmt.Sprintf("delete %s at the version read before an update", v.kind), d.del(ctx, id, v0), auth.ErrStale)
	if diff := cmp.Diff(first, v.find(t), equateEmpty); diff != "" {
		t.Errorf("%s after a delete at the version read before an update: mismatch (-want +got):\n%s", v.kind, diff)
	}

	if err := d.del(ctx, id, v0+1); err != nil {
		t.Fatalf("delete %s at the stored version %d: %v", v.kind, v0+1, err)
	}
	checkErr(t, fmt.Sprintf("find %s after its delete", v.kind), d.lookup(ctx, id), auth.ErrNotFound)
	for _, version := range []int64{v0 + 1, v0, 0} {
		checkErr(t, fmt.Sprintf("delete deleted %s at version %d", v.kind, version), d.del(ctx, id, version), auth.ErrNotFound)
		checkErr(t, fmt.Sprintf("delete unknown %s at version %d", v.kind, version), d.del(ctx, id+"-none", version),
			auth.ErrNotFound)
	}

	// Version 0: any version.
	o := other.changed(other.stored, "other")
	if err := other.update(ctx, o); err != nil {
		t.Fatalf("update other %s: %v", v.kind, err)
	}
	if err := d.del(ctx, otherID, 0); err != nil {
		t.Fatalf("delete %s at version 0 (stored: %d): %v", v.kind, *v.version(o), err)
	}
	checkErr(t, fmt.Sprintf("find %s after its delete at version 0", v.kind), d.lookup(ctx, otherID), auth.ErrNotFound)
}

func testAPIDeleteVersion(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	a, b := newAPI("api_1", "urn:example:one", t0), newAPI("api_2", "urn:example:two", t0)
	mustCreateAPI(t, s, a, b)
	mustCreateClient(t, s, newClient("client-1", t0, newSecret("sec_0001", t0)))
	g := newGrant("grt_1", "client-1", "api_1", t0, "read:items")
	mustPutGrant(t, s, g)

	// A stale delete keeps the API's grants too.
	checkErr(t, "DeleteAPI at a stale version", s.DeleteAPI(t.Context(), "api_1", a.Version+1), auth.ErrStale)
	if diff := cmp.Diff([]*auth.Grant{g}, listGrants(t, s, "client-1"), equateEmpty); diff != "" {
		t.Errorf("grants after a stale DeleteAPI: mismatch (-want +got):\n%s", diff)
	}
	checkCAD(t, deletion{del: s.DeleteAPI, lookup: func(ctx context.Context, id string) error {
		_, err := s.FindAPI(ctx, id)
		return err
	}}, apiVersioned(s, a), a.ID, apiVersioned(s, b), b.ID)
	if got := listGrants(t, s, "client-1"); len(got) != 0 {
		t.Errorf("grants after DeleteAPI at the stored version = %v, want none", got)
	}
}

func testClientDeleteVersion(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0))
	c, d := newClient("client-1", t0, newSecret("sec_0001", t0)), newClient("client-2", t0, newSecret("sec_0002", t0))
	mustCreateClient(t, s, c, d)
	g := newGrant("grt_1", "client-1", "api_1", t0, "read:items")
	mustPutGrant(t, s, g)

	checkErr(t, "DeleteClient at a stale version", s.DeleteClient(t.Context(), "client-1", c.Version-1), auth.ErrStale)
	if diff := cmp.Diff([]*auth.Grant{g}, listGrants(t, s, "client-1"), equateEmpty); diff != "" {
		t.Errorf("grants after a stale DeleteClient: mismatch (-want +got):\n%s", diff)
	}
	checkCAD(t, deletion{del: s.DeleteClient, lookup: func(ctx context.Context, id string) error {
		_, err := s.FindClient(ctx, id)
		return err
	}}, clientVersioned(s, c), c.ID, clientVersioned(s, d), d.ID)
	checkErr(t, "FindGrant after DeleteClient", func() error { _, err := s.FindGrant(t.Context(), "grt_1"); return err }(),
		auth.ErrNotFound)
}

func testGrantDeleteVersion(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0), newAPI("api_2", "urn:example:two", t0))
	mustCreateClient(t, s, newClient("client-1", t0, newSecret("sec_0001", t0)))
	g, h := newGrant("grt_1", "client-1", "api_1", t0, "read:items"), newGrant("grt_2", "client-1", "api_2", t0)
	mustPutGrant(t, s, g, h)
	lookup := func(ctx context.Context, id string) error {
		_, err := s.FindGrant(ctx, id)
		return err
	}
	checkCAD(t, deletion{del: s.DeleteGrant, lookup: lookup}, grantVersioned(s, g), g.ID, grantVersioned(s, h), h.ID)

	// A delete names the grant by ID: a new grant for the same client and API, at the version the deleted one had,
	// is not the one deleted.
	again := newGrant("grt_3", "client-1", "api_1", t0, "read:items")
	mustPutGrant(t, s, again)
	checkErr(t, "DeleteGrant of the deleted grant's ID", s.DeleteGrant(ctx, "grt_1", again.Version), auth.ErrNotFound)
	if err := lookup(ctx, "grt_3"); err != nil {
		t.Errorf("FindGrant(grt_3) after a delete of grt_1: %v", err)
	}
}

func testOrgDeleteVersion(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	o, p := newOrg("org_01", "acme", t0), newOrg("org_02", "globex", t0)
	mustCreateOrg(t, s, o, p)

	// The ownership check holds at the stored version too.
	c := newClient("client-1", t0, newSecret("sec_0001", t0))
	c.OrgID = "org_01"
	mustCreateClient(t, s, c)
	checkErr(t, "DeleteOrg at the stored version, owning a client", s.DeleteOrg(ctx, "org_01", o.Version), auth.ErrConflict)
	if diff := cmp.Diff(o, findOrg(t, s, "org_01"), equateEmpty); diff != "" {
		t.Errorf("organization after a refused DeleteOrg: mismatch (-want +got):\n%s", diff)
	}
	if err := s.DeleteClient(ctx, "client-1", 0); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	checkCAD(t, deletion{del: s.DeleteOrg, lookup: func(ctx context.Context, id string) error {
		_, err := s.FindOrg(ctx, id)
		return err
	}}, orgVersioned(s, o), o.ID, orgVersioned(s, p), p.ID)
}

func testAPIKeyDeleteVersion(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	k, l := newAPIKey("key_01", "", t0), newAPIKey("key_02", "", t0)
	mustCreateAPIKey(t, s, k, keyHash("one"))
	mustCreateAPIKey(t, s, l, keyHash("two"))

	checkErr(t, "DeleteAPIKey at a stale version", s.DeleteAPIKey(t.Context(), "key_01", k.Version+1), auth.ErrStale)
	checkHash(t, s, "after a stale DeleteAPIKey", keyHash("one"), "key_01", time.Time{})
	checkCAD(t, deletion{del: s.DeleteAPIKey, lookup: func(ctx context.Context, id string) error {
		_, err := s.FindAPIKey(ctx, id)
		return err
	}}, apiKeyVersioned(s, k), k.ID, apiKeyVersioned(s, l), l.ID)
	checkNoHash(t, s, "after DeleteAPIKey", keyHash("one"))
}
