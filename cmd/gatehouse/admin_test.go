package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// The admin commands run in-process (run) against a real server (Main on a loopback port with a SQLite file), as
// the client "admin" of the declarative file, which holds every management scope. Each test records its commands
// as a transcript — arguments, exit code, stdout and stderr apart — and compares it with a golden file under
// testdata/golden, after replacing what differs from run to run (ids, times, secrets, the port) with
// placeholders. go test -run 'Admin|Apply' -update rewrites the golden files.

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// adminConfig is the declarative file of the admin tests: an API, and the administrator.
func adminConfig() string {
	return `
apis:
  - identifier: https://api.example.com/v1
    name: Example API
    scopes: [read, write, admin]
    token_lifetime: 1h
clients:
  - client_id: admin
    name: Administrator
    client_secret: ${ONE_SECRET}
    grants:
      - audience: ` + auth.ManagementAudience + `
        scopes: [` + strings.Join(auth.ManagementScopes, ", ") + `]
`
}

// startAdmin starts a server with adminConfig and points the admin commands at it, as the administrator.
func startAdmin(t *testing.T) *testServer {
	t.Helper()
	ts := startServer(t, "", nil, adminConfig())
	adminEnv(t, ts.URL, "admin", secretOne)
	return ts
}

func adminEnv(t *testing.T, server, id, secret string) {
	t.Setenv("GATEHOUSE_SERVER", server)
	t.Setenv("GATEHOUSE_CLIENT_ID", id)
	t.Setenv("GATEHOUSE_CLIENT_SECRET", secret)
}

// transcript records CLI runs for a golden file.
type transcript struct {
	t    *testing.T
	name string
	ts   *testServer
	n    *normalizer
	b    strings.Builder
}

func newTranscript(t *testing.T, name string, ts *testServer) *transcript {
	n := newNormalizer()
	if ts != nil {
		n.exact[ts.URL] = "$SERVER"
	}
	return &transcript{t: t, name: name, ts: ts, n: n}
}

// run runs gatehouse with args, records it, checks the exit code and returns stdout and stderr as printed.
func (tr *transcript) run(want int, args ...string) (string, string) {
	tr.t.Helper()
	code, stdout, stderr := runCLI(tr.t, args...)
	if code != want {
		tr.t.Errorf("gatehouse %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, stdout, stderr)
	}
	tr.knowKeys()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = a
		if a == "" || strings.ContainsAny(a, " \"'*$") {
			quoted[i] = "'" + a + "'"
		}
	}
	fmt.Fprintf(&tr.b, "$ gatehouse %s\n", tr.n.apply(strings.Join(quoted, " ")))
	if stdout != "" {
		fmt.Fprintf(&tr.b, "--- stdout\n%s", tr.n.apply(stdout))
	}
	if stderr != "" {
		fmt.Fprintf(&tr.b, "--- stderr\n%s", tr.n.apply(stderr))
	}
	fmt.Fprintf(&tr.b, "[exit %d]\n\n", code)
	return stdout, stderr
}

// note adds a comment to the transcript.
func (tr *transcript) note(s string) { fmt.Fprintf(&tr.b, "# %s\n\n", s) }

// knowKeys replaces the server's signing key ids with placeholders naming their algorithm.
func (tr *transcript) knowKeys() {
	if tr.ts == nil || tr.ts.Store == nil {
		return
	}
	keys, err := tr.ts.Store.ListSigningKeys(context.Background())
	if err != nil {
		return
	}
	for _, k := range keys {
		if _, ok := tr.n.exact[k.ID]; !ok {
			tr.n.counts[string(k.Alg)]++
			tr.n.exact[k.ID] = padded(fmt.Sprintf("kid_%s_%d", k.Alg, tr.n.counts[string(k.Alg)]), len(k.ID))
		}
	}
}

// padded returns label followed by dots to n characters, so that a placeholder keeps the width of the value it
// replaces and tables stay aligned.
func padded(label string, n int) string {
	if len(label) >= n {
		return label
	}
	return label + strings.Repeat(".", n-len(label))
}

// check compares the transcript with its golden file, or rewrites the file with -update.
func (tr *transcript) check() {
	tr.t.Helper()
	path := filepath.Join("testdata", "golden", tr.name+".txt")
	got := tr.b.String()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tr.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			tr.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tr.t.Fatalf("%v (run go test -run %s -update to create it)", err, tr.t.Name())
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		tr.t.Errorf("%s differs (-want +got; go test -run %s -update rewrites it):\n%s", path, tr.t.Name(), diff)
	}
}

// normalizer replaces what differs from run to run with stable placeholders: the same value gets the same
// placeholder throughout a transcript, so relations (this grant's id, that secret's hint) stay visible. Ids, times
// and hints keep their width, so tables stay aligned: api_1......................... is the first API id.
type normalizer struct {
	exact   map[string]string // literal replacements: the server's URL, key ids
	ids     map[string]string // "api_…" → "api_1…"
	counts  map[string]int
	secrets map[string]string // a generated secret → "<SECRET_1>"
	hints   map[string]string // its last four characters → "<H1>"
}

func newNormalizer() *normalizer {
	return &normalizer{exact: map[string]string{}, ids: map[string]string{}, counts: map[string]int{},
		secrets: map[string]string{}, hints: map[string]string{}}
}

var (
	secretRE = []*regexp.Regexp{
		regexp.MustCompile(`"client_secret": "([A-Za-z0-9_-]{43})"`),
		regexp.MustCompile(`client_secret:\s+([A-Za-z0-9_-]{43})`),
		regexp.MustCompile(`client_secret \S+ ([A-Za-z0-9_-]{43})`),
	}
	hintRE      = regexp.MustCompile(`(…|"hint": ")([A-Za-z0-9_-]{4})\b`)
	idRE        = regexp.MustCompile(`\b(api|grt|sec|org|evt)_[0-9a-z]{26}\b`)
	timeRE      = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
	requestIDRE = regexp.MustCompile(`"request_id": "[0-9a-f]{16}"`)
	portRE      = regexp.MustCompile(`127\.0\.0\.1:\d+`)
)

func (n *normalizer) apply(s string) string {
	keys := make([]string, 0, len(n.exact))
	for k := range n.exact {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return len(b) - len(a) }) // longest first
	for _, k := range keys {
		s = strings.ReplaceAll(s, k, n.exact[k])
	}
	for _, re := range secretRE {
		for _, m := range re.FindAllStringSubmatch(s, -1) {
			if _, ok := n.secrets[m[1]]; !ok {
				k := len(n.secrets) + 1
				n.secrets[m[1]] = fmt.Sprintf("<SECRET_%d>", k)
				n.hints[m[1][len(m[1])-4:]] = fmt.Sprintf("<H%d>", k)
			}
		}
	}
	for secret, p := range n.secrets {
		s = strings.ReplaceAll(s, secret, p)
	}
	s = hintRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := hintRE.FindStringSubmatch(m)
		if p, ok := n.hints[sub[2]]; ok {
			return sub[1] + p
		}
		return m
	})
	s = idRE.ReplaceAllStringFunc(s, func(id string) string {
		if p, ok := n.ids[id]; ok {
			return p
		}
		prefix, _, _ := strings.Cut(id, "_")
		n.counts[prefix]++
		p := padded(fmt.Sprintf("%s_%d", prefix, n.counts[prefix]), len(id))
		n.ids[id] = p
		return p
	})
	s = timeRE.ReplaceAllString(s, "YYYY-MM-DDThh:mm:ssZ")
	s = requestIDRE.ReplaceAllString(s, `"request_id": "<REQUEST_ID>"`)
	return portRE.ReplaceAllString(s, "127.0.0.1:<PORT>")
}

// jsonField returns a member of the JSON object in s.
func jsonField(t *testing.T, s, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, s)
	}
	v, _ := m[name].(string)
	return v
}

func TestAdminAPI(t *testing.T) {
	ts := startAdmin(t)
	tr := newTranscript(t, "api", ts)

	tr.run(0, "api", "create", "--identifier", "urn:example:reports", "--name", "Reports",
		"--scope", "reports:read", "--scope", "reports:write: Create and change reports", "--token-lifetime", "30m", "--signing-alg", "ES256")
	stdout, _ := tr.run(0, "api", "create", "--identifier", "https://edge.example.com", "--name", "Edge", "-o", "json")
	edge := jsonField(t, stdout, "id")
	tr.run(0, "api", "list")
	tr.run(0, "api", "list", "-o", "json")
	tr.run(0, "api", "show", "urn:example:reports")
	tr.run(0, "api", "show", edge, "-o", "json")
	tr.run(0, "api", "update", "urn:example:reports", "--token-lifetime", "1h30m", "--if-match")
	tr.run(0, "api", "update", edge, "--name", "Edge API", "--scope", "edge", "-o", "json")

	tr.note("errors: the server's, with the fields at fault, exit 1; usage, exit 2")
	tr.run(1, "api", "create", "--identifier", "not a uri", "--name", "Bad")
	tr.run(1, "api", "create", "--identifier", "https://api.example.com/v1", "--name", "Again")
	tr.run(1, "api", "show", "api_aaaaaaaaaaaaaaaaaaaaaaaaaa")
	tr.run(1, "api", "show", "urn:example:nothing")
	tr.run(1, "api", "delete", auth.ManagementAudience)
	tr.run(2, "api", "update", edge)
	tr.run(2, "api", "create", "--name", "No identifier")
	tr.run(2, "api", "create", "--identifier", "urn:x", "--name", "X", "--token-lifetime", "1500ms")
	tr.run(2, "api", "create", "--identifier", "urn:x", "--name", "X", "--scope", "read:Read things")
	tr.run(2, "api", "show")
	tr.run(2, "api", "list", "-o", "yaml")

	tr.run(0, "api", "delete", "https://edge.example.com")
	tr.run(0, "api", "delete", "urn:example:reports")
	tr.run(0, "api", "list")
	tr.check()
}

func TestAdminClient(t *testing.T) {
	ts := startAdmin(t)
	tr := newTranscript(t, "client", ts)

	tr.run(0, "org", "create", "--name", "acme", "--allow", "https://api.example.com/v1=read")
	stdout, stderr := tr.run(0, "client", "create", "--client-id", "billing", "--name", "Billing service",
		"--description", "Sends the invoices", "--rate-limit", "100/1m")
	if !strings.Contains(stderr, "shown only this once") || strings.Contains(stderr, "client_secret:") {
		t.Errorf("client create: the warning belongs on stderr, the secret on stdout; stderr:\n%s", stderr)
	}
	secret := regexp.MustCompile(`client_secret:\s+(\S+)`).FindStringSubmatch(stdout)
	stdout, _ = tr.run(0, "client", "create", "--client-id", "importer", "--name", "Importer", "--org", "acme", "-o", "json")
	importerSecret := jsonField(t, stdout, "client_secret")

	tr.run(0, "client", "list")
	tr.run(0, "client", "list", "--org", "acme", "-o", "json")
	tr.run(0, "client", "show", "billing")
	tr.run(0, "client", "update", "billing", "--disable", "--no-rate-limit", "--description", "")
	tr.run(0, "client", "update", "billing", "--enable", "--rate-limit", "10/1s", "--if-match", "-o", "json")

	// The secrets printed work at the token endpoint.
	tr.run(0, "grant", "create", "--client", "billing", "--audience", "https://api.example.com/v1", "--scope", "read write")
	if secret == nil {
		t.Fatal("client create printed no client_secret")
	}
	if r := postTokenBasic(t, ts, "billing", secret[1], "grant_type=client_credentials"); r.status != 200 {
		t.Errorf("token with the printed secret: %d %s", r.status, r.body)
	}

	tr.note("rotation: a second secret, the first expiring in an hour")
	stdout, _ = tr.run(0, "client", "secret", "add", "billing", "--expire-others-in", "1h", "-o", "json")
	second := jsonField(t, stdout, "client_secret")
	secondID := jsonField(t, stdout, "id")
	if r := postTokenBasic(t, ts, "billing", second, "grant_type=client_credentials"); r.status != 200 {
		t.Errorf("token with the added secret: %d %s", r.status, r.body)
	}
	tr.run(0, "client", "secret", "list", "billing")
	tr.run(0, "client", "secret", "add", "importer")
	tr.run(0, "client", "secret", "list", "importer", "-o", "json")
	if importerSecret == "" {
		t.Error("client create -o json printed no client_secret")
	}

	tr.note("errors")
	tr.run(1, "client", "create", "--client-id", "billing", "--name", "Twice")
	tr.run(1, "client", "create", "--client-id", "x", "--name", "X", "--org", "nobody")
	tr.run(1, "client", "show", "nobody")
	tr.run(2, "client", "create", "--name", "X", "--rate-limit", "lots")
	tr.run(2, "client", "update", "billing", "--disable", "--enable")
	tr.run(2, "client", "update", "billing")
	tr.run(2, "client", "secret", "delete", "billing")
	tr.run(2, "client", "secret", "rotate", "billing")

	tr.run(0, "client", "secret", "delete", "billing", secondID)
	tr.run(0, "client", "delete", "importer")
	tr.run(0, "client", "list", "-o", "json")
	tr.check()
}

func TestAdminGrant(t *testing.T) {
	ts := startAdmin(t)
	tr := newTranscript(t, "grant", ts)

	tr.run(0, "org", "create", "--name", "acme")
	tr.run(0, "client", "create", "--client-id", "billing", "--name", "Billing", "-o", "json")
	tr.run(0, "client", "create", "--client-id", "importer", "--name", "Importer", "--org", "acme", "-o", "json")
	tr.run(0, "api", "create", "--identifier", "urn:example:reports", "--name", "Reports", "--scope", "reports:read", "-o", "json")

	stdout, _ := tr.run(0, "grant", "create", "--client", "billing", "--audience", "https://api.example.com/v1", "--scope", "read", "--scope", "write", "-o", "json")
	id := jsonField(t, stdout, "id")
	tr.run(0, "grant", "create", "--client", "billing", "--audience", "urn:example:reports")
	tr.run(0, "grant", "create", "--client", "importer", "--audience", "https://api.example.com/v1", "--scope", "read")
	tr.run(0, "grant", "list")
	tr.run(0, "grant", "list", "--client", "billing", "-o", "json")
	tr.run(0, "grant", "list", "--audience", "urn:example:reports")
	tr.run(0, "grant", "list", "--org", "acme")
	tr.run(0, "grant", "show", id)
	tr.run(0, "grant", "update", id, "--scope", "read admin", "--if-match")
	tr.run(0, "grant", "update", id, "--scope", "", "-o", "json")

	tr.note("errors")
	tr.run(1, "grant", "create", "--client", "billing", "--audience", "https://api.example.com/v1")
	tr.run(1, "grant", "create", "--client", "billing", "--audience", "urn:example:nothing")
	tr.run(1, "grant", "update", id, "--scope", "read", "--scope", "fly")
	tr.run(2, "grant", "create", "--audience", "urn:example:reports")
	tr.run(2, "grant", "update", id)

	tr.run(0, "grant", "delete", id)
	tr.run(1, "grant", "show", id)
	tr.check()
}

func TestAdminOrg(t *testing.T) {
	ts := startAdmin(t)
	tr := newTranscript(t, "org", ts)

	tr.run(0, "org", "create", "--name", "acme", "--description", "Acme Corp", "--api-key-prefix", "acme",
		"--allow", "https://api.example.com/v1=read,write")
	stdout, _ := tr.run(0, "org", "create", "--name", "globex", "-o", "json")
	globex := jsonField(t, stdout, "id")
	tr.run(0, "org", "list")
	tr.run(0, "org", "list", "-o", "json")
	tr.run(0, "org", "show", "acme")
	tr.run(0, "org", "update", "acme", "--allow", "https://api.example.com/v1=read", "--allow", auth.ManagementAudience+"=read:clients", "--if-match")
	tr.run(0, "org", "update", globex, "--description", "Globex", "--allow", "", "-o", "json")

	tr.note("errors")
	tr.run(1, "org", "create", "--name", "acme")
	tr.run(1, "org", "create", "--name", "bad", "--api-key-prefix", "Bad!")
	tr.run(1, "org", "create", "--name", "bad", "--allow", "urn:example:nothing=read")
	tr.run(1, "org", "show", "initech")
	tr.run(0, "client", "create", "--client-id", "importer", "--name", "Importer", "--org", "acme", "-o", "json")
	tr.run(1, "org", "delete", "acme")
	tr.run(2, "org", "create")

	tr.run(0, "client", "delete", "importer")
	tr.run(0, "org", "delete", "acme")
	tr.run(0, "org", "delete", globex)
	tr.run(0, "org", "list")
	tr.check()
}

func TestAdminSigningKeyAndAudit(t *testing.T) {
	ts := startAdmin(t)
	tr := newTranscript(t, "signing-key-audit", ts)

	tr.run(0, "signing-key", "list")
	tr.run(0, "signing-key", "list", "-o", "json")

	tr.run(0, "client", "create", "--client-id", "billing", "--name", "Billing", "-o", "json")
	tr.run(0, "client", "update", "billing", "--name", "Billing service", "-o", "json")
	tr.run(0, "client", "delete", "billing")
	waitAudit(t, ts, 3)
	tr.run(0, "audit", "list")
	tr.run(0, "audit", "list", "--action", "client.update", "-o", "json")
	tr.run(0, "audit", "list", "--limit", "1")
	tr.run(0, "audit", "list", "--from", "1h", "--actor", "admin", "--resource", "client/billing")
	tr.run(0, "audit", "list", "--to", "2000-01-01T00:00:00Z")
	tr.run(2, "audit", "list", "--from", "yesterday")
	tr.check()
}

// TestAdminSigningKey: rotate and revoke through the management API; the server that answers acts at once.
func TestAdminSigningKey(t *testing.T) {
	ts := startAdmin(t)
	tr := newTranscript(t, "signing-key", ts)
	kids := func(state string) []string {
		t.Helper()
		keys, err := ts.Keys.List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range keys {
			if k.Alg == auth.RS256 && string(k.State) == state {
				out = append(out, k.ID)
			}
		}
		return out
	}
	first := kids("current")

	tr.note("RS256 signs the tokens of https://api.example.com/v1; the management API's are ES256")
	tr.run(0, "signing-key", "list")
	tr.run(0, "signing-key", "rotate", "--alg", "RS256")
	next := kids("next")
	tr.run(0, "signing-key", "list", "-o", "json")
	tr.run(0, "signing-key", "rotate", "--alg", "RS256", "--immediately", "-o", "json")
	if len(next) != 1 || !slices.Equal(kids("current"), next) || !slices.Equal(kids("retired"), first) {
		t.Fatalf("after rotate --immediately: current %v, retired %v; want %v and %v", kids("current"), kids("retired"), next, first)
	}
	tok, err := ts.Keys.Sign(t.Context(), auth.RS256, []byte(`{}`)) // as the server's issuer signs
	if err != nil {
		t.Fatal(err)
	}
	if kid := tokenKid(t, tok); kid != next[0] {
		t.Errorf("the server signs with %s after rotate --immediately, want %s at once", kid, next[0])
	}
	tr.run(0, "signing-key", "list")

	tr.note("revoke the retired key, then the current one: a new key signs in its place")
	// A kid may start with "-": after --, it is not taken for a flag.
	tr.run(0, "signing-key", "revoke", "--", first[0])
	tr.run(0, "signing-key", "revoke", "-o", "json", "--", next[0])
	jwks := fetchJWKS(t, ts.URL)
	for _, kid := range []string{first[0], next[0]} {
		if _, ok := jwks[kid]; ok {
			t.Errorf("the revoked key %s is still in the server's JWKS", kid)
		}
	}
	if cur := kids("current"); len(cur) != 1 || cur[0] == next[0] {
		t.Errorf("after revoking the current key: current %v, want a new key", cur)
	}
	tr.run(0, "signing-key", "list")

	tr.note("errors")
	tr.run(1, "signing-key", "revoke", "no-such-kid")
	tr.run(2, "signing-key", "revoke")
	tr.run(2, "signing-key", "rotate")
	tr.run(2, "signing-key", "rotate", "--alg", "HS256")
	tr.run(2, "signing-key", "rotate", "--alg", "RS256", "--root-key-file", "root.key")
	tr.run(2, "signing-key", "list", "--db", "sqlite:gatehouse.db", "--server", ts.URL)

	waitAudit(t, ts, 4)
	tr.run(0, "audit", "list")
	tr.check()
}

// waitAudit waits until the audit log holds n events: the server may write them in the background.
func waitAudit(t *testing.T, ts *testServer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		events, err := ts.Store.ListAuditEvents(context.Background(), auth.AuditFilter{})
		if err == nil && len(events) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit log holds %d events, want %d (err %v)", len(events), n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAdminPagination: list follows next_cursor to the end, or stops at --limit.
func TestAdminPagination(t *testing.T) {
	startAdmin(t)
	defer func(n int) { listPageSize = n }(listPageSize)
	listPageSize = 2
	for i := range 4 {
		if code, _, stderr := runCLI(t, "api", "create", "--identifier", fmt.Sprintf("urn:example:%d", i), "--name", "API"); code != 0 {
			t.Fatalf("api create: %s", stderr)
		}
	}
	// 4 created, the file's and the management API: 6, three pages of two.
	code, stdout, stderr := runCLI(t, "api", "list", "-o", "json")
	var all struct{ Items []apiJSON }
	if err := json.Unmarshal([]byte(stdout), &all); code != 0 || err != nil || len(all.Items) != 6 {
		t.Fatalf("api list: exit %d, %d items (err %v), want 6\n%s%s", code, len(all.Items), err, stdout, stderr)
	}
	seen := map[string]bool{}
	for _, a := range all.Items {
		if seen[a.ID] {
			t.Errorf("api %s listed twice", a.ID)
		}
		seen[a.ID] = true
	}
	code, stdout, stderr = runCLI(t, "api", "list", "--limit", "3")
	if rows := strings.Count(stdout, "\n") - 1; code != 0 || rows != 3 || !strings.Contains(stderr, "there are more") {
		t.Errorf("api list --limit 3: exit %d, %d rows, stderr %q; want 3 rows and a note on stderr\n%s", code, rows, stderr, stdout)
	}
	code, stdout, stderr = runCLI(t, "api", "list", "--limit", "6")
	if rows := strings.Count(stdout, "\n") - 1; code != 0 || rows != 6 || stderr != "" {
		t.Errorf("api list --limit 6: exit %d, %d rows, stderr %q; want 6 rows and nothing on stderr", code, rows, stderr)
	}
}

// TestAdminTokenReuse: the commands run in one process get one management token and reuse it.
func TestAdminTokenReuse(t *testing.T) {
	var logs syncBuffer
	dir := t.TempDir()
	m := &Main{Addr: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "gh.db"), RootKey: rootkey.Generate(),
		Logger:     slog.New(slog.NewTextHandler(&logs, nil)),
		LookupEnv:  func(k string) (string, bool) { v, ok := fixtureEnv[k]; return v, ok },
		ConfigFile: filepath.Join(dir, "gatehouse.yaml"),
	}
	if err := os.WriteFile(m.ConfigFile, []byte(adminConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	defer func() { cancel(); <-done; m.Close() }()
	waitReady(t, m.URL)
	adminEnv(t, m.URL, "admin", secretOne)

	for _, args := range [][]string{{"api", "list"}, {"client", "list"}, {"org", "create", "--name", "acme"}, {"grant", "list", "--org", "acme"},
		{"signing-key", "list"}, {"audit", "list"}} {
		if code, _, stderr := runCLI(t, args...); code != 0 {
			t.Fatalf("gatehouse %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
	}
	if n := strings.Count(logs.String(), "path=/oauth/token"); n != 1 {
		t.Errorf("%d token requests, want 1\n%s", n, logs.String())
	}
}

// TestAdminConnection: where the commands go, with which credentials, and what they say when that fails.
func TestAdminConnection(t *testing.T) {
	ts := startAdmin(t)
	tr := newTranscript(t, "connection", ts)

	tr.note("the server from --server wins over GATEHOUSE_SERVER")
	t.Setenv("GATEHOUSE_SERVER", "http://127.0.0.1:1")
	tr.run(0, "api", "list", "--server", ts.URL+"/")
	tr.run(1, "api", "list")
	t.Setenv("GATEHOUSE_SERVER", ts.URL)

	tr.note("plain http beyond loopback only with --insecure")
	tr.run(2, "api", "list", "--server", "http://gatehouse.example.com")
	tr.run(2, "api", "list", "--server", "ftp://gatehouse.example.com")
	// With --insecure it tries (the message depends on the resolver, so it is not in the transcript).
	if code, _, stderr := runCLI(t, "api", "list", "--server", "http://gatehouse.invalid", "--insecure", "--timeout", "2s"); code != 1 ||
		!strings.Contains(stderr, "cannot reach http://gatehouse.invalid") {
		t.Errorf("api list --insecure: exit %d, stderr %q; want 1 and cannot reach", code, stderr)
	}

	tr.note("credentials")
	t.Setenv("GATEHOUSE_CLIENT_SECRET", "wrong-secret-0123456789abcdefghijklmnopqrstuvwxyz")
	tr.run(1, "api", "list")
	t.Setenv("GATEHOUSE_CLIENT_SECRET", "")
	tr.run(2, "api", "list")

	tr.note("a client without a grant for the management API, then with some of its scopes")
	adminEnv(t, ts.URL, "admin", secretOne)
	stdout, _ := tr.run(0, "client", "create", "--client-id", "reader", "--name", "Reader", "-o", "json")
	adminEnv(t, ts.URL, "reader", jsonField(t, stdout, "client_secret"))
	tr.run(1, "api", "list")
	adminEnv(t, ts.URL, "admin", secretOne)
	tr.run(0, "grant", "create", "--client", "reader", "--audience", auth.ManagementAudience, "--scope", "read:apis")
	adminEnv(t, ts.URL, "reader", jsonField(t, stdout, "client_secret"))
	tr.run(0, "api", "list", "-o", "json")
	tr.run(1, "api", "create", "--identifier", "urn:x", "--name", "X")

	tr.note("nouns and verbs")
	tr.run(0, "client")
	tr.run(2, "client", "frobnicate")
	tr.run(2, "client", "list", "--bogus")
	tr.run(2, "client", "list", "extra")
	tr.run(2, "signing-key", "delete")
	tr.check()
}

// TestCLIAdminHelp: every noun and verb has help, and the root lists the nouns.
func TestCLIAdminHelp(t *testing.T) {
	code, stdout, _ := runCLI(t, "--help")
	for _, noun := range []string{"api", "client", "grant", "org", "signing-key", "audit", "apply"} {
		if code != 0 || !regexp.MustCompile(`(?m)^\s+`+noun+`\s`).MatchString(stdout) {
			t.Errorf("gatehouse --help does not list %s", noun)
		}
	}
	for _, args := range [][]string{{"api", "create"}, {"client", "update"}, {"client", "secret", "add"}, {"grant", "update"},
		{"org", "create"}, {"signing-key", "list"}, {"signing-key", "rotate"}, {"signing-key", "revoke"}, {"audit", "list"}, {"apply"}} {
		code, stdout, stderr := runCLI(t, append(args, "--help")...)
		if code != 0 || !strings.Contains(stdout, "--server") || stderr != "" {
			t.Errorf("gatehouse %s --help: exit %d, stderr %q, stdout:\n%s", strings.Join(args, " "), code, stderr, stdout)
		}
	}
}

// applyFile is the declarative file of the apply tests: an API, two organizations and two clients, one owned by
// an organization and rate-limited.
const applyFile = `
apis:
  - identifier: urn:example:reports
    name: Reports
    scopes:
      - reports:read
      - name: reports:write
        description: Create and change reports
    token_lifetime: 30m
    signing_alg: ES256
organizations:
  - name: acme
    description: Acme Corp
    api_key_prefix: acme
    allowed_grants:
      - audience: urn:example:reports
        scopes: [reports:read]
  - name: globex
clients:
  - client_id: importer
    name: Importer
    org: acme
    rate_limit: 100/1m
    grants:
      - audience: urn:example:reports
        scopes: [reports:read]
  - client_id: reporting
    name: Reporting
    grants:
      - audience: https://api.example.com/v1
        scopes: [read]
      - audience: urn:example:reports
`

// writeApplyFile writes content to a file called name in a new directory, known to tr's transcripts as name.
func writeApplyFile(t *testing.T, tr *transcript, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	tr.n.exact[path] = name
	return path
}

// TestApplyThroughAPI: apply -f goes through the management API: created, then unchanged, then updated; secrets
// generated for new clients are printed once; a file it cannot apply changes nothing.
func TestApplyThroughAPI(t *testing.T) {
	ts := startAdmin(t)
	tr := newTranscript(t, "apply", ts)
	path := writeApplyFile(t, tr, "gatehouse.yaml", applyFile)

	stdout, stderr := tr.run(0, "apply", "-f", path)
	secret := regexp.MustCompile(`(?m)^client_secret importer (\S+)$`).FindStringSubmatch(stdout)
	if secret == nil || !strings.Contains(stderr, "importer is shown only this once") {
		t.Fatalf("apply printed no secret for importer on stdout, or no warning on stderr:\n%s\n%s", stdout, stderr)
	}
	if r := postTokenBasic(t, ts, "importer", secret[1], "grant_type=client_credentials"); r.status != 200 {
		t.Errorf("token with the secret apply printed: %d %s", r.status, r.body)
	}
	tr.run(0, "client", "show", "importer")
	tr.run(0, "org", "show", "acme")

	tr.note("again: nothing to do")
	tr.run(0, "apply", "-f", path)

	tr.note("changed: an API's lifetime, an organization's allowances, a client's name and rate limit, a grant's scopes")
	os.WriteFile(path, []byte(strings.NewReplacer(
		"token_lifetime: 30m", "token_lifetime: 1h",
		"        scopes: [reports:read]\n  - name: globex", "        scopes: [reports:read, reports:write]\n  - name: globex",
		"name: Importer", "name: Acme importer",
		"rate_limit: 100/1m", "rate_limit: none",
		"scopes: [read]", "scopes: [read, write]",
	).Replace(applyFile)), 0o600)
	tr.run(0, "apply", "-f", path)
	tr.run(0, "audit", "list", "--action", "org.update")

	tr.note("refused before anything is written")
	tr.run(1, "apply", "-f", writeApplyFile(t, tr, "unappliable.yaml", applyFile+`  - client_id: fixed
    name: Fixed
    client_secret: fixed-secret-0123456789abcdefghijklmnopqrstuvwxyz
  - client_id: lost
    name: Lost
    org: initech
    grants:
      - audience: urn:example:nothing
      - audience: https://api.example.com/v1
        scopes: [delete]
`))
	tr.run(1, "client", "show", "fixed")
	tr.run(1, "apply", "-f", writeApplyFile(t, tr, "invalid.yaml", "apis:\n  - identifier: urn:x\n    nmae: X\n"))
	tr.run(2, "apply")
	tr.run(2, "apply", "-f", path, "--db", "sqlite:x.db", "--server", ts.URL)
	tr.run(2, "apply", "-f", path, "--root-key-file", "key")
	tr.check()
}

// TestApplyDB: apply --db writes the database as serve --config does, with client secrets from the file, and a
// server started on that database afterwards accepts them.
func TestApplyDB(t *testing.T) {
	dir := t.TempDir()
	key := rootkey.Generate()
	keyFile := filepath.Join(dir, "root.key")
	if err := key.WriteFile(keyFile); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GATEHOUSE_ROOT_KEY", "")
	t.Setenv("GATEHOUSE_ROOT_KEY_FILE", "")
	t.Setenv("REPORTING_SECRET", secretMulti)
	db := "sqlite:" + filepath.Join(dir, "gatehouse.db")
	file := strings.Replace(applyFile, "    name: Reporting\n", "    name: Reporting\n    client_secret: ${REPORTING_SECRET}\n", 1)
	file = strings.Replace(file, "apis:\n", "apis:\n  - identifier: https://api.example.com/v1\n    name: Example API\n    scopes: [read]\n", 1)
	tr := newTranscript(t, "apply-db", nil)
	path := writeApplyFile(t, tr, "gatehouse.yaml", file)
	tr.n.exact[dir] = "$DIR"
	tr.run(1, "apply", "-f", path, "--db", db)
	tr.run(0, "apply", "-f", path, "--db", db, "--root-key-file", keyFile)
	t.Setenv("GATEHOUSE_ROOT_KEY", key.String())
	tr.run(0, "apply", "-f", path, "--db", db)
	other := writeKey(t)
	tr.n.exact[other] = "other.key"
	tr.run(1, "apply", "-f", path, "--db", db, "--root-key-file", other)
	tr.run(2, "apply", "-f", path, "--db", "mysql://localhost/gatehouse")
	tr.check()

	ts := startServer(t, dir, key, "")
	if r := postTokenBasic(t, ts, "reporting", secretMulti, "grant_type=client_credentials&audience=https://api.example.com/v1"); r.status != 200 {
		t.Errorf("token with the file's secret after apply --db: %d %s", r.status, r.body)
	}
}

// writeKey writes a new root key to a file and returns its path.
func writeKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "other.key")
	if err := rootkey.Generate().WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}
