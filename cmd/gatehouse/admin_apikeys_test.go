package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/apikey"
	"github.com/gatehouse/gatehouse/internal/auth"
)

// TestAdminAPIKeys: apikey create, list, show, update, rotate, delete and verify against a real server. verify is
// the gateway's check, so the transcript shows each refusal code and the exit codes: 0 valid, 1 refused, 2 usage.
func TestAdminAPIKeys(t *testing.T) {
	ts := startAdmin(t)
	tr := newTranscript(t, "apikey", ts)
	// verify runs apikey verify, then writes the last-used times at once, so that what later commands print does
	// not depend on when the server's own batch runs.
	verify := func(want int, args ...string) (string, string) {
		t.Helper()
		stdout, stderr := tr.run(want, append([]string{"apikey", "verify"}, args...)...)
		ts.APIKeys.Flush(context.Background())
		return stdout, stderr
	}

	tr.run(0, "org", "create", "--name", "acme", "--api-key-prefix", "acme", "--allow", "https://api.example.com/v1=read,write", "-o", "json")
	tr.run(0, "api", "create", "--identifier", "urn:example:reports", "--name", "Reports", "--scope", "reports:read", "--scope", "reports:write", "-o", "json")

	tr.note("create: the key on stdout, once, with the warning on stderr")
	stdout, stderr := tr.run(0, "apikey", "create", "--name", "Acme CI", "--org", "acme", "--owner", "user-42",
		"--grant", "https://api.example.com/v1=read,write", "--grant", "urn:example:reports=reports:read", "--metadata", `{"team": "platform"}`)
	ci := regexp.MustCompile(`(?m)^key:\s+(\S+)$`).FindStringSubmatch(stdout)
	ciID := regexp.MustCompile(`(?m)^id:\s+(\S+)$`).FindStringSubmatch(stdout)
	if ci == nil || ciID == nil {
		t.Fatalf("apikey create printed no key or no id:\n%s", stdout)
	}
	if !strings.Contains(stderr, "shown only this once") || strings.Contains(stderr, ci[1]) {
		t.Errorf("apikey create: the warning belongs on stderr, the key on stdout; stderr:\n%s", stderr)
	}
	if !strings.HasPrefix(ci[1], "acme_") {
		t.Errorf("key %q of an organization with the prefix acme", ci[1])
	}
	stdout, _ = tr.run(0, "apikey", "create", "--name", "Reporting", "--grant", "urn:example:reports=reports:read reports:write",
		"--expires-at", "2099-01-01T00:00:00Z", "-o", "json")
	reporting, reportingID := jsonField(t, stdout, "key"), jsonField(t, stdout, "id")
	tr.run(0, "apikey", "list")
	tr.run(0, "apikey", "list", "--org", "acme", "-o", "json")
	tr.run(0, "apikey", "list", "--owner", "user-42")
	tr.run(0, "apikey", "show", ciID[1])

	tr.note("verify: exit 0 for a valid key, 1 with the code for a refused one")
	verify(0, ci[1], "--audience", "https://api.example.com/v1", "--scope", "read write")
	tr.runStdin(reporting, 0, "apikey", "verify", "-", "--scope", "reports:write", "-o", "json")
	ts.APIKeys.Flush(context.Background())
	verify(1, ci[1], "--audience", "urn:example:nothing")
	verify(1, ci[1], "--audience", "urn:example:reports", "--scope", "reports:write")
	verify(1, ci[1], "--scope", "read") // two grants and no audience: which one is unclear
	verify(1, "acme_0123456789", "-o", "json")
	unknown, err := apikey.New("gate")
	if err != nil {
		t.Fatal(err)
	}
	verify(1, unknown)

	tr.note("update")
	tr.run(0, "apikey", "update", ciID[1], "--name", "Acme deploy", "--grant", "https://api.example.com/v1=read", "--expires-in", "720h", "--if-match")
	tr.run(0, "apikey", "update", ciID[1], "--no-expiry", "--metadata", "null", "-o", "json")
	tr.run(0, "apikey", "update", ciID[1], "--disable")
	verify(1, ci[1])
	tr.run(0, "apikey", "update", ciID[1], "--enable")
	verify(0, ci[1])

	tr.note("rotate: the previous key is refused at once, the new one is valid")
	stdout, _ = tr.run(0, "apikey", "rotate", ciID[1], "-o", "json")
	second := jsonField(t, stdout, "key")
	verify(1, ci[1])
	verify(0, second)
	tr.note("rotate with a grace period: the previous key keeps working until it ends")
	stdout, _ = tr.run(0, "apikey", "rotate", ciID[1], "--grace-period", "1h")
	third := regexp.MustCompile(`(?m)^key:\s+(\S+)$`).FindStringSubmatch(stdout)
	if third == nil {
		t.Fatalf("apikey rotate printed no key:\n%s", stdout)
	}
	verify(0, second)
	verify(0, third[1])

	tr.note("expired")
	stdout, _ = tr.run(0, "apikey", "create", "--name", "Short-lived", "--grant", "https://api.example.com/v1=read", "--expires-in", "1s", "-o", "json")
	short, shortID := jsonField(t, stdout, "key"), jsonField(t, stdout, "id")
	expires, err := time.Parse(time.RFC3339Nano, jsonField(t, stdout, "expires_at"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(expires) + 10*time.Millisecond)
	verify(1, short)
	tr.run(0, "apikey", "show", shortID)

	tr.note("an organization's gateway verifies its own keys; another's are not_found, whatever their state")
	stdout, _ = tr.run(0, "client", "create", "--client-id", "acme-gateway", "--name", "Acme gateway", "--org", "acme", "-o", "json")
	gatewaySecret := jsonField(t, stdout, "client_secret")
	tr.run(0, "grant", "create", "--client", "acme-gateway", "--audience", auth.ManagementAudience, "--scope", "verify:apikeys", "-o", "json")
	tr.run(0, "apikey", "update", reportingID, "--disable", "-o", "json")
	adminEnv(t, ts.URL, "acme-gateway", gatewaySecret)
	verify(0, third[1], "--audience", "https://api.example.com/v1")
	verify(1, reporting)
	verify(1, short)
	tr.run(1, "apikey", "list")
	adminEnv(t, ts.URL, "admin", secretOne)
	tr.run(0, "apikey", "list")

	tr.note("errors: the server's, exit 1; usage, exit 2")
	tr.run(1, "apikey", "create", "--name", "X", "--grant", "https://api.example.com/v1=fly")
	tr.run(1, "apikey", "create", "--name", "X", "--grant", auth.ManagementAudience+"=read:apis")
	tr.run(1, "apikey", "create", "--name", "X", "--expires-at", "2001-01-01T00:00:00Z")
	tr.run(1, "apikey", "create", "--name", "X", "--org", "initech")
	tr.run(1, "apikey", "show", "key_aaaaaaaaaaaaaaaaaaaaaaaaaa")
	tr.run(2, "apikey", "create", "--grant", "https://api.example.com/v1=read")
	tr.run(2, "apikey", "create", "--name", "X", "--grant", "=read")
	tr.run(2, "apikey", "create", "--name", "X", "--expires-at", "tomorrow")
	tr.run(2, "apikey", "create", "--name", "X", "--expires-at", "2099-01-01T00:00:00Z", "--expires-in", "1h")
	tr.run(2, "apikey", "create", "--name", "X", "--metadata", "[1, 2]")
	tr.run(2, "apikey", "update", ciID[1])
	tr.run(2, "apikey", "update", ciID[1], "--disable", "--enable")
	tr.run(2, "apikey", "update", ciID[1], "--no-expiry", "--expires-in", "1h")
	tr.run(2, "apikey", "rotate", ciID[1], "--grace-period", "169h")
	tr.run(2, "apikey", "verify")
	tr.runStdin("\n", 2, "apikey", "verify", "-")

	tr.note("delete: the key, and the previous one in its grace period, stop working at once")
	tr.run(0, "apikey", "delete", ciID[1])
	verify(1, third[1])
	verify(1, second)
	tr.run(1, "apikey", "show", ciID[1])
	tr.run(0, "apikey", "delete", shortID)
	tr.run(0, "apikey", "list", "-o", "json")

	s := normalizeKeys(tr.b.String())
	tr.b.Reset()
	tr.b.WriteString(s)
	tr.check()

	if code, stdout, _ := runCLI(t, "--help"); code != 0 || !regexp.MustCompile(`(?m)^\s+apikey\s`).MatchString(stdout) {
		t.Errorf("gatehouse --help does not list apikey")
	}
	for _, verb := range []string{"list", "show", "create", "update", "rotate", "delete", "verify"} {
		code, stdout, stderr := runCLI(t, "apikey", verb, "--help")
		if code != 0 || !strings.Contains(stdout, "--server") || stderr != "" {
			t.Errorf("gatehouse apikey %s --help: exit %d, stderr %q, stdout:\n%s", verb, code, stderr, stdout)
		}
	}
}

// runStdin is run with input on stdin.
func (tr *transcript) runStdin(input string, want int, args ...string) (string, string) {
	tr.t.Helper()
	f, err := os.CreateTemp(tr.t.TempDir(), "stdin")
	if err != nil {
		tr.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(input); err != nil {
		tr.t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		tr.t.Fatal(err)
	}
	defer func(stdin *os.File) { os.Stdin = stdin }(os.Stdin)
	os.Stdin = f
	tr.note(fmt.Sprintf("stdin: %q", input))
	return tr.run(want, args...)
}

var (
	apiKeyRE = regexp.MustCompile(`\b([a-z][a-z0-9]{1,11}_)([0-9A-Za-z]{4})[0-9A-Za-z]{35}\b`)
	keyIDRE  = regexp.MustCompile(`\bkey_[0-9a-z]{26}\b`)
)

// normalizeKeys replaces what the transcript's normalizer leaves alone — API keys, their hints and key ids — with
// placeholders, the same for the same value: <KEY_1>, its hint acme_<K1>… and key_1…, hints and ids keeping their
// width so that tables stay aligned.
func normalizeKeys(s string) string {
	keys, hints := map[string]string{}, map[string]string{}
	s = apiKeyRE.ReplaceAllStringFunc(s, func(key string) string {
		if p, ok := keys[key]; ok {
			return p
		}
		n := len(keys) + 1
		keys[key] = fmt.Sprintf("<KEY_%d>", n)
		m := apiKeyRE.FindStringSubmatch(key)
		hints[m[1]+m[2]+"…"] = fmt.Sprintf("%s<K%d>…", m[1], n)
		return keys[key]
	})
	for hint, p := range hints {
		s = strings.ReplaceAll(s, hint, p)
	}
	ids := map[string]string{}
	return keyIDRE.ReplaceAllStringFunc(s, func(id string) string {
		if p, ok := ids[id]; ok {
			return p
		}
		ids[id] = padded(fmt.Sprintf("key_%d", len(ids)+1), len(id))
		return ids[id]
	})
}
