package auth

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

var sprintf = fmt.Sprintf

// Input bounds. They keep every stored value small enough to index and to log.
const (
	MaxIdentifierLen = 512
	MaxNameLen       = 200
	MaxDescLen       = 1000
	MaxScopeLen      = 128
	MaxScopes        = 200
	MaxClientIDLen   = 128
	MinSecretLen     = 32
	MaxSecretLen     = 512
)

// ValidateIdentifier checks an API identifier: an absolute URI (https://api.example.com/v1) or a URN
// (urn:example:api), without a fragment (RFC 8707 §2), spaces or control characters.
func ValidateIdentifier(field, s string) error {
	switch {
	case s == "":
		return invalid(field, "is required")
	case len(s) > MaxIdentifierLen:
		return invalid(field, "is longer than %d bytes", MaxIdentifierLen)
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r > 0x7e }):
		return invalid(field, "must be printable ASCII without spaces")
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "") {
		return invalid(field, "must be an absolute URI (https://api.example.com/v1) or a URN (urn:example:api)")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return invalid(field, "must not contain a fragment (#)")
	}
	return nil
}

// ValidateScopeName checks a scope name: RFC 6749 §3.3 scope-token characters, without "/" (which separates an API
// identifier from a scope in Cognito-style scopes).
func ValidateScopeName(field, s string) error {
	if s == "" {
		return invalid(field, "is required")
	}
	if len(s) > MaxScopeLen {
		return invalid(field, "is longer than %d bytes", MaxScopeLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' || c == '/' {
			return invalid(field, "%q: use letters, digits and punctuation other than / \" \\ (e.g. read:items)", s)
		}
	}
	return nil
}

// ValidateClientID checks a client_id: 1–128 of the URI unreserved characters A-Z a-z 0-9 - . _ ~, so it survives
// HTTP Basic and form encoding unchanged.
func ValidateClientID(field, s string) error {
	if s == "" {
		return invalid(field, "is required")
	}
	if len(s) > MaxClientIDLen {
		return invalid(field, "is longer than %d characters", MaxClientIDLen)
	}
	if !unreserved(s) {
		return invalid(field, "may contain only A-Z a-z 0-9 - . _ ~")
	}
	return nil
}

// ValidateSecret checks a client secret supplied by an operator (generated ones always pass): 32–512 of the URI
// unreserved characters, so it survives HTTP Basic and form encoding unchanged. Its messages never include the
// value.
func ValidateSecret(field, s string) error {
	if len(s) < MinSecretLen {
		return invalid(field, "must be at least %d characters (try: openssl rand -hex 32)", MinSecretLen)
	}
	if len(s) > MaxSecretLen {
		return invalid(field, "is longer than %d characters", MaxSecretLen)
	}
	if !unreserved(s) {
		return invalid(field, "may contain only A-Z a-z 0-9 - . _ ~")
	}
	return nil
}

func unreserved(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// ValidateName checks a display name: required, at most MaxNameLen bytes of valid UTF-8 without control characters.
func ValidateName(field, s string) error {
	if strings.TrimSpace(s) == "" {
		return invalid(field, "is required")
	}
	return validateText(field, s, MaxNameLen)
}

// ValidateDescription checks optional free text.
func ValidateDescription(field, s string) error { return validateText(field, s, MaxDescLen) }

func validateText(field, s string, max int) error {
	if len(s) > max {
		return invalid(field, "is longer than %d bytes", max)
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return invalid(field, "must be UTF-8 text without control characters")
	}
	return nil
}

// Normalize fills an API's defaults (token lifetime, signing algorithm) and validates every field.
func (a *API) Normalize() error {
	if a.TokenLifetime == 0 {
		a.TokenLifetime = DefaultTokenLifetime
	}
	if a.SigningAlg == "" {
		a.SigningAlg = RS256
	}
	if err := ValidateIdentifier("identifier", a.Identifier); err != nil {
		return err
	}
	if err := ValidateName("name", a.Name); err != nil {
		return err
	}
	if a.TokenLifetime < MinTokenLifetime || a.TokenLifetime > MaxTokenLifetime {
		return invalid("token_lifetime", "%s is out of range: use 1m to 720h (30 days)", a.TokenLifetime)
	}
	if a.TokenLifetime%time.Second != 0 {
		return invalid("token_lifetime", "must be a whole number of seconds")
	}
	if a.KeyTokenLifetime == 0 {
		a.KeyTokenLifetime = min(DefaultKeyTokenLifetime, a.TokenLifetime)
	}
	if a.KeyTokenLifetime < MinTokenLifetime || a.KeyTokenLifetime > a.TokenLifetime {
		return invalid("key_token_lifetime", "%s is out of range: use 1m up to the token lifetime (%s)", a.KeyTokenLifetime, a.TokenLifetime)
	}
	if a.KeyTokenLifetime%time.Second != 0 {
		return invalid("key_token_lifetime", "must be a whole number of seconds")
	}
	if !a.SigningAlg.Valid() {
		return invalid("signing_alg", "%q is not supported: use RS256, ES256 or EdDSA", a.SigningAlg)
	}
	if len(a.Scopes) > MaxScopes {
		return invalid("scopes", "has more than %d scopes", MaxScopes)
	}
	seen := make(map[string]bool, len(a.Scopes))
	for i, s := range a.Scopes {
		field := sprintf("scopes[%d]", i)
		if err := ValidateScopeName(field+".name", s.Name); err != nil {
			return err
		}
		if seen[s.Name] {
			return invalid(field+".name", "%q is listed twice", s.Name)
		}
		seen[s.Name] = true
		if err := ValidateDescription(field+".description", s.Description); err != nil {
			return err
		}
	}
	return nil
}

// Normalize validates a client's fields (not its secrets, which arrive hashed).
func (c *Client) Normalize() error {
	if err := ValidateClientID("client_id", c.ID); err != nil {
		return err
	}
	if err := ValidateName("name", c.Name); err != nil {
		return err
	}
	if err := c.RateLimit.Validate("rate_limit"); err != nil {
		return err
	}
	return ValidateDescription("description", c.Description)
}

// CheckScopes verifies that every scope is defined by the API, and returns them sorted and without duplicates.
func (a *API) CheckScopes(field string, scopes []string) ([]string, error) {
	out := make([]string, 0, len(scopes))
	seen := make(map[string]bool, len(scopes))
	for i, s := range scopes {
		if !a.HasScope(s) {
			return nil, invalid(sprintf("%s[%d]", field, i), "%q is not a scope of %s", s, a.Identifier)
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out, nil
}
