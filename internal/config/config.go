// Package config reads Gatehouse's declarative file, the YAML that `gatehouse serve --config FILE` applies at start,
// and applies it to an auth.Store.
//
// The file declares APIs, organizations, and clients with their grants. Applying it is idempotent and additive:
// what the file declares is created or brought up to date, and nothing is deleted because it is absent from the
// file. The README's
// "The configuration file" section documents the format for users.
//
// Parse checks the whole file with the validators of package auth, and reports every problem as
// "FILE:LINE: FIELD: MESSAGE", e.g.
//
//	gatehouse.yaml:12: apis[0].token_lifetime: "45d" is not a Go duration (e.g. 24h, 15m)
//
// Client secrets never appear in an error, a Result line or a formatted File (see Secret); the only place one is
// returned is Result.Generated.
package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// File is a parsed and validated declarative file, ready to Apply.
type File struct {
	APIs    []API
	Orgs    []Org
	Clients []Client

	name string // the file's name, for errors found while applying
}

// API is an API (resource server) as the file declares it, with defaults filled in.
type API struct {
	Identifier    string // the audience: an absolute URI or a URN
	Name          string
	Scopes        []auth.Scope // in the file's order; nil if it lists none
	TokenLifetime time.Duration
	SigningAlg    auth.Algorithm

	at // where the file declares it
}

// Org is an organization as the file declares it (under organizations).
type Org struct {
	Name          string // unique: organizations are matched by name
	Description   string
	APIKeyPrefix  string  // "" for the server's default
	AllowedGrants []Grant // the most the organization's own administrators may grant, per API

	at
}

// Client is an OAuth client as the file declares it.
type Client struct {
	ID          string // the client_id
	Name        string
	Description string
	Secret      Secret // client_secret with ${VAR}s expanded; empty if the file gives none
	// Org is the name of the organization that owns the client, in the file or in the store; "" leaves a client's
	// organization as it is (none for a new client). A client cannot move to another organization.
	Org string
	// RateLimit is how many tokens the client may get; nil leaves the client's as it is, the zero value is none.
	RateLimit *auth.RateLimit
	Grants    []Grant

	at
}

// Grant is one entry of a client's grants: the API it may get tokens for, and which of the API's scopes.
type Grant struct {
	Audience string   // the Identifier of an API in the file or already in the store
	Scopes   []string // as listed; nil or empty: tokens for the audience without scopes

	at
}

// Secret is a client secret from the file. It formats as "[redacted]" with package fmt (and so with log/slog) and
// marshals as "[redacted]" to JSON and text, so that logging a File, a Client or an error cannot leak it. Use
// string(s) to read it.
type Secret string

// String returns "[redacted]", or "" if s is empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString returns the quoted String, for %#v.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// MarshalText returns String, for encoding/json and every other encoder that honors encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// at is where an entry sits in the file: its node, and its path from the root (e.g. "clients[0].grants[1]").
type at struct {
	node *yaml.Node
	path string
}

// Load reads the file at path and parses it; see Parse. Errors name the file as path.
func Load(path string, lookupEnv func(string) (string, bool)) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	return Parse(path, data, lookupEnv)
}

// Parse parses and validates a declarative file. name is used in errors, usually the file's path.
//
// ${NAME} in a string value is replaced with the environment variable NAME, read with lookupEnv (os.LookupEnv if
// nil); $$ is a literal $. Expansion happens after YAML parsing, so a variable's value is always plain text.
//
// An empty file, or one holding only comments, gives an empty File. Otherwise every problem found is reported, up to
// ten, each as "NAME:LINE: FIELD: MESSAGE" on its own line; the error matches auth.ErrInvalid with errors.Is.
func Parse(name string, data []byte, lookupEnv func(string) (string, bool)) (*File, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	p := &parser{name: name, lookupEnv: lookupEnv}
	return p.parse(data)
}

// ParseRateLimit reads a rate limit written COUNT/DURATION, as in a file's rate_limit or the CLI's --rate-limit:
// "100/1m" is 100 tokens a minute, "10/1s" ten a second (the unit alone, "100/m", means one of it). "none" is no
// limit (the zero value). The limit is checked with auth.RateLimit.Validate.
func ParseRateLimit(s string) (auth.RateLimit, error) {
	if s == "none" {
		return auth.RateLimit{}, nil
	}
	count, per, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || strings.HasPrefix(count, "+") {
		return auth.RateLimit{}, fmt.Errorf("%q is not COUNT/DURATION, e.g. 100/1m (or none)", s)
	}
	if per != "" && (per[0] < '0' || per[0] > '9') {
		per = "1" + per
	}
	d, err := time.ParseDuration(per)
	if err != nil {
		return auth.RateLimit{}, fmt.Errorf("%q is not COUNT/DURATION, e.g. 100/1m (or none)", s)
	}
	rl := auth.RateLimit{Count: n, Per: d}
	if n < 1 || n > auth.MaxRateLimitCount {
		return auth.RateLimit{}, fmt.Errorf("%q: the count must be from 1 to %d (none for no limit)", s, auth.MaxRateLimitCount)
	}
	if err := rl.Validate("rate_limit"); err != nil {
		return auth.RateLimit{}, fmt.Errorf("%q: the duration must be whole seconds, from 1s to 24h", s)
	}
	return rl, nil
}
