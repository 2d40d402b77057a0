package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// listedKey is a key as `signing-key list -o json` prints it.
type listedKey struct {
	KID, Alg, State string
	NextStepAt      time.Time `json:"next_step_at"`
}

func listKeysCLI(t *testing.T, db string) []listedKey {
	t.Helper()
	code, stdout, stderr := runCLI(t, "signing-key", "list", "--db", db, "-o", "json")
	if code != 0 {
		t.Fatalf("signing-key list: exit %d: %s", code, stderr)
	}
	var keys struct{ Items []listedKey }
	if err := json.Unmarshal([]byte(stdout), &keys); err != nil {
		t.Fatalf("signing-key list -o json: %v\n%s", err, stdout)
	}
	return keys.Items
}

func keysIn(keys []listedKey, alg, state string) []string {
	var kids []string
	for _, k := range keys {
		if k.Alg == alg && k.State == state {
			kids = append(kids, k.KID)
		}
	}
	return kids
}

// TestSigningKeyCommands: with --db, rotate and revoke act on the database directly, with the root key from the
// environment, while a server runs on it; the server sees the change at its next reload. (Through the management
// API: TestAdminSigningKey.)
func TestSigningKeyCommands(t *testing.T) {
	dir := t.TempDir()
	key := rootkey.Generate()
	ts := startServer(t, dir, key, fixture)
	db := "sqlite:" + filepath.Join(dir, "gatehouse.db")
	t.Setenv("GATEHOUSE_ROOT_KEY", key.String())

	keys := listKeysCLI(t, db)
	first := keysIn(keys, "ES256", "current")
	if len(keys) != 3 || len(first) != 1 {
		t.Fatalf("keys before: %+v, want one current key per algorithm", keys)
	}
	// The schedule is the flags' (or their GATEHOUSE_<FLAG> variables'), which should be the servers'.
	for _, k := range keys {
		if d := time.Until(k.NextStepAt); d < 29*24*time.Hour || d > 30*24*time.Hour {
			t.Errorf("key %+v: next step in %v, want 30 days less the publication ahead", k, d)
		}
	}
	t.Setenv("GATEHOUSE_KEY_ROTATION_PERIOD", "48h")
	for _, k := range listKeysCLI(t, db) {
		if d := time.Until(k.NextStepAt); d < 47*time.Hour || d > 48*time.Hour {
			t.Errorf("with GATEHOUSE_KEY_ROTATION_PERIOD=48h, key %+v: next step in %v, want 48h less the publication ahead", k, d)
		}
	}
	os.Unsetenv("GATEHOUSE_KEY_ROTATION_PERIOD")

	// rotate: a next key, published ahead; the current one still signs.
	code, stdout, stderr := runCLI(t, "signing-key", "rotate", "--alg", "ES256", "--db", db)
	if code != 0 || !strings.Contains(stderr, "published as next") || !strings.Contains(stdout, "state:") {
		t.Fatalf("rotate: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	keys = listKeysCLI(t, db)
	next := keysIn(keys, "ES256", "next")
	if len(next) != 1 || keysIn(keys, "ES256", "current")[0] != first[0] {
		t.Fatalf("after rotate: %+v, want a next key beside the current one", keys)
	}
	// rotate --immediately: the next key signs now; the old one is retired.
	if code, _, stderr := runCLI(t, "signing-key", "rotate", "--alg", "ES256", "--immediately", "--db", db); code != 0 || !strings.Contains(stderr, "signs now") {
		t.Fatalf("rotate --immediately: exit %d: %s", code, stderr)
	}
	keys = listKeysCLI(t, db)
	if got := keysIn(keys, "ES256", "current"); len(got) != 1 || got[0] != next[0] {
		t.Errorf("after rotate --immediately: current %v, want the next key %s", got, next[0])
	}
	if got := keysIn(keys, "ES256", "retired"); len(got) != 1 || got[0] != first[0] {
		t.Errorf("after rotate --immediately: retired %v, want %s", got, first[0])
	}
	// The running server signs with the new key after its reload.
	if err := ts.Keys.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	tok := ts.token(t, "svc-multi", secretMulti, "audience", "urn:example:reports")
	if kid := tokenKid(t, tok); kid != next[0] {
		t.Errorf("the server signs with %s after reloading, want %s", kid, next[0])
	}

	// revoke: gone from the database, and from the server's JWKS at its reload.
	code, stdout, stderr = runCLI(t, "signing-key", "revoke", "--db", db, "-o", "json", "--", next[0])
	if code != 0 || !strings.Contains(stderr, "WARNING") || jsonField(t, stdout, "kid") != next[0] || jsonField(t, stdout, "alg") != "ES256" {
		t.Fatalf("revoke: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	keys = listKeysCLI(t, db)
	if got := keysIn(keys, "ES256", "current"); len(got) != 1 || got[0] == next[0] {
		t.Errorf("after revoke: current ES256 %v, want a new key", got)
	}
	if err := ts.Keys.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := fetchJWKS(t, ts.URL)[next[0]]; ok {
		t.Error("the revoked key is still in the server's JWKS after its reload")
	}

	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"signing-key", "rotate", "--db", db}, 2},
		{[]string{"signing-key", "rotate", "--alg", "HS256", "--db", db}, 2},
		{[]string{"signing-key", "revoke", "--db", db}, 2},
		{[]string{"signing-key", "list", "--db", db, "-o", "yaml"}, 2},
		{[]string{"signing-key", "list", "--db", "mysql://x"}, 2},
		{[]string{"signing-key", "rotate", "--alg", "ES256", "--db", db, "--key-rotation-period", "1m"}, 2},
		{[]string{"signing-key", "revoke", "no-such-kid", "--db", db}, 1},
		{[]string{"signing-key", "list", "--db", "sqlite:" + filepath.Join(dir, "missing.db")}, 1},
		{[]string{"signing-key", "list", "--db", db, "--server", ts.URL}, 2},
		{[]string{"signing-key", "list", "--key-retention", "1h"}, 2}, // a flag of the direct mode without --db
	} {
		if code, _, stderr := runCLI(t, tt.args...); code != tt.want {
			t.Errorf("gatehouse %s: exit %d, want %d (%s)", strings.Join(tt.args, " "), code, tt.want, stderr)
		}
	}
	t.Setenv("GATEHOUSE_ROOT_KEY", rootkey.Generate().String())
	if code, _, stderr := runCLI(t, "signing-key", "list", "--db", db); code != 1 || !strings.Contains(stderr, "root key") {
		t.Errorf("list with another root key: exit %d: %s", code, stderr)
	}
}
