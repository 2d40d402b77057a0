package authtest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

func testOrgCreateFind(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	o := newOrg("org_01", "acme", t0)
	bare := newOrg("org_02", "globex", t0)
	bare.Description, bare.APIKeyPrefix, bare.AllowedGrants = "", "", nil
	mustCreateOrg(t, s, o, bare)
	want := *o
	want.AllowedGrants = []auth.OrgGrant{
		{APIID: "api_1", Scopes: []string{"read:items", "write:items"}},
		{APIID: "api_2", Scopes: []string{}},
	}
	if diff := cmp.Diff(&want, findOrg(t, s, "org_01"), equateEmpty); diff != "" {
		t.Errorf("FindOrg mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(bare, findOrg(t, s, "org_02"), equateEmpty); diff != "" {
		t.Errorf("FindOrg of an organization without allowed grants: mismatch (-want +got):\n%s", diff)
	}

	// The store keeps no reference to what it is given or returns.
	o.AllowedGrants[0].Scopes[0] = "changed"
	o.AllowedGrants[1].APIID = "changed"
	if got, err := s.FindOrg(ctx, "org_01"); err == nil && len(got.AllowedGrants) == 2 && len(got.AllowedGrants[0].Scopes) > 0 {
		got.AllowedGrants[0].Scopes[0] = "changed"
		got.AllowedGrants[1].APIID = "changed"
	}
	if orgs, err := s.ListOrgs(ctx, auth.Page{}); err == nil && len(orgs) > 0 && len(orgs[0].AllowedGrants) > 0 {
		orgs[0].AllowedGrants[0].APIID = "changed"
	}
	if diff := cmp.Diff(&want, findOrg(t, s, "org_01"), equateEmpty); diff != "" {
		t.Errorf("FindOrg after changing values given and returned: mismatch (-want +got):\n%s", diff)
	}
}

func testOrgCreateConflict(t *testing.T, open func(t *testing.T) auth.Store) {
	t0 := now()
	tests := []struct {
		name string
		org  *auth.Org
	}{
		{"same ID", newOrg("org_01", "globex", t0)},
		{"same name", newOrg("org_02", "acme", t0)},
		{"same both", newOrg("org_01", "acme", t0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			first := newOrg("org_01", "acme", t0)
			mustCreateOrg(t, s, first)
			checkErr(t, "CreateOrg", s.CreateOrg(t.Context(), tt.org), auth.ErrConflict)
			orgs, err := s.ListOrgs(t.Context(), auth.Page{})
			if err != nil {
				t.Fatalf("ListOrgs: %v", err)
			}
			if diff := cmp.Diff([]*auth.Org{first}, orgs, equateEmpty); diff != "" {
				t.Errorf("ListOrgs after a conflict: mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testOrgUpdate(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	o1 := newOrg("org_01", "acme", t0)
	o2 := newOrg("org_02", "globex", t0)
	mustCreateOrg(t, s, o1, o2)

	update := &auth.Org{
		ID:            "org_01",
		Name:          "acme-renamed",
		Description:   "",
		APIKeyPrefix:  "acme",
		AllowedGrants: []auth.OrgGrant{{APIID: "api_9", Scopes: []string{"admin"}}},
		Version:       o1.Version,
		CreatedAt:     t0.Add(time.Hour), // ignored: CreatedAt never changes
		UpdatedAt:     t0.Add(time.Minute),
	}
	if err := s.UpdateOrg(ctx, update); err != nil {
		t.Fatalf("UpdateOrg: %v", err)
	}
	if update.Version != o1.Version+1 {
		t.Errorf("Version after UpdateOrg = %d, want %d", update.Version, o1.Version+1)
	}
	want := *update
	want.CreatedAt = t0
	if diff := cmp.Diff(&want, findOrg(t, s, "org_01")); diff != "" {
		t.Errorf("FindOrg after UpdateOrg: mismatch (-want +got):\n%s", diff)
	}

	// Keeping its own name is no conflict; taking another organization's is.
	want.Description = "described"
	if err := s.UpdateOrg(ctx, &want); err != nil {
		t.Errorf("UpdateOrg with the same name: %v", err)
	}
	taken := want
	taken.Name = o2.Name
	checkErr(t, "UpdateOrg(name of org_02)", s.UpdateOrg(ctx, &taken), auth.ErrConflict)
	if taken.Version != want.Version {
		t.Errorf("Version after a conflicting UpdateOrg = %d, want %d (unchanged)", taken.Version, want.Version)
	}
	if diff := cmp.Diff(&want, findOrg(t, s, "org_01")); diff != "" {
		t.Errorf("org_01 after a conflicting update: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(o2, findOrg(t, s, "org_02"), equateEmpty); diff != "" {
		t.Errorf("org_02 after a conflicting update of org_01: mismatch (-want +got):\n%s", diff)
	}

	// The old name is free again.
	mustCreateOrg(t, s, newOrg("org_03", "acme", t0))

	checkErr(t, "UpdateOrg(unknown)", s.UpdateOrg(ctx, newOrg("org_none", "none", t0)), auth.ErrNotFound)
	_, err := s.FindOrg(ctx, "org_none")
	checkErr(t, "FindOrg after UpdateOrg(unknown)", err, auth.ErrNotFound)
}

func testOrgList(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	const n = 200
	var want []*auth.Org
	for _, i := range permutation(n) {
		// Names in the reverse order of IDs, and creation times in neither: the list is ordered by ID.
		o := newOrg(fmt.Sprintf("org_%04d", i), fmt.Sprintf("name-%04d", n-i), t0.Add(time.Duration(i%7)*time.Second))
		mustCreateOrg(t, s, o)
	}
	for i := range n {
		want = append(want, findOrg(t, s, fmt.Sprintf("org_%04d", i)))
	}
	checkPages(t, "ListOrgs", want, func(o *auth.Org) string { return o.ID }, func(p auth.Page) ([]*auth.Org, error) {
		return s.ListOrgs(t.Context(), p)
	})
}

func testOrgDelete(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	kept := newOrg("org_02", "globex", t0)
	mustCreateOrg(t, s, newOrg("org_01", "acme", t0), kept)
	c1 := newClient("client-1", t0, newSecret("sec_0001", t0))
	c2 := newClient("client-2", t0, newSecret("sec_0002", t0))
	c1.OrgID, c2.OrgID = "org_01", "org_01"
	c3 := newClient("client-3", t0, newSecret("sec_0003", t0))
	c3.OrgID = "org_02"
	mustCreateClient(t, s, c1, c2, c3)

	// Not while it owns clients, down to the last one.
	checkErr(t, "DeleteOrg(with two clients)", s.DeleteOrg(ctx, "org_01", 0), auth.ErrConflict)
	if err := s.DeleteClient(ctx, "client-1", 0); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	checkErr(t, "DeleteOrg(with one client)", s.DeleteOrg(ctx, "org_01", 0), auth.ErrConflict)
	findOrg(t, s, "org_01")
	findClient(t, s, "client-2")

	if err := s.DeleteClient(ctx, "client-2", 0); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	if err := s.DeleteOrg(ctx, "org_01", 0); err != nil {
		t.Fatalf("DeleteOrg(without clients): %v", err)
	}
	_, err := s.FindOrg(ctx, "org_01")
	checkErr(t, "FindOrg(deleted)", err, auth.ErrNotFound)
	checkErr(t, "DeleteOrg(deleted)", s.DeleteOrg(ctx, "org_01", 0), auth.ErrNotFound)
	checkErr(t, "DeleteOrg(unknown)", s.DeleteOrg(ctx, "org_none", 0), auth.ErrNotFound)

	// The other organization and its client stay; the deleted one's ID and name are free again.
	if diff := cmp.Diff(kept, findOrg(t, s, "org_02"), equateEmpty); diff != "" {
		t.Errorf("the other organization after DeleteOrg: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(c3, findClient(t, s, "client-3")); diff != "" {
		t.Errorf("the other organization's client after DeleteOrg: mismatch (-want +got):\n%s", diff)
	}
	mustCreateOrg(t, s, newOrg("org_01", "acme", t0))
	if got := findOrg(t, s, "org_01"); got.Name != "acme" {
		t.Errorf("recreated organization: %+v", got)
	}
}

// testRaceDeleteOrg races the deletion of an organization with the creation of a client in it: either the client
// is created and the organization stays, or the organization is deleted and the create fails. Never both.
func testRaceDeleteOrg(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	deleted, created := 0, 0
	for round := range 20 {
		orgID := fmt.Sprintf("org_%04d", round)
		mustCreateOrg(t, s, newOrg(orgID, orgID, t0))
		c := newClient(fmt.Sprintf("client-%04d", round), t0, newSecret(fmt.Sprintf("sec_%04d", round), t0))
		c.OrgID = orgID

		var (
			wg                   sync.WaitGroup
			start                = make(chan struct{})
			deleteErr, clientErr error
		)
		wg.Go(func() {
			<-start
			deleteErr = s.DeleteOrg(ctx, orgID, 0)
		})
		wg.Go(func() {
			<-start
			clientErr = s.CreateClient(ctx, c)
		})
		close(start)
		wg.Wait()

		_, findErr := s.FindOrg(ctx, orgID)
		switch {
		case deleteErr == nil && errors.Is(clientErr, auth.ErrNotFound):
			deleted++
			checkErr(t, "FindOrg after DeleteOrg won", findErr, auth.ErrNotFound)
			_, err := s.FindClient(ctx, c.ID)
			checkErr(t, "FindClient after DeleteOrg won", err, auth.ErrNotFound)
		case errors.Is(deleteErr, auth.ErrConflict) && clientErr == nil:
			created++
			checkErr(t, "FindOrg after CreateClient won", findErr, nil)
			if got := findClient(t, s, c.ID); got.OrgID != orgID {
				t.Errorf("round %d: the client's OrgID is %q, want %q", round, got.OrgID, orgID)
			}
		default:
			t.Errorf("round %d: DeleteOrg: %v; CreateClient: %v; want one to succeed and the other to fail "+
				"(ErrConflict, ErrNotFound)", round, deleteErr, clientErr)
		}
	}
	t.Logf("DeleteOrg won %d rounds, CreateClient %d", deleted, created)
}
