package config

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// memStore is an in-memory auth.Store with the contract's semantics for APIs, clients, secrets and grants. The
// other methods are not implemented: the embedded nil Store panics if Apply calls one.
type memStore struct {
	auth.Store

	mu      sync.Mutex
	apis    map[string]*auth.API    // by ID
	clients map[string]*auth.Client // by ID
	grants  map[[2]string]*auth.Grant
}

func newMemStore() *memStore {
	return &memStore{
		apis:    make(map[string]*auth.API),
		clients: make(map[string]*auth.Client),
		grants:  make(map[[2]string]*auth.Grant),
	}
}

func cloneAPI(a *auth.API) *auth.API {
	c := *a
	c.Scopes = slices.Clone(a.Scopes)
	return &c
}

func cloneClient(c *auth.Client) *auth.Client {
	d := *c
	d.Secrets = slices.Clone(c.Secrets)
	for i := range d.Secrets {
		d.Secrets[i].Hash = slices.Clone(d.Secrets[i].Hash)
	}
	return &d
}

func (s *memStore) CreateAPI(_ context.Context, a *auth.API) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.apis[a.ID] != nil || s.byIdentifier(a.Identifier) != nil {
		return fmt.Errorf("create api: %w", auth.ErrConflict)
	}
	s.apis[a.ID] = cloneAPI(a)
	return nil
}

func (s *memStore) UpdateAPI(_ context.Context, a *auth.API) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.apis[a.ID]
	if old == nil {
		return fmt.Errorf("update api: %w", auth.ErrNotFound)
	}
	if old.Version != a.Version {
		return fmt.Errorf("update api: %w", auth.ErrStale)
	}
	if other := s.byIdentifier(a.Identifier); other != nil && other.ID != a.ID {
		return fmt.Errorf("update api: %w", auth.ErrConflict)
	}
	a.Version++
	n := cloneAPI(a)
	n.CreatedAt = old.CreatedAt
	s.apis[a.ID] = n
	return nil
}

func (s *memStore) FindAPIByIdentifier(_ context.Context, identifier string) (*auth.API, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.byIdentifier(identifier); a != nil {
		return cloneAPI(a), nil
	}
	return nil, fmt.Errorf("api %q: %w", identifier, auth.ErrNotFound)
}

func (s *memStore) byIdentifier(identifier string) *auth.API {
	for _, a := range s.apis {
		if a.Identifier == identifier {
			return a
		}
	}
	return nil
}

func (s *memStore) secretTaken(id string) bool {
	for _, c := range s.clients {
		if slices.ContainsFunc(c.Secrets, func(sec auth.Secret) bool { return sec.ID == id }) {
			return true
		}
	}
	return false
}

func (s *memStore) CreateClient(_ context.Context, c *auth.Client) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients[c.ID] != nil || slices.ContainsFunc(c.Secrets, func(sec auth.Secret) bool { return s.secretTaken(sec.ID) }) {
		return fmt.Errorf("create client: %w", auth.ErrConflict)
	}
	s.clients[c.ID] = cloneClient(c)
	return nil
}

func (s *memStore) UpdateClient(_ context.Context, c *auth.Client) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.clients[c.ID]
	if old == nil {
		return fmt.Errorf("update client: %w", auth.ErrNotFound)
	}
	if old.Version != c.Version {
		return fmt.Errorf("update client: %w", auth.ErrStale)
	}
	old.Name, old.Description, old.Disabled, old.RateLimit, old.UpdatedAt = c.Name, c.Description, c.Disabled, c.RateLimit, c.UpdatedAt
	c.Version++
	old.Version = c.Version
	return nil
}

func (s *memStore) FindClient(_ context.Context, id string) (*auth.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[id]
	if c == nil {
		return nil, fmt.Errorf("client %q: %w", id, auth.ErrNotFound)
	}
	d := cloneClient(c)
	slices.SortFunc(d.Secrets, func(a, b auth.Secret) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return d, nil
}

func (s *memStore) AddClientSecret(_ context.Context, clientID string, sec auth.Secret, othersExpireAt time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[clientID]
	if c == nil {
		return fmt.Errorf("add secret: %w", auth.ErrNotFound)
	}
	if s.secretTaken(sec.ID) {
		return fmt.Errorf("add secret: %w", auth.ErrConflict)
	}
	for i, old := range c.Secrets {
		if !othersExpireAt.IsZero() && (old.ExpiresAt.IsZero() || old.ExpiresAt.After(othersExpireAt)) {
			c.Secrets[i].ExpiresAt = othersExpireAt
		}
	}
	sec.Hash = slices.Clone(sec.Hash)
	c.Secrets = append(c.Secrets, sec)
	return nil
}

func (s *memStore) DeleteClientSecret(_ context.Context, clientID, secretID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[clientID]
	if c == nil {
		return fmt.Errorf("delete secret: %w", auth.ErrNotFound)
	}
	i := slices.IndexFunc(c.Secrets, func(sec auth.Secret) bool { return sec.ID == secretID })
	switch {
	case i < 0:
		return fmt.Errorf("delete secret: %w", auth.ErrNotFound)
	case len(c.Secrets) == 1:
		return fmt.Errorf("delete last secret: %w", auth.ErrConflict)
	}
	c.Secrets = slices.Delete(c.Secrets, i, i+1)
	return nil
}

func (s *memStore) PutGrant(_ context.Context, g *auth.Grant) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients[g.ClientID] == nil || s.apis[g.APIID] == nil {
		return fmt.Errorf("put grant: %w", auth.ErrNotFound)
	}
	key := [2]string{g.ClientID, g.APIID}
	if old := s.grants[key]; old != nil {
		g.ID, g.CreatedAt, g.Version = old.ID, old.CreatedAt, old.Version+1
	}
	n := *g
	n.Scopes = slices.Clone(g.Scopes)
	s.grants[key] = &n
	return nil
}

func (s *memStore) ListGrants(_ context.Context, clientID string) ([]*auth.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*auth.Grant
	for key, g := range s.grants {
		if key[0] == clientID {
			n := *g
			n.Scopes = slices.Clone(g.Scopes)
			out = append(out, &n)
		}
	}
	slices.SortFunc(out, func(a, b *auth.Grant) int { return strings.Compare(a.APIID, b.APIID) })
	return out, nil
}

// countingStore counts the writes that reach the store it wraps.
type countingStore struct {
	auth.Store
	writes []string
}

func (s *countingStore) write(name string) { s.writes = append(s.writes, name) }

func (s *countingStore) CreateAPI(ctx context.Context, a *auth.API) error {
	s.write("CreateAPI")
	return s.Store.CreateAPI(ctx, a)
}

func (s *countingStore) UpdateAPI(ctx context.Context, a *auth.API) error {
	s.write("UpdateAPI")
	return s.Store.UpdateAPI(ctx, a)
}

func (s *countingStore) DeleteAPI(ctx context.Context, id string, version int64) error {
	s.write("DeleteAPI")
	return s.Store.DeleteAPI(ctx, id, version)
}

func (s *countingStore) CreateClient(ctx context.Context, c *auth.Client) error {
	s.write("CreateClient")
	return s.Store.CreateClient(ctx, c)
}

func (s *countingStore) UpdateClient(ctx context.Context, c *auth.Client) error {
	s.write("UpdateClient")
	return s.Store.UpdateClient(ctx, c)
}

func (s *countingStore) DeleteClient(ctx context.Context, id string, version int64) error {
	s.write("DeleteClient")
	return s.Store.DeleteClient(ctx, id, version)
}

func (s *countingStore) AddClientSecret(ctx context.Context, clientID string, sec auth.Secret, othersExpireAt time.Time) error {
	s.write("AddClientSecret")
	return s.Store.AddClientSecret(ctx, clientID, sec, othersExpireAt)
}

func (s *countingStore) UpdateClientSecretExpiry(ctx context.Context, clientID, secretID string, at time.Time) error {
	s.write("UpdateClientSecretExpiry")
	return s.Store.UpdateClientSecretExpiry(ctx, clientID, secretID, at)
}

func (s *countingStore) DeleteClientSecret(ctx context.Context, clientID, secretID string) error {
	s.write("DeleteClientSecret")
	return s.Store.DeleteClientSecret(ctx, clientID, secretID)
}

func (s *countingStore) PutGrant(ctx context.Context, g *auth.Grant) error {
	s.write("PutGrant")
	return s.Store.PutGrant(ctx, g)
}

func (s *countingStore) DeleteGrant(ctx context.Context, id string, version int64) error {
	s.write("DeleteGrant")
	return s.Store.DeleteGrant(ctx, id, version)
}

// racingStore plays another instance applying the same file: just before each create, that instance creates the
// same API or client (with a secret of its own), so the create answers ErrConflict.
type racingStore struct{ auth.Store }

func (s racingStore) CreateAPI(ctx context.Context, a *auth.API) error {
	theirs := cloneAPI(a)
	theirs.ID = auth.NewID("api")
	if err := s.Store.CreateAPI(ctx, theirs); err != nil {
		return err
	}
	return s.Store.CreateAPI(ctx, a)
}

func (s racingStore) CreateClient(ctx context.Context, c *auth.Client) error {
	theirs := cloneClient(c)
	theirs.Secrets = []auth.Secret{{ID: auth.NewID("sec"), Hash: hasher.Hash(auth.NewSecret()), CreatedAt: c.CreatedAt}}
	if err := s.Store.CreateClient(ctx, theirs); err != nil {
		return err
	}
	return s.Store.CreateClient(ctx, c)
}

// stalingStore plays another instance applying the same file: just before each update, that instance makes the
// same update, so ours answers ErrStale.
type stalingStore struct{ auth.Store }

func (s stalingStore) UpdateAPI(ctx context.Context, a *auth.API) error {
	if err := s.Store.UpdateAPI(ctx, cloneAPI(a)); err != nil {
		return err
	}
	return s.Store.UpdateAPI(ctx, a)
}

func (s stalingStore) UpdateClient(ctx context.Context, c *auth.Client) error {
	if err := s.Store.UpdateClient(ctx, cloneClient(c)); err != nil {
		return err
	}
	return s.Store.UpdateClient(ctx, c)
}

var errBoom = errors.New("boom")

// failingGrants is a store whose PutGrant fails.
type failingGrants struct{ auth.Store }

func (failingGrants) PutGrant(context.Context, *auth.Grant) error { return errBoom }

var (
	hasher = auth.NewSecretHasher([]byte("0123456789abcdef0123456789abcdef"))
	t0     = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	t1     = t0.Add(time.Hour)
)

// The file most tests apply: an API, a client with a configured secret and one without.
const (
	billingSecret = "billing-secret-0123456789abcdefghijklmnop"
	exampleFile   = `apis:
  - identifier: https://api.example.com/v1
    name: Example API
    scopes:
      - read
      - name: write
        description: Create and change items
    token_lifetime: 1h
clients:
  - client_id: billing-service
    name: Billing service
    client_secret: ${BILLING_CLIENT_SECRET}
    grants:
      - audience: https://api.example.com/v1
        scopes: [write, read]
  - client_id: reporting
    name: Reporting
    description: Nightly reports
    grants:
      - audience: https://api.example.com/v1
`
)

func mustParse(t *testing.T, src string) *File {
	t.Helper()
	f, err := Parse("gatehouse.yaml", []byte(src), envOf(map[string]string{"BILLING_CLIENT_SECRET": billingSecret}))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}

func mustApply(t *testing.T, f *File, s auth.Store, now time.Time) *Result {
	t.Helper()
	r, err := f.Apply(context.Background(), s, hasher, now)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkNoSecret(t, r)
	return r
}

// checkNoSecret fails if a line of r shows a secret.
func checkNoSecret(t *testing.T, r *Result) {
	t.Helper()
	lines := fmt.Sprint(r.Created, r.Updated, r.Unchanged)
	for _, s := range append(slices.Collect(maps.Values(r.Generated)), billingSecret) {
		if strings.Contains(lines, s) {
			t.Errorf("Result lines show a secret: %s", lines)
		}
	}
}

func diffResult(t *testing.T, got, want *Result) {
	t.Helper()
	if diff := gocmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Result (-want +got):\n%s", diff)
	}
}

func TestApplyCreates(t *testing.T) {
	mem := newMemStore()
	f := mustParse(t, exampleFile)
	r := mustApply(t, f, mem, t0)

	generated := r.Generated["reporting"]
	diffResult(t, r, &Result{
		Created: []string{
			"api https://api.example.com/v1",
			"client billing-service",
			"grant billing-service → https://api.example.com/v1",
			"client reporting",
			"grant reporting → https://api.example.com/v1",
		},
		Generated: map[string]string{"reporting": generated},
	})
	if len(generated) != 43 {
		t.Errorf("generated secret has %d characters, want 43", len(generated))
	}

	api, err := mem.FindAPIByIdentifier(context.Background(), "https://api.example.com/v1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(api.ID, "api_") {
		t.Errorf("API ID = %q, want api_…", api.ID)
	}
	wantAPI := &auth.API{
		ID:            api.ID,
		Identifier:    "https://api.example.com/v1",
		Name:          "Example API",
		Scopes:        []auth.Scope{{Name: "read"}, {Name: "write", Description: "Create and change items"}},
		TokenLifetime: time.Hour,
		SigningAlg:    auth.RS256,
		Version:       1,
		CreatedAt:     t0,
		UpdatedAt:     t0,
	}
	if diff := gocmp.Diff(wantAPI, api); diff != "" {
		t.Errorf("stored API (-want +got):\n%s", diff)
	}

	for id, secret := range map[string]string{"billing-service": billingSecret, "reporting": generated} {
		c, err := mem.FindClient(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Secrets) != 1 {
			t.Fatalf("client %s has %d secrets, want 1", id, len(c.Secrets))
		}
		sec := c.Secrets[0]
		if !hasher.Match(secret, sec.Hash) || sec.Hint != auth.SecretHint(secret) || !strings.HasPrefix(sec.ID, "sec_") || !sec.CreatedAt.Equal(t0) {
			t.Errorf("client %s secret = %+v, want the hash of its secret, hint %q, ID sec_…, created %v", id, sec, auth.SecretHint(secret), t0)
		}
	}
	c, _ := mem.FindClient(context.Background(), "reporting")
	if c.Name != "Reporting" || c.Description != "Nightly reports" || !c.CreatedAt.Equal(t0) || c.Disabled {
		t.Errorf("client reporting = %+v", c)
	}

	grants := map[string][]string{}
	for _, id := range []string{"billing-service", "reporting"} {
		gs, _ := mem.ListGrants(context.Background(), id)
		for _, g := range gs {
			if g.APIID != api.ID || !strings.HasPrefix(g.ID, "grt_") || !g.CreatedAt.Equal(t0) {
				t.Errorf("grant = %+v, want API %s, ID grt_…, created %v", g, api.ID, t0)
			}
			grants[id] = g.Scopes
		}
	}
	wantGrants := map[string][]string{"billing-service": {"read", "write"}, "reporting": {}}
	if diff := gocmp.Diff(wantGrants, grants, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("stored grant scopes (-want +got):\n%s", diff)
	}
}

func TestApplyTwiceWritesNothing(t *testing.T) {
	mem := newMemStore()
	f := mustParse(t, exampleFile)
	first := mustApply(t, f, mem, t0)

	// A fresh parse, as at the next start.
	counting := &countingStore{Store: mem}
	r := mustApply(t, mustParse(t, exampleFile), counting, t1)
	if len(counting.writes) != 0 {
		t.Errorf("second Apply wrote %v, want nothing", counting.writes)
	}
	diffResult(t, r, &Result{Unchanged: first.Created})

	api, _ := mem.FindAPIByIdentifier(context.Background(), "https://api.example.com/v1")
	if !api.UpdatedAt.Equal(t0) {
		t.Errorf("API UpdatedAt = %v, want %v (untouched)", api.UpdatedAt, t0)
	}
}

func TestApplyUpdates(t *testing.T) {
	mem := newMemStore()
	mustApply(t, mustParse(t, exampleFile), mem, t0)

	// An operator disabled reporting and added a secret through the management API.
	ctx := context.Background()
	c, _ := mem.FindClient(ctx, "reporting")
	c.Disabled = true
	mem.UpdateClient(ctx, c)
	mem.AddClientSecret(ctx, "reporting", auth.Secret{ID: "sec_rotated", Hash: hasher.Hash(auth.NewSecret()), CreatedAt: t0}, time.Time{})

	changed := strings.NewReplacer(
		"name: Example API", "name: Example API v1",
		"description: Create and change items", "description: Create, change and delete items",
		"token_lifetime: 1h", "signing_alg: ES256",
		"description: Nightly reports", "description: Hourly reports",
		"scopes: [write, read]", "scopes: [read]",
	).Replace(exampleFile)
	counting := &countingStore{Store: mem}
	r := mustApply(t, mustParse(t, changed), counting, t1)
	diffResult(t, r, &Result{
		Updated: []string{
			"api https://api.example.com/v1",
			"grant billing-service → https://api.example.com/v1",
			"client reporting",
		},
		Unchanged: []string{
			"client billing-service",
			"grant reporting → https://api.example.com/v1",
		},
	})
	if got, want := counting.writes, []string{"UpdateAPI", "PutGrant", "UpdateClient"}; !slices.Equal(got, want) {
		t.Errorf("writes = %v, want %v", got, want)
	}

	api, _ := mem.FindAPIByIdentifier(ctx, "https://api.example.com/v1")
	wantAPI := &auth.API{
		ID:            api.ID,
		Identifier:    "https://api.example.com/v1",
		Name:          "Example API v1",
		Scopes:        []auth.Scope{{Name: "read"}, {Name: "write", Description: "Create, change and delete items"}},
		TokenLifetime: 24 * time.Hour, // the default, now that the file leaves it out
		SigningAlg:    auth.ES256,
		Version:       2,
		CreatedAt:     t0,
		UpdatedAt:     t1,
	}
	if diff := gocmp.Diff(wantAPI, api); diff != "" {
		t.Errorf("stored API (-want +got):\n%s", diff)
	}
	c, _ = mem.FindClient(ctx, "reporting")
	if c.Description != "Hourly reports" || !c.Disabled || len(c.Secrets) != 2 || !c.UpdatedAt.Equal(t1) {
		t.Errorf("client reporting = %+v, want the new description, still disabled, both secrets kept", c)
	}
	gs, _ := mem.ListGrants(ctx, "billing-service")
	if len(gs) != 1 || !slices.Equal(gs[0].Scopes, []string{"read"}) || !gs[0].CreatedAt.Equal(t0) || !gs[0].UpdatedAt.Equal(t1) {
		t.Errorf("billing-service grants = %+v, want one with scope read, created %v, updated %v", gs, t0, t1)
	}
}

func TestApplyScopeOrderIsNotAChange(t *testing.T) {
	mem := newMemStore()
	mustApply(t, mustParse(t, exampleFile), mem, t0)
	reordered := strings.NewReplacer(
		"      - read\n      - name: write\n        description: Create and change items\n",
		"      - name: write\n        description: Create and change items\n      - read\n",
		"scopes: [write, read]", "scopes: [read, write, read]",
	).Replace(exampleFile)
	counting := &countingStore{Store: mem}
	r := mustApply(t, mustParse(t, reordered), counting, t1)
	if len(counting.writes) != 0 || len(r.Created)+len(r.Updated) != 0 {
		t.Errorf("Apply with scopes reordered wrote %v, result %+v; want nothing", counting.writes, r)
	}
}

func TestApplyLeavesWhatTheFileDoesNotMention(t *testing.T) {
	mem := newMemStore()
	mustApply(t, mustParse(t, exampleFile), mem, t0)
	ctx := context.Background()
	other := &auth.API{ID: "api_other", Identifier: "urn:other", Name: "Other", TokenLifetime: time.Hour, SigningAlg: auth.RS256}
	mem.CreateAPI(ctx, other)
	mem.PutGrant(ctx, &auth.Grant{ID: "grt_other", ClientID: "billing-service", APIID: "api_other"})

	counting := &countingStore{Store: mem}
	mustApply(t, mustParse(t, "apis: []\nclients:\n  - client_id: billing-service\n    name: Billing service\n"), counting, t1)
	if len(counting.writes) != 0 {
		t.Errorf("Apply wrote %v, want nothing", counting.writes)
	}
	if _, err := mem.FindAPIByIdentifier(ctx, "https://api.example.com/v1"); err != nil {
		t.Errorf("API absent from the file: %v, want it kept", err)
	}
	if _, err := mem.FindClient(ctx, "reporting"); err != nil {
		t.Errorf("client absent from the file: %v, want it kept", err)
	}
	c, _ := mem.FindClient(ctx, "billing-service")
	if len(c.Secrets) != 1 || !hasher.Match(billingSecret, c.Secrets[0].Hash) {
		t.Errorf("billing-service secrets = %+v, want the old one kept when the file has no client_secret", c.Secrets)
	}
	if gs, _ := mem.ListGrants(ctx, "billing-service"); len(gs) != 2 {
		t.Errorf("billing-service has %d grants, want both kept", len(gs))
	}
}

func TestApplyReplacesSecret(t *testing.T) {
	ctx := context.Background()
	const newSecret = "the-new-secret-0123456789abcdefghijklmnop"
	file := strings.Replace(exampleFile, "${BILLING_CLIENT_SECRET}", newSecret, 1)

	tests := []struct {
		name    string
		before  func(mem *memStore) // after the first Apply of exampleFile
		replace bool
	}{
		{"changed in the file", func(*memStore) {}, true},
		{"the matching secret has expired", func(mem *memStore) {
			// The file's secret was set once through the management API, and has stopped working since.
			mem.AddClientSecret(ctx, "billing-service", auth.Secret{ID: "sec_new", Hash: hasher.Hash(newSecret), CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}, time.Time{})
		}, true},
		{"one of two secrets matches", func(mem *memStore) {
			mem.AddClientSecret(ctx, "billing-service", auth.Secret{ID: "sec_new", Hash: hasher.Hash(newSecret), CreatedAt: t0}, time.Time{})
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := newMemStore()
			mustApply(t, mustParse(t, exampleFile), mem, t0)
			tt.before(mem)
			old, _ := mem.FindClient(ctx, "billing-service")

			counting := &countingStore{Store: mem}
			r := mustApply(t, mustParse(t, file), counting, t1)
			checkNoSecretIn(t, fmt.Sprint(r.Created, r.Updated, r.Unchanged), newSecret)
			c, _ := mem.FindClient(ctx, "billing-service")
			if !tt.replace {
				if len(counting.writes) != 0 || !slices.Contains(r.Unchanged, "client billing-service") {
					t.Errorf("Apply wrote %v, result %+v; want nothing", counting.writes, r)
				}
				if diff := gocmp.Diff(old, c); diff != "" {
					t.Errorf("client changed (-before +after):\n%s", diff)
				}
				return
			}
			if !slices.Contains(r.Updated, "client billing-service") {
				t.Errorf("Updated = %v, want client billing-service", r.Updated)
			}
			want := []string{"AddClientSecret"}
			for range old.Secrets {
				want = append(want, "DeleteClientSecret")
			}
			if !slices.Equal(counting.writes, want) {
				t.Errorf("writes = %v, want %v: add the new secret before deleting the old", counting.writes, want)
			}
			if len(c.Secrets) != 1 || !hasher.Match(newSecret, c.Secrets[0].Hash) || c.Secrets[0].Hint != "mnop" || !c.Secrets[0].CreatedAt.Equal(t1) {
				t.Errorf("secrets = %+v, want only the new one", c.Secrets)
			}
		})
	}
}

func checkNoSecretIn(t *testing.T, text, secret string) {
	t.Helper()
	if strings.Contains(text, secret) {
		t.Errorf("text shows a secret: %s", text)
	}
}

func TestApplyGrantToStoredAPI(t *testing.T) {
	ctx := context.Background()
	mem := newMemStore()
	stored := &auth.API{ID: "api_stored", Identifier: "urn:example:stored", Name: "Stored", Scopes: []auth.Scope{{Name: "read"}, {Name: "write"}},
		TokenLifetime: time.Hour, SigningAlg: auth.RS256, CreatedAt: t0, UpdatedAt: t0}
	if err := mem.CreateAPI(ctx, stored); err != nil {
		t.Fatal(err)
	}
	src := "clients:\n  - client_id: c\n    name: C\n    grants:\n      - audience: urn:example:stored\n        scopes: [write]\n"
	r := mustApply(t, mustParse(t, src), mem, t1)
	diffResult(t, r, &Result{
		Created:   []string{"client c", "grant c → urn:example:stored"},
		Generated: map[string]string{"c": r.Generated["c"]},
	})
	gs, _ := mem.ListGrants(ctx, "c")
	if len(gs) != 1 || gs[0].APIID != "api_stored" || !slices.Equal(gs[0].Scopes, []string{"write"}) {
		t.Errorf("grants = %+v, want one on api_stored with scope write", gs)
	}
	if a, _ := mem.FindAPIByIdentifier(ctx, "urn:example:stored"); !gocmp.Equal(a, stored) {
		t.Errorf("stored API changed: %+v", a)
	}
}

func TestApplyRejectsBadGrants(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		src  string
		want string
	}{
		{
			"unknown audience",
			exampleFile + "  - client_id: late\n    name: Late\n    grants:\n      - audience: https://nowhere.example.com\n",
			`gatehouse.yaml:24: clients[2].grants[0].audience: no API "https://nowhere.example.com" in this file or in the database`,
		},
		{
			"scope the stored API lacks",
			exampleFile + "  - client_id: late\n    name: Late\n    grants:\n      - audience: urn:example:stored\n        scopes:\n          - read\n          - delete\n",
			`gatehouse.yaml:27: clients[2].grants[0].scopes[1]: "delete" is not a scope of urn:example:stored`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := newMemStore()
			mem.CreateAPI(ctx, &auth.API{ID: "api_stored", Identifier: "urn:example:stored", Name: "Stored", Scopes: []auth.Scope{{Name: "read"}},
				TokenLifetime: time.Hour, SigningAlg: auth.RS256})
			counting := &countingStore{Store: mem}
			f := mustParse(t, tt.src)
			r, err := f.Apply(ctx, counting, hasher, t0)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Apply error:\n got %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, auth.ErrInvalid) {
				t.Errorf("errors.Is(%v, auth.ErrInvalid) = false", err)
			}
			if len(counting.writes) != 0 {
				t.Errorf("Apply wrote %v before finding the bad grant, want nothing", counting.writes)
			}
			checkNoSecret(t, r)
		})
	}
}

func TestApplyRace(t *testing.T) {
	// Another instance creates every API and client between our Find and our Create.
	mem := newMemStore()
	r := mustApply(t, mustParse(t, exampleFile), racingStore{mem}, t0)
	diffResult(t, r, &Result{
		Updated: []string{"client billing-service"}, // the other instance's secret is replaced by the file's
		Unchanged: []string{
			"api https://api.example.com/v1",
			"client reporting", // its generated secret is the other instance's to show
		},
		Created: []string{
			"grant billing-service → https://api.example.com/v1",
			"grant reporting → https://api.example.com/v1",
		},
	})
	c, _ := mem.FindClient(context.Background(), "billing-service")
	if len(c.Secrets) != 1 || !hasher.Match(billingSecret, c.Secrets[0].Hash) {
		t.Errorf("billing-service secrets = %+v, want the file's only", c.Secrets)
	}
	if n := len(mem.apis); n != 1 {
		t.Errorf("%d APIs stored, want 1", n)
	}
}

func TestApplyStale(t *testing.T) {
	// Another instance makes the same update between our Find and our Update.
	mem := newMemStore()
	mustApply(t, mustParse(t, exampleFile), mem, t0)
	changed := strings.NewReplacer("name: Example API", "name: Example API v1", "description: Nightly reports",
		"description: Hourly reports").Replace(exampleFile)
	r := mustApply(t, mustParse(t, changed), stalingStore{mem}, t1)
	diffResult(t, r, &Result{Unchanged: []string{
		"api https://api.example.com/v1", // the other instance's update is ours
		"client billing-service",
		"grant billing-service → https://api.example.com/v1",
		"client reporting",
		"grant reporting → https://api.example.com/v1",
	}})
	api, _ := mem.FindAPIByIdentifier(context.Background(), "https://api.example.com/v1")
	c, _ := mem.FindClient(context.Background(), "reporting")
	if api.Name != "Example API v1" || api.Version != 2 || c.Description != "Hourly reports" || c.Version != 2 {
		t.Errorf("API %q at version %d, client description %q at version %d; want the file's, each updated once",
			api.Name, api.Version, c.Description, c.Version)
	}
}

func TestApplyKeepsKeyTokenLifetime(t *testing.T) {
	// The file does not declare key_token_lifetime: an update keeps the stored one, within the token lifetime.
	ctx := context.Background()
	mem := newMemStore()
	mustApply(t, mustParse(t, exampleFile), mem, t0)
	api, _ := mem.FindAPIByIdentifier(ctx, "https://api.example.com/v1")
	api.KeyTokenLifetime = 30 * time.Minute
	if err := mem.UpdateAPI(ctx, api); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		replace string
		want    time.Duration
	}{
		{"name: Example API v1", 30 * time.Minute},
		{"name: Example API v1\n    token_lifetime: 10m", 10 * time.Minute},
	} {
		src := strings.Replace(strings.Replace(exampleFile, "    token_lifetime: 1h\n", "", 1), "name: Example API", tt.replace, 1)
		mustApply(t, mustParse(t, src), mem, t1)
		if got, _ := mem.FindAPIByIdentifier(ctx, "https://api.example.com/v1"); got.KeyTokenLifetime != tt.want {
			t.Errorf("after applying %q: KeyTokenLifetime = %v, want %v", tt.replace, got.KeyTokenLifetime, tt.want)
		}
	}
}

func TestApplyStoreFailure(t *testing.T) {
	mem := newMemStore()
	r, err := mustParse(t, exampleFile).Apply(context.Background(), failingGrants{mem}, hasher, t0)
	if want := "gatehouse.yaml:14: clients[0].grants[0]: put grant: boom"; err == nil || err.Error() != want {
		t.Errorf("Apply error = %v, want %s", err, want)
	}
	if !errors.Is(err, errBoom) {
		t.Errorf("errors.Is(%v, errBoom) = false", err)
	}
	// What was done before the failure is reported, so that main can still show a generated secret.
	diffResult(t, r, &Result{Created: []string{"api https://api.example.com/v1", "client billing-service"}})

	mem = newMemStore()
	mem.CreateAPI(context.Background(), &auth.API{ID: "api_x", Identifier: "urn:x", Name: "X", TokenLifetime: time.Hour, SigningAlg: auth.RS256})
	src := "clients:\n  - client_id: a\n    name: A\n  - client_id: b\n    name: B\n    grants: [{audience: urn:x}]\n"
	r, err = mustParse(t, src).Apply(context.Background(), failingGrants{mem}, hasher, t0)
	if err == nil || r.Generated["a"] == "" || r.Generated["b"] == "" {
		t.Errorf("Apply = %+v, %v; want an error, and the secrets generated for a and b", r, err)
	}
}
