package authtest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// permutation returns 0, …, n-1 in a fixed shuffled order, the order tests create items in, so that a backend
// that lists in insertion order fails.
func permutation(n int) []int { return rand.New(rand.NewPCG(1, 2)).Perm(n) }

// checkPages walks a paged list with several page sizes and checks that the pages add up to want (ordered by key),
// each holds at most Limit items, and After starts a page after the key it names, whether an item has it or not.
func checkPages[T any](t *testing.T, name string, want []*T, key func(*T) string, list func(p auth.Page) ([]*T, error)) {
	t.Helper()
	for _, limit := range []int{0, 1, 7, 64, len(want), len(want) + 1} {
		var got []*T
		after := ""
		for calls := 0; ; calls++ {
			if calls > len(want)+1 {
				t.Fatalf("%s with Limit %d: more pages than items; is After ignored?", name, limit)
			}
			p := auth.Page{After: after, Limit: limit}
			page, err := list(p)
			if err != nil {
				t.Fatalf("%s(%+v): %v", name, p, err)
			}
			if limit > 0 && len(page) > limit {
				t.Errorf("%s(%+v): %d items, want at most %d", name, p, len(page), limit)
			}
			got = append(got, page...)
			if limit == 0 || len(page) < limit {
				break
			}
			after = key(page[len(page)-1])
		}
		if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
			t.Errorf("%s, all pages of Limit %d: mismatch (-want +got):\n%s", name, limit, diff)
		}
	}
	if len(want) == 0 {
		return
	}

	// After an item's key, and after a key between two items'.
	mid := len(want) / 2
	for _, after := range []string{key(want[mid]), key(want[mid]) + "0"} {
		p := auth.Page{After: after, Limit: 5}
		got, err := list(p)
		if err != nil {
			t.Fatalf("%s(%+v): %v", name, p, err)
		}
		if diff := cmp.Diff(want[mid+1:min(mid+6, len(want))], got, equateEmpty); diff != "" {
			t.Errorf("%s(%+v): mismatch (-want +got):\n%s", name, p, diff)
		}
	}
	for _, p := range []auth.Page{{After: key(want[len(want)-1])}, {After: key(want[len(want)-1]) + "0", Limit: 3}} {
		if got, err := list(p); err != nil || len(got) != 0 {
			t.Errorf("%s(%+v) = %d items, %v; want none after the last", name, p, len(got), err)
		}
	}
}

func testAPIListPage(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	const n = 250
	apis := make([]*auth.API, n)
	for _, i := range permutation(n) {
		// Identifiers in the reverse order of IDs: ListAPIsPage orders by ID, ListAPIs by Identifier.
		apis[i] = newAPI(fmt.Sprintf("api_%04d", i), fmt.Sprintf("urn:example:%04d", n-i), t0.Add(time.Duration(i%5)*time.Second))
		mustCreateAPI(t, s, apis[i])
	}
	checkPages(t, "ListAPIsPage", apis, func(a *auth.API) string { return a.ID }, func(p auth.Page) ([]*auth.API, error) {
		return s.ListAPIsPage(t.Context(), p)
	})
}

func testClientListPage(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	orgs := []string{"org_a", "org_b", ""}
	mustCreateOrg(t, s, newOrg("org_a", "a", t0), newOrg("org_b", "b", t0), newOrg("org_c", "c", t0))
	const n = 240
	clients := make([]*auth.Client, n)
	for _, i := range permutation(n) {
		// One to three secrets each: a page is of clients, not of rows of secrets.
		var secrets []auth.Secret
		for j := range i%3 + 1 {
			secrets = append(secrets, newSecret(fmt.Sprintf("sec_%04d_%d", i, j), t0.Add(time.Duration(j)*time.Second)))
		}
		clients[i] = newClient(fmt.Sprintf("client-%04d", i), t0, secrets...)
		clients[i].OrgID = orgs[i%len(orgs)]
		mustCreateClient(t, s, clients[i])
	}
	id := func(c *auth.Client) string { return c.ID }
	for _, org := range []string{"", "org_a", "org_b", "org_c", "org_none"} {
		want := clients
		if org != "" {
			want = slices.DeleteFunc(slices.Clone(clients), func(c *auth.Client) bool { return c.OrgID != org })
		}
		checkPages(t, fmt.Sprintf("ListClientsPage(OrgID %q)", org), want, id, func(p auth.Page) ([]*auth.Client, error) {
			return s.ListClientsPage(t.Context(), auth.ClientFilter{OrgID: org, Page: p})
		})
	}
}

func testGrantListPage(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	orgs := []string{"org_a", "org_b", ""}
	mustCreateOrg(t, s, newOrg("org_a", "a", t0), newOrg("org_b", "b", t0))
	const nClients, nAPIs = 20, 12
	orgOf := map[string]string{}
	for i := range nClients {
		c := newClient(fmt.Sprintf("client-%02d", i), t0, newSecret(fmt.Sprintf("sec_%04d", i), t0))
		c.OrgID = orgs[i%len(orgs)]
		orgOf[c.ID] = c.OrgID
		mustCreateClient(t, s, c)
	}
	for i := range nAPIs {
		mustCreateAPI(t, s, newAPI(fmt.Sprintf("api_%02d", i), fmt.Sprintf("urn:example:%02d", i), t0))
	}
	// Grant IDs in neither client nor API order, created in yet another order.
	ids := permutation(nClients * nAPIs)
	grants := make([]*auth.Grant, len(ids))
	for _, k := range permutation(len(ids)) {
		grants[k] = newGrant(fmt.Sprintf("grt_%04d", ids[k]), fmt.Sprintf("client-%02d", k/nAPIs), fmt.Sprintf("api_%02d", k%nAPIs),
			t0, fmt.Sprintf("scope-%d", k))
		mustPutGrant(t, s, grants[k])
	}
	slices.SortFunc(grants, func(a, b *auth.Grant) int { return strings.Compare(a.ID, b.ID) })

	tests := []auth.GrantFilter{
		{},
		{ClientID: "client-05"},
		{APIID: "api_07"},
		{ClientID: "client-05", APIID: "api_07"},
		{OrgID: "org_a"},
		{OrgID: "org_b", APIID: "api_03"},
		{OrgID: "org_a", ClientID: "client-03"},
		{OrgID: "org_a", ClientID: "client-01"}, // another organization's client: none
		{ClientID: "client-none"},
		{APIID: "api_none"},
		{OrgID: "org_none"},
	}
	for _, f := range tests {
		want := slices.DeleteFunc(slices.Clone(grants), func(g *auth.Grant) bool {
			return f.ClientID != "" && g.ClientID != f.ClientID ||
				f.APIID != "" && g.APIID != f.APIID ||
				f.OrgID != "" && orgOf[g.ClientID] != f.OrgID
		})
		checkPages(t, fmt.Sprintf("ListGrantsPage(%+v)", f), want, func(g *auth.Grant) string { return g.ID },
			func(p auth.Page) ([]*auth.Grant, error) {
				f.Page = p
				return s.ListGrantsPage(t.Context(), f)
			})
	}
}
