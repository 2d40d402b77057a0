package config

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// Result says what Apply did, one human-readable line per API, organization, client and grant of the file, in the
// file's order: "api https://api.example.com/v1", "org acme", "client billing-service",
// "grant billing-service → https://api.example.com/v1".
type Result struct {
	Created, Updated, Unchanged []string

	// Generated maps the client_id of each client created without a client_secret in the file to the secret
	// generated for it. It is the only copy: print it once, with a warning to store it, and nowhere else.
	Generated map[string]string
}

// Apply makes the store hold what the file, as returned by Parse or Load, declares. It creates what is missing and
// updates what differs; it never deletes an API, organization, client or grant because the file does not mention
// it, and it leaves a client's Disabled flag, the secrets of a client without client_secret in the file, and the
// organization and rate limit of a client whose entry has no org or rate_limit alone. Run twice, the second run
// writes nothing and reports every line Unchanged. Several instances may apply the same file at once.
//
// Organizations are matched by name. A client's org names an organization of the file or of the store; a client
// that exists in another organization is an error (clients do not move).
//
// New APIs, clients, secrets and grants are stamped with now. h hashes new secrets and matches configured ones.
//
// Every grant's (and allowed grant's) audience and scopes, and every client's org, are checked before the first
// write. An audience or organization that is neither in the file nor in the store, or a scope the API does not
// define, is an error in the same "NAME:LINE: FIELD: MESSAGE" form as
// Parse's, matching auth.ErrInvalid. A store failure stops Apply with an error wrapping the store's; the Result
// returned with any error lists what was done until then, including Generated secrets, which must still be shown.
func (f *File) Apply(ctx context.Context, s auth.Store, h *auth.SecretHasher, now time.Time) (*Result, error) {
	a := &applier{f: f, s: s, h: h, now: now, r: &Result{Generated: make(map[string]string)}}

	// The APIs as the file defines them: a grant's scopes are checked against these, not the store's, which the
	// file is about to replace. Applying an API fills in its ID.
	apis := make(map[string]*auth.API, len(f.APIs))
	for _, api := range f.APIs {
		apis[api.Identifier] = api.domain()
	}
	targets := make([][]target, len(f.Clients))
	for i, c := range f.Clients {
		for _, g := range c.Grants {
			t, err := a.resolve(ctx, apis, g)
			if err != nil {
				return a.r, err
			}
			targets[i] = append(targets[i], t)
		}
	}
	allowed := make([][]target, len(f.Orgs))
	for i, o := range f.Orgs {
		for _, g := range o.AllowedGrants {
			t, err := a.resolve(ctx, apis, g)
			if err != nil {
				return a.r, err
			}
			allowed[i] = append(allowed[i], t)
		}
	}
	if err := a.readOrgs(ctx); err != nil {
		return a.r, err
	}

	for _, api := range f.APIs {
		if err := a.api(ctx, api, apis[api.Identifier]); err != nil {
			return a.r, err
		}
	}
	for i, o := range f.Orgs {
		if err := a.org(ctx, o, allowed[i]); err != nil {
			return a.r, err
		}
	}
	for i, c := range f.Clients {
		if err := a.client(ctx, c); err != nil {
			return a.r, err
		}
		if err := a.grants(ctx, c, targets[i]); err != nil {
			return a.r, err
		}
	}
	return a.r, nil
}

type applier struct {
	f    *File
	s    auth.Store
	h    *auth.SecretHasher
	now  time.Time
	r    *Result
	orgs map[string]*auth.Org // the store's organizations by name, once read; then as applied
}

// readOrgs reads the store's organizations, if the file mentions any, and checks that every client's org is in
// the file or the store.
func (a *applier) readOrgs(ctx context.Context) error {
	a.orgs = make(map[string]*auth.Org)
	if len(a.f.Orgs) == 0 && !slices.ContainsFunc(a.f.Clients, func(c Client) bool { return c.Org != "" }) {
		return nil
	}
	orgs, err := a.s.ListOrgs(ctx, auth.Page{})
	if err != nil {
		return newError(a.f.name, nil, "organizations", err, "list organizations: %v", err)
	}
	for _, o := range orgs {
		a.orgs[o.Name] = o
	}
	for _, c := range a.f.Clients {
		inFile := slices.ContainsFunc(a.f.Orgs, func(o Org) bool { return o.Name == c.Org })
		if _, ok := a.orgs[c.Org]; c.Org != "" && !ok && !inFile {
			return newError(a.f.name, valueOf(c.node, "org"), c.path+".org", auth.ErrInvalid,
				"no organization %q in this file or in the database", c.Org)
		}
	}
	return nil
}

// org creates the file's organization o, or updates its description, API key prefix and allowed grants.
func (a *applier) org(ctx context.Context, o Org, targets []target) error {
	line := "org " + o.Name
	allowed := make([]auth.OrgGrant, len(targets))
	for i, t := range targets {
		allowed[i] = auth.OrgGrant{APIID: t.api.ID, Scopes: t.scopes}
	}
	for attempt := 0; attempt < 3; attempt++ {
		got := a.orgs[o.Name]
		if got == nil {
			want := &auth.Org{ID: auth.NewID("org"), Name: o.Name, Description: o.Description, APIKeyPrefix: o.APIKeyPrefix,
				AllowedGrants: allowed, Version: 1, CreatedAt: a.now, UpdatedAt: a.now}
			if err := want.Normalize(); err != nil {
				return invalidError(a.f.name, o.node, o.path, err)
			}
			err := a.s.CreateOrg(ctx, want)
			if err == nil {
				a.orgs[o.Name] = want
				a.r.Created = append(a.r.Created, line)
				return nil
			}
			if !errors.Is(err, auth.ErrConflict) {
				return a.storeError(o.at, "create organization", err)
			}
			// Another instance applied the same file at the same moment: update what it created.
			if err := a.reread(ctx, o); err != nil {
				return err
			}
			continue
		}
		if got.Description == o.Description && got.APIKeyPrefix == o.APIKeyPrefix && sameAllowed(got.AllowedGrants, allowed) {
			a.r.Unchanged = append(a.r.Unchanged, line)
			return nil
		}
		u := *got
		u.Description, u.APIKeyPrefix, u.AllowedGrants, u.UpdatedAt = o.Description, o.APIKeyPrefix, allowed, a.now
		err := a.s.UpdateOrg(ctx, &u)
		if err == nil {
			a.orgs[o.Name] = &u
			a.r.Updated = append(a.r.Updated, line)
			return nil
		}
		if !errors.Is(err, auth.ErrStale) && !errors.Is(err, auth.ErrNotFound) {
			return a.storeError(o.at, "update organization", err)
		}
		// Changed (or deleted) since we read it: read it again and compare again.
		if err := a.reread(ctx, o); err != nil {
			return err
		}
	}
	return a.storeError(o.at, "apply organization", errors.New("it kept changing while it was being applied"))
}

// reread reads the store's organization named as o again, into a.orgs (nil if there is none).
func (a *applier) reread(ctx context.Context, o Org) error {
	orgs, err := a.s.ListOrgs(ctx, auth.Page{})
	if err != nil {
		return a.storeError(o.at, "list organizations", err)
	}
	delete(a.orgs, o.Name)
	for _, s := range orgs {
		if s.Name == o.Name {
			a.orgs[o.Name] = s
		}
	}
	return nil
}

// sameAllowed reports whether two lists of allowed grants hold the same APIs with the same scopes, in any order.
func sameAllowed(a, b []auth.OrgGrant) bool {
	if len(a) != len(b) {
		return false
	}
	for _, g := range b {
		i := slices.IndexFunc(a, func(x auth.OrgGrant) bool { return x.APIID == g.APIID })
		if i < 0 || !sameSet(a[i].Scopes, g.Scopes) {
			return false
		}
	}
	return true
}

// target is a grant of the file resolved against its API.
type target struct {
	api    *auth.API // from the file (its ID set once applied) or from the store
	scopes []string  // checked, sorted, without duplicates
}

func (a *applier) resolve(ctx context.Context, apis map[string]*auth.API, g Grant) (target, error) {
	api := apis[g.Audience]
	if api == nil {
		var err error
		api, err = a.s.FindAPIByIdentifier(ctx, g.Audience)
		if errors.Is(err, auth.ErrNotFound) {
			return target{}, newError(a.f.name, valueOf(g.node, "audience"), g.path+".audience", auth.ErrInvalid,
				"no API %q in this file or in the database", g.Audience)
		}
		if err != nil {
			return target{}, a.storeError(g.at, "find api "+g.Audience, err)
		}
	}
	scopes, err := api.CheckScopes("scopes", g.Scopes)
	if err != nil {
		return target{}, invalidError(a.f.name, g.node, g.path, err)
	}
	return target{api: api, scopes: scopes}, nil
}

// api creates or updates want, the file's api, and sets want.ID to the stored API's.
func (a *applier) api(ctx context.Context, api API, want *auth.API) error {
	line := "api " + want.Identifier
	got, err := a.s.FindAPIByIdentifier(ctx, want.Identifier)
	if errors.Is(err, auth.ErrNotFound) {
		want.ID, want.Version = auth.NewID("api"), 1
		want.CreatedAt, want.UpdatedAt = a.now, a.now
		err = a.s.CreateAPI(ctx, want)
		if err == nil {
			a.r.Created = append(a.r.Created, line)
			return nil
		}
		if !errors.Is(err, auth.ErrConflict) {
			return a.storeError(api.at, "create api", err)
		}
		// Another instance applied the same file at the same moment: update what it created.
		if got, err = a.s.FindAPIByIdentifier(ctx, want.Identifier); errors.Is(err, auth.ErrNotFound) {
			err = auth.ErrConflict // the conflict was on the ID
		}
	}
	if err != nil {
		return a.storeError(api.at, "find api", err)
	}

	want.ID, want.CreatedAt, want.UpdatedAt, want.Version = got.ID, got.CreatedAt, got.UpdatedAt, got.Version
	// The file does not declare the key token lifetime: keep the stored one, within the token lifetime.
	want.KeyTokenLifetime = min(got.KeyTokenLifetime, want.TokenLifetime)
	if got.Name == want.Name && got.TokenLifetime == want.TokenLifetime && got.SigningAlg == want.SigningAlg &&
		sameScopes(got.Scopes, want.Scopes) {
		a.r.Unchanged = append(a.r.Unchanged, line)
		return nil
	}
	want.UpdatedAt = a.now
	err = a.s.UpdateAPI(ctx, want)
	if errors.Is(err, auth.ErrStale) {
		// Changed since we read it, as by another instance applying the same file: compare again.
		return a.api(ctx, api, want)
	}
	if err != nil {
		return a.storeError(api.at, "update api", err)
	}
	a.r.Updated = append(a.r.Updated, line)
	return nil
}

// client creates the file's client c, or updates its name, description, rate limit and secret.
func (a *applier) client(ctx context.Context, c Client) error {
	line := "client " + c.ID
	orgID := ""
	if c.Org != "" {
		orgID = a.orgs[c.Org].ID // readOrgs checked it is there, or in the file and so applied by now
	}
	got, err := a.s.FindClient(ctx, c.ID)
	if errors.Is(err, auth.ErrNotFound) {
		secret := string(c.Secret)
		if secret == "" {
			secret = auth.NewSecret()
		}
		nc := &auth.Client{
			ID:          c.ID,
			Name:        c.Name,
			Description: c.Description,
			OrgID:       orgID,
			Secrets:     []auth.Secret{a.newSecret(secret)},
			Version:     1,
			CreatedAt:   a.now,
			UpdatedAt:   a.now,
		}
		if c.RateLimit != nil {
			nc.RateLimit = *c.RateLimit
		}
		err = a.s.CreateClient(ctx, nc)
		if err == nil {
			a.r.Created = append(a.r.Created, line)
			if c.Secret == "" {
				a.r.Generated[c.ID] = secret
			}
			return nil
		}
		if !errors.Is(err, auth.ErrConflict) {
			return a.storeError(c.at, "create client", err)
		}
		// Another instance applied the same file at the same moment: update what it created. A secret it
		// generated is its to show; ours was never stored.
		if got, err = a.s.FindClient(ctx, c.ID); errors.Is(err, auth.ErrNotFound) {
			err = auth.ErrConflict // the conflict was on a secret ID
		}
	}
	if err != nil {
		return a.storeError(c.at, "find client", err)
	}

	if orgID != "" && got.OrgID != orgID {
		return newError(a.f.name, valueOf(c.node, "org"), c.path+".org", auth.ErrConflict,
			"the client exists in another organization (%s); a client cannot move: give it another client_id", orgOf(got.OrgID))
	}
	changed := false
	if got.Name != c.Name || got.Description != c.Description || c.RateLimit != nil && *c.RateLimit != got.RateLimit {
		u := *got // keeps Disabled, OrgID and the Version read
		u.Name, u.Description, u.UpdatedAt = c.Name, c.Description, a.now
		if c.RateLimit != nil {
			u.RateLimit = *c.RateLimit
		}
		err := a.s.UpdateClient(ctx, &u)
		if errors.Is(err, auth.ErrStale) {
			// Changed since we read it, as by another instance applying the same file; nothing is written
			// yet: start again.
			return a.client(ctx, c)
		}
		if err != nil {
			return a.storeError(c.at, "update client", err)
		}
		changed = true
	}

	// The file is the truth for a configured secret: if it matches none of the client's working secrets, it
	// replaces all of them, so that a secret changed in the file takes effect and an old one stops working.
	// Zero-downtime rotation (two secrets valid for a while) is the management API's job, for clients whose
	// secret is not in the file. The new secret is added before the old ones are deleted, so the client always
	// has one; a secret already gone (another instance applying the same file) is not an error.
	if c.Secret != "" && !a.matches(got.Secrets, string(c.Secret)) {
		if err := a.s.AddClientSecret(ctx, c.ID, a.newSecret(string(c.Secret)), time.Time{}); err != nil {
			return a.storeError(c.at, "add client secret", err)
		}
		for _, old := range got.Secrets {
			err := a.s.DeleteClientSecret(ctx, c.ID, old.ID)
			if err != nil && !errors.Is(err, auth.ErrNotFound) {
				return a.storeError(c.at, "delete client secret "+old.ID, err)
			}
		}
		changed = true
	}

	if changed {
		a.r.Updated = append(a.r.Updated, line)
	} else {
		a.r.Unchanged = append(a.r.Unchanged, line)
	}
	return nil
}

func orgOf(id string) string {
	if id == "" {
		return "none"
	}
	return id
}

// matches reports whether secret is one of secrets that still works.
func (a *applier) matches(secrets []auth.Secret, secret string) bool {
	for _, s := range secrets {
		if s.Active(a.now) && a.h.Match(secret, s.Hash) {
			return true
		}
	}
	return false
}

func (a *applier) newSecret(secret string) auth.Secret {
	return auth.Secret{ID: auth.NewID("sec"), Hash: a.h.Hash(secret), Hint: auth.SecretHint(secret), CreatedAt: a.now}
}

// grants puts the grants of client c whose scopes differ from the stored ones, or that are missing.
func (a *applier) grants(ctx context.Context, c Client, targets []target) error {
	stored, err := a.s.ListGrants(ctx, c.ID)
	if err != nil {
		return a.storeError(c.at, "list grants", err)
	}
	for i, t := range targets {
		line := fmt.Sprintf("grant %s → %s", c.ID, t.api.Identifier)
		j := slices.IndexFunc(stored, func(g *auth.Grant) bool { return g.APIID == t.api.ID })
		if j >= 0 && sameSet(stored[j].Scopes, t.scopes) {
			a.r.Unchanged = append(a.r.Unchanged, line)
			continue
		}
		g := &auth.Grant{ID: auth.NewID("grt"), ClientID: c.ID, APIID: t.api.ID, Scopes: t.scopes, Version: 1, CreatedAt: a.now, UpdatedAt: a.now}
		if err := a.s.PutGrant(ctx, g); err != nil {
			return a.storeError(c.Grants[i].at, "put grant", err)
		}
		if j >= 0 {
			a.r.Updated = append(a.r.Updated, line)
		} else {
			a.r.Created = append(a.r.Created, line)
		}
	}
	return nil
}

// storeError reports a store failure at the entry it happened for.
func (a *applier) storeError(at at, op string, err error) error {
	return newError(a.f.name, at.node, at.path, err, "%s: %v", op, err)
}

// sameScopes reports whether a and b define the same scopes, in any order.
func sameScopes(a, b []auth.Scope) bool {
	byName := func(x, y auth.Scope) int { return strings.Compare(x.Name, y.Name) }
	return slices.Equal(slices.SortedFunc(slices.Values(a), byName), slices.SortedFunc(slices.Values(b), byName))
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
