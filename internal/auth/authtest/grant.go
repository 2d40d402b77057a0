package authtest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

func testGrantPut(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0))
	mustCreateClient(t, s, newClient("client-1", t0, newSecret("sec_0001", t0)))

	created := newGrant("grt_1", "client-1", "api_1", t0, "read:items", "write:items")
	mustPutGrant(t, s, created)
	first := *created
	if diff := cmp.Diff([]*auth.Grant{&first}, listGrants(t, s, "client-1")); diff != "" {
		t.Errorf("ListGrants after PutGrant: mismatch (-want +got):\n%s", diff)
	}

	// A second put replaces the scopes and UpdatedAt, keeps the stored ID and CreatedAt, and increments the stored
	// Version, writing the three back.
	replace := newGrant("grt_other", "client-1", "api_1", t0.Add(time.Hour), "read:items")
	replace.UpdatedAt = t0.Add(2 * time.Hour)
	replace.Version = 40 // ignored: the stored grant's version is incremented
	if err := s.PutGrant(ctx, replace); err != nil {
		t.Fatalf("PutGrant (replace): %v", err)
	}
	want := &auth.Grant{
		ID:        "grt_1",
		ClientID:  "client-1",
		APIID:     "api_1",
		Scopes:    []string{"read:items"},
		Version:   created.Version + 1,
		CreatedAt: t0,
		UpdatedAt: t0.Add(2 * time.Hour),
	}
	checkUTC(t, "PutGrant's written-back CreatedAt", replace.CreatedAt)
	if diff := cmp.Diff(want, replace); diff != "" {
		t.Errorf("grant passed to PutGrant (replace), afterwards: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*auth.Grant{want}, listGrants(t, s, "client-1")); diff != "" {
		t.Errorf("ListGrants after PutGrant (replace): mismatch (-want +got):\n%s", diff)
	}

	// Empty scopes (audience only) are stored as empty.
	for _, scopes := range [][]string{{}, nil} {
		g := newGrant("grt_3", "client-1", "api_1", t0)
		g.Scopes = scopes
		if err := s.PutGrant(ctx, g); err != nil {
			t.Fatalf("PutGrant(scopes %#v): %v", scopes, err)
		}
		got := listGrants(t, s, "client-1")
		if len(got) != 1 || len(got[0].Scopes) != 0 {
			t.Errorf("ListGrants after PutGrant(scopes %#v) = %+v, want one grant without scopes", scopes, got)
		}
	}
}

func testGrantNotFound(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0))
	mustCreateClient(t, s, newClient("client-1", t0, newSecret("sec_0001", t0)))

	tests := []struct{ name, clientID, apiID string }{
		{"unknown client", "client-none", "api_1"},
		{"unknown API", "client-1", "api_none"},
		{"both unknown", "client-none", "api_none"},
	}
	for _, tt := range tests {
		err := s.PutGrant(ctx, newGrant("grt_1", tt.clientID, tt.apiID, t0))
		checkErr(t, "PutGrant: "+tt.name, err, auth.ErrNotFound)
	}
	if got := listGrants(t, s, "client-1"); len(got) != 0 {
		t.Errorf("ListGrants after failed PutGrant calls = %v, want none", got)
	}
	if got := listGrants(t, s, "client-none"); len(got) != 0 {
		t.Errorf("ListGrants(unknown client) after failed PutGrant calls = %v, want none", got)
	}
}

func testGrantList(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	mustCreateAPI(t, s,
		newAPI("api_b", "urn:example:a", t0),
		newAPI("api_c", "urn:example:b", t0),
		newAPI("api_a", "urn:example:c", t0))
	mustCreateClient(t, s,
		newClient("client-1", t0, newSecret("sec_0001", t0)),
		newClient("client-2", t0, newSecret("sec_0002", t0)))
	b := newGrant("grt_1", "client-1", "api_b", t0, "read:items")
	c := newGrant("grt_2", "client-1", "api_c", t0.Add(-time.Second), "write:items", "read:items")
	a := newGrant("grt_3", "client-1", "api_a", t0.Add(time.Second))
	mustPutGrant(t, s, b, c, a, newGrant("grt_4", "client-2", "api_a", t0, "read:items"))

	// Ordered by APIID, neither by CreatedAt, nor by grant ID, nor by the API's identifier.
	if diff := cmp.Diff([]*auth.Grant{a, b, c}, listGrants(t, s, "client-1"), equateEmpty); diff != "" {
		t.Errorf("ListGrants mismatch (-want +got):\n%s", diff)
	}
}

func testGrantDelete(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0), newAPI("api_2", "urn:example:two", t0))
	mustCreateClient(t, s,
		newClient("client-1", t0, newSecret("sec_0001", t0)),
		newClient("client-2", t0, newSecret("sec_0002", t0)))
	keep1 := newGrant("grt_2", "client-1", "api_2", t0, "read:items")
	keep2 := newGrant("grt_3", "client-2", "api_1", t0, "read:items")
	mustPutGrant(t, s, newGrant("grt_1", "client-1", "api_1", t0, "read:items"), keep1, keep2)

	tests := []struct {
		name, id string
		want     error
	}{
		{"existing", "grt_1", nil},
		{"deleted already", "grt_1", auth.ErrNotFound},
		{"unknown", "grt_none", auth.ErrNotFound},
	}
	for _, tt := range tests {
		checkErr(t, "DeleteGrant: "+tt.name, s.DeleteGrant(ctx, tt.id, 0), tt.want)
	}
	if diff := cmp.Diff([]*auth.Grant{keep1}, listGrants(t, s, "client-1")); diff != "" {
		t.Errorf("ListGrants(client-1) after DeleteGrant: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*auth.Grant{keep2}, listGrants(t, s, "client-2")); diff != "" {
		t.Errorf("ListGrants(client-2) after DeleteGrant: mismatch (-want +got):\n%s", diff)
	}
	// The API and the client stay.
	findAPI(t, s, "api_1")
	findClient(t, s, "client-1")
}

func testGrantCreateFind(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0), newAPI("api_2", "urn:example:two", t0))
	mustCreateClient(t, s, newClient("client-1", t0, newSecret("sec_0001", t0)))
	g := newGrant("grt_1", "client-1", "api_1", t0, "read:items", "write:items")
	g.UpdatedAt = t0.Add(time.Second)
	audienceOnly := newGrant("grt_2", "client-1", "api_2", t0)
	for _, g := range []*auth.Grant{g, audienceOnly} {
		if err := s.CreateGrant(ctx, g); err != nil {
			t.Fatalf("CreateGrant(%q): %v", g.ID, err)
		}
	}
	if diff := cmp.Diff(g, findGrant(t, s, "grt_1")); diff != "" {
		t.Errorf("FindGrant mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(audienceOnly, findGrant(t, s, "grt_2"), equateEmpty); diff != "" {
		t.Errorf("FindGrant of a grant without scopes: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*auth.Grant{g, audienceOnly}, listGrants(t, s, "client-1"), equateEmpty); diff != "" {
		t.Errorf("ListGrants after CreateGrant: mismatch (-want +got):\n%s", diff)
	}
	_, err := s.FindGrant(ctx, "grt_none")
	checkErr(t, "FindGrant(unknown)", err, auth.ErrNotFound)
}

func testGrantCreateConflict(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0), newAPI("api_2", "urn:example:two", t0))
	mustCreateClient(t, s, newClient("client-1", t0, newSecret("sec_0001", t0)))
	first := newGrant("grt_1", "client-1", "api_1", t0, "read:items")
	if err := s.CreateGrant(ctx, first); err != nil {
		t.Fatalf("CreateGrant: %v", err)
	}
	tests := []struct {
		name  string
		grant *auth.Grant
		want  error
	}{
		{"same ID", newGrant("grt_1", "client-1", "api_2", t0), auth.ErrConflict},
		{"same client and API", newGrant("grt_2", "client-1", "api_1", t0, "write:items"), auth.ErrConflict},
		{"unknown client", newGrant("grt_3", "client-none", "api_1", t0), auth.ErrNotFound},
		{"unknown API", newGrant("grt_4", "client-1", "api_none", t0), auth.ErrNotFound},
	}
	for _, tt := range tests {
		checkErr(t, "CreateGrant: "+tt.name, s.CreateGrant(ctx, tt.grant), tt.want)
	}
	if diff := cmp.Diff([]*auth.Grant{first}, listGrants(t, s, "client-1")); diff != "" {
		t.Errorf("ListGrants after failed CreateGrant calls: mismatch (-want +got):\n%s", diff)
	}
	for _, id := range []string{"grt_2", "grt_3", "grt_4"} {
		_, err := s.FindGrant(ctx, id)
		checkErr(t, "FindGrant of a grant whose create failed", err, auth.ErrNotFound)
	}
}

func testGrantUpdate(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0), newAPI("api_2", "urn:example:two", t0))
	mustCreateClient(t, s,
		newClient("client-1", t0, newSecret("sec_0001", t0)),
		newClient("client-2", t0, newSecret("sec_0002", t0)))
	g := newGrant("grt_1", "client-1", "api_1", t0, "read:items")
	other := newGrant("grt_2", "client-2", "api_1", t0, "read:items")
	mustPutGrant(t, s, g, other)

	update := &auth.Grant{
		ID:        "grt_1",
		ClientID:  "client-2", // ignored: a grant never moves
		APIID:     "api_2",    // ignored
		Scopes:    []string{"write:items"},
		Version:   g.Version,
		CreatedAt: t0.Add(time.Hour), // ignored
		UpdatedAt: t0.Add(time.Minute),
	}
	if err := s.UpdateGrant(ctx, update); err != nil {
		t.Fatalf("UpdateGrant: %v", err)
	}
	want := *g
	want.Scopes, want.UpdatedAt, want.Version = []string{"write:items"}, t0.Add(time.Minute), g.Version+1
	if diff := cmp.Diff(&want, findGrant(t, s, "grt_1")); diff != "" {
		t.Errorf("FindGrant after UpdateGrant: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*auth.Grant{&want}, listGrants(t, s, "client-1")); diff != "" {
		t.Errorf("ListGrants after UpdateGrant: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(other, findGrant(t, s, "grt_2")); diff != "" {
		t.Errorf("the other grant after UpdateGrant: mismatch (-want +got):\n%s", diff)
	}

	// To no scopes: audience only.
	update.Scopes = nil
	if err := s.UpdateGrant(ctx, update); err != nil {
		t.Fatalf("UpdateGrant(no scopes): %v", err)
	}
	if got := findGrant(t, s, "grt_1"); len(got.Scopes) != 0 {
		t.Errorf("scopes after UpdateGrant(no scopes) = %v, want none", got.Scopes)
	}

	checkErr(t, "UpdateGrant(unknown)", s.UpdateGrant(ctx, newGrant("grt_none", "client-1", "api_1", t0)), auth.ErrNotFound)
	_, err := s.FindGrant(ctx, "grt_none")
	checkErr(t, "FindGrant after UpdateGrant(unknown)", err, auth.ErrNotFound)
}
