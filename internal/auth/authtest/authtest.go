// Package authtest is the conformance suite for auth.Store: every storage backend runs TestStore, so that they all
// keep the contract written on the interface, errors and concurrency included.
package authtest

import (
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// TestStore tests the Store that open returns against the auth.Store contract. It calls open once per subtest;
// each call must return a new, empty store, and arrange (with t.Cleanup) to close it and remove what it created.
func TestStore(t *testing.T, open func(t *testing.T) auth.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, open func(t *testing.T) auth.Store)
	}{
		{"Ping", testPing},
		{"Empty", testEmpty},
		{"APICreateFind", testAPICreateFind},
		{"APICreateConflict", testAPICreateConflict},
		{"APIUpdate", testAPIUpdate},
		{"APIList", testAPIList},
		{"APIListPage", testAPIListPage},
		{"APIDelete", testAPIDelete},
		{"APIVersion", testAPIVersion},
		{"APIDeleteVersion", testAPIDeleteVersion},
		{"ClientCreateFind", testClientCreateFind},
		{"ClientCreateConflict", testClientCreateConflict},
		{"ClientUpdate", testClientUpdate},
		{"ClientList", testClientList},
		{"ClientListPage", testClientListPage},
		{"ClientDelete", testClientDelete},
		{"ClientVersion", testClientVersion},
		{"ClientDeleteVersion", testClientDeleteVersion},
		{"ClientOrg", testClientOrg},
		{"AddClientSecret", testAddClientSecret},
		{"AddClientSecretRotation", testAddClientSecretRotation},
		{"UpdateClientSecretExpiry", testUpdateClientSecretExpiry},
		{"DeleteClientSecret", testDeleteClientSecret},
		{"GrantPut", testGrantPut},
		{"GrantNotFound", testGrantNotFound},
		{"GrantList", testGrantList},
		{"GrantListPage", testGrantListPage},
		{"GrantDelete", testGrantDelete},
		{"GrantCreateFind", testGrantCreateFind},
		{"GrantCreateConflict", testGrantCreateConflict},
		{"GrantUpdate", testGrantUpdate},
		{"GrantVersion", testGrantVersion},
		{"GrantDeleteVersion", testGrantDeleteVersion},
		{"SigningKeyCreateList", testSigningKeyCreateList},
		{"SigningKeyCreateConflict", testSigningKeyCreateConflict},
		{"UpdateSigningKeyState", testUpdateSigningKeyState},
		{"DeleteSigningKey", testDeleteSigningKey},
		{"Setting", testSetting},
		{"OrgCreateFind", testOrgCreateFind},
		{"OrgCreateConflict", testOrgCreateConflict},
		{"OrgUpdate", testOrgUpdate},
		{"OrgVersion", testOrgVersion},
		{"OrgDeleteVersion", testOrgDeleteVersion},
		{"OrgList", testOrgList},
		{"OrgDelete", testOrgDelete},
		{"APIKeyCreateFind", testAPIKeyCreateFind},
		{"APIKeyCreateConflict", testAPIKeyCreateConflict},
		{"APIKeyList", testAPIKeyList},
		{"APIKeyUpdate", testAPIKeyUpdate},
		{"APIKeyVersion", testAPIKeyVersion},
		{"APIKeyDeleteVersion", testAPIKeyDeleteVersion},
		{"APIKeyRotate", testAPIKeyRotate},
		{"APIKeyDelete", testAPIKeyDelete},
		{"APIKeyTouch", testAPIKeyTouch},
		{"APIKeyPrune", testAPIKeyPrune},
		{"APIKeyOrg", testAPIKeyOrg},
		{"AuditAppendList", testAuditAppendList},
		{"AuditAppendConflict", testAuditAppendConflict},
		{"AuditFilter", testAuditFilter},
		{"AuditPages", testAuditPages},
		{"AuditPrune", testAuditPrune},
		{"Copies", testCopies},
		{"RaceCreateCurrentKey", testRaceCreateCurrentKey},
		{"RaceMakeKeyCurrent", testRaceMakeKeyCurrent},
		{"RaceCreateSetting", testRaceCreateSetting},
		{"RaceDeleteClientSecret", testRaceDeleteClientSecret},
		{"RaceUpdateAPI", testRaceUpdateAPI},
		{"RaceUpdateClient", testRaceUpdateClient},
		{"RaceUpdateGrant", testRaceUpdateGrant},
		{"RaceUpdateOrg", testRaceUpdateOrg},
		{"RaceUpdateAPIKey", testRaceUpdateAPIKey},
		{"RaceRotateAPIKey", testRaceRotateAPIKey},
		{"RacePutGrant", testRacePutGrant},
		{"RaceDeleteOrg", testRaceDeleteOrg},
	}
	tests = append(tests, lifecycleTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, open) })
	}
}

// equateEmpty lets a backend return nil or an empty slice for an empty list.
var equateEmpty = cmpopts.EquateEmpty()

// now returns the current time as a Store returns it: UTC, millisecond precision.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// Fixtures. Byte values include zero and high bytes, so that a backend storing them as text fails. Versions are
// neither 0 nor 1, and differ by kind, so that a backend that does not store the Version given to a create fails.

func newAPI(id, identifier string, created time.Time) *auth.API {
	return &auth.API{
		ID:         id,
		Identifier: identifier,
		Name:       "API " + id,
		Scopes: []auth.Scope{
			{Name: "read:items", Description: "Read items"},
			{Name: "write:items"},
		},
		TokenLifetime:    90 * time.Minute,
		SigningAlg:       auth.ES256,
		KeyTokenLifetime: 10 * time.Minute,
		Version:          5,
		CreatedAt:        created,
		UpdatedAt:        created.Add(time.Second),
	}
}

func newSecret(id string, created time.Time) auth.Secret {
	h := sha256.Sum256([]byte(id))
	h[0], h[1] = 0, 0xff
	return auth.Secret{ID: id, Hash: h[:], Hint: id[len(id)-4:], CreatedAt: created}
}

func newClient(id string, created time.Time, secrets ...auth.Secret) *auth.Client {
	return &auth.Client{
		ID:          id,
		Name:        "Client " + id,
		Description: "does things for " + id,
		RateLimit:   auth.RateLimit{Count: 100, Per: 90 * time.Second},
		Secrets:     secrets,
		Version:     7,
		CreatedAt:   created,
		UpdatedAt:   created.Add(time.Second),
	}
}

func newGrant(id, clientID, apiID string, created time.Time, scopes ...string) *auth.Grant {
	return &auth.Grant{ID: id, ClientID: clientID, APIID: apiID, Scopes: scopes, Version: 3, CreatedAt: created,
		UpdatedAt: created}
}

func newOrg(id, name string, created time.Time) *auth.Org {
	return &auth.Org{
		ID:           id,
		Name:         name,
		Description:  "the organization " + name,
		APIKeyPrefix: "gh" + id[len(id)-2:],
		AllowedGrants: []auth.OrgGrant{
			{APIID: "api_1", Scopes: []string{"read:items", "write:items"}},
			{APIID: "api_2", Scopes: []string{}},
		},
		Version:   2,
		CreatedAt: created,
		UpdatedAt: created.Add(time.Second),
	}
}

func newKey(id string, alg auth.Algorithm, state auth.KeyState, created time.Time) *auth.SigningKey {
	return &auth.SigningKey{
		ID:        id,
		Alg:       alg,
		State:     state,
		PublicJWK: []byte(`{"kty":"EC","crv":"P-256","kid":"` + id + `"}`),
		Private:   []byte{0, 1, 2, 0xfe, 0xff, 0, byte(len(id))},
		CreatedAt: created,
		UpdatedAt: created,
	}
}

// Helpers that set up state and stop the test if they cannot.

func mustCreateAPI(t *testing.T, s auth.Store, apis ...*auth.API) {
	t.Helper()
	for _, a := range apis {
		if err := s.CreateAPI(t.Context(), a); err != nil {
			t.Fatalf("CreateAPI(%q): %v", a.ID, err)
		}
	}
}

func mustCreateClient(t *testing.T, s auth.Store, clients ...*auth.Client) {
	t.Helper()
	for _, c := range clients {
		if err := s.CreateClient(t.Context(), c); err != nil {
			t.Fatalf("CreateClient(%q): %v", c.ID, err)
		}
	}
}

func mustPutGrant(t *testing.T, s auth.Store, grants ...*auth.Grant) {
	t.Helper()
	for _, g := range grants {
		if err := s.PutGrant(t.Context(), g); err != nil {
			t.Fatalf("PutGrant(%q, %q): %v", g.ClientID, g.APIID, err)
		}
	}
}

func mustCreateOrg(t *testing.T, s auth.Store, orgs ...*auth.Org) {
	t.Helper()
	for _, o := range orgs {
		if err := s.CreateOrg(t.Context(), o); err != nil {
			t.Fatalf("CreateOrg(%q): %v", o.ID, err)
		}
	}
}

func mustCreateKey(t *testing.T, s auth.Store, keys ...*auth.SigningKey) {
	t.Helper()
	for _, k := range keys {
		if err := s.CreateSigningKey(t.Context(), k); err != nil {
			t.Fatalf("CreateSigningKey(%q): %v", k.ID, err)
		}
	}
}

// Helpers that check.

// checkErr reports an error unless errors.Is(err, want); want nil means no error.
func checkErr(t *testing.T, call string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: %v, want no error", call, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: got error %v, want %v", call, err, want)
	}
}

// checkUTC reports every time that is not in UTC: cmp compares times with Equal, which ignores the location.
func checkUTC(t *testing.T, what string, times ...time.Time) {
	t.Helper()
	for _, tm := range times {
		if tm.Location() != time.UTC {
			t.Errorf("%s: time %v is in %v, want UTC", what, tm, tm.Location())
		}
	}
}

func findAPI(t *testing.T, s auth.Store, id string) *auth.API {
	t.Helper()
	a, err := s.FindAPI(t.Context(), id)
	if err != nil {
		t.Fatalf("FindAPI(%q): %v", id, err)
	}
	checkUTC(t, "FindAPI "+id, a.CreatedAt, a.UpdatedAt)
	return a
}

func findClient(t *testing.T, s auth.Store, id string) *auth.Client {
	t.Helper()
	c, err := s.FindClient(t.Context(), id)
	if err != nil {
		t.Fatalf("FindClient(%q): %v", id, err)
	}
	checkClientUTC(t, "FindClient "+id, c)
	return c
}

func checkClientUTC(t *testing.T, what string, c *auth.Client) {
	t.Helper()
	checkUTC(t, what, c.CreatedAt, c.UpdatedAt)
	for _, sec := range c.Secrets {
		checkUTC(t, what+" secret "+sec.ID, sec.CreatedAt, sec.ExpiresAt)
	}
}

func listGrants(t *testing.T, s auth.Store, clientID string) []*auth.Grant {
	t.Helper()
	gs, err := s.ListGrants(t.Context(), clientID)
	if err != nil {
		t.Fatalf("ListGrants(%q): %v", clientID, err)
	}
	for _, g := range gs {
		checkUTC(t, "ListGrants grant "+g.ID, g.CreatedAt, g.UpdatedAt)
	}
	return gs
}

func findGrant(t *testing.T, s auth.Store, id string) *auth.Grant {
	t.Helper()
	g, err := s.FindGrant(t.Context(), id)
	if err != nil {
		t.Fatalf("FindGrant(%q): %v", id, err)
	}
	checkUTC(t, "FindGrant "+id, g.CreatedAt, g.UpdatedAt)
	return g
}

func findOrg(t *testing.T, s auth.Store, id string) *auth.Org {
	t.Helper()
	o, err := s.FindOrg(t.Context(), id)
	if err != nil {
		t.Fatalf("FindOrg(%q): %v", id, err)
	}
	checkUTC(t, "FindOrg "+id, o.CreatedAt, o.UpdatedAt)
	return o
}

func listKeys(t *testing.T, s auth.Store) []*auth.SigningKey {
	t.Helper()
	ks, err := s.ListSigningKeys(t.Context())
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	for _, k := range ks {
		checkUTC(t, "ListSigningKeys key "+k.ID, k.CreatedAt, k.UpdatedAt)
	}
	return ks
}

func testPing(t *testing.T, open func(t *testing.T) auth.Store) {
	if err := open(t).Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// testEmpty checks that a new store has nothing in it and says so without errors.
func testEmpty(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	apis, err := s.ListAPIs(ctx)
	if err != nil || len(apis) != 0 {
		t.Errorf("ListAPIs = %v, %v; want none", apis, err)
	}
	clients, err := s.ListClients(ctx)
	if err != nil || len(clients) != 0 {
		t.Errorf("ListClients = %v, %v; want none", clients, err)
	}
	grants, err := s.ListGrants(ctx, "nobody")
	if err != nil || len(grants) != 0 {
		t.Errorf("ListGrants(unknown client) = %v, %v; want none", grants, err)
	}
	keys, err := s.ListSigningKeys(ctx)
	if err != nil || len(keys) != 0 {
		t.Errorf("ListSigningKeys = %v, %v; want none", keys, err)
	}
	for _, p := range []auth.Page{{}, {Limit: 10}, {After: "x", Limit: 1}} {
		apis, err := s.ListAPIsPage(ctx, p)
		if err != nil || len(apis) != 0 {
			t.Errorf("ListAPIsPage(%+v) = %v, %v; want none", p, apis, err)
		}
		clients, err := s.ListClientsPage(ctx, auth.ClientFilter{Page: p})
		if err != nil || len(clients) != 0 {
			t.Errorf("ListClientsPage(%+v) = %v, %v; want none", p, clients, err)
		}
		grants, err := s.ListGrantsPage(ctx, auth.GrantFilter{Page: p})
		if err != nil || len(grants) != 0 {
			t.Errorf("ListGrantsPage(%+v) = %v, %v; want none", p, grants, err)
		}
		orgs, err := s.ListOrgs(ctx, p)
		if err != nil || len(orgs) != 0 {
			t.Errorf("ListOrgs(%+v) = %v, %v; want none", p, orgs, err)
		}
	}
	events, err := s.ListAuditEvents(ctx, auth.AuditFilter{})
	if err != nil || len(events) != 0 {
		t.Errorf("ListAuditEvents = %v, %v; want none", events, err)
	}
	if n, err := s.PruneAuditEvents(ctx, time.Now()); err != nil || n != 0 {
		t.Errorf("PruneAuditEvents = %d, %v; want 0", n, err)
	}
	_, err = s.FindGrant(ctx, "grt_none")
	checkErr(t, "FindGrant(unknown)", err, auth.ErrNotFound)
	_, err = s.FindOrg(ctx, "org_none")
	checkErr(t, "FindOrg(unknown)", err, auth.ErrNotFound)
	_, err = s.FindAPI(ctx, "api_none")
	checkErr(t, "FindAPI(unknown)", err, auth.ErrNotFound)
	_, err = s.FindAPIByIdentifier(ctx, "urn:none")
	checkErr(t, "FindAPIByIdentifier(unknown)", err, auth.ErrNotFound)
	_, err = s.FindClient(ctx, "none")
	checkErr(t, "FindClient(unknown)", err, auth.ErrNotFound)
	_, err = s.FindSetting(ctx, "none")
	checkErr(t, "FindSetting(unknown)", err, auth.ErrNotFound)
}

// testCopies checks that the store keeps no reference to what it is given or what it returns: the caller may
// change either afterwards.
func testCopies(t *testing.T, open func(t *testing.T) auth.Store) {
	s := open(t)
	ctx := t.Context()
	t0 := now()
	api := newAPI("api_1", "urn:example:one", t0)
	client := newClient("client-1", t0, newSecret("sec_0001", t0))
	grant := newGrant("grt_1", "client-1", "api_1", t0, "read:items")
	key := newKey("kid-1", auth.RS256, auth.KeyNext, t0)
	setting := []byte("value")
	mustCreateAPI(t, s, api)
	mustCreateClient(t, s, client)
	mustPutGrant(t, s, grant)
	mustCreateKey(t, s, key)
	if err := s.CreateSetting(ctx, "name", setting); err != nil {
		t.Fatalf("CreateSetting: %v", err)
	}
	wantAPI, wantClient, wantGrant, wantKey := *api, *client, *grant, *key
	wantAPI.Scopes = append([]auth.Scope(nil), api.Scopes...)
	wantClient.Secrets = []auth.Secret{client.Secrets[0]}
	wantClient.Secrets[0].Hash = append([]byte(nil), client.Secrets[0].Hash...)
	wantGrant.Scopes = append([]string(nil), grant.Scopes...)
	wantKey.PublicJWK = append([]byte(nil), key.PublicJWK...)
	wantKey.Private = append([]byte(nil), key.Private...)
	wantSetting := append([]byte(nil), setting...)

	// Change what was given, and what comes back.
	api.Scopes[0].Name = "changed"
	client.Secrets[0].Hash[5] ^= 0xff
	grant.Scopes[0] = "changed"
	key.PublicJWK[0], key.Private[0] = 'x', 'x'
	setting[0] = 'x'
	// The index checks keep a store that returns too little from panicking here; the comparisons below report it.
	if a, err := s.FindAPI(ctx, "api_1"); err == nil && len(a.Scopes) == 2 {
		a.Scopes[0].Name = "changed"
	}
	if a, err := s.FindAPIByIdentifier(ctx, "urn:example:one"); err == nil && len(a.Scopes) == 2 {
		a.Scopes[1].Description = "changed"
	}
	if apis, err := s.ListAPIs(ctx); err == nil && len(apis) == 1 && len(apis[0].Scopes) == 2 {
		apis[0].Scopes[0].Description = "changed"
	}
	if c, err := s.FindClient(ctx, "client-1"); err == nil && len(c.Secrets) == 1 && len(c.Secrets[0].Hash) > 1 {
		c.Secrets[0].Hash[0] ^= 0xff
		c.Secrets[0].Hint = "changed"
	}
	if cs, err := s.ListClients(ctx); err == nil && len(cs) == 1 && len(cs[0].Secrets) == 1 && len(cs[0].Secrets[0].Hash) > 1 {
		cs[0].Secrets[0].Hash[1] ^= 0xff
	}
	if gs, err := s.ListGrants(ctx, "client-1"); err == nil && len(gs) == 1 && len(gs[0].Scopes) == 1 {
		gs[0].Scopes[0] = "changed"
	}
	if ks, err := s.ListSigningKeys(ctx); err == nil && len(ks) == 1 && len(ks[0].PublicJWK) > 1 && len(ks[0].Private) > 1 {
		ks[0].PublicJWK[1], ks[0].Private[1] = 'x', 'x'
	}
	if v, err := s.FindSetting(ctx, "name"); err == nil && len(v) > 1 {
		v[1] = 'x'
	}

	if diff := cmp.Diff(&wantAPI, findAPI(t, s, "api_1")); diff != "" {
		t.Errorf("FindAPI after changing values given and returned: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&wantClient, findClient(t, s, "client-1")); diff != "" {
		t.Errorf("FindClient after changing values given and returned: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*auth.Grant{&wantGrant}, listGrants(t, s, "client-1")); diff != "" {
		t.Errorf("ListGrants after changing values given and returned: mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*auth.SigningKey{&wantKey}, listKeys(t, s)); diff != "" {
		t.Errorf("ListSigningKeys after changing values given and returned: mismatch (-want +got):\n%s", diff)
	}
	if got, err := s.FindSetting(ctx, "name"); err != nil {
		t.Errorf("FindSetting: %v", err)
	} else if diff := cmp.Diff(wantSetting, got); diff != "" {
		t.Errorf("FindSetting after changing values given and returned: mismatch (-want +got):\n%s", diff)
	}
}
