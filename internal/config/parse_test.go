package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// envOf returns a lookupEnv that reads m.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

var ignorePositions = cmpopts.IgnoreUnexported(File{}, API{}, Client{}, Grant{})

const secret = "s3cr3t-0123456789-abcdefghijklmnopqrstuvwxyz" // passes auth.ValidateSecret

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		src  string
		env  map[string]string
		want *File
	}{
		{"empty", ``, nil, &File{}},
		{"only comments", "# nothing yet\n\n# really\n", nil, &File{}},
		{"empty document", "---\n", nil, &File{}},
		{"null document", "~\n", nil, &File{}},
		{"empty lists", "apis:\nclients: []\n", nil, &File{}},
		{"trailing document marker", "apis: []\n---\n", nil, &File{}},
		{
			name: "everything, with defaults",
			src: `apis:
  - identifier: https://api.example.com/v1
    name: Example API
    scopes:
      - read
      - name: write
        description: Create and change items
      - name: admin
  - identifier: urn:example:billing
    name: Billing
    token_lifetime: 15m
    signing_alg: EdDSA
clients:
  - client_id: billing-service
    name: Billing service
    description: Runs the invoices
    client_secret: ${BILLING_CLIENT_SECRET}
    grants:
      - audience: https://api.example.com/v1
        scopes: [read, write]
      - audience: urn:example:billing
  - client_id: reporting
    name: Reporting
    grants:
      - audience: https://elsewhere.example.com
        scopes: [anything]
`,
			env: map[string]string{"BILLING_CLIENT_SECRET": secret},
			want: &File{
				APIs: []API{
					{
						Identifier:    "https://api.example.com/v1",
						Name:          "Example API",
						Scopes:        []auth.Scope{{Name: "read"}, {Name: "write", Description: "Create and change items"}, {Name: "admin"}},
						TokenLifetime: 24 * time.Hour,
						SigningAlg:    auth.RS256,
					},
					{Identifier: "urn:example:billing", Name: "Billing", TokenLifetime: 15 * time.Minute, SigningAlg: auth.EdDSA},
				},
				Clients: []Client{
					{
						ID:          "billing-service",
						Name:        "Billing service",
						Description: "Runs the invoices",
						Secret:      secret,
						Grants: []Grant{
							{Audience: "https://api.example.com/v1", Scopes: []string{"read", "write"}},
							{Audience: "urn:example:billing"},
						},
					},
					{
						ID:     "reporting",
						Name:   "Reporting",
						Grants: []Grant{{Audience: "https://elsewhere.example.com", Scopes: []string{"anything"}}},
					},
				},
			},
		},
		{
			name: "null values are absent",
			src: `apis:
  - identifier: urn:x
    name: X
    scopes:
    token_lifetime: ~
    signing_alg:
clients:
  - client_id: c
    name: C
    description:
    client_secret: ~
    grants:
`,
			want: &File{
				APIs:    []API{{Identifier: "urn:x", Name: "X", TokenLifetime: 24 * time.Hour, SigningAlg: auth.RS256}},
				Clients: []Client{{ID: "c", Name: "C"}},
			},
		},
		{
			name: "any scalar is a string",
			src:  "clients:\n  - client_id: 2024\n    name: true\n",
			want: &File{Clients: []Client{{ID: "2024", Name: "true"}}},
		},
		{
			name: "anchors and aliases",
			src: `apis:
  - identifier: &api urn:example:items
    name: Items
    scopes: [read, write]
clients:
  - client_id: a
    name: A
    grants: &grants
      - audience: *api
        scopes: [read]
  - client_id: b
    name: B
    grants: *grants
`,
			want: &File{
				APIs: []API{{Identifier: "urn:example:items", Name: "Items", Scopes: []auth.Scope{{Name: "read"}, {Name: "write"}},
					TokenLifetime: 24 * time.Hour, SigningAlg: auth.RS256}},
				Clients: []Client{
					{ID: "a", Name: "A", Grants: []Grant{{Audience: "urn:example:items", Scopes: []string{"read"}}}},
					{ID: "b", Name: "B", Grants: []Grant{{Audience: "urn:example:items", Scopes: []string{"read"}}}},
				},
			},
		},
		{
			name: "variables",
			src: `apis:
  - identifier: ${API}/v1
    name: "${YAML}"
    token_lifetime: ${TTL}
    scopes:
      - name: price
        description: costs $$5, or $5, or $$${CURRENCY} in $HOME$
      - $${NOT_A_VAR}
clients:
  - client_id: ${EMPTY}c
    name: ${NESTED}
`,
			env: map[string]string{
				"API":      "https://api.example.com",
				"YAML":     "a: [b]",
				"TTL":      "90m",
				"CURRENCY": "EUR",
				"EMPTY":    "",
				"NESTED":   "${API} stays",
			},
			want: &File{
				APIs: []API{{
					Identifier:    "https://api.example.com/v1",
					Name:          "a: [b]",
					Scopes:        []auth.Scope{{Name: "price", Description: "costs $5, or $5, or $EUR in $HOME$"}, {Name: "${NOT_A_VAR}"}},
					TokenLifetime: 90 * time.Minute,
					SigningAlg:    auth.RS256,
				}},
				Clients: []Client{{ID: "c", Name: "${API} stays"}},
			},
		},
		{
			name: "a variable holding YAML stays one string",
			src:  "clients:\n  - client_id: c\n    name: ${V}\n    description: '${V}'\n",
			env:  map[string]string{"V": "x, grants: [{audience: urn:x}] # not a comment"},
			want: &File{Clients: []Client{{
				ID:          "c",
				Name:        "x, grants: [{audience: urn:x}] # not a comment",
				Description: "x, grants: [{audience: urn:x}] # not a comment",
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("gatehouse.yaml", []byte(tt.src), envOf(tt.env))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, ignorePositions, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	var lines []string
	for i := range 10 {
		lines = append(lines, fmt.Sprintf("gatehouse.yaml:%d: apis[%d].x: unknown field "+
			"(expected identifier, name, scopes, token_lifetime or signing_alg)", i+2, i))
	}
	tooMany := strings.Join(append(lines, "gatehouse.yaml: too many errors"), "\n")

	// Each source is a file with one problem (or the few named); want is the whole error.
	tests := []struct {
		name string
		src  string
		env  map[string]string
		want string
	}{
		// YAML itself.
		{"syntax error", "apis:\n  - name: a\n    b: c: d\n", nil,
			"gatehouse.yaml:3: mapping values are not allowed in this context"},
		{"unclosed flow list", "apis:\n  - name: a\n    scopes: [read\n", nil,
			"gatehouse.yaml:2: did not find expected ',' or ']'"}, // yaml's line, one off
		{"tab indentation", "apis:\n\t- name: a\n", nil,
			"gatehouse.yaml:2: found character that cannot start any token"},
		{"two documents", "apis: []\n---\nclients: []\n", nil,
			"gatehouse.yaml:2: the file must hold one YAML document, not several"},

		// Shape: unknown fields, wrong kinds, repeated keys.
		{"top level is a list", "- apis\n", nil,
			"gatehouse.yaml:1: the file must be a map with apis and clients, not a list"},
		{"unknown top-level field", "apis: []\napi_keys: []\n", nil,
			"gatehouse.yaml:2: api_keys: unknown field (expected apis, organizations or clients)"},
		{"misspelt top-level field", "api: []\n", nil,
			"gatehouse.yaml:1: api: unknown field (did you mean apis?)"},
		{"unknown api field", "apis:\n  - identifier: urn:x\n    name: X\n    scope: [read]\n", nil,
			"gatehouse.yaml:4: apis[0].scope: unknown field (did you mean scopes?)"},
		{"unknown client field", "clients:\n  - client_id: c\n    name: C\n    secret: x\n", nil,
			"gatehouse.yaml:4: clients[0].secret: unknown field (did you mean client_secret?)"},
		{"unknown grant field", "clients:\n  - client_id: c\n    name: C\n    grants:\n      - audience: urn:x\n        permissions: []\n", nil,
			"gatehouse.yaml:6: clients[0].grants[0].permissions: unknown field (expected audience or scopes)"},
		{"unknown scope field", "apis:\n  - identifier: urn:x\n    name: X\n    scopes:\n      - name: read\n        desc: Read\n", nil,
			"gatehouse.yaml:6: apis[0].scopes[0].desc: unknown field (did you mean description?)"},
		{"apis is a map", "apis:\n  identifier: urn:x\n", nil,
			"gatehouse.yaml:2: apis: must be a list, not a map"},
		{"clients is a string", "clients: billing\n", nil,
			"gatehouse.yaml:1: clients: must be a list, not a string"},
		{"api is a string", "apis:\n  - urn:x\n", nil,
			"gatehouse.yaml:2: apis[0]: must be a map with identifier and name, not a string"},
		{"client is empty", "clients:\n  -\n", nil,
			"gatehouse.yaml:2: clients[0]: must be a map with client_id and name, not empty"},
		{"grant is a list", "clients:\n  - client_id: c\n    name: C\n    grants:\n      - [urn:x]\n", nil,
			"gatehouse.yaml:5: clients[0].grants[0]: must be a map with audience and scopes, not a list"},
		{"name is a list", "apis:\n  - identifier: urn:x\n    name: [X]\n", nil,
			"gatehouse.yaml:3: apis[0].name: must be a string, not a list"},
		{"scopes is a string", "apis:\n  - identifier: urn:x\n    name: X\n    scopes: read write\n", nil,
			"gatehouse.yaml:4: apis[0].scopes: must be a list, not a string"},
		{"scope is a list", "apis:\n  - identifier: urn:x\n    name: X\n    scopes:\n      - [read]\n", nil,
			"gatehouse.yaml:5: apis[0].scopes[0]: must be a scope name or a map with name and description, not a list"},
		{"grant scope is a map", "clients:\n  - client_id: c\n    name: C\n    grants:\n      - audience: urn:x\n        scopes: [{name: read}]\n", nil,
			"gatehouse.yaml:6: clients[0].grants[0].scopes[0]: must be a string, not a map"},
		{"token_lifetime is a number", "apis:\n  - identifier: urn:x\n    name: X\n    token_lifetime: 3600\n", nil,
			`gatehouse.yaml:4: apis[0].token_lifetime: "3600" is not a Go duration (e.g. 24h, 15m)`},
		{"key set twice", "apis:\n  - identifier: urn:x\n    name: X\n    name: Y\n", nil,
			"gatehouse.yaml:4: apis[0].name: is set twice (first at line 3)"},
		{"key is a list", "apis:\n  - identifier: urn:x\n    name: X\n    ? [a]\n    : b\n", nil,
			"gatehouse.yaml:4: apis[0]: field names must be strings, not a list"},

		// Values: the auth validators, at the line of the value and with the full path.
		{"token_lifetime not a duration", "apis:\n  - identifier: urn:x\n    name: X\n    token_lifetime: 45d\n", nil,
			`gatehouse.yaml:4: apis[0].token_lifetime: "45d" is not a Go duration (e.g. 24h, 15m)`},
		{"token_lifetime zero", "apis:\n  - identifier: urn:x\n    name: X\n    token_lifetime: 0s\n", nil,
			"gatehouse.yaml:4: apis[0].token_lifetime: must be more than zero (leave it out for the default)"},
		{"token_lifetime too long", "apis:\n  - identifier: urn:x\n    name: X\n    token_lifetime: 721h\n", nil,
			"gatehouse.yaml:4: apis[0].token_lifetime: 721h0m0s is out of range: use 1m to 720h (30 days)"},
		{"token_lifetime too short", "apis:\n  - identifier: urn:x\n    name: X\n    token_lifetime: 30s\n", nil,
			"gatehouse.yaml:4: apis[0].token_lifetime: 30s is out of range: use 1m to 720h (30 days)"},
		{"token_lifetime fractional", "apis:\n  - identifier: urn:x\n    name: X\n    token_lifetime: 90.5s\n", nil,
			"gatehouse.yaml:4: apis[0].token_lifetime: must be a whole number of seconds"},
		{"signing_alg unknown", "apis:\n  - identifier: urn:x\n    name: X\n    signing_alg: HS256\n", nil,
			`gatehouse.yaml:4: apis[0].signing_alg: "HS256" is not supported: use RS256, ES256 or EdDSA`},
		{"identifier missing", "apis:\n  - name: X\n    scopes: [read]\n", nil,
			"gatehouse.yaml:2: apis[0].identifier: is required"},
		{"identifier empty", "apis:\n  - name: X\n    identifier: \"\"\n", nil,
			"gatehouse.yaml:3: apis[0].identifier: is required"},
		{"identifier not absolute", "apis:\n  - identifier: api.example.com\n    name: X\n", nil,
			"gatehouse.yaml:2: apis[0].identifier: must be an absolute URI (https://api.example.com/v1) or a URN (urn:example:api)"},
		{"name missing", "apis:\n  - identifier: urn:x\n", nil,
			"gatehouse.yaml:2: apis[0].name: is required"},
		{"scope name invalid", "apis:\n  - identifier: urn:x\n    name: X\n    scopes:\n      - read\n      - items/write\n", nil,
			`gatehouse.yaml:6: apis[0].scopes[1]: "items/write": use letters, digits and punctuation other than / " \ (e.g. read:items)`},
		{"scope name invalid in a map", "apis:\n  - identifier: urn:x\n    name: X\n    scopes:\n      - name: read items\n", nil,
			`gatehouse.yaml:5: apis[0].scopes[0].name: "read items": use letters, digits and punctuation other than / " \ (e.g. read:items)`},
		{"scope name missing", "apis:\n  - identifier: urn:x\n    name: X\n    scopes:\n      - read\n      - description: Write\n", nil,
			"gatehouse.yaml:6: apis[0].scopes[1].name: is required"},
		{"scope listed twice", "apis:\n  - identifier: urn:x\n    name: X\n    scopes:\n      - read\n      - name: read\n", nil,
			`gatehouse.yaml:6: apis[0].scopes[1].name: "read" is listed twice`},
		{"scope description with control characters", "apis:\n  - identifier: urn:x\n    name: X\n    scopes:\n      - name: read\n        description: \"a\\tb\"\n", nil,
			"gatehouse.yaml:6: apis[0].scopes[0].description: must be UTF-8 text without control characters"},
		{"client_id missing", "clients:\n  - name: C\n", nil,
			"gatehouse.yaml:2: clients[0].client_id: is required"},
		{"client_id invalid", "clients:\n  - name: C\n    client_id: billing service\n", nil,
			"gatehouse.yaml:3: clients[0].client_id: may contain only A-Z a-z 0-9 - . _ ~"},
		{"client name blank", "clients:\n  - client_id: c\n    name: \"  \"\n", nil,
			"gatehouse.yaml:3: clients[0].name: is required"},
		{"client_secret too short", "clients:\n  - client_id: c\n    name: C\n    client_secret: hunter2\n", nil,
			"gatehouse.yaml:4: clients[0].client_secret: must be at least 32 characters (try: openssl rand -hex 32)"},
		{"client_secret empty", "clients:\n  - client_id: c\n    name: C\n    client_secret: \"\"\n", nil,
			"gatehouse.yaml:4: clients[0].client_secret: must be at least 32 characters (try: openssl rand -hex 32)"},
		{"grant audience missing", "clients:\n  - client_id: c\n    name: C\n    grants:\n      - scopes: [read]\n", nil,
			"gatehouse.yaml:5: clients[0].grants[0].audience: is required"},
		{"grant audience invalid", "clients:\n  - client_id: c\n    name: C\n    grants:\n      - audience: \"urn:x#frag\"\n", nil,
			"gatehouse.yaml:5: clients[0].grants[0].audience: must not contain a fragment (#)"},
		{"grant scope the file's API lacks", "apis:\n  - identifier: urn:x\n    name: X\n    scopes: [read]\nclients:\n  - client_id: c\n    name: C\n    grants:\n      - audience: urn:x\n        scopes:\n          - read\n          - write\n", nil,
			`gatehouse.yaml:12: clients[0].grants[0].scopes[1]: "write" is not a scope of urn:x`},

		// Duplicates within the file.
		{"the built-in management API", "apis:\n  - identifier: urn:gatehouse:management\n    name: M\n    scopes: [introspect:tokens]\n", nil,
			`gatehouse.yaml:2: apis[0].identifier: "urn:gatehouse:management" is the built-in management API: leave it out, and grant its scopes to clients`},
		{"identifier twice", "apis:\n  - identifier: urn:x\n    name: X\n  - name: Y\n    identifier: urn:x\n", nil,
			`gatehouse.yaml:5: apis[1].identifier: "urn:x" is defined twice (first at apis[0], line 2)`},
		{"client_id twice", "clients:\n  - client_id: c\n    name: C\n  - client_id: c\n    name: D\n", nil,
			`gatehouse.yaml:4: clients[1].client_id: "c" is defined twice (first at clients[0], line 2)`},
		{"audience twice", "clients:\n  - client_id: c\n    name: C\n    grants:\n      - audience: urn:x\n      - audience: urn:x\n        scopes: [read]\n", nil,
			`gatehouse.yaml:6: clients[0].grants[1].audience: "urn:x" is granted twice (first at grants[0], line 5)`},

		// Variables.
		{"unset variable", "clients:\n  - client_id: c\n    name: C\n    client_secret: ${BILLING_CLIENT_SECRET}\n", nil,
			"gatehouse.yaml:4: clients[0].client_secret: environment variable BILLING_CLIENT_SECRET is not set"},
		{"unset variable in a list", "apis:\n  - identifier: urn:x\n    name: X\n    scopes:\n      - read\n      - \"${SCOPE}\"\n", nil,
			"gatehouse.yaml:6: apis[0].scopes[1]: environment variable SCOPE is not set"},
		{"unclosed variable", "clients:\n  - client_id: c\n    name: ${NAME\n", map[string]string{"NAME": "n"},
			`gatehouse.yaml:3: clients[0].name: "${" has no closing "}" (write $$ for a literal $)`},
		{"invalid variable name", "clients:\n  - client_id: c\n    name: ${NAME-x}\n", nil,
			`gatehouse.yaml:3: clients[0].name: "${" must be followed by an environment variable name (letters, digits, _) and "}" (write $$ for a literal $)`},
		{"empty variable name", "clients:\n  - client_id: c\n    name: a${}\n", nil,
			`gatehouse.yaml:3: clients[0].name: "${" must be followed by an environment variable name (letters, digits, _) and "}" (write $$ for a literal $)`},
		{"variable makes the value invalid", "apis:\n  - identifier: urn:x\n    name: X\n    token_lifetime: ${TTL}\n", map[string]string{"TTL": "1 day"},
			`gatehouse.yaml:4: apis[0].token_lifetime: "1 day" is not a Go duration (e.g. 24h, 15m)`},
		{"variables are not expanded in keys", "apis:\n  - identifier: urn:x\n    ${FIELD}: X\n", map[string]string{"FIELD": "name"},
			"gatehouse.yaml:3: apis[0].${FIELD}: unknown field (expected identifier, name, scopes, token_lifetime or signing_alg)"},

		// Several problems are reported together.
		{"several problems", "apis:\n  - identifier: urn:x\n    name: X\n    token_lifetime: 1d\n    alg: RS256\nclients:\n  - name: C\n", nil,
			`gatehouse.yaml:4: apis[0].token_lifetime: "1d" is not a Go duration (e.g. 24h, 15m)` + "\n" +
				"gatehouse.yaml:5: apis[0].alg: unknown field (did you mean signing_alg?)\n" +
				"gatehouse.yaml:7: clients[0].client_id: is required"},
		{"too many problems", "apis:\n" + strings.Repeat("  - x: 1\n", 12), nil, tooMany},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("gatehouse.yaml", []byte(tt.src), envOf(tt.env))
			if err == nil {
				t.Fatalf("Parse = %+v, want error %q", f, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse error:\n got %s\nwant %s", got, tt.want)
			}
			if !errors.Is(err, auth.ErrInvalid) {
				t.Errorf("errors.Is(%v, auth.ErrInvalid) = false", err)
			}
		})
	}
}

// TestParseNeverShowsSecrets parses files whose client_secret is wrong in every way, or right next to other
// mistakes, and checks that no error quotes it.
func TestParseNeverShowsSecrets(t *testing.T) {
	secrets := []string{
		"hunter2-hunter2", // too short
		"correct-horse-battery-staple-but-with spaces", // bad characters
		"correct-horse-battery-staple-but-with-a-#",    // bad character
		"${UNCLOSED-correct-horse-battery-staple",      // bad variable
		strings.Repeat("long-", 120),                   // too long
		secret,                                         // valid, beside errors
	}
	for _, s := range secrets {
		for _, src := range []string{
			"clients:\n  - client_id: c\n    name: C\n    client_secret: '" + s + "'\n    grants: 5\n",
			"clients:\n  - client_id: c\n    name: C\n    client_secret: ['" + s + "']\n",
			"clients:\n  - client_id: c\n    name: C\n    client_secret: {'" + s + "': 1}\n",
			"clients:\n  - client_id: 'bad id'\n    client_secret: '" + s + "'\n    grants: [{audience: nope}]\n",
			"clients:\n  - client_id: c\n    name: C\n    client_secret: ${S}\n    scopes: [x]\n",
			"clients:\n  - client_id: c\n    name: C\n    client_secret: ${S}\n  - client_id: c\n    name: C\n    client_secret: ${S}\n",
		} {
			_, err := Parse("gatehouse.yaml", []byte(src), envOf(map[string]string{"S": s}))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want an error", src)
			}
			if strings.Contains(err.Error(), s) {
				t.Errorf("Parse error shows the secret:\n%s", err)
			}
		}
	}
}

func TestSecretIsRedacted(t *testing.T) {
	f, err := Parse("gatehouse.yaml", []byte("clients:\n  - client_id: c\n    name: C\n    client_secret: ${S}\n"), envOf(map[string]string{"S": secret}))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(f.Clients[0].Secret); got != secret {
		t.Fatalf("Secret = %q, want the configured one", got)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "file", f)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "file", f)
	js, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		fmt.Sprint(f), fmt.Sprintf("%+v", f), fmt.Sprintf("%#v", f), fmt.Sprintf("%s", f.Clients[0].Secret),
		fmt.Sprintf("%+v", f.Clients[0]), string(js), logged.String(),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("formatted File shows the secret: %s", out)
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("formatted File does not say [redacted]: %s", out)
		}
	}
}

func TestLoad(t *testing.T) {
	if _, err := Load(t.TempDir()+"/missing.yaml", nil); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load(missing) = %v, want an error naming the file", err)
	}
	t.Setenv("GATEHOUSE_TEST_NAME", "From the environment")
	path := t.TempDir() + "/gatehouse.yaml"
	writeFile(t, path, "clients:\n  - client_id: c\n    name: ${GATEHOUSE_TEST_NAME}\n")
	f, err := Load(path, nil) // nil: os.LookupEnv
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Clients[0].Name, "From the environment"; got != want {
		t.Errorf("Name = %q, want %q", got, want)
	}
	writeFile(t, path, "clients: {}\n")
	if _, err := Load(path, nil); err == nil || err.Error() != path+":1: clients: must be a list, not a map" {
		t.Errorf("Load error = %v, want one naming %s", err, path)
	}
}

func TestExpand(t *testing.T) {
	env := envOf(map[string]string{"A": "1", "B_2": "two", "E": "", "D": "$$"})
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"${A}", "1"},
		{"x${A}y${B_2}z", "x1ytwoz"},
		{"${E}", ""},
		{"${D}", "$$"}, // values are not expanded again
		{"$$", "$"},
		{"$$$$", "$$"},
		{"$${A}", "${A}"},
		{"$$${A}", "$1"},
		{"$A", "$A"},
		{"$", "$"},
		{"a$", "a$"},
		{"${A}$", "1$"},
		{"{A}", "{A}"},
	}
	for _, tt := range tests {
		got, err := expand(tt.in, env)
		if err != nil || got != tt.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"${", "${A", "${}", "${1A}", "${A B}", "${UNSET}"} {
		if got, err := expand(in, env); err == nil {
			t.Errorf("expand(%q) = %q, want an error", in, got)
		}
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct{ key, want string }{
		{"scope", "did you mean scopes?"},
		{"Name", "did you mean name?"},
		{"identifer", "did you mean identifier?"},
		{"id", "did you mean identifier?"},
		{"alg", "did you mean signing_alg?"},
		{"lifetime", "did you mean token_lifetime?"},
		{"x", "expected identifier, name, scopes, token_lifetime or signing_alg"},
		{"audience", "expected identifier, name, scopes, token_lifetime or signing_alg"},
	}
	for _, tt := range tests {
		if got := suggest(tt.key, apiFields); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
