package changes

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/sqlstore"
)

func TestParse(t *testing.T) {
	for _, c := range []Change{
		{Kind: Client, ID: "billing"}, {Kind: Client, ID: "a:b"}, {Kind: APIKey, ID: "key_123"},
		{Kind: API}, {Kind: SigningKeys}, {Kind: Revocations},
	} {
		got, err := Parse(c.String())
		if err != nil || got != c {
			t.Errorf("Parse(%q) = %v, %v; want %v", c.String(), got, err, c)
		}
	}
	for _, s := range []string{"", "client", "client:", "apikey", "api:x", "signing_keys:x", "reset", "bogus:1",
		"client:" + strings.Repeat("x", MaxLen)} {
		if c, err := Parse(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%.20q) = %v, %v; want ErrMalformed", s, c, err)
		}
	}
}

// recorder is a Publisher that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	got  []Change
	fail error
}

func (r *recorder) Publish(ctx context.Context, c Change) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, c)
	return r.fail
}

func (r *recorder) take() []Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func openStore(t *testing.T) auth.Store {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestStorePublishes walks a client, a grant, an API key, a signing key and revocations through their writes and
// checks the change each publishes, and that a write the store refused publishes none.
func TestStorePublishes(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	s := NewStore(openStore(t), rec)
	now := time.Now().UTC().Truncate(time.Millisecond)
	step := func(name string, err error, want ...Change) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(want, rec.take()); diff != "" {
			t.Errorf("%s published (-want +got):\n%s", name, diff)
		}
	}
	client := Change{Kind: Client, ID: "billing"}
	api := &auth.API{ID: "api_1", Identifier: "https://api.example.com", Name: "x", Scopes: []auth.Scope{{Name: "read"}},
		TokenLifetime: time.Hour, SigningAlg: auth.RS256, CreatedAt: now, UpdatedAt: now}
	step("CreateAPI", s.CreateAPI(ctx, api))
	step("UpdateAPI", s.UpdateAPI(ctx, api), Change{Kind: API})
	c := &auth.Client{ID: "billing", Name: "Billing", CreatedAt: now, UpdatedAt: now}
	step("CreateClient", s.CreateClient(ctx, c), client)
	if err := s.CreateClient(ctx, c); !errors.Is(err, auth.ErrConflict) {
		t.Fatalf("CreateClient again: %v, want ErrConflict", err)
	}
	step("CreateClient refused", nil)
	c.Disabled = true
	step("UpdateClient", s.UpdateClient(ctx, c), client)
	sec := auth.Secret{ID: "sec_1", Hash: []byte("h"), Hint: "abcd", CreatedAt: now}
	step("AddClientSecret", s.AddClientSecret(ctx, c.ID, sec, time.Time{}), client)
	step("UpdateClientSecretExpiry", s.UpdateClientSecretExpiry(ctx, c.ID, sec.ID, now.Add(time.Hour)), client)
	g := &auth.Grant{ID: "grant_1", ClientID: c.ID, APIID: api.ID, Scopes: []string{"read"}, CreatedAt: now, UpdatedAt: now}
	step("CreateGrant", s.CreateGrant(ctx, g), client)
	step("UpdateGrant", s.UpdateGrant(ctx, g), client)
	step("DeleteGrant", s.DeleteGrant(ctx, g.ID, 0), client)
	if err := s.DeleteGrant(ctx, g.ID, 0); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("DeleteGrant again: %v, want ErrNotFound", err)
	}
	step("DeleteGrant of none", nil)
	step("PutGrant", s.PutGrant(ctx, &auth.Grant{ID: "grant_2", ClientID: c.ID, APIID: api.ID, Scopes: []string{"read"},
		CreatedAt: now, UpdatedAt: now}), client)

	k := &auth.APIKey{ID: "key_1", Name: "k", Grants: []auth.KeyGrant{{APIID: api.ID, Scopes: []string{"read"}}},
		Version: 1, CreatedAt: now, UpdatedAt: now}
	step("CreateAPIKey", s.CreateAPIKey(ctx, k, []byte("hash1")))
	key := Change{Kind: APIKey, ID: k.ID}
	k.Name = "renamed"
	step("UpdateAPIKey", s.UpdateAPIKey(ctx, k), key)
	stale := *k
	stale.Version = 1
	if err := s.UpdateAPIKey(ctx, &stale); !errors.Is(err, auth.ErrStale) {
		t.Fatalf("UpdateAPIKey stale: %v, want ErrStale", err)
	}
	step("UpdateAPIKey refused", nil)
	step("RotateAPIKey", s.RotateAPIKey(ctx, k, []byte("hash2"), time.Time{}), key)
	step("DeleteAPIKey", s.DeleteAPIKey(ctx, k.ID, 0), key)

	keys := Change{Kind: SigningKeys}
	sk := &auth.SigningKey{ID: "kid1", Alg: auth.ES256, State: auth.KeyCurrent, PublicJWK: []byte("{}"), Private: []byte("p"),
		CreatedAt: now, UpdatedAt: now}
	step("CreateSigningKey", s.CreateSigningKey(ctx, sk), keys)
	step("UpdateSigningKeyState", s.UpdateSigningKeyState(ctx, sk.ID, auth.KeyCurrent, auth.KeyRetired, now), keys)
	step("DeleteSigningKey", s.DeleteSigningKey(ctx, sk.ID), keys)

	revs := Change{Kind: Revocations}
	step("RevokeToken", s.RevokeToken(ctx, auth.RevokedToken{JTI: "j", ExpiresAt: now.Add(time.Hour), RevokedAt: now}), revs)
	step("RevokeSubject", s.RevokeSubject(ctx, auth.SubjectCutoff{Subject: "billing", IssuedBefore: now,
		ExpiresAt: now.Add(time.Hour), UpdatedAt: now}), revs)

	step("DeleteClient", s.DeleteClient(ctx, c.ID, 0), client)
	step("DeleteAPI", s.DeleteAPI(ctx, api.ID, 0), Change{Kind: API})
}

// TestStorePublishFailure: a change that cannot be published does not fail the write, and is reported.
func TestStorePublishFailure(t *testing.T) {
	rec := &recorder{fail: errors.New("database down")}
	s := NewStore(openStore(t), rec)
	var reported []Change
	s.OnError = func(c Change, err error) { reported = append(reported, c) }
	now := time.Now()
	if err := s.CreateClient(context.Background(), &auth.Client{ID: "billing", Name: "B", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	if want := []Change{{Kind: Client, ID: "billing"}}; !reflect.DeepEqual(reported, want) {
		t.Errorf("reported %v, want %v", reported, want)
	}
}

// notWatched are the writes of auth.Store whose results no instance caches, so they publish nothing.
var notWatched = map[string]string{
	"CreateAPI":         "no client's cached grants can name an API that did not exist",
	"CreateAPIKey":      "its hash is new: no instance has it cached",
	"TouchAPIKeys":      "last-used times are not cached",
	"PruneAPIKeyHashes": "expired hashes: the checker refuses them by their expiry already",
	"CreateOrg":         "organizations are read on each management request, not cached",
	"UpdateOrg":         "organizations are read on each management request, not cached",
	"DeleteOrg":         "refused while the organization owns clients or keys",
	"CreateSetting":     "settings are written once, at first start",
	"AppendAuditEvents": "the audit log is not cached",
	"PruneAuditEvents":  "the audit log is not cached",
	"PruneRevocations":  "only expired revocations, which no instance needs",
}

// TestEveryWriteIsWatched fails when auth.Store gains a write that Store neither wraps nor lists in notWatched:
// a new write must decide whether other instances cache what it changes.
func TestEveryWriteIsWatched(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "changes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	wrapped := map[string]bool{}
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv != nil && fn.Name.IsExported() {
			if star, ok := fn.Recv.List[0].Type.(*ast.StarExpr); ok && star.X.(*ast.Ident).Name == "Store" {
				wrapped[fn.Name.Name] = true
			}
		}
	}
	st := reflect.TypeFor[auth.Store]()
	for i := range st.NumMethod() {
		name := st.Method(i).Name
		write := false
		for _, verb := range []string{"Create", "Update", "Delete", "Put", "Add", "Rotate", "Revoke", "Touch", "Prune", "Append"} {
			write = write || strings.HasPrefix(name, verb)
		}
		switch {
		case !write:
		case wrapped[name] && notWatched[name] != "":
			t.Errorf("%s is both wrapped and listed as not watched", name)
		case !wrapped[name] && notWatched[name] == "":
			t.Errorf("auth.Store.%s writes, but changes.Store neither publishes a change for it nor says why not (notWatched)", name)
		}
	}
}

// countingCache counts what it is told to drop.
type countingCache struct {
	mu   sync.Mutex
	ids  []string
	alls int
}

func (c *countingCache) Invalidate(id string) { c.mu.Lock(); c.ids = append(c.ids, id); c.mu.Unlock() }
func (c *countingCache) InvalidateAll()       { c.mu.Lock(); c.alls++; c.mu.Unlock() }

func TestApplier(t *testing.T) {
	clients, keys := &countingCache{}, &countingCache{}
	a := NewApplier()
	a.Clients, a.APIKeys = clients, keys
	reloads := make(chan string, 10)
	release := make(chan struct{}, 1)
	a.SigningKeys = func(context.Context) error { reloads <- "keys"; <-release; return nil }
	a.Revocations = func(context.Context) error { reloads <- "revocations"; return errors.New("down") }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()

	a.Apply(Change{Kind: Client, ID: "billing"})
	a.Apply(Change{Kind: APIKey, ID: "key_1"})
	a.Apply(Change{Kind: API})
	if !reflect.DeepEqual(clients.ids, []string{"billing"}) || clients.alls != 1 ||
		!reflect.DeepEqual(keys.ids, []string{"key_1"}) || keys.alls != 1 {
		t.Errorf("clients %v/%d, keys %v/%d", clients.ids, clients.alls, keys.ids, keys.alls)
	}
	// A burst of signing key changes while a reload runs costs one more reload, not one each.
	a.Apply(Change{Kind: SigningKeys})
	if got := <-reloads; got != "keys" {
		t.Fatalf("reload %q, want keys", got)
	}
	for range 5 {
		a.Apply(Change{Kind: SigningKeys}) // Apply never blocks
	}
	release <- struct{}{}
	if got := <-reloads; got != "keys" {
		t.Fatalf("reload %q, want keys", got)
	}
	release <- struct{}{}
	release <- struct{}{} // for the reload Reset asks for
	a.Apply(Change{Kind: Reset})
	got := map[string]bool{<-reloads: true, <-reloads: true}
	if !got["keys"] || !got["revocations"] {
		t.Errorf("Reset reloaded %v, want keys and revocations", got)
	}
	if clients.alls != 2 || keys.alls != 2 {
		t.Errorf("Reset dropped clients %d, keys %d times in all; want 2", clients.alls, keys.alls)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end with its context")
	}
}
