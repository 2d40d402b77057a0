package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/auth/authtest"
)

func mustOpen(t *testing.T, dsn string) *DB {
	t.Helper()
	db, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open(%q): %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func tempDSN(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "gh.db") }

func TestSQLite(t *testing.T) {
	t.Parallel()
	authtest.TestStore(t, func(t *testing.T) auth.Store { return mustOpen(t, tempDSN(t)) })
}

func TestOpenUnsupported(t *testing.T) {
	tests := []string{
		"mysql:gatehouse:s3cret@/gatehouse",
		"postgres:gatehouse:s3cret@db.example.com/gatehouse",
		"postgresql:host=db.example.com password=s3cret",
		"gatehouse.db",
		"",
		"SQLITE:gatehouse.db",
		"POSTGRES://gatehouse:s3cret@db.example.com/gatehouse",
	}
	for _, dsn := range tests {
		db, err := Open(t.Context(), dsn)
		if err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded, want an error", dsn)
			continue
		}
		for _, form := range []string{"sqlite:PATH", "postgres://USER:PASSWORD@HOST:PORT/DATABASE"} {
			if !strings.Contains(err.Error(), form) {
				t.Errorf("Open(%q) = %q, want an error naming the supported form %s", dsn, err, form)
			}
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q) = %q, which shows the password", dsn, err)
		}
	}
}

func TestOpenBadPath(t *testing.T) {
	tests := []string{
		"sqlite:",
		"sqlite::memory:",
		"sqlite:" + filepath.Join(t.TempDir(), "missing-dir", "gh.db"),
	}
	for _, dsn := range tests {
		if db, err := Open(t.Context(), dsn); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded, want an error", dsn)
		}
	}
}

// TestOpenPath checks that the path is taken literally, even with characters that mean something in a URI.
func TestOpenPath(t *testing.T) {
	dir := t.TempDir()
	name := "a?b#c%20d.db"
	mustOpen(t, "sqlite:"+filepath.Join(dir, name))
	if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
		t.Errorf("database file: %v", err)
	}

	t.Chdir(dir)
	mustOpen(t, "sqlite:relative.db")
	if _, err := os.Stat(filepath.Join(dir, "relative.db")); err != nil {
		t.Errorf("database file at a relative path: %v", err)
	}
}

// TestPragmas checks the settings every pooled connection must have.
func TestPragmas(t *testing.T) {
	db := mustOpen(t, tempDSN(t))
	want := map[string]string{
		"journal_mode": "wal",
		"busy_timeout": "5000",
		"foreign_keys": "1",
		"synchronous":  "2", // FULL
	}
	// Hold several connections at once, so that the check covers more than the first.
	var conns []interface{ Close() error }
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 3 {
		conn, err := db.db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		for pragma, want := range want {
			var got string
			if err := conn.QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", pragma, err)
			}
			if got != want {
				t.Errorf("connection %d: PRAGMA %s = %q, want %q", i, pragma, got, want)
			}
		}
	}
}

func TestReopen(t *testing.T) {
	dsn := tempDSN(t)
	ctx := t.Context()
	api := &auth.API{
		ID:            "api_1",
		Identifier:    "urn:example:one",
		Name:          "One",
		Scopes:        []auth.Scope{{Name: "read"}},
		TokenLifetime: time.Hour,
		SigningAlg:    auth.RS256,
		CreatedAt:     time.Now().UTC().Truncate(time.Millisecond),
		UpdatedAt:     time.Now().UTC().Truncate(time.Millisecond),
	}
	db, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateAPI(ctx, api); err != nil {
		t.Fatal(err)
	}
	before := migrationsApplied(t, db)
	if len(before) == 0 {
		t.Fatal("no migrations recorded in schema_migrations")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = mustOpen(t, dsn)
	if diff := cmp.Diff(before, migrationsApplied(t, db)); diff != "" {
		t.Errorf("schema_migrations changed on reopening (-before +after):\n%s", diff)
	}
	got, err := db.FindAPI(ctx, "api_1")
	if err != nil {
		t.Fatalf("FindAPI after reopening: %v", err)
	}
	if diff := cmp.Diff(api, got); diff != "" {
		t.Errorf("FindAPI after reopening: mismatch (-want +got):\n%s", diff)
	}
}

// migrationsApplied returns schema_migrations as version → applied_at.
func migrationsApplied(t *testing.T, db *DB) map[int64]int64 {
	t.Helper()
	rows, err := db.db.QueryContext(t.Context(), `SELECT version, applied_at FROM schema_migrations`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[int64]int64{}
	for rows.Next() {
		var v, at int64
		if err := rows.Scan(&v, &at); err != nil {
			t.Fatal(err)
		}
		m[v] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNewerSchema(t *testing.T) {
	dsn := tempDSN(t)
	db := mustOpen(t, dsn)
	if _, err := db.db.ExecContext(t.Context(), `INSERT INTO schema_migrations (version, applied_at) VALUES (999999, 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err := Open(t.Context(), dsn); err == nil {
		db.Close()
		t.Errorf("Open of a database with a newer schema succeeded, want an error")
	}
}

func TestMigrations(t *testing.T) {
	names := map[string][]string{} // by dialect
	for _, dialect := range []string{sqliteDialect, postgresDialect} {
		ms, err := loadMigrations(dialect)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 || ms[0].version != 1 {
			t.Fatalf("%s migrations start at %v, want version 1", dialect, ms)
		}
		// Versions increase, with gaps where a version is reserved for a change still on another branch.
		for i := 1; i < len(ms); i++ {
			if ms[i].version <= ms[i-1].version {
				t.Errorf("%s migration %s has version %d, after %s's %d: want increasing versions", dialect, ms[i].name,
					ms[i].version, ms[i-1].name, ms[i-1].version)
			}
		}
		for _, m := range ms {
			names[dialect] = append(names[dialect], m.name)
		}
	}
	// The DML is shared: the dialects' schemas change together, one migration for one.
	if diff := cmp.Diff(names[sqliteDialect], names[postgresDialect]); diff != "" {
		t.Errorf("migrations: the dialects' sets differ (-sqlite +postgres):\n%s", diff)
	}
}

// TestMigrateGap applies migrations 1, 2 and 4, as a build would whose 3 is still on another branch, then 1–4, as
// the build that merges it: 3 is applied then, though the database has 4 already. The build without 3 then refuses
// the database.
func TestMigrateGap(t *testing.T) {
	ctx := t.Context()
	sdb, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "gh.db")+"?"+sqliteParams)
	if err != nil {
		t.Fatal(err)
	}
	db := &DB{db: sdb, dialect: sqliteDialect}
	defer db.Close()
	m := func(v int64) migration {
		// Each creates a table, so that applying one twice fails.
		return migration{version: v, name: fmt.Sprintf("%04d_t%d.sql", v, v), sql: fmt.Sprintf("CREATE TABLE t%d (id BIGINT)", v)}
	}
	withoutThree := []migration{m(1), m(2), m(4)}
	all := []migration{m(1), m(2), m(3), m(4)}
	if err := db.applyMissing(ctx, withoutThree); err != nil {
		t.Fatalf("migrations 1, 2, 4: %v", err)
	}
	if err := db.applyMissing(ctx, all); err != nil {
		t.Fatalf("migrations 1–4 on a database at 1, 2, 4: %v", err)
	}
	for v := 1; v <= 4; v++ {
		if _, err := sdb.ExecContext(ctx, fmt.Sprintf("INSERT INTO t%d (id) VALUES (1)", v)); err != nil {
			t.Errorf("table of migration %d: %v", v, err)
		}
	}
	got, err := appliedVersions(ctx, sdb)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{1, 2, 3, 4}, got); diff != "" {
		t.Errorf("schema_migrations: mismatch (-want +got):\n%s", diff)
	}
	if err := db.applyMissing(ctx, all); err != nil {
		t.Errorf("migrations 1–4 again: %v, want a no-op", err)
	}
	if err := db.applyMissing(ctx, withoutThree); err == nil {
		t.Errorf("migrations 1, 2, 4 on a database that has 3 succeeded, want an error: the build lacks a migration applied")
	}
}

// TestTranslate checks the mapping of real driver errors to the auth errors.
func TestTranslate(t *testing.T) {
	testTranslateConstraints(t, mustOpen(t, tempDSN(t)))
}

// testTranslateConstraints checks the mapping of constraint violations to the auth errors, on a new database.
func testTranslateConstraints(t *testing.T, db *DB) {
	t.Helper()
	ctx := t.Context()
	setup := []string{
		`INSERT INTO apis (id, identifier, name, scopes, token_lifetime, signing_alg, created_at, updated_at)
		VALUES ('api_1', 'urn:one', 'One', '[]', 60, 'RS256', 0, 0)`,
		`INSERT INTO clients (id, name, description, disabled, created_at, updated_at) VALUES ('c1', 'C', '', FALSE, 0, 0)`,
	}
	for _, q := range setup {
		if _, err := db.db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		query string
		args  []any
		want  error // nil: neither ErrConflict nor ErrNotFound
	}{
		{"primary key", `INSERT INTO clients (id, name, description, disabled, created_at, updated_at)
			VALUES ('c1', 'C', '', FALSE, 0, 0)`, nil, auth.ErrConflict},
		{"unique", `INSERT INTO apis (id, identifier, name, scopes, token_lifetime, signing_alg, created_at, updated_at)
			VALUES ('api_2', 'urn:one', 'Two', '[]', 60, 'RS256', 0, 0)`, nil, auth.ErrConflict},
		{"foreign key", `INSERT INTO grants (id, client_id, api_id, scopes, created_at, updated_at)
			VALUES ('g1', 'c1', 'api_none', '[]', 0, 0)`, nil, auth.ErrNotFound},
		{"not null", `INSERT INTO clients (id, name, description, disabled, created_at, updated_at)
			VALUES ('c2', NULL, '', FALSE, 0, 0)`, nil, nil},
		{"check", `INSERT INTO signing_keys (id, alg, state, public_jwk, private, created_at, updated_at)
			VALUES ('k1', 'RS256', 'bogus', $1, $1, 0, 0)`, []any{[]byte{0}}, nil},
		{"syntax", `INSERT INTO`, nil, nil},
	}
	for _, tt := range tests {
		_, err := db.db.ExecContext(ctx, tt.query, tt.args...)
		if err == nil {
			t.Errorf("%s: the statement succeeded, want a driver error", tt.name)
			continue
		}
		got := db.translate(err)
		for _, sentinel := range []error{auth.ErrConflict, auth.ErrNotFound, auth.ErrUnavailable} {
			if is, want := errors.Is(got, sentinel), sentinel == tt.want; is != want {
				t.Errorf("%s: errors.Is(translate(%v), %v) = %v, want %v", tt.name, err, sentinel, is, want)
			}
		}
		if !strings.Contains(got.Error(), err.Error()) {
			t.Errorf("%s: translate(%q) = %q, want the driver's message kept", tt.name, err, got)
		}
		if again := db.translate(got); again.Error() != got.Error() {
			t.Errorf("%s: translate(translate(%q)) = %q, want it unchanged", tt.name, err, again)
		}
	}

	if err := db.translate(nil); err != nil {
		t.Errorf("translate(nil) = %v, want nil", err)
	}
	other := errors.New("other")
	if err := db.translate(other); err != other {
		t.Errorf("translate(%v) = %v, want it unchanged", other, err)
	}
}

// TestConcurrentReadWrite runs readers and writers at once, on two handles of one file as two instances would, and
// wants every call to succeed: writers wait for each other instead of failing with "database is locked".
func TestConcurrentReadWrite(t *testing.T) {
	dsn := tempDSN(t)
	testConcurrentReadWrite(t, mustOpen(t, dsn), mustOpen(t, dsn))
}

// testConcurrentReadWrite runs readers and writers at once on dbs, handles of one new database, and wants every call
// to succeed.
func testConcurrentReadWrite(t *testing.T, dbs ...*DB) {
	ctx := t.Context()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	if err := dbs[0].CreateAPI(ctx, &auth.API{ID: "api_1", Identifier: "urn:one", Name: "One", Scopes: []auth.Scope{{Name: "read"}},
		TokenLifetime: time.Hour, SigningAlg: auth.RS256, CreatedAt: t0, UpdatedAt: t0}); err != nil {
		t.Fatal(err)
	}

	const (
		writers = 16
		readers = 16
		rounds  = 20
	)
	var wg sync.WaitGroup
	errs := make(chan error, (writers+readers)*rounds)
	for w := range writers {
		db := dbs[w%len(dbs)]
		wg.Go(func() {
			for r := range rounds {
				id := fmt.Sprintf("client-%d-%d", w, r)
				c := &auth.Client{ID: id, Name: id, CreatedAt: t0, UpdatedAt: t0, Secrets: []auth.Secret{
					{ID: "sec_" + id + "-1", Hash: []byte{1}, CreatedAt: t0},
					{ID: "sec_" + id + "-2", Hash: []byte{2}, CreatedAt: t0},
				}}
				if err := db.CreateClient(ctx, c); err != nil {
					errs <- err
					continue
				}
				if err := db.PutGrant(ctx, &auth.Grant{ID: "grt_" + id, ClientID: id, APIID: "api_1",
					Scopes: []string{"read"}, CreatedAt: t0, UpdatedAt: t0}); err != nil {
					errs <- err
				}
				if err := db.DeleteClientSecret(ctx, id, "sec_"+id+"-1"); err != nil {
					errs <- err
				}
			}
		})
	}
	for r := range readers {
		db := dbs[r%len(dbs)]
		wg.Go(func() {
			for range rounds {
				if _, err := db.FindAPIByIdentifier(ctx, "urn:one"); err != nil {
					errs <- err
				}
				if _, err := db.ListClients(ctx); err != nil {
					errs <- err
				}
				if _, err := db.FindClient(ctx, "client-0-0"); err != nil && !errors.Is(err, auth.ErrNotFound) {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	clients, err := dbs[1].ListClients(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(clients) != writers*rounds {
		t.Errorf("ListClients: %d clients, want %d", len(clients), writers*rounds)
	}
	for _, c := range clients {
		if len(c.Secrets) != 1 {
			t.Errorf("client %s has %d secrets, want 1", c.ID, len(c.Secrets))
		}
	}
}

// TestConcurrentOpen opens one new file from several goroutines at once, as instances starting together would: each
// migration runs once, and no Open fails.
func TestConcurrentOpen(t *testing.T) {
	dsn := tempDSN(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			db, err := Open(t.Context(), dsn)
			if err == nil {
				err = db.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
	ms, err := loadMigrations("sqlite")
	if err != nil {
		t.Fatal(err)
	}
	if got := migrationsApplied(t, mustOpen(t, dsn)); len(got) != len(ms) {
		t.Errorf("schema_migrations has %d rows, want %d", len(got), len(ms))
	}
}

// TestContextCanceled checks that a canceled context stops a call instead of being ignored.
func TestContextCanceled(t *testing.T) {
	db := mustOpen(t, tempDSN(t))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := db.FindClient(ctx, "client-1"); !errors.Is(err, context.Canceled) {
		t.Errorf("FindClient with a canceled context: %v, want context.Canceled", err)
	}
}
