package authtest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

func testAPICreateFind(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	want := newAPI("api_1", "https://api.example.com/v1", t0)
	other := newAPI("api_2", "urn:example:other", t0)
	other.Scopes = nil // an API without scopes
	mustCreateAPI(t, s, want, other)

	if diff := cmp.Diff(want, findAPI(t, s, "api_1")); diff != "" {
		t.Errorf("FindAPI mismatch (-want +got):\n%s", diff)
	}
	got, err := s.FindAPIByIdentifier(t.Context(), "https://api.example.com/v1")
	if err != nil {
		t.Fatalf("FindAPIByIdentifier: %v", err)
	}
	checkUTC(t, "FindAPIByIdentifier", got.CreatedAt, got.UpdatedAt)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FindAPIByIdentifier mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(other, findAPI(t, s, "api_2"), equateEmpty); diff != "" {
		t.Errorf("FindAPI of an API without scopes: mismatch (-want +got):\n%s", diff)
	}

	// The identifier must match exactly.
	for _, id := range []string{"https://api.example.com/v1/", "https://API.example.com/v1", "https://api.example.com"} {
		_, err := s.FindAPIByIdentifier(t.Context(), id)
		checkErr(t, "FindAPIByIdentifier("+id+")", err, auth.ErrNotFound)
	}
}

func testAPICreateConflict(t *testing.T, open func(t *testing.T) auth.Store) {
	t0 := now()
	tests := []struct {
		name string
		api  *auth.API
	}{
		{"same ID", newAPI("api_1", "urn:example:new", t0)},
		{"same identifier", newAPI("api_2", "urn:example:one", t0)},
		{"same both", newAPI("api_1", "urn:example:one", t0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			first := newAPI("api_1", "urn:example:one", t0)
			mustCreateAPI(t, s, first)
			err := s.CreateAPI(t.Context(), tt.api)
			checkErr(t, "CreateAPI", err, auth.ErrConflict)

			apis, err := s.ListAPIs(t.Context())
			if err != nil {
				t.Fatalf("ListAPIs: %v", err)
			}
			if diff := cmp.Diff([]*auth.API{first}, apis); diff != "" {
				t.Errorf("ListAPIs after a conflict: mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testAPIUpdate(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	a1 := newAPI("api_1", "urn:example:one", t0)
	a2 := newAPI("api_2", "urn:example:two", t0)
	mustCreateAPI(t, s, a1, a2)

	update := &auth.API{
		ID:               "api_1",
		Identifier:       "urn:example:renamed",
		Name:             "Renamed",
		Scopes:           []auth.Scope{{Name: "admin", Description: "Everything"}},
		TokenLifetime:    24 * time.Hour,
		SigningAlg:       auth.EdDSA,
		KeyTokenLifetime: 5 * time.Minute,
		Version:          a1.Version,
		CreatedAt:        t0.Add(time.Hour), // ignored: CreatedAt never changes
		UpdatedAt:        t0.Add(time.Minute),
	}
	if err := s.UpdateAPI(ctx, update); err != nil {
		t.Fatalf("UpdateAPI: %v", err)
	}
	if update.Version != a1.Version+1 {
		t.Errorf("Version after UpdateAPI = %d, want %d", update.Version, a1.Version+1)
	}
	want := *update
	want.CreatedAt = t0
	if diff := cmp.Diff(&want, findAPI(t, s, "api_1")); diff != "" {
		t.Errorf("FindAPI after UpdateAPI: mismatch (-want +got):\n%s", diff)
	}
	_, err := s.FindAPIByIdentifier(ctx, "urn:example:one")
	checkErr(t, "FindAPIByIdentifier(old identifier)", err, auth.ErrNotFound)
	got, err := s.FindAPIByIdentifier(ctx, "urn:example:renamed")
	if err != nil || got.ID != "api_1" {
		t.Errorf("FindAPIByIdentifier(new identifier) = %v, %v; want api_1", got, err)
	}

	// Keeping its own identifier is no conflict.
	want.Name = "Renamed again"
	if err := s.UpdateAPI(ctx, &want); err != nil {
		t.Errorf("UpdateAPI with the same identifier: %v", err)
	}

	// Taking another API's identifier is, and leaves the caller's Version alone.
	taken := want
	taken.Identifier = a2.Identifier
	checkErr(t, "UpdateAPI(identifier of api_2)", s.UpdateAPI(ctx, &taken), auth.ErrConflict)
	if taken.Version != want.Version {
		t.Errorf("Version after a conflicting UpdateAPI = %d, want %d (unchanged)", taken.Version, want.Version)
	}
	if diff := cmp.Diff(&want, findAPI(t, s, "api_1")); diff != "" {
		t.Errorf("api_1 after a conflicting update: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(a2, findAPI(t, s, "api_2")); diff != "" {
		t.Errorf("api_2 after a conflicting update of api_1: mismatch (-want +got):\n%s", diff)
	}

	checkErr(t, "UpdateAPI(unknown)", s.UpdateAPI(ctx, newAPI("api_none", "urn:example:none", t0)), auth.ErrNotFound)
	_, err = s.FindAPI(ctx, "api_none")
	checkErr(t, "FindAPI after UpdateAPI(unknown)", err, auth.ErrNotFound)
}

func testAPIList(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	// Created out of identifier order, with IDs and times in yet another order.
	c := newAPI("api_1", "urn:example:c", t0)
	a := newAPI("api_2", "https://a.example.com", t0.Add(2*time.Second))
	b := newAPI("api_3", "urn:example:b", t0.Add(time.Second))
	mustCreateAPI(t, s, c, a, b)

	got, err := s.ListAPIs(t.Context())
	if err != nil {
		t.Fatalf("ListAPIs: %v", err)
	}
	for _, api := range got {
		checkUTC(t, "ListAPIs "+api.ID, api.CreatedAt, api.UpdatedAt)
	}
	if diff := cmp.Diff([]*auth.API{a, b, c}, got); diff != "" {
		t.Errorf("ListAPIs mismatch (-want +got):\n%s", diff)
	}
}

func testAPIDelete(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0), newAPI("api_2", "urn:example:two", t0))
	mustCreateClient(t, s,
		newClient("client-a", t0, newSecret("sec_a001", t0)),
		newClient("client-b", t0, newSecret("sec_b001", t0)))
	keep := newGrant("grt_a2", "client-a", "api_2", t0, "read:items")
	mustPutGrant(t, s,
		newGrant("grt_a1", "client-a", "api_1", t0, "read:items"),
		newGrant("grt_b1", "client-b", "api_1", t0),
		keep)

	if err := s.DeleteAPI(ctx, "api_1", 0); err != nil {
		t.Fatalf("DeleteAPI: %v", err)
	}
	_, err := s.FindAPI(ctx, "api_1")
	checkErr(t, "FindAPI(deleted)", err, auth.ErrNotFound)
	_, err = s.FindAPIByIdentifier(ctx, "urn:example:one")
	checkErr(t, "FindAPIByIdentifier(deleted)", err, auth.ErrNotFound)
	if diff := cmp.Diff([]*auth.Grant{keep}, listGrants(t, s, "client-a")); diff != "" {
		t.Errorf("ListGrants(client-a) after DeleteAPI: mismatch (-want +got):\n%s", diff)
	}
	if got := listGrants(t, s, "client-b"); len(got) != 0 {
		t.Errorf("ListGrants(client-b) after DeleteAPI = %v, want none", got)
	}
	findAPI(t, s, "api_2")

	checkErr(t, "DeleteAPI(deleted)", s.DeleteAPI(ctx, "api_1", 0), auth.ErrNotFound)
	checkErr(t, "DeleteAPI(unknown)", s.DeleteAPI(ctx, "api_none", 0), auth.ErrNotFound)

	// The identifier is free again.
	if err := s.CreateAPI(ctx, newAPI("api_3", "urn:example:one", t0)); err != nil {
		t.Errorf("CreateAPI with a deleted API's identifier: %v", err)
	}
}
