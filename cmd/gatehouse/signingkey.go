package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/keyset"
)

// The signing-key verbs' direct mode: with --db, they act on the database itself rather than through a server's
// management API, with the server's root key, so that they work with no server running.

// keyDBFlags are the flags of the direct mode: the database and root key as serve takes them, and the key
// schedule, which should be the servers' (the same GATEHOUSE_<FLAG> variables set both).
type keyDBFlags struct {
	db, rootKeyFile     string
	logFormat, logLevel string
	jwksMaxAge          time.Duration
	keys                keyScheduleFlags
}

// keyDBOnly are the flags of keyDBFlags that mean something only with --db.
var keyDBOnly = []string{"root-key-file", "log-format", "log-level", "jwks-max-age", "key-rotation-period",
	"key-publish-ahead", "key-retention"}

func (f *keyDBFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.db, "db", "", "act on this database directly (sqlite:PATH or postgres://…), not through a server's management API")
	fl.StringVar(&f.rootKeyFile, "root-key-file", "", "with --db: file holding the base64 root key (else GATEHOUSE_ROOT_KEY)")
	fl.StringVar(&f.logFormat, "log-format", "text", "with --db: log format, text or json")
	fl.StringVar(&f.logLevel, "log-level", "warn", "with --db: log level, debug, info, warn or error")
	fl.DurationVar(&f.jwksMaxAge, "jwks-max-age", 5*time.Minute, "with --db: the servers' Cache-Control max-age of the JWKS")
	f.keys.register(fl)
	for _, name := range []string{"key-rotation-period", "key-publish-ahead", "key-retention"} {
		fl.Lookup(name).Usage = "with --db: " + fl.Lookup(name).Usage
	}
}

// direct reports whether cmd runs in direct mode: --db was given. Without it, a flag of the direct mode is a
// usage error, and so is --db with --server or --insecure.
func (f *keyDBFlags) direct(cmd *cobra.Command) (bool, error) {
	if !changed(cmd, "db") {
		for _, name := range keyDBOnly {
			if changed(cmd, name) {
				return false, usageError{fmt.Errorf("--%s applies only with --db (acting on the database directly)", name)}
			}
		}
		return false, nil
	}
	if changed(cmd, "server", "insecure") {
		return false, usageError{errors.New("--db acts on the database directly, --server through a server: give one of them")}
	}
	return true, nil
}

// open opens the database that --db names, which must exist, with the root key, and loads its signing keys.
func (f *keyDBFlags) open(cmd *cobra.Command, stderr io.Writer) (*Main, error) {
	if err := bindEnv(cmd, os.LookupEnv); err != nil {
		return nil, err
	}
	log, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return nil, err
	}
	if f.jwksMaxAge < 0 {
		return nil, usageError{errors.New("durations must not be negative")}
	}
	if err := f.keys.check(f.jwksMaxAge); err != nil {
		return nil, err
	}
	if err := checkDB(f.db); err != nil {
		return nil, err
	}
	if path, ok := strings.CutPrefix(f.db, "sqlite:"); ok {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s: point --db at the server's", path)
		}
	}
	m := &Main{DB: f.db, JWKSMaxAge: f.jwksMaxAge, Logger: log, Stderr: stderr,
		RotateEvery: f.keys.rotateEvery, PublishAhead: f.keys.publishAhead, KeyRetention: f.keys.retention}
	if m.RootKey, err = readRootKey(f.rootKeyFile); err != nil {
		return nil, err
	}
	if m.RootKey == nil {
		return nil, errors.New("no root key: set GATEHOUSE_ROOT_KEY or pass --root-key-file, as for the server")
	}
	ctx := cmd.Context()
	if err := m.openStore(ctx); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.openKeys(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// keyJSON is a key as the management API shows it.
func keyJSON(k keyset.KeyInfo) signingKeyJSON {
	t := func(t time.Time) *time.Time {
		t = t.UTC()
		return &t
	}
	return signingKeyJSON{KID: k.ID, Alg: string(k.Alg), State: string(k.State), CreatedAt: t(k.CreatedAt),
		UpdatedAt: t(k.Since), Since: t(k.Since), NextStepAt: t(k.Next)}
}

// listDirect prints the signing keys of the database (limit of them; 0 for all) as list prints them from the API.
func listDirect(ctx context.Context, a *adminFlags, keys *keyset.Keyset, limit int) error {
	asJSON, err := a.wantJSON()
	if err != nil {
		return err
	}
	if limit < 0 {
		return usageError{errors.New("--limit must not be negative")}
	}
	infos, err := keys.List(ctx)
	if err != nil {
		return err
	}
	more := limit > 0 && len(infos) > limit
	if more {
		infos = infos[:limit]
	}
	items := make([]json.RawMessage, len(infos))
	for i, k := range infos {
		if items[i], err = json.Marshal(keyJSON(k)); err != nil {
			return err
		}
	}
	if err := printList(a, asJSON, items, signingKeyListing); err != nil {
		return err
	}
	if more {
		fmt.Fprintf(a.stderr, "showing the first %d; there are more (raise --limit, or 0 for all)\n", limit)
	}
	return nil
}

// rotateDirect rotates alg's key in the database and prints the key that signs next, as rotate does through the
// API.
func rotateDirect(ctx context.Context, a *adminFlags, keys *keyset.Keyset, alg auth.Algorithm, immediately bool) error {
	asJSON, err := a.wantJSON()
	if err != nil {
		return err
	}
	var k keyset.KeyInfo
	if immediately {
		k, err = keys.RotateImmediately(ctx, alg)
	} else {
		k, err = keys.RotateNow(ctx, alg)
	}
	if errors.Is(err, auth.ErrNotFound) {
		return fmt.Errorf("%s has no current signing key to rotate: no API signs with it", alg)
	}
	if err != nil {
		return err
	}
	raw, err := json.Marshal(keyJSON(k))
	if err != nil {
		return err
	}
	if err := printItem(a, asJSON, raw, signingKeyDetail); err != nil {
		return err
	}
	fmt.Fprint(a.stderr, rotatedMessage(keyJSON(k), true))
	return nil
}

// revokeDirect revokes a key in the database and prints it, as revoke does through the API.
func revokeDirect(ctx context.Context, a *adminFlags, keys *keyset.Keyset, kid string) error {
	asJSON, err := a.wantJSON()
	if err != nil {
		return err
	}
	infos, err := keys.List(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(infos, func(k keyset.KeyInfo) bool { return k.ID == kid })
	if i >= 0 {
		err = keys.Revoke(ctx, kid)
	}
	if i < 0 || errors.Is(err, auth.ErrNotFound) {
		return fmt.Errorf("no signing key %q", kid)
	}
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	raw, err := json.Marshal(revokedKeyJSON{KID: kid, Alg: string(infos[i].Alg), RevokedAt: &now})
	if err != nil {
		return err
	}
	if err := printItem(a, asJSON, raw, revokedKeyDetail); err != nil {
		return err
	}
	fmt.Fprint(a.stderr, revokedMessage(kid, true))
	return nil
}
