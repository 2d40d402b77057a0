package issuer_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/issuer"
)

// plainVerifier is a fake TokenVerifier for the recordingSigner's tokens, which are the claims themselves: it
// accepts any JSON object and nothing else, standing in for a signature check.
type plainVerifier struct{}

func (plainVerifier) Verify(token string) ([]byte, error) {
	if !strings.HasPrefix(token, "{") {
		return nil, errors.New("bad signature")
	}
	return []byte(token), nil
}

// revokedJTIs is a fake RevocationChecker.
type revokedJTIs map[string]bool

func (r revokedJTIs) Revoked(jti, _ string, _ int64) bool { return r[jti] }

func TestCheck(t *testing.T) {
	f := newFixture(t)
	revoked := revokedJTIs{"jti-revoked": true}
	iss := issuer.New(f.store, &recordingSigner{}, f.hasher, issuer.Options{
		Issuer: "https://issuer.example/", Now: func() time.Time { return f.now }, Verifier: plainVerifier{}, Revocations: revoked,
	})
	now := f.now.Unix()
	valid := issuer.Claims{Issuer: "https://issuer.example/", Subject: "c1", Audience: "https://one.example.com",
		IssuedAt: now - 10, NotBefore: now - 10, ExpiresAt: now + 3600, ID: "jti-1", ClientID: "c1", Scope: "read"}
	token := func(change func(c *issuer.Claims)) string {
		c := valid
		if change != nil {
			change(&c)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	got, err := iss.Check(token(nil))
	if err != nil {
		t.Fatalf("Check(valid) = %v", err)
	}
	if *got != valid {
		t.Errorf("Check(valid) = %+v, want %+v", *got, valid)
	}
	if !got.HasScope("read") || got.HasScope("write") {
		t.Errorf("HasScope: %v", got.Scopes())
	}

	tests := []struct {
		name  string
		token string
	}{
		{"bad signature", "x" + token(nil)},
		{"another issuer", token(func(c *issuer.Claims) { c.Issuer = "https://other.example/" })},
		{"expired", token(func(c *issuer.Claims) { c.ExpiresAt = now })},
		{"no exp", token(func(c *issuer.Claims) { c.ExpiresAt = 0 })},
		{"not yet valid", token(func(c *issuer.Claims) { c.NotBefore = now + 31 })},
		{"issued in the future", token(func(c *issuer.Claims) { c.IssuedAt = now + 31 })},
		{"no subject", token(func(c *issuer.Claims) { c.Subject = "" })},
		{"no audience", token(func(c *issuer.Claims) { c.Audience = "" })},
		{"revoked", token(func(c *issuer.Claims) { c.ID = "jti-revoked" })},
		{"claims not an object", `{"exp": "soon"}`},
	}
	for _, tt := range tests {
		if c, err := iss.Check(tt.token); !errors.Is(err, issuer.ErrInvalidToken) {
			t.Errorf("Check(%s) = %+v, %v; want ErrInvalidToken", tt.name, c, err)
		}
	}
	// Within the leeway for clock skew.
	if _, err := iss.Check(token(func(c *issuer.Claims) { c.NotBefore, c.IssuedAt = now+30, now+30 })); err != nil {
		t.Errorf("Check(issued 30 s ahead) = %v, want accepted", err)
	}
	// Without a verifier, nothing is valid.
	noVerifier := issuer.New(f.store, &recordingSigner{}, f.hasher, issuer.Options{Issuer: "https://issuer.example/", Now: func() time.Time { return f.now }})
	if _, err := noVerifier.Check(token(nil)); !errors.Is(err, issuer.ErrInvalidToken) {
		t.Errorf("Check without a verifier = %v, want ErrInvalidToken", err)
	}
}

func TestAuthenticateClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addClient(t, "c2", map[string][]string{"api_one": {"read"}, "api_two": {"x"}})
	caller, err := f.iss.AuthenticateClient(ctx, "c2", secretA)
	if err != nil {
		t.Fatal(err)
	}
	if caller.ClientID != "c2" {
		t.Errorf("ClientID = %q, want c2", caller.ClientID)
	}
	grants := []struct {
		audience, scope string
		want            bool
	}{
		{"https://one.example.com", "read", true},
		{"https://one.example.com", "write", false},
		{"urn:example:two", "x", true},
		{"urn:example:none", "read", false},
		{"read", "https://one.example.com", false},
	}
	for _, g := range grants {
		if got := caller.Granted(g.audience, g.scope); got != g.want {
			t.Errorf("Granted(%q, %q) = %t, want %t", g.audience, g.scope, got, g.want)
		}
	}

	// Every failure is the one invalid_client answer.
	f.addClient(t, "off", nil)
	off, err := f.store.FindClient(ctx, "off")
	if err != nil {
		t.Fatal(err)
	}
	off.Disabled = true
	if err := f.store.UpdateClient(ctx, off); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, id, secret string }{
		{"wrong secret", "c2", secretA + "x"},
		{"unknown client", "nobody", secretA},
		{"disabled client", "off", secretA},
		{"no secret", "c2", ""},
		{"no id", "", secretA},
	} {
		_, err := f.iss.AuthenticateClient(ctx, tt.id, tt.secret)
		if code(err) != issuer.CodeInvalidClient {
			t.Errorf("%s: AuthenticateClient = %v, want invalid_client", tt.name, err)
		}
	}
	if got, want := f.iss.CacheTTL(), 5*time.Second; got != want {
		t.Errorf("CacheTTL() = %s, want %s", got, want)
	}
}
