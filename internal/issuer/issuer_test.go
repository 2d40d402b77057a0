package issuer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/issuer"
	"github.com/gatehouse/gatehouse/internal/sqlstore"
)

// recordingSigner is a fake Signer: it returns the claims it was given, so tests can read them back.
type recordingSigner struct {
	mu   sync.Mutex
	algs []auth.Algorithm
}

func (s *recordingSigner) Sign(_ context.Context, alg auth.Algorithm, claims []byte) (string, error) {
	s.mu.Lock()
	s.algs = append(s.algs, alg)
	s.mu.Unlock()
	return string(claims), nil
}

// countingStore counts client reads, to see the cache work.
type countingStore struct {
	auth.Store
	mu    sync.Mutex
	finds int
}

func (s *countingStore) FindClient(ctx context.Context, id string) (*auth.Client, error) {
	s.mu.Lock()
	s.finds++
	s.mu.Unlock()
	return s.Store.FindClient(ctx, id)
}

type fixture struct {
	store  *countingStore
	hasher *auth.SecretHasher
	iss    *issuer.Issuer
	now    time.Time
	apis   map[string]*auth.API
}

const secretA = "secret-a-0123456789abcdefghijklmnopqrstuvwxyz"

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{store: &countingStore{Store: db}, hasher: auth.NewSecretHasher([]byte("0123456789abcdef0123456789abcdef")),
		now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), apis: map[string]*auth.API{}}
	for _, a := range []*auth.API{
		{ID: "api_one", Identifier: "https://one.example.com", Name: "One", Scopes: []auth.Scope{{Name: "read"}, {Name: "write"}}, TokenLifetime: time.Hour},
		{ID: "api_two", Identifier: "urn:example:two", Name: "Two", Scopes: []auth.Scope{{Name: "x"}}, SigningAlg: auth.EdDSA},
	} {
		if err := a.Normalize(); err != nil {
			t.Fatal(err)
		}
		a.CreatedAt, a.UpdatedAt = f.now, f.now
		if err := db.CreateAPI(ctx, a); err != nil {
			t.Fatal(err)
		}
		f.apis[a.ID] = a
	}
	f.addClient(t, "c1", map[string][]string{"api_one": {"read", "write"}})
	f.iss = issuer.New(f.store, &recordingSigner{}, f.hasher, issuer.Options{
		Issuer: "https://issuer.example/", Now: func() time.Time { return f.now }, CacheTTL: 5 * time.Second,
	})
	return f
}

func (f *fixture) addClient(t *testing.T, id string, grants map[string][]string) {
	t.Helper()
	ctx := context.Background()
	c := &auth.Client{ID: id, Name: id, CreatedAt: f.now, UpdatedAt: f.now,
		Secrets: []auth.Secret{{ID: auth.NewID("sec"), Hash: f.hasher.Hash(secretA), Hint: auth.SecretHint(secretA), CreatedAt: f.now}}}
	if err := f.store.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	for api, scopes := range grants {
		if err := f.store.PutGrant(ctx, &auth.Grant{ID: auth.NewID("grt"), ClientID: id, APIID: api, Scopes: scopes, CreatedAt: f.now, UpdatedAt: f.now}); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fixture) issue(t *testing.T, r issuer.Request) (*issuer.Claims, error) {
	t.Helper()
	tok, err := f.iss.ClientCredentials(context.Background(), r)
	if err != nil {
		return nil, err
	}
	var c issuer.Claims
	if err := json.Unmarshal([]byte(tok.AccessToken), &c); err != nil {
		t.Fatal(err)
	}
	if tok.Scope != c.Scope || tok.Audience != c.Audience {
		t.Errorf("response scope/audience %q %q differ from the claims %q %q", tok.Scope, tok.Audience, c.Scope, c.Audience)
	}
	return &c, nil
}

func code(err error) string {
	var oe *issuer.Error
	if errors.As(err, &oe) {
		return oe.Code
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestClaims(t *testing.T) {
	f := newFixture(t)
	c, err := f.issue(t, issuer.Request{ClientID: "c1", ClientSecret: secretA})
	if err != nil {
		t.Fatal(err)
	}
	want := issuer.Claims{Issuer: "https://issuer.example/", Subject: "c1", Audience: "https://one.example.com",
		IssuedAt: f.now.Unix(), NotBefore: f.now.Unix(), ExpiresAt: f.now.Add(time.Hour).Unix(), ID: c.ID, ClientID: "c1", Scope: "read write"}
	if *c != want {
		t.Errorf("claims = %+v\nwant     %+v", *c, want)
	}
	c2, _ := f.issue(t, issuer.Request{ClientID: "c1", ClientSecret: secretA})
	if c2.ID == c.ID || len(c.ID) != 22 {
		t.Errorf("jti %q then %q: want unique 128-bit ids", c.ID, c2.ID)
	}
}

func TestScopeAndAudience(t *testing.T) {
	f := newFixture(t)
	f.addClient(t, "multi", map[string][]string{"api_one": {"read"}, "api_two": {"x"}})
	tests := []struct {
		client, aud, scope string
		wantCode, wantAud  string
		wantScope          string
	}{
		{client: "c1", scope: "write", wantAud: "https://one.example.com", wantScope: "write"},
		{client: "c1", scope: "write read write", wantAud: "https://one.example.com", wantScope: "read write"},
		{client: "c1", scope: "  read  ", wantAud: "https://one.example.com", wantScope: "read"},
		{client: "c1", scope: "https://one.example.com/read", wantAud: "https://one.example.com", wantScope: "read"},
		{client: "c1", scope: "admin", wantCode: "invalid_scope"},
		{client: "c1", aud: "urn:example:two", wantCode: "invalid_target"},
		{client: "multi", wantCode: "invalid_request"},
		{client: "multi", aud: "urn:example:two", wantAud: "urn:example:two", wantScope: "x"},
		{client: "multi", scope: "urn:example:two/x", wantAud: "urn:example:two", wantScope: "x"},
		{client: "multi", scope: "urn:example:two/x https://one.example.com/read", wantCode: "invalid_scope"},
		{client: "multi", aud: "https://one.example.com", scope: "urn:example:two/x", wantCode: "invalid_scope"},
		{client: "multi", scope: strings.Repeat("x ", 101), wantCode: "invalid_scope"},
	}
	for _, tc := range tests {
		c, err := f.issue(t, issuer.Request{ClientID: tc.client, ClientSecret: secretA, Audience: tc.aud, Scope: tc.scope})
		if got := code(err); got != tc.wantCode {
			t.Errorf("%s aud=%q scope=%q: error %q, want %q", tc.client, tc.aud, tc.scope, got, tc.wantCode)
			continue
		}
		if err == nil && (c.Audience != tc.wantAud || c.Scope != tc.wantScope) {
			t.Errorf("%s aud=%q scope=%q: got %s %q, want %s %q", tc.client, tc.aud, tc.scope, c.Audience, c.Scope, tc.wantAud, tc.wantScope)
		}
	}
}

// TestSecrets: two live secrets during a rotation, an expired secret, a disabled client — each refused with the
// one invalid_client answer.
func TestSecrets(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const secretB = "secret-b-0123456789abcdefghijklmnopqrstuvwxyz"
	if err := f.store.AddClientSecret(ctx, "c1", auth.Secret{ID: "sec_b", Hash: f.hasher.Hash(secretB), Hint: "wxyz",
		CreatedAt: f.now, ExpiresAt: f.now.Add(time.Minute)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	f.iss.Invalidate("c1")
	for _, s := range []string{secretA, secretB} {
		if _, err := f.issue(t, issuer.Request{ClientID: "c1", ClientSecret: s}); err != nil {
			t.Errorf("secret %s…: %v", s[:8], err)
		}
	}
	f.now = f.now.Add(time.Minute) // secret B expires, from the cached copy too
	if _, err := f.issue(t, issuer.Request{ClientID: "c1", ClientSecret: secretB}); code(err) != "invalid_client" {
		t.Errorf("expired secret: %v", err)
	}
	var descs []string
	for _, r := range []issuer.Request{
		{ClientID: "c1", ClientSecret: "wrong-0123456789abcdefghijklmnopqrstuvwxyz"},
		{ClientID: "nobody", ClientSecret: secretA},
		{ClientID: "c1", ClientSecret: ""},
		{ClientID: strings.Repeat("c", 500), ClientSecret: secretA},
	} {
		_, err := f.issue(t, r)
		if code(err) != "invalid_client" {
			t.Errorf("%q: %v", r.ClientID, err)
		}
		descs = append(descs, err.Error())
	}
	c, _ := f.store.FindClient(ctx, "c1")
	c.Disabled = true
	f.store.UpdateClient(ctx, c)
	f.iss.Invalidate("c1")
	_, err := f.issue(t, issuer.Request{ClientID: "c1", ClientSecret: secretA})
	if code(err) != "invalid_client" {
		t.Errorf("disabled client: %v", err)
	}
	for _, d := range append(descs, err.Error()) {
		if d != descs[0] {
			t.Errorf("answers differ: %q vs %q", d, descs[0])
		}
	}
}

// TestCache: a client is read once per TTL; Invalidate makes the next request see a change at once.
func TestCache(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for range 10 {
		if _, err := f.issue(t, issuer.Request{ClientID: "c1", ClientSecret: secretA}); err != nil {
			t.Fatal(err)
		}
	}
	if f.store.finds != 1 {
		t.Errorf("10 requests read the client %d times, want 1", f.store.finds)
	}
	if err := f.store.PutGrant(ctx, &auth.Grant{ClientID: "c1", APIID: "api_one", Scopes: []string{"read"}, UpdatedAt: f.now}); err != nil {
		t.Fatal(err)
	}
	f.iss.Invalidate("c1")
	c, err := f.issue(t, issuer.Request{ClientID: "c1", ClientSecret: secretA})
	if err != nil || c.Scope != "read" {
		t.Fatalf("after Invalidate: %v %+v, want scope read", err, c)
	}
	// Without Invalidate, a change shows once the TTL has passed.
	f.store.PutGrant(ctx, &auth.Grant{ClientID: "c1", APIID: "api_one", Scopes: []string{"write"}, UpdatedAt: f.now})
	if c, _ := f.issue(t, issuer.Request{ClientID: "c1", ClientSecret: secretA}); c.Scope != "read" {
		t.Errorf("within the TTL: scope %q, want the cached read", c.Scope)
	}
	f.now = f.now.Add(5 * time.Second)
	if c, _ := f.issue(t, issuer.Request{ClientID: "c1", ClientSecret: secretA}); c.Scope != "write" {
		t.Errorf("after the TTL: scope %q, want write", c.Scope)
	}
	// Unknown clients are cached too, so a flood of them costs one read each per TTL.
	before := f.store.finds
	for range 5 {
		f.issue(t, issuer.Request{ClientID: "ghost", ClientSecret: secretA})
	}
	if got := f.store.finds - before; got != 1 {
		t.Errorf("5 requests for an unknown client read the store %d times, want 1", got)
	}
}

// TestRemovedScope: a scope the API no longer defines is no longer granted, though the grant still names it.
func TestRemovedScope(t *testing.T) {
	f := newFixture(t)
	api := f.apis["api_one"]
	api.Scopes = []auth.Scope{{Name: "read"}}
	if err := f.store.UpdateAPI(context.Background(), api); err != nil {
		t.Fatal(err)
	}
	f.iss.InvalidateAll()
	c, err := f.issue(t, issuer.Request{ClientID: "c1", ClientSecret: secretA})
	if err != nil || c.Scope != "read" {
		t.Errorf("got %v %+v, want scope read only", err, c)
	}
	if _, err := f.issue(t, issuer.Request{ClientID: "c1", ClientSecret: secretA, Scope: "write"}); code(err) != "invalid_scope" {
		t.Errorf("removed scope: %v", err)
	}
}

// failingStore fails every read, as a store does during an outage.
type failingStore struct{ auth.Store }

func (failingStore) FindClient(context.Context, string) (*auth.Client, error) {
	return nil, errors.New("database is down")
}

func TestStoreFailureIsNotAnOAuthError(t *testing.T) {
	f := newFixture(t)
	iss := issuer.New(failingStore{f.store}, &recordingSigner{}, f.hasher, issuer.Options{})
	_, err := iss.ClientCredentials(context.Background(), issuer.Request{ClientID: "c1", ClientSecret: secretA})
	var oe *issuer.Error
	if err == nil || errors.As(err, &oe) {
		t.Errorf("err = %v, want a plain (non-OAuth) error the server maps to 503", err)
	}
}

// downStore fails client reads with auth.ErrUnavailable while down is set, as a store does during an outage.
type downStore struct {
	auth.Store
	down atomic.Bool
}

func (s *downStore) FindClient(ctx context.Context, id string) (*auth.Client, error) {
	if s.down.Load() {
		return nil, fmt.Errorf("find client: %w", auth.ErrUnavailable)
	}
	return s.Store.FindClient(ctx, id)
}

// TestStaleIfError: while the store is unreachable, a client cached within StaleIfError past its TTL still gets
// tokens; one cached longer ago, one never cached and one invalidated do not; any other store error is no reason
// to serve stale.
func TestStaleIfError(t *testing.T) {
	f := newFixture(t)
	f.addClient(t, "c2", map[string][]string{"api_one": {"read"}})
	store := &downStore{Store: f.store}
	iss := issuer.New(store, &recordingSigner{}, f.hasher, issuer.Options{
		Issuer: "https://issuer.example/", Now: func() time.Time { return f.now }, CacheTTL: 5 * time.Second,
		StaleIfError: 30 * time.Second,
	})
	get := func(id string) error {
		_, err := iss.ClientCredentials(context.Background(), issuer.Request{ClientID: id, ClientSecret: secretA})
		return err
	}
	for _, id := range []string{"c1", "c2"} {
		if err := get(id); err != nil {
			t.Fatal(err)
		}
	}
	store.down.Store(true)
	iss.Invalidate("c2")
	f.now = f.now.Add(20 * time.Second) // past the TTL, within StaleIfError
	if err := get("c1"); err != nil {
		t.Errorf("cached client during the outage: %v, want a token", err)
	}
	if err := get("c2"); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("invalidated client during the outage: %v, want ErrUnavailable", err)
	}
	if err := get("never-seen"); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("unknown client during the outage: %v, want ErrUnavailable", err)
	}
	f.now = f.now.Add(20 * time.Second) // past TTL + StaleIfError
	if err := get("c1"); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("client cached too long ago: %v, want ErrUnavailable", err)
	}
	store.down.Store(false)
	if err := get("c1"); err != nil {
		t.Errorf("store back: %v", err)
	}
}
