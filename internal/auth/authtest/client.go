package authtest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

func testClientCreateFind(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	expiring := newSecret("sec_0002", t0)
	expiring.ExpiresAt = t0.Add(24 * time.Hour)
	// Given out of order: FindClient orders secrets by CreatedAt, then ID.
	c := newClient("client-1", t0, newSecret("sec_0003", t0.Add(time.Second)), expiring, newSecret("sec_0001", t0))
	c.Disabled = true
	mustCreateClient(t, s, c)

	want := *c
	want.Secrets = []auth.Secret{c.Secrets[2], c.Secrets[1], c.Secrets[0]}
	if diff := cmp.Diff(&want, findClient(t, s, "client-1")); diff != "" {
		t.Errorf("FindClient mismatch (-want +got):\n%s", diff)
	}
}

func testClientCreateConflict(t *testing.T, open func(t *testing.T) auth.Store) {
	t0 := now()
	tests := []struct {
		name   string
		client *auth.Client
	}{
		{"same ID", newClient("client-1", t0, newSecret("sec_new1", t0))},
		{"secret ID of another client", newClient("client-2", t0, newSecret("sec_new1", t0), newSecret("sec_0001", t0))},
		{"same secret ID twice", newClient("client-2", t0, newSecret("sec_new1", t0), newSecret("sec_new1", t0))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			ctx := t.Context()
			first := newClient("client-1", t0, newSecret("sec_0001", t0))
			mustCreateClient(t, s, first)
			checkErr(t, "CreateClient", s.CreateClient(ctx, tt.client), auth.ErrConflict)

			// Nothing of the failed client was stored: not the client, not its first secret.
			clients, err := s.ListClients(ctx)
			if err != nil {
				t.Fatalf("ListClients: %v", err)
			}
			if diff := cmp.Diff([]*auth.Client{first}, clients); diff != "" {
				t.Errorf("ListClients after a conflict: mismatch (-want +got):\n%s", diff)
			}
			if err := s.AddClientSecret(ctx, "client-1", newSecret("sec_new1", t0), time.Time{}); err != nil {
				t.Errorf("AddClientSecret(sec_new1) after the failed create: %v", err)
			}
		})
	}
}

func testClientUpdate(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	c := newClient("client-1", t0, newSecret("sec_0001", t0), newSecret("sec_0002", t0.Add(time.Second)))
	mustCreateClient(t, s, c)

	update := &auth.Client{
		ID:          "client-1",
		Name:        "Renamed",
		Description: "",
		Disabled:    true,
		OrgID:       "org_other", // ignored: UpdateClient never moves a client
		RateLimit:   auth.RateLimit{Count: 5, Per: time.Second},
		Secrets:     []auth.Secret{newSecret("sec_9999", t0)}, // ignored: secrets are untouched
		Version:     c.Version,
		CreatedAt:   t0.Add(time.Hour), // ignored
		UpdatedAt:   t0.Add(time.Minute),
	}
	if err := s.UpdateClient(ctx, update); err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	if update.Version != c.Version+1 {
		t.Errorf("Version after UpdateClient = %d, want %d", update.Version, c.Version+1)
	}
	want := *c
	want.Name, want.Description, want.Disabled, want.UpdatedAt = "Renamed", "", true, t0.Add(time.Minute)
	want.RateLimit, want.Version = update.RateLimit, c.Version+1
	if diff := cmp.Diff(&want, findClient(t, s, "client-1")); diff != "" {
		t.Errorf("FindClient after UpdateClient: mismatch (-want +got):\n%s", diff)
	}

	// And back: Disabled and RateLimit can be cleared.
	update.Disabled, update.RateLimit = false, auth.RateLimit{}
	if err := s.UpdateClient(ctx, update); err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	if got := findClient(t, s, "client-1"); got.Disabled || !got.RateLimit.IsZero() || got.Version != c.Version+2 {
		t.Errorf("after UpdateClient(Disabled: false, no rate limit): Disabled %v, RateLimit %+v, Version %d; want false, zero, %d",
			got.Disabled, got.RateLimit, got.Version, c.Version+2)
	}

	checkErr(t, "UpdateClient(unknown)", s.UpdateClient(ctx, newClient("client-none", t0)), auth.ErrNotFound)
	_, err := s.FindClient(ctx, "client-none")
	checkErr(t, "FindClient after UpdateClient(unknown)", err, auth.ErrNotFound)
}

func testClientList(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	t0 := now()
	b := newClient("client-b", t0, newSecret("sec_b002", t0.Add(time.Second)), newSecret("sec_b001", t0.Add(time.Second)))
	a := newClient("client-a", t0.Add(time.Second), newSecret("sec_a001", t0))
	c := newClient("client-c", t0, newSecret("sec_c001", t0))
	mustCreateClient(t, s, b, c, a)

	got, err := s.ListClients(t.Context())
	if err != nil {
		t.Fatalf("ListClients: %v", err)
	}
	for _, c := range got {
		checkClientUTC(t, "ListClients "+c.ID, c)
	}
	wantB := *b
	wantB.Secrets = []auth.Secret{b.Secrets[1], b.Secrets[0]} // same CreatedAt: by ID
	if diff := cmp.Diff([]*auth.Client{a, &wantB, c}, got); diff != "" {
		t.Errorf("ListClients mismatch (-want +got):\n%s", diff)
	}
}

func testClientDelete(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateAPI(t, s, newAPI("api_1", "urn:example:one", t0))
	deleted := newClient("client-1", t0, newSecret("sec_0001", t0), newSecret("sec_0002", t0))
	kept := newClient("client-2", t0, newSecret("sec_0003", t0))
	mustCreateClient(t, s, deleted, kept)
	keptGrant := newGrant("grt_2", "client-2", "api_1", t0, "read:items")
	mustPutGrant(t, s, newGrant("grt_1", "client-1", "api_1", t0, "read:items"), keptGrant)

	if err := s.DeleteClient(ctx, "client-1", 0); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	_, err := s.FindClient(ctx, "client-1")
	checkErr(t, "FindClient(deleted)", err, auth.ErrNotFound)
	if got := listGrants(t, s, "client-1"); len(got) != 0 {
		t.Errorf("ListGrants(deleted client) = %v, want none", got)
	}
	if diff := cmp.Diff([]*auth.Grant{keptGrant}, listGrants(t, s, "client-2")); diff != "" {
		t.Errorf("ListGrants(other client): mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(kept, findClient(t, s, "client-2")); diff != "" {
		t.Errorf("FindClient(other client): mismatch (-want +got):\n%s", diff)
	}
	checkErr(t, "DeleteClient(deleted)", s.DeleteClient(ctx, "client-1", 0), auth.ErrNotFound)
	checkErr(t, "DeleteClient(unknown)", s.DeleteClient(ctx, "client-none", 0), auth.ErrNotFound)

	// The secrets went with the client: their IDs are free again, and so is the client's.
	if err := s.AddClientSecret(ctx, "client-2", newSecret("sec_0001", t0), time.Time{}); err != nil {
		t.Errorf("AddClientSecret with a deleted client's secret ID: %v", err)
	}
	if err := s.CreateClient(ctx, newClient("client-1", t0, newSecret("sec_0002", t0))); err != nil {
		t.Errorf("CreateClient with a deleted client's ID and secret ID: %v", err)
	}
	if got := listGrants(t, s, "client-1"); len(got) != 0 {
		t.Errorf("ListGrants(recreated client) = %v, want none", got)
	}
}

func testAddClientSecret(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	c := newClient("client-1", t0, newSecret("sec_0002", t0.Add(time.Second)))
	mustCreateClient(t, s, c, newClient("client-2", t0, newSecret("sec_0009", t0)))

	later := newSecret("sec_0003", t0.Add(2*time.Second))
	later.ExpiresAt = t0.Add(time.Hour)
	earlier := newSecret("sec_0001", t0)
	for _, sec := range []auth.Secret{later, earlier} {
		if err := s.AddClientSecret(ctx, "client-1", sec, time.Time{}); err != nil {
			t.Fatalf("AddClientSecret(%q): %v", sec.ID, err)
		}
	}
	want := *c
	want.Secrets = []auth.Secret{earlier, c.Secrets[0], later}
	if diff := cmp.Diff(&want, findClient(t, s, "client-1")); diff != "" {
		t.Errorf("FindClient after AddClientSecret: mismatch (-want +got):\n%s", diff)
	}

	tests := []struct {
		name     string
		clientID string
		secretID string
		want     error
	}{
		{"unknown client", "client-none", "sec_0100", auth.ErrNotFound},
		{"secret ID taken by the same client", "client-1", "sec_0001", auth.ErrConflict},
		{"secret ID taken by another client", "client-1", "sec_0009", auth.ErrConflict},
	}
	for _, tt := range tests {
		err := s.AddClientSecret(ctx, tt.clientID, newSecret(tt.secretID, t0.Add(time.Hour)), time.Time{})
		checkErr(t, "AddClientSecret: "+tt.name, err, tt.want)
	}
	if diff := cmp.Diff(&want, findClient(t, s, "client-1")); diff != "" {
		t.Errorf("FindClient after failed AddClientSecret calls: mismatch (-want +got):\n%s", diff)
	}
	_, err := s.FindClient(ctx, "client-none")
	checkErr(t, "FindClient(client-none) after AddClientSecret", err, auth.ErrNotFound)
}

func testUpdateClientSecretExpiry(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	c := newClient("client-1", t0, newSecret("sec_0001", t0), newSecret("sec_0002", t0.Add(time.Second)))
	other := newClient("client-2", t0, newSecret("sec_0003", t0))
	mustCreateClient(t, s, c, other)

	want := *c
	want.Secrets = append([]auth.Secret(nil), c.Secrets...)
	steps := []time.Time{t0.Add(time.Hour), t0.Add(-time.Hour), {}}
	for _, exp := range steps {
		if err := s.UpdateClientSecretExpiry(ctx, "client-1", "sec_0001", exp); err != nil {
			t.Fatalf("UpdateClientSecretExpiry(%v): %v", exp, err)
		}
		want.Secrets[0].ExpiresAt = exp
		if diff := cmp.Diff(&want, findClient(t, s, "client-1")); diff != "" {
			t.Errorf("FindClient after UpdateClientSecretExpiry(%v): mismatch (-want +got):\n%s", exp, diff)
		}
	}

	tests := []struct{ name, clientID, secretID string }{
		{"unknown secret", "client-1", "sec_none"},
		{"unknown client", "client-none", "sec_0001"},
		{"another client's secret", "client-1", "sec_0003"},
	}
	for _, tt := range tests {
		err := s.UpdateClientSecretExpiry(ctx, tt.clientID, tt.secretID, t0)
		checkErr(t, "UpdateClientSecretExpiry: "+tt.name, err, auth.ErrNotFound)
	}
	if diff := cmp.Diff(other, findClient(t, s, "client-2")); diff != "" {
		t.Errorf("the other client after UpdateClientSecretExpiry: mismatch (-want +got):\n%s", diff)
	}
}

func testDeleteClientSecret(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	c := newClient("client-1", t0, newSecret("sec_0001", t0), newSecret("sec_0002", t0.Add(time.Second)))
	other := newClient("client-2", t0, newSecret("sec_0003", t0), newSecret("sec_0004", t0))
	mustCreateClient(t, s, c, other)

	tests := []struct {
		name, clientID, secretID string
		want                     error
	}{
		{"unknown secret", "client-1", "sec_none", auth.ErrNotFound},
		{"unknown client", "client-none", "sec_0001", auth.ErrNotFound},
		{"another client's secret", "client-1", "sec_0003", auth.ErrNotFound},
		{"one of two", "client-1", "sec_0001", nil},
		{"deleted already", "client-1", "sec_0001", auth.ErrNotFound},
		{"the last", "client-1", "sec_0002", auth.ErrConflict},
	}
	for _, tt := range tests {
		err := s.DeleteClientSecret(ctx, tt.clientID, tt.secretID)
		checkErr(t, "DeleteClientSecret: "+tt.name, err, tt.want)
	}
	want := *c
	want.Secrets = c.Secrets[1:]
	if diff := cmp.Diff(&want, findClient(t, s, "client-1")); diff != "" {
		t.Errorf("FindClient after DeleteClientSecret: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(other, findClient(t, s, "client-2")); diff != "" {
		t.Errorf("the other client after DeleteClientSecret: mismatch (-want +got):\n%s", diff)
	}
}

// testAddClientSecretRotation checks a rotation with a grace period: the new secret is added and the client's
// other secrets that would outlive the grace period expire at its end, together or not at all.
func testAddClientSecretRotation(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	grace := t0.Add(24 * time.Hour)
	never := newSecret("sec_0001", t0)
	later := newSecret("sec_0002", t0.Add(time.Second))
	later.ExpiresAt = grace.Add(time.Hour)
	sooner := newSecret("sec_0003", t0.Add(2*time.Second))
	sooner.ExpiresAt = grace.Add(-time.Hour)
	c := newClient("client-1", t0, never, later, sooner)
	other := newClient("client-2", t0, newSecret("sec_0009", t0))
	mustCreateClient(t, s, c, other)

	// A failed rotation changes nothing: the secret ID is another client's.
	taken := newSecret("sec_0009", t0.Add(3*time.Second))
	checkErr(t, "AddClientSecret(taken ID) with othersExpireAt", s.AddClientSecret(ctx, "client-1", taken, grace), auth.ErrConflict)
	if diff := cmp.Diff(c, findClient(t, s, "client-1")); diff != "" {
		t.Errorf("FindClient after a failed rotation: mismatch (-want +got):\n%s", diff)
	}
	checkErr(t, "AddClientSecret(unknown client) with othersExpireAt",
		s.AddClientSecret(ctx, "client-none", newSecret("sec_0100", t0), grace), auth.ErrNotFound)

	added := newSecret("sec_0004", t0.Add(3*time.Second)) // never expires: othersExpireAt is not for it
	if err := s.AddClientSecret(ctx, "client-1", added, grace); err != nil {
		t.Fatalf("AddClientSecret with othersExpireAt: %v", err)
	}
	want := *c
	want.Secrets = []auth.Secret{never, later, sooner, added}
	want.Secrets[0].ExpiresAt = grace
	want.Secrets[1].ExpiresAt = grace
	if diff := cmp.Diff(&want, findClient(t, s, "client-1")); diff != "" {
		t.Errorf("FindClient after a rotation: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(other, findClient(t, s, "client-2")); diff != "" {
		t.Errorf("the other client after a rotation: mismatch (-want +got):\n%s", diff)
	}

	// A new secret's own expiry is kept, even after othersExpireAt; a zero othersExpireAt leaves the others alone.
	expiring := newSecret("sec_0005", t0.Add(4*time.Second))
	expiring.ExpiresAt = grace.Add(48 * time.Hour)
	if err := s.AddClientSecret(ctx, "client-1", expiring, grace.Add(-2*time.Hour)); err != nil {
		t.Fatalf("AddClientSecret: %v", err)
	}
	want.Secrets = append(want.Secrets, expiring)
	for i := range 4 { // every secret but the new one now expires at the earlier time, sooner's included
		want.Secrets[i].ExpiresAt = grace.Add(-2 * time.Hour)
	}
	if diff := cmp.Diff(&want, findClient(t, s, "client-1")); diff != "" {
		t.Errorf("FindClient after a second rotation: mismatch (-want +got):\n%s", diff)
	}
	plain := newSecret("sec_0006", t0.Add(5*time.Second))
	if err := s.AddClientSecret(ctx, "client-1", plain, time.Time{}); err != nil {
		t.Fatalf("AddClientSecret without othersExpireAt: %v", err)
	}
	want.Secrets = append(want.Secrets, plain)
	if diff := cmp.Diff(&want, findClient(t, s, "client-1")); diff != "" {
		t.Errorf("FindClient after AddClientSecret without othersExpireAt: mismatch (-want +got):\n%s", diff)
	}
}

// testClientOrg checks a client's organization: stored on create, checked against the organizations, and never
// changed by UpdateClient.
func testClientOrg(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	mustCreateOrg(t, s, newOrg("org_01", "acme", t0), newOrg("org_02", "globex", t0))
	owned := newClient("client-1", t0, newSecret("sec_0001", t0))
	owned.OrgID = "org_01"
	free := newClient("client-2", t0, newSecret("sec_0002", t0))
	mustCreateClient(t, s, owned, free)
	if diff := cmp.Diff(owned, findClient(t, s, "client-1")); diff != "" {
		t.Errorf("FindClient of an organization's client: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(free, findClient(t, s, "client-2")); diff != "" {
		t.Errorf("FindClient of a client without organization: mismatch (-want +got):\n%s", diff)
	}

	// An organization that does not exist cannot own a client.
	orphan := newClient("client-3", t0, newSecret("sec_0003", t0))
	orphan.OrgID = "org_none"
	checkErr(t, "CreateClient(unknown organization)", s.CreateClient(ctx, orphan), auth.ErrNotFound)
	_, err := s.FindClient(ctx, "client-3")
	checkErr(t, "FindClient of a client whose create failed", err, auth.ErrNotFound)

	// UpdateClient never moves a client, into an organization, out of one, or between two.
	for _, tt := range []struct{ id, from, to string }{
		{"client-1", "org_01", "org_02"},
		{"client-1", "org_01", ""},
		{"client-2", "", "org_01"},
	} {
		c := findClient(t, s, tt.id)
		c.OrgID = tt.to
		c.Name = "moved to " + tt.to
		if err := s.UpdateClient(ctx, c); err != nil {
			t.Fatalf("UpdateClient: %v", err)
		}
		if got := findClient(t, s, tt.id); got.OrgID != tt.from || got.Name != c.Name {
			t.Errorf("UpdateClient(%s, OrgID %q): stored OrgID %q, Name %q; want %q and the new name",
				tt.id, tt.to, got.OrgID, got.Name, tt.from)
		}
	}
}
