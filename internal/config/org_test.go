package config

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// orgStore is a memStore that also keeps organizations, with the contract's semantics.
type orgStore struct {
	*memStore
	orgs map[string]*auth.Org // by ID
}

func newOrgStore() *orgStore { return &orgStore{memStore: newMemStore(), orgs: map[string]*auth.Org{}} }

func cloneOrg(o *auth.Org) *auth.Org {
	c := *o
	c.AllowedGrants = slices.Clone(o.AllowedGrants)
	for i := range c.AllowedGrants {
		c.AllowedGrants[i].Scopes = slices.Clone(c.AllowedGrants[i].Scopes)
	}
	return &c
}

func (s *orgStore) nameTaken(name, except string) bool {
	for _, o := range s.orgs {
		if o.Name == name && o.ID != except {
			return true
		}
	}
	return false
}

func (s *orgStore) CreateOrg(_ context.Context, o *auth.Org) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.orgs[o.ID] != nil || s.nameTaken(o.Name, "") {
		return fmt.Errorf("create org: %w", auth.ErrConflict)
	}
	s.orgs[o.ID] = cloneOrg(o)
	return nil
}

func (s *orgStore) UpdateOrg(_ context.Context, o *auth.Org) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.orgs[o.ID]
	switch {
	case old == nil:
		return fmt.Errorf("update org: %w", auth.ErrNotFound)
	case old.Version != o.Version:
		return fmt.Errorf("update org: %w", auth.ErrStale)
	case s.nameTaken(o.Name, o.ID):
		return fmt.Errorf("update org: %w", auth.ErrConflict)
	}
	o.Version++
	n := cloneOrg(o)
	n.CreatedAt = old.CreatedAt
	s.orgs[o.ID] = n
	return nil
}

func (s *orgStore) ListOrgs(_ context.Context, p auth.Page) ([]*auth.Org, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*auth.Org
	for _, o := range s.orgs {
		if o.ID > p.After {
			out = append(out, cloneOrg(o))
		}
	}
	slices.SortFunc(out, func(a, b *auth.Org) int { return strings.Compare(a.ID, b.ID) })
	if p.Limit > 0 && len(out) > p.Limit {
		out = out[:p.Limit]
	}
	return out, nil
}

func (s *orgStore) CreateClient(ctx context.Context, c *auth.Client) error {
	s.mu.Lock()
	_, ok := s.orgs[c.OrgID]
	s.mu.Unlock()
	if c.OrgID != "" && !ok {
		return fmt.Errorf("create client: org: %w", auth.ErrNotFound)
	}
	return s.memStore.CreateClient(ctx, c)
}

func (s *orgStore) byName(t *testing.T, name string) *auth.Org {
	t.Helper()
	for _, o := range s.orgs {
		if o.Name == name {
			return o
		}
	}
	t.Fatalf("no organization %q", name)
	return nil
}

const orgFile = `apis:
  - identifier: https://api.example.com/v1
    name: Example API
    scopes: [read, write, admin]
organizations:
  - name: acme
    description: Acme Corp
    api_key_prefix: acme
    allowed_grants:
      - audience: https://api.example.com/v1
        scopes: [write, read]
  - name: globex
clients:
  - client_id: importer
    name: Importer
    org: acme
    rate_limit: 100/1m
    grants:
      - audience: https://api.example.com/v1
        scopes: [read]
  - client_id: plain
    name: Plain
`

func TestParseOrgs(t *testing.T) {
	f := mustParse(t, orgFile)
	rl := auth.RateLimit{Count: 100, Per: time.Minute}
	want := &File{
		APIs: []API{{Identifier: "https://api.example.com/v1", Name: "Example API",
			Scopes: []auth.Scope{{Name: "read"}, {Name: "write"}, {Name: "admin"}}, TokenLifetime: 24 * time.Hour, SigningAlg: auth.RS256}},
		Orgs: []Org{
			{Name: "acme", Description: "Acme Corp", APIKeyPrefix: "acme",
				AllowedGrants: []Grant{{Audience: "https://api.example.com/v1", Scopes: []string{"write", "read"}}}},
			{Name: "globex"},
		},
		Clients: []Client{
			{ID: "importer", Name: "Importer", Org: "acme", RateLimit: &rl,
				Grants: []Grant{{Audience: "https://api.example.com/v1", Scopes: []string{"read"}}}},
			{ID: "plain", Name: "Plain"},
		},
	}
	opts := []gocmp.Option{cmpopts.IgnoreUnexported(File{}, API{}, Org{}, Client{}, Grant{}), cmpopts.EquateEmpty()}
	if diff := gocmp.Diff(want, f, opts...); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}

	f = mustParse(t, "clients:\n  - client_id: c\n    name: C\n    rate_limit: none\n")
	if rl := f.Clients[0].RateLimit; rl == nil || !rl.IsZero() {
		t.Errorf("rate_limit: none = %+v, want the zero RateLimit", rl)
	}
}

func TestParseOrgErrors(t *testing.T) {
	for _, tt := range []struct{ name, src, want string }{
		{"unknown field", "organizations:\n  - name: a\n    prefix: x\n",
			"gatehouse.yaml:3: organizations[0].prefix: unknown field (did you mean api_key_prefix?)"},
		{"not a map", "organizations:\n  - acme\n",
			"gatehouse.yaml:2: organizations[0]: must be a map with name and allowed_grants, not a string"},
		{"no name", "organizations:\n  - description: x\n",
			"gatehouse.yaml:2: organizations[0].name: "},
		{"twice", "organizations:\n  - name: a\n  - name: a\n",
			`gatehouse.yaml:3: organizations[1].name: "a" is defined twice (first at organizations[0], line 2)`},
		{"bad prefix", "organizations:\n  - name: a\n    api_key_prefix: Bad!\n",
			"gatehouse.yaml:3: organizations[0].api_key_prefix: "},
		{"audience twice", "organizations:\n  - name: a\n    allowed_grants:\n      - audience: urn:x\n      - audience: urn:x\n",
			`gatehouse.yaml:5: organizations[0].allowed_grants[1].audience: "urn:x" is listed twice (first at allowed_grants[0], line 4)`},
		{"scope not defined", "apis:\n  - identifier: urn:x\n    name: X\n    scopes: [read]\norganizations:\n  - name: a\n    allowed_grants:\n      - audience: urn:x\n        scopes: [fly]\n",
			"gatehouse.yaml:9: organizations[0].allowed_grants[0].scopes[0]: "},
		{"bad rate limit", "clients:\n  - client_id: c\n    name: C\n    rate_limit: lots\n",
			`gatehouse.yaml:4: clients[0].rate_limit: "lots" is not COUNT/DURATION, e.g. 100/1m (or none)`},
		{"rate limit too slow", "clients:\n  - client_id: c\n    name: C\n    rate_limit: 1/48h\n",
			`gatehouse.yaml:4: clients[0].rate_limit: "1/48h": the duration must be whole seconds, from 1s to 24h`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("gatehouse.yaml", []byte(tt.src), envOf(nil))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) || !errors.Is(err, auth.ErrInvalid) {
				t.Errorf("Parse = %v, want an error starting %q", err, tt.want)
			}
		})
	}
}

func TestParseRateLimit(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want auth.RateLimit
		ok   bool
	}{
		{"100/1m", auth.RateLimit{Count: 100, Per: time.Minute}, true},
		{"10/1s", auth.RateLimit{Count: 10, Per: time.Second}, true},
		{"5/m", auth.RateLimit{Count: 5, Per: time.Minute}, true},
		{"1000/24h", auth.RateLimit{Count: 1000, Per: 24 * time.Hour}, true},
		{"none", auth.RateLimit{}, true},
		{"0/1m", auth.RateLimit{}, false},
		{"-1/1m", auth.RateLimit{}, false},
		{"+1/1m", auth.RateLimit{}, false},
		{"100", auth.RateLimit{}, false},
		{"100/", auth.RateLimit{}, false},
		{"100/1500ms", auth.RateLimit{}, false},
		{"100/25h", auth.RateLimit{}, false},
		{"2000000/1s", auth.RateLimit{}, false},
		{"", auth.RateLimit{}, false},
	} {
		got, err := ParseRateLimit(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRateLimit(%q) = %+v, %v; want %+v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestApplyOrgs(t *testing.T) {
	ctx := context.Background()
	s := newOrgStore()
	r := mustApply(t, mustParse(t, orgFile), s, t0)
	diffResult(t, r, &Result{
		Created: []string{
			"api https://api.example.com/v1", "org acme", "org globex",
			"client importer", "grant importer → https://api.example.com/v1", "client plain",
		},
		Generated: r.Generated,
	})
	api, _ := s.FindAPIByIdentifier(ctx, "https://api.example.com/v1")
	acme := s.byName(t, "acme")
	want := &auth.Org{ID: acme.ID, Name: "acme", Description: "Acme Corp", APIKeyPrefix: "acme", Version: 1,
		AllowedGrants: []auth.OrgGrant{{APIID: api.ID, Scopes: []string{"read", "write"}}}, CreatedAt: t0, UpdatedAt: t0}
	if diff := gocmp.Diff(want, acme); diff != "" || !strings.HasPrefix(acme.ID, "org_") {
		t.Errorf("stored organization (-want +got):\n%s", diff)
	}
	importer, _ := s.FindClient(ctx, "importer")
	if importer.OrgID != acme.ID || importer.RateLimit != (auth.RateLimit{Count: 100, Per: time.Minute}) {
		t.Errorf("client importer: org %q, rate limit %+v; want %s and 100/1m", importer.OrgID, importer.RateLimit, acme.ID)
	}

	// Again: nothing changes.
	r = mustApply(t, mustParse(t, orgFile), s, t1)
	if len(r.Created)+len(r.Updated) != 0 || len(r.Unchanged) != 6 {
		t.Errorf("second Apply = %+v, want 6 unchanged", r)
	}

	// Changes to an organization and a client's rate limit; an entry without org or rate_limit leaves them.
	changed := strings.NewReplacer("description: Acme Corp", "description: Acme Corporation",
		"scopes: [write, read]", "scopes: [admin]", "rate_limit: 100/1m", "rate_limit: none").Replace(orgFile)
	r = mustApply(t, mustParse(t, changed), s, t1)
	if diff := gocmp.Diff([]string{"org acme", "client importer"}, r.Updated); diff != "" {
		t.Errorf("Updated (-want +got):\n%s", diff)
	}
	acme = s.byName(t, "acme")
	if acme.Description != "Acme Corporation" || !slices.Equal(acme.AllowedGrants[0].Scopes, []string{"admin"}) || acme.Version != 2 {
		t.Errorf("organization after update = %+v", acme)
	}
	if importer, _ = s.FindClient(ctx, "importer"); !importer.RateLimit.IsZero() || importer.OrgID != acme.ID {
		t.Errorf("client importer after rate_limit: none = %+v", importer)
	}
	s.clients["importer"].RateLimit = auth.RateLimit{Count: 7, Per: time.Second} // as set through the API
	r = mustApply(t, mustParse(t, strings.NewReplacer("    org: acme\n", "", "    rate_limit: none\n", "").Replace(changed)), s, t1)
	if len(r.Updated) != 0 || s.clients["importer"].RateLimit.Count != 7 || s.clients["importer"].OrgID != acme.ID {
		t.Errorf("an entry without org and rate_limit changed them: %+v, client %+v", r, s.clients["importer"])
	}
}

func TestApplyOrgErrors(t *testing.T) {
	s := newOrgStore()
	mustApply(t, mustParse(t, orgFile), s, t0)

	// An organization neither in the file nor in the store: nothing is written.
	_, err := mustParse(t, "clients:\n  - client_id: new\n    name: New\n    org: initech\n").Apply(context.Background(), s, hasher, t1)
	if want := `gatehouse.yaml:4: clients[0].org: no organization "initech" in this file or in the database`; err == nil ||
		err.Error() != want || !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("Apply = %v, want %q", err, want)
	}
	if _, err := s.FindClient(context.Background(), "new"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("the client was created: %v", err)
	}

	// A client cannot move to another organization.
	_, err = mustParse(t, strings.Replace(orgFile, "org: acme", "org: globex", 1)).Apply(context.Background(), s, hasher, t1)
	if err == nil || !strings.Contains(err.Error(), "clients[0].org: the client exists in another organization") || !errors.Is(err, auth.ErrConflict) {
		t.Errorf("Apply = %v, want a conflict on clients[0].org", err)
	}

	// An allowed grant for an API that does not exist.
	_, err = mustParse(t, "organizations:\n  - name: a\n    allowed_grants:\n      - audience: urn:nothing\n").Apply(context.Background(), s, hasher, t1)
	if err == nil || !strings.Contains(err.Error(), `organizations[0].allowed_grants[0].audience: no API "urn:nothing"`) {
		t.Errorf("Apply = %v, want an error about the audience", err)
	}
}

// TestApplyWithoutOrgsReadsNoOrgs: a file without organizations or org never asks the store for them, as before
// organizations existed (memStore has no org methods: calling one panics).
func TestApplyWithoutOrgsReadsNoOrgs(t *testing.T) {
	mustApply(t, mustParse(t, exampleFile), newMemStore(), t0)
}
