package auth_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

func TestValidateIdentifier(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"https://api.example.com/v1", true},
		{"https://api.example.com", true},
		{"urn:example:api", true},
		{"urn:gatehouse:management", true},
		{"http://localhost:9000/x", true},
		{"", false},
		{"api.example.com", false},
		{"/relative/path", false},
		{"myapp-dev", false},
		{"https://api.example.com/#frag", false},
		{"https://api.example.com/ v1", false},
		{"https://api.example.com/\x00", false},
		{"https://api.example.com/ü", false},
		{"https://" + strings.Repeat("a", 600) + ".com", false},
	} {
		err := auth.ValidateIdentifier("identifier", tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok %v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("%q: %v does not match ErrInvalid", tc.in, err)
		}
	}
}

func TestValidateScopeClientSecret(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func(string, string) error
		in   string
		ok   bool
	}{
		{"scope", auth.ValidateScopeName, "read", true},
		{"scope", auth.ValidateScopeName, "items:write", true},
		{"scope", auth.ValidateScopeName, "a/b", false},
		{"scope", auth.ValidateScopeName, "a b", false},
		{"scope", auth.ValidateScopeName, `a"b`, false},
		{"scope", auth.ValidateScopeName, "", false},
		{"scope", auth.ValidateScopeName, strings.Repeat("s", 129), false},
		{"client_id", auth.ValidateClientID, "billing-service.v2~x_y", true},
		{"client_id", auth.ValidateClientID, "a:b", false},
		{"client_id", auth.ValidateClientID, "a b", false},
		{"client_id", auth.ValidateClientID, "", false},
		{"secret", auth.ValidateSecret, strings.Repeat("k", 32), true},
		{"secret", auth.ValidateSecret, auth.NewSecret(), true},
		{"secret", auth.ValidateSecret, strings.Repeat("k", 31), false},
		{"secret", auth.ValidateSecret, strings.Repeat("k", 40) + "+", false},
		{"secret", auth.ValidateSecret, strings.Repeat("k", 513), false},
	} {
		err := tc.fn(tc.name, tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%s %q: err = %v, want ok %v", tc.name, tc.in, err, tc.ok)
		}
		if err != nil && tc.name == "secret" && strings.Contains(err.Error(), tc.in) {
			t.Errorf("secret error %q contains the secret", err)
		}
	}
}

func TestAPINormalize(t *testing.T) {
	a := &auth.API{Identifier: "urn:x", Name: "X", Scopes: []auth.Scope{{Name: "read"}}}
	if err := a.Normalize(); err != nil || a.TokenLifetime != 24*time.Hour || a.SigningAlg != auth.RS256 {
		t.Errorf("defaults: %v %v %v", err, a.TokenLifetime, a.SigningAlg)
	}
	for _, tc := range []struct {
		mut   func(*auth.API)
		field string
	}{
		{func(a *auth.API) { a.TokenLifetime = 31 * 24 * time.Hour }, "token_lifetime"},
		{func(a *auth.API) { a.TokenLifetime = 30 * time.Second }, "token_lifetime"},
		{func(a *auth.API) { a.TokenLifetime = time.Hour + time.Millisecond }, "token_lifetime"},
		{func(a *auth.API) { a.SigningAlg = "HS256" }, "signing_alg"},
		{func(a *auth.API) { a.SigningAlg = "none" }, "signing_alg"},
		{func(a *auth.API) { a.Scopes = append(a.Scopes, auth.Scope{Name: "read"}) }, "scopes[1].name"},
		{func(a *auth.API) { a.Name = " " }, "name"},
		{func(a *auth.API) { a.Identifier = "nope" }, "identifier"},
	} {
		a := &auth.API{Identifier: "urn:x", Name: "X", Scopes: []auth.Scope{{Name: "read"}}}
		tc.mut(a)
		var ve *auth.ValidationError
		if err := a.Normalize(); !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("want a validation error on %s, got %v", tc.field, err)
		}
	}
}

func TestSecretHasher(t *testing.T) {
	h1 := auth.NewSecretHasher([]byte("k1-0123456789abcdef0123456789abcd"))
	h2 := auth.NewSecretHasher([]byte("k2-0123456789abcdef0123456789abcd"))
	s := auth.NewSecret()
	if len(s) != 43 {
		t.Errorf("secret length %d, want 43 (256 bits)", len(s))
	}
	if !h1.Match(s, h1.Hash(s)) || h1.Match(s+"x", h1.Hash(s)) || h2.Match(s, h1.Hash(s)) {
		t.Error("Match: want true only for the same secret under the same key")
	}
	if auth.NewSecret() == s || auth.NewClientID() == auth.NewClientID() {
		t.Error("generated values repeat")
	}
	if got := auth.SecretHint("abcdefgh"); got != "efgh" {
		t.Errorf("hint %q", got)
	}
}
