package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/rootkey"
)

func newApplyCmd(stdout, stderr io.Writer) *cobra.Command {
	a := &adminFlags{stdout: stdout, stderr: stderr}
	var file, db, rootKeyFile string
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Apply a declarative file (the YAML of serve --config) to a running server, or to a database",
		Long: `Apply a declarative file — the same YAML as 'gatehouse serve --config' — and print what it created,
updated and left unchanged. Like serve --config it creates and updates, and never deletes.

By default it goes through the management API of a running server (--server, GATEHOUSE_SERVER), as the client in
GATEHOUSE_CLIENT_ID and GATEHOUSE_CLIENT_SECRET, so every change is checked and audited as any other. The server
generates client secrets there: a client_secret in the file is refused, and the secret of each client created is
printed once.

With --db it writes to the database directly, as serve --config does at start (the root key comes from
GATEHOUSE_ROOT_KEY or --root-key-file): for setting up a database before the first start, or client secrets
taken from the file.`,
		Example: `  gatehouse apply -f gatehouse.yaml --server https://auth.example.com
  gatehouse apply -f gatehouse.yaml --db sqlite:/var/lib/gatehouse/gatehouse.db`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case file == "":
				return usageError{errors.New("-f FILE is required")}
			case db != "" && changed(cmd, "server"):
				return usageError{errors.New("give --db (write the database) or --server (go through the API), not both")}
			case db != "" && checkDB(db) != nil:
				return checkDB(db)
			case db == "" && changed(cmd, "root-key-file"):
				return usageError{errors.New("--root-key-file goes with --db")}
			}
			f, err := config.Load(file, os.LookupEnv)
			if err != nil {
				return err
			}
			var res *config.Result
			if db != "" {
				res, err = applyToDB(cmd.Context(), f, db, rootKeyFile)
			} else {
				var c *adminClient
				if c, err = a.client(); err != nil {
					return err
				}
				res, err = applyThroughAPI(cmd.Context(), c, f, file)
			}
			if res != nil {
				printApplied(stdout, stderr, res) // also after a failure: what was done, and secrets generated
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "file", "f", "", "the declarative YAML file (required)")
	fl.StringVar(&db, "db", "", "apply to this database directly (sqlite:PATH or postgres://…) instead of through a server")
	fl.StringVar(&rootKeyFile, "root-key-file", "", "with --db: the file holding the base64 root key (else GATEHOUSE_ROOT_KEY)")
	a.register(fl, false)
	return cmd
}

// printApplied prints one line per resource of the file: created, then updated, then unchanged, each in the
// file's order; then the secrets generated for new clients, each shown this once.
func printApplied(stdout, stderr io.Writer, res *config.Result) {
	for _, group := range []struct {
		verb  string
		lines []string
	}{{"created", res.Created}, {"updated", res.Updated}, {"unchanged", res.Unchanged}} {
		for _, l := range group.lines {
			fmt.Fprintln(stdout, group.verb, l)
		}
	}
	ids := make([]string, 0, len(res.Generated))
	for id := range res.Generated {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		fmt.Fprintf(stdout, "client_secret %s %s\n", id, res.Generated[id])
		warnSecret(stderr, id)
	}
}

// applyToDB applies f to the database as serve --config does at start: it checks the root key, makes sure the
// management API exists, and applies the file in one go.
func applyToDB(ctx context.Context, f *config.File, db, rootKeyFile string) (*config.Result, error) {
	if rootKeyFile == "" {
		rootKeyFile = os.Getenv("GATEHOUSE_ROOT_KEY_FILE")
	}
	var (
		key *rootkey.Key
		err error
	)
	switch {
	case rootKeyFile != "":
		if key, err = rootkey.ReadFile(rootKeyFile); err != nil {
			return nil, err
		}
	case os.Getenv("GATEHOUSE_ROOT_KEY") != "":
		if key, err = rootkey.Parse(os.Getenv("GATEHOUSE_ROOT_KEY")); err != nil {
			return nil, fmt.Errorf("GATEHOUSE_ROOT_KEY: %w", err)
		}
	default:
		return nil, errors.New("no root key: with --db, set GATEHOUSE_ROOT_KEY or pass --root-key-file, as for gatehouse serve")
	}
	// On PostgreSQL, the running servers hear of what this changes (their client caches drop it) as they would of a
	// change through the API.
	store, err := openStore(ctx, db, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	defer store.Close()
	if err := key.Check(ctx, store); err != nil {
		return nil, err
	}
	// The same subkey as Main.Open's, so that secrets from the file match at the token endpoint.
	hasher := auth.NewSecretHasher(key.Derive("client secret hashing"))
	now := time.Now()
	if err := config.EnsureManagementAPI(ctx, store, now); err != nil {
		return nil, err
	}
	return f.Apply(ctx, store, hasher, now)
}

// apiApplier applies a declarative file through the management API, so that every change is checked, and
// audited, as any other. Like config's Apply it creates and updates and never deletes, and every grant's audience
// and scopes are checked before the first write.
type apiApplier struct {
	c    *adminClient
	f    *config.File
	name string // the file's, for messages
	r    *config.Result
	apis map[string]apiJSON  // by identifier: the server's, then as applied
	orgs map[string]orgJSON  // by name
	defs map[string][]string // the scopes of each API by identifier: as the file defines them, else the server's
}

func applyThroughAPI(ctx context.Context, c *adminClient, f *config.File, name string) (*config.Result, error) {
	a := &apiApplier{c: c, f: f, name: name, r: &config.Result{Generated: map[string]string{}},
		apis: map[string]apiJSON{}, orgs: map[string]orgJSON{}, defs: map[string][]string{}}
	if err := a.check(ctx); err != nil {
		return nil, err
	}
	for _, api := range f.APIs {
		if err := a.api(ctx, api); err != nil {
			return a.r, fmt.Errorf("api %s: %w", api.Identifier, err)
		}
	}
	for _, o := range f.Orgs {
		if err := a.org(ctx, o); err != nil {
			return a.r, fmt.Errorf("org %s: %w", o.Name, err)
		}
	}
	for _, cl := range f.Clients {
		if err := a.client(ctx, cl); err != nil {
			return a.r, fmt.Errorf("client %s: %w", cl.ID, err)
		}
		if err := a.grants(ctx, cl); err != nil {
			return a.r, fmt.Errorf("client %s: %w", cl.ID, err)
		}
	}
	return a.r, nil
}

// check reads the server's APIs and organizations and checks the file against them before anything is written.
func (a *apiApplier) check(ctx context.Context) error {
	var problems []string
	for _, cl := range a.f.Clients {
		if cl.Secret != "" {
			problems = append(problems, fmt.Sprintf("client %s: client_secret cannot be set through the management API, "+
				"which generates secrets: remove it (the new client's secret is printed once), or apply with --db", cl.ID))
		}
	}
	items, _, err := a.c.list(ctx, "/api/v1/apis", nil, 0)
	if err != nil {
		return err
	}
	for _, raw := range items {
		var v apiJSON
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("the server's answer is not what this command expects: %w", err)
		}
		a.apis[v.Identifier] = v
		a.defs[v.Identifier] = scopeNamesOf(v.Scopes)
	}
	for _, api := range a.f.APIs {
		names := make([]string, len(api.Scopes))
		for i, s := range api.Scopes {
			names[i] = s.Name
		}
		a.defs[api.Identifier] = names
	}
	if len(a.f.Orgs) > 0 || slices.ContainsFunc(a.f.Clients, func(c config.Client) bool { return c.Org != "" }) {
		orgs, err := listOrgs(ctx, a.c)
		if err != nil {
			return err
		}
		for _, o := range orgs {
			a.orgs[o.Name] = o
		}
	}
	inFile := func(name string) bool {
		return slices.ContainsFunc(a.f.Orgs, func(o config.Org) bool { return o.Name == name })
	}
	checkGrant := func(who string, g config.Grant) {
		defined, ok := a.defs[g.Audience]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: no API %q in this file or on the server", who, g.Audience))
			return
		}
		for _, s := range g.Scopes {
			if !slices.Contains(defined, s) {
				problems = append(problems, fmt.Sprintf("%s: %q is not a scope of %s", who, s, g.Audience))
			}
		}
	}
	for _, o := range a.f.Orgs {
		for _, g := range o.AllowedGrants {
			checkGrant("org "+o.Name+": allowed_grants", g)
		}
	}
	for _, cl := range a.f.Clients {
		if _, ok := a.orgs[cl.Org]; cl.Org != "" && !ok && !inFile(cl.Org) {
			problems = append(problems, fmt.Sprintf("client %s: no organization %q in this file or on the server", cl.ID, cl.Org))
		}
		for _, g := range cl.Grants {
			checkGrant("client "+cl.ID+": grants", g)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: nothing applied:\n  %s", a.name, strings.Join(problems, "\n  "))
	}
	return nil
}

func (a *apiApplier) api(ctx context.Context, api config.API) error {
	line := "api " + api.Identifier
	scopes := make([]scopeJSON, len(api.Scopes))
	for i, s := range api.Scopes {
		scopes[i] = scopeJSON(s)
	}
	lifetime := int64(api.TokenLifetime / time.Second)
	body := map[string]any{"name": api.Name, "scopes": scopes, "token_lifetime": lifetime, "signing_alg": string(api.SigningAlg)}
	got, ok := a.apis[api.Identifier]
	if !ok {
		body["identifier"] = api.Identifier
		var created apiJSON
		if err := a.send(ctx, http.MethodPost, "/api/v1/apis", body, &created, &a.r.Created, line); err != nil {
			return err
		}
		a.apis[api.Identifier] = created
		return nil
	}
	if got.Name == api.Name && got.TokenLifetime == lifetime && got.SigningAlg == string(api.SigningAlg) &&
		sameScopeDefs(got.Scopes, scopes) {
		a.r.Unchanged = append(a.r.Unchanged, line)
		return nil
	}
	return a.send(ctx, http.MethodPatch, "/api/v1/apis/"+escape(got.ID), body, nil, &a.r.Updated, line)
}

func (a *apiApplier) org(ctx context.Context, o config.Org) error {
	line := "org " + o.Name
	allowed := make([]orgGrantJSON, len(o.AllowedGrants))
	for i, g := range o.AllowedGrants {
		allowed[i] = orgGrantJSON{Audience: g.Audience, Scopes: sortedSet(g.Scopes)}
	}
	body := map[string]any{"description": o.Description, "allowed_grants": allowed}
	if o.APIKeyPrefix != "" {
		body["api_key_prefix"] = o.APIKeyPrefix
	}
	got, ok := a.orgs[o.Name]
	if !ok {
		body["name"] = o.Name
		var created orgJSON
		if err := a.send(ctx, http.MethodPost, "/api/v1/orgs", body, &created, &a.r.Created, line); err != nil {
			return err
		}
		a.orgs[o.Name] = created
		return nil
	}
	if got.Description == o.Description && got.APIKeyPrefix == o.APIKeyPrefix && sameAllowed(got.AllowedGrants, allowed) {
		a.r.Unchanged = append(a.r.Unchanged, line)
		return nil
	}
	body["api_key_prefix"] = o.APIKeyPrefix
	return a.send(ctx, http.MethodPatch, "/api/v1/orgs/"+escape(got.ID), body, nil, &a.r.Updated, line)
}

func (a *apiApplier) client(ctx context.Context, cl config.Client) error {
	line := "client " + cl.ID
	body := map[string]any{"name": cl.Name, "description": cl.Description}
	if cl.RateLimit != nil {
		body["rate_limit"] = rateLimitBody(*cl.RateLimit)
	}
	path := "/api/v1/clients/" + escape(cl.ID)
	resp, err := a.c.do(ctx, http.MethodGet, path, nil, "")
	if isNotFound(err) {
		body["client_id"] = cl.ID
		if cl.Org != "" {
			body["org_id"] = a.orgs[cl.Org].ID
		}
		var created clientJSON
		if err := a.send(ctx, http.MethodPost, "/api/v1/clients", body, &created, &a.r.Created, line); err != nil {
			return err
		}
		a.r.Generated[cl.ID] = created.ClientSecret
		return nil
	}
	if err != nil {
		return err
	}
	var got clientJSON
	if err := json.Unmarshal(resp.Body, &got); err != nil {
		return fmt.Errorf("the server's answer is not what this command expects: %w", err)
	}
	if cl.Org != "" && got.OrgID != a.orgs[cl.Org].ID {
		return fmt.Errorf("belongs to organization %q, not %s: a client cannot move; create another client", got.OrgID, cl.Org)
	}
	if got.Name == cl.Name && got.Description == cl.Description &&
		(cl.RateLimit == nil || sameRateLimit(got.RateLimit, *cl.RateLimit)) {
		a.r.Unchanged = append(a.r.Unchanged, line)
		return nil
	}
	return a.send(ctx, http.MethodPatch, path, body, nil, &a.r.Updated, line)
}

func (a *apiApplier) grants(ctx context.Context, cl config.Client) error {
	if len(cl.Grants) == 0 {
		return nil
	}
	items, _, err := a.c.list(ctx, "/api/v1/grants", url.Values{"client_id": {cl.ID}}, 0)
	if err != nil {
		return err
	}
	stored := map[string]grantJSON{}
	for _, raw := range items {
		var g grantJSON
		if err := json.Unmarshal(raw, &g); err != nil {
			return fmt.Errorf("the server's answer is not what this command expects: %w", err)
		}
		stored[g.Audience] = g
	}
	for _, g := range cl.Grants {
		line := fmt.Sprintf("grant %s → %s", cl.ID, g.Audience)
		scopes := sortedSet(g.Scopes)
		got, ok := stored[g.Audience]
		switch {
		case !ok:
			err = a.send(ctx, http.MethodPost, "/api/v1/grants", map[string]any{"client_id": cl.ID, "audience": g.Audience, "scopes": scopes},
				nil, &a.r.Created, line)
		case slices.Equal(sortedSet(got.Scopes), scopes):
			a.r.Unchanged = append(a.r.Unchanged, line)
		default:
			err = a.send(ctx, http.MethodPatch, "/api/v1/grants/"+escape(got.ID), map[string]any{"scopes": scopes}, nil, &a.r.Updated, line)
		}
		if err != nil {
			return fmt.Errorf("grant %s: %w", g.Audience, err)
		}
	}
	return nil
}

// send makes one change, adds line to done once it is made, and decodes the answer into out (nil: not needed).
func (a *apiApplier) send(ctx context.Context, method, path string, body, out any, done *[]string, line string) error {
	resp, err := a.c.do(ctx, method, path, body, "")
	if err != nil {
		return err
	}
	*done = append(*done, line)
	if out != nil {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return fmt.Errorf("the server's answer is not what this command expects: %w", err)
		}
	}
	return nil
}

func rateLimitBody(rl auth.RateLimit) any {
	if rl.IsZero() {
		return nil
	}
	return rateLimitJSON{Count: rl.Count, Per: int64(rl.Per / time.Second)}
}

func sameRateLimit(got *rateLimitJSON, want auth.RateLimit) bool {
	if got == nil || got.Count == 0 {
		return want.IsZero()
	}
	return got.Count == want.Count && time.Duration(got.Per)*time.Second == want.Per
}

func scopeNamesOf(scopes []scopeJSON) []string {
	names := make([]string, len(scopes))
	for i, s := range scopes {
		names[i] = s.Name
	}
	return names
}

// sameScopeDefs reports whether a and b define the same scopes, with the same descriptions, in any order.
func sameScopeDefs(a, b []scopeJSON) bool {
	byName := func(x, y scopeJSON) int { return strings.Compare(x.Name, y.Name) }
	return slices.Equal(slices.SortedFunc(slices.Values(a), byName), slices.SortedFunc(slices.Values(b), byName))
}

// sameAllowed reports whether an organization's allowed grants are want, in any order.
func sameAllowed(got []orgGrantJSON, want []orgGrantJSON) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(g orgGrantJSON) bool { return g.Audience == w.Audience })
		if i < 0 || !slices.Equal(sortedSet(got[i].Scopes), w.Scopes) {
			return false
		}
	}
	return true
}

// sortedSet returns s sorted without duplicates, never nil.
func sortedSet(s []string) []string {
	out := slices.Compact(slices.Sorted(slices.Values(s)))
	if out == nil {
		out = []string{}
	}
	return out
}
