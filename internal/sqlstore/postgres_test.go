package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/auth/authtest"
)

// The PostgreSQL tests need a server: they fail, not skip, without one. Each test creates its own databases on it,
// named gh_test_*, and drops them when it ends.

// postgresServer returns the URL of the PostgreSQL server the tests use, as a role that may create databases:
// $GATEHOUSE_TEST_POSTGRES, or a local server.
func postgresServer() string {
	return cmp.Or(os.Getenv("GATEHOUSE_TEST_POSTGRES"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
}

// createPostgresDB creates a database, a copy of the database template unless that is "", and drops it when the
// test ends. It returns the new database's DSN and name.
func createPostgresDB(t *testing.T, template string) (dsn, name string) {
	t.Helper()
	server := postgresServer()
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatal("GATEHOUSE_TEST_POSTGRES is not a postgres:// URL") // not shown: it may hold a password
	}
	admin, err := sql.Open("pgx", server)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name = fmt.Sprintf("gh_test_%016x", rand.Uint64())
	create := "CREATE DATABASE " + name
	if template != "" {
		create += " TEMPLATE " + template
	}
	if _, err := admin.ExecContext(t.Context(), create); err != nil {
		t.Fatalf("create a database on the PostgreSQL server that GATEHOUSE_TEST_POSTGRES names (default %s:%s): %v",
			u.Hostname(), cmp.Or(u.Port(), "5432"), err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", server)
		if err != nil {
			t.Error(err)
			return
		}
		defer admin.Close()
		if _, err := admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String(), name
}

// mustOpenPostgres opens the store on a database, and closes it when the test ends.
func mustOpenPostgres(t *testing.T, dsn string) *DB {
	t.Helper()
	db, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err) // not the DSN: it may hold a password
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPostgres(t *testing.T) {
	t.Parallel() // with TestSQLite: the two suites share nothing, and each waits mostly on its database
	// Each subtest has a database of its own, copied from one migrated once: faster than migrating each.
	template, templateName := createPostgresDB(t, "")
	db, err := Open(t.Context(), template)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := db.Close(); err != nil { // a template must have no connections when it is copied
		t.Fatal(err)
	}
	authtest.TestStore(t, func(t *testing.T) auth.Store {
		dsn, _ := createPostgresDB(t, templateName)
		return mustOpenPostgres(t, dsn)
	})
}

func TestPostgresConfig(t *testing.T) {
	t.Setenv("PGCONNECT_TIMEOUT", "")
	tests := []struct {
		dsn  string
		want time.Duration
	}{
		{"postgres://gatehouse@db.example.com/gatehouse", connectTimeout},
		{"postgresql://gatehouse@db.example.com/gatehouse?sslmode=require", connectTimeout},
		{"postgres://gatehouse@db.example.com/gatehouse?connect_timeout=2", 2 * time.Second},
		{"postgres://gatehouse@db.example.com/gatehouse?sslmode=require&connect_timeout=0", 0}, // 0: wait as long as ctx allows
	}
	for _, tt := range tests {
		cfg, err := postgresConfig(tt.dsn)
		if err != nil {
			t.Errorf("postgresConfig(%q): %v", tt.dsn, err)
			continue
		}
		if cfg.ConnectTimeout != tt.want {
			t.Errorf("postgresConfig(%q): connect timeout %v, want %v", tt.dsn, cfg.ConnectTimeout, tt.want)
		}
	}

	for _, dsn := range []string{
		"postgres://gatehouse:s3cret@db.example.com:port/gatehouse",
		"postgres://gatehouse:s3cret@db.example.com/gatehouse?connect_timeout=soon",
		"postgres://gatehouse:s3cret@db.example.com/gatehouse?sslmode=sometimes",
	} {
		db, err := Open(t.Context(), dsn)
		if err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded, want an error", dsn)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q) = %q, which shows the password", dsn, err)
		}
	}
}

// TestPostgresOpen checks the pool, and that opening a migrated database again changes nothing.
func TestPostgresOpen(t *testing.T) {
	dsn, _ := createPostgresDB(t, "")
	db := mustOpenPostgres(t, dsn)
	if got, want := db.db.Stats().MaxOpenConnections, max(8, 4*runtime.GOMAXPROCS(0)); got != want {
		t.Errorf("MaxOpenConnections = %d, want %d", got, want)
	}
	if err := db.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	before := migrationsApplied(t, db)
	if diff := gocmp.Diff(before, migrationsApplied(t, mustOpenPostgres(t, dsn))); diff != "" {
		t.Errorf("schema_migrations changed on reopening (-before +after):\n%s", diff)
	}

	// pool_max_conns sets the pool's size, and is not sent to the server (which would refuse it).
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	if got := mustOpenPostgres(t, dsn+sep+"pool_max_conns=3").db.Stats().MaxOpenConnections; got != 3 {
		t.Errorf("pool_max_conns=3: MaxOpenConnections = %d", got)
	}
	for _, bad := range []string{"0", "1001", "many"} {
		if db, err := Open(t.Context(), dsn+sep+"pool_max_conns="+bad); err == nil {
			db.Close()
			t.Errorf("pool_max_conns=%s: Open succeeded, want an error", bad)
		}
	}
}

// TestPostgresConcurrentOpen opens one new database from several goroutines at once, as instances starting together
// would: no Open fails, each migration runs once, and the schema is the one a single Open makes.
func TestPostgresConcurrentOpen(t *testing.T) {
	dsn, _ := createPostgresDB(t, "")
	const n = 8
	var (
		start = make(chan struct{})
		wg    sync.WaitGroup
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			db, err := Open(t.Context(), dsn)
			if err == nil {
				err = db.Close()
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}

	db := mustOpenPostgres(t, dsn)
	ms, err := loadMigrations(postgresDialect)
	if err != nil {
		t.Fatal(err)
	}
	applied := migrationsApplied(t, db)
	for _, m := range ms {
		if _, ok := applied[m.version]; !ok {
			t.Errorf("migration %s is not recorded", m.name)
		}
	}
	if len(applied) != len(ms) {
		t.Errorf("schema_migrations has %d rows, want %d", len(applied), len(ms))
	}
	refDSN, _ := createPostgresDB(t, "")
	if diff := gocmp.Diff(postgresSchema(t, mustOpenPostgres(t, refDSN)), postgresSchema(t, db)); diff != "" {
		t.Errorf("schema after concurrent Opens: mismatch (-one Open +concurrent Opens):\n%s", diff)
	}
}

// postgresSchema describes the tables of a database: columns, indexes and constraints, one per line.
func postgresSchema(t *testing.T, db *DB) []string {
	t.Helper()
	var schema []string
	for _, q := range []string{
		`SELECT table_name || '.' || column_name || ' ' || data_type || ' collate ' || COALESCE(collation_name, '-') ||
			' null ' || is_nullable || ' default ' || COALESCE(column_default, '-')
		FROM information_schema.columns WHERE table_schema = 'public'`,
		`SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'`,
		`SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
		FROM pg_constraint WHERE connamespace = 'public'::regnamespace`,
	} {
		rows, err := db.db.QueryContext(t.Context(), q+" ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			schema = append(schema, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return schema
}

// TestPostgresCollation checks that every TEXT column holding a key compares bytewise (COLLATE "C"), as SQLite's
// do, whatever the database's collation: lists are ordered by them, and pages compare them with < and >.
func TestPostgresCollation(t *testing.T) {
	dsn, _ := createPostgresDB(t, "")
	db := mustOpenPostgres(t, dsn)
	rows, err := db.db.QueryContext(t.Context(), `SELECT table_name, column_name, COALESCE(collation_name, '')
FROM information_schema.columns
WHERE table_schema = 'public' AND data_type = 'text'
	AND (column_name IN ('id', 'identifier', 'jti', 'subject') OR column_name LIKE '%\_id' AND column_name <> 'request_id'
		OR table_name = 'settings' AND column_name = 'name')
ORDER BY table_name, column_name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var table, column, collation string
		if err := rows.Scan(&table, &column, &collation); err != nil {
			t.Fatal(err)
		}
		n++
		if collation != "C" {
			t.Errorf(`%s.%s has collation %q, want "C"`, table, column, collation)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 19 {
		t.Errorf("%d key columns checked, want every one (19 or more)", n)
	}
}

// TestPostgresTranslate checks the mapping of real PostgreSQL errors to the auth errors.
func TestPostgresTranslate(t *testing.T) {
	dsn, _ := createPostgresDB(t, "")
	db := mustOpenPostgres(t, dsn)
	testTranslateConstraints(t, db)
	ctx := t.Context()

	// The context's deadline passes while the database works: it did not answer in time.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := db.db.ExecContext(short, `SELECT pg_sleep(5)`)
	if got := db.translate(err); !errors.Is(got, auth.ErrUnavailable) {
		t.Errorf("a query past its deadline: translate(%v) = %v, want auth.ErrUnavailable", err, got)
	}

	// The server's statement_timeout (a DSN may set it) cuts a statement short: the same, said by the server.
	timeoutConn, err := db.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer timeoutConn.Close()
	if _, err := timeoutConn.ExecContext(ctx, `SET statement_timeout = 50`); err != nil {
		t.Fatal(err)
	}
	_, err = timeoutConn.ExecContext(ctx, `SELECT pg_sleep(5)`)
	if got := db.translate(err); err == nil || !errors.Is(got, auth.ErrUnavailable) {
		t.Errorf("a statement past statement_timeout: translate(%v) = %v, want auth.ErrUnavailable", err, got)
	}

	// A canceled context is the caller giving up, not the database being down.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.FindClient(canceled, "client-1"); !errors.Is(err, context.Canceled) || errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("FindClient with a canceled context: %v, want context.Canceled and not auth.ErrUnavailable", err)
	}

	// The server ends the session (as it does when shutting down): the next statement on it fails.
	conn, err := db.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var pid int
	if err := conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := db.db.ExecContext(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	_, err = conn.ExecContext(ctx, `SELECT 1`)
	if got := db.translate(err); err == nil || !errors.Is(got, auth.ErrUnavailable) {
		t.Errorf("a statement on a terminated session: translate(%v) = %v, want auth.ErrUnavailable", err, got)
	}
}

// closedPort returns a local TCP port that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestPostgresUnavailable checks that a database that cannot be reached fails Open and every method fast, with an
// error matching auth.ErrUnavailable.
func TestPostgresUnavailable(t *testing.T) {
	dsn := fmt.Sprintf("postgres://gatehouse:s3cret@127.0.0.1:%d/gatehouse?sslmode=disable", closedPort(t))
	ctx := t.Context()
	start := time.Now()
	if db, err := Open(ctx, dsn); err == nil {
		db.Close()
		t.Fatal("Open of an unreachable database succeeded")
	} else {
		if !errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("Open of an unreachable database: %v, want auth.ErrUnavailable", err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open of an unreachable database: %q, which shows the password", err)
		}
	}
	if d := time.Since(start); d > connectTimeout {
		t.Errorf("Open of an unreachable database took %v, want less than %v", d, connectTimeout)
	}

	// A store whose database went away after Open.
	cfg, err := postgresConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := &DB{db: stdlib.OpenDB(*cfg), dialect: postgresDialect}
	defer db.Close()
	t0 := time.Now()
	api := &auth.API{ID: "api_1", Identifier: "urn:one", Version: 1}
	client := &auth.Client{ID: "client-1", Version: 1, Secrets: []auth.Secret{{ID: "sec_1", Hash: []byte{1}}}}
	grant := &auth.Grant{ID: "grt_1", ClientID: "client-1", APIID: "api_1", Version: 1}
	org := &auth.Org{ID: "org_1", Name: "one", Version: 1}
	key := &auth.APIKey{ID: "key_1", Version: 1}
	signingKey := &auth.SigningKey{ID: "kid-1", Alg: auth.ES256, State: auth.KeyNext}
	calls := map[string]func() error{
		"Ping":                     func() error { return db.Ping(ctx) },
		"CreateAPI":                func() error { return db.CreateAPI(ctx, api) },
		"UpdateAPI":                func() error { return db.UpdateAPI(ctx, api) },
		"FindAPI":                  func() error { _, err := db.FindAPI(ctx, "api_1"); return err },
		"FindAPIByIdentifier":      func() error { _, err := db.FindAPIByIdentifier(ctx, "urn:one"); return err },
		"ListAPIs":                 func() error { _, err := db.ListAPIs(ctx); return err },
		"ListAPIsPage":             func() error { _, err := db.ListAPIsPage(ctx, auth.Page{Limit: 10}); return err },
		"DeleteAPI":                func() error { return db.DeleteAPI(ctx, "api_1", 1) },
		"CreateClient":             func() error { return db.CreateClient(ctx, client) },
		"UpdateClient":             func() error { return db.UpdateClient(ctx, client) },
		"FindClient":               func() error { _, err := db.FindClient(ctx, "client-1"); return err },
		"ListClients":              func() error { _, err := db.ListClients(ctx); return err },
		"ListClientsPage":          func() error { _, err := db.ListClientsPage(ctx, auth.ClientFilter{}); return err },
		"DeleteClient":             func() error { return db.DeleteClient(ctx, "client-1", 0) },
		"AddClientSecret":          func() error { return db.AddClientSecret(ctx, "client-1", client.Secrets[0], t0) },
		"UpdateClientSecretExpiry": func() error { return db.UpdateClientSecretExpiry(ctx, "client-1", "sec_1", t0) },
		"DeleteClientSecret":       func() error { return db.DeleteClientSecret(ctx, "client-1", "sec_1") },
		"PutGrant":                 func() error { return db.PutGrant(ctx, grant) },
		"CreateGrant":              func() error { return db.CreateGrant(ctx, grant) },
		"UpdateGrant":              func() error { return db.UpdateGrant(ctx, grant) },
		"FindGrant":                func() error { _, err := db.FindGrant(ctx, "grt_1"); return err },
		"ListGrants":               func() error { _, err := db.ListGrants(ctx, "client-1"); return err },
		"ListGrantsPage":           func() error { _, err := db.ListGrantsPage(ctx, auth.GrantFilter{}); return err },
		"DeleteGrant":              func() error { return db.DeleteGrant(ctx, "grt_1", 0) },
		"CreateSigningKey":         func() error { return db.CreateSigningKey(ctx, signingKey) },
		"ListSigningKeys":          func() error { _, err := db.ListSigningKeys(ctx); return err },
		"UpdateSigningKeyState": func() error {
			return db.UpdateSigningKeyState(ctx, "kid-1", auth.KeyNext, auth.KeyCurrent, t0)
		},
		"DeleteSigningKey":        func() error { return db.DeleteSigningKey(ctx, "kid-1") },
		"CreateNextSigningKey":    func() error { return db.CreateNextSigningKey(ctx, signingKey, "kid-0") },
		"RotateSigningKey":        func() error { return db.RotateSigningKey(ctx, auth.ES256, "kid-0", "kid-1", t0) },
		"DeleteRetiredSigningKey": func() error { return db.DeleteRetiredSigningKey(ctx, "kid-0", t0) },
		"FindSetting":             func() error { _, err := db.FindSetting(ctx, "name"); return err },
		"CreateSetting":           func() error { return db.CreateSetting(ctx, "name", []byte("value")) },
		"CreateOrg":               func() error { return db.CreateOrg(ctx, org) },
		"UpdateOrg":               func() error { return db.UpdateOrg(ctx, org) },
		"FindOrg":                 func() error { _, err := db.FindOrg(ctx, "org_1"); return err },
		"ListOrgs":                func() error { _, err := db.ListOrgs(ctx, auth.Page{}); return err },
		"DeleteOrg":               func() error { return db.DeleteOrg(ctx, "org_1", 0) },
		"CreateAPIKey":            func() error { return db.CreateAPIKey(ctx, key, []byte{1}) },
		"FindAPIKey":              func() error { _, err := db.FindAPIKey(ctx, "key_1"); return err },
		"FindAPIKeyByHash":        func() error { _, _, err := db.FindAPIKeyByHash(ctx, []byte{1}); return err },
		"ListAPIKeys":             func() error { _, err := db.ListAPIKeys(ctx, auth.APIKeyFilter{}); return err },
		"UpdateAPIKey":            func() error { return db.UpdateAPIKey(ctx, key) },
		"RotateAPIKey":            func() error { return db.RotateAPIKey(ctx, key, []byte{2}, t0) },
		"DeleteAPIKey":            func() error { return db.DeleteAPIKey(ctx, "key_1", 1) },
		"TouchAPIKeys":            func() error { return db.TouchAPIKeys(ctx, map[string]time.Time{"key_1": t0}) },
		"PruneAPIKeyHashes":       func() error { _, err := db.PruneAPIKeyHashes(ctx, t0); return err },
		"AppendAuditEvents": func() error {
			return db.AppendAuditEvents(ctx, []*auth.AuditEvent{{ID: "evt_1", Time: t0}})
		},
		"ListAuditEvents":  func() error { _, err := db.ListAuditEvents(ctx, auth.AuditFilter{}); return err },
		"PruneAuditEvents": func() error { _, err := db.PruneAuditEvents(ctx, t0); return err },
		"RevokeToken":      func() error { return db.RevokeToken(ctx, auth.RevokedToken{JTI: "jti", ExpiresAt: t0}) },
		"RevokeSubject":    func() error { return db.RevokeSubject(ctx, auth.SubjectCutoff{Subject: "client-1"}) },
		"ListRevocations":  func() error { _, _, err := db.ListRevocations(ctx, t0); return err },
		"PruneRevocations": func() error { _, err := db.PruneRevocations(ctx, t0); return err },
		"migrate":          func() error { return db.migrate(ctx) },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("%s with the database unreachable: %v, want auth.ErrUnavailable", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s with the database unreachable: %q, which shows the password", name, err)
		}
	}
	if api.Version != 1 || client.Version != 1 || grant.Version != 1 || org.Version != 1 || key.Version != 1 {
		t.Errorf("failed updates changed versions: API %d, client %d, grant %d, organization %d, API key %d; want 1",
			api.Version, client.Version, grant.Version, org.Version, key.Version)
	}
}

// TestPostgresRetry runs two transactions that read a counter, both before either writes it, then write it plus
// one: one of them cannot serialize, and inTx must run it again, so that the counter ends at 2.
func TestPostgresRetry(t *testing.T) {
	dsn, _ := createPostgresDB(t, "")
	db := mustOpenPostgres(t, dsn)
	ctx := t.Context()
	for _, q := range []string{`CREATE TABLE counter (n BIGINT NOT NULL)`, `INSERT INTO counter (n) VALUES (0)`} {
		if _, err := db.db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	const n = 2
	var (
		read     sync.WaitGroup // both have read, on their first attempt
		wg       sync.WaitGroup
		attempts [n]int
		errs     [n]error
	)
	read.Add(n)
	for i := range n {
		wg.Go(func() {
			errs[i] = db.inTx(ctx, func(tx *sql.Tx) error {
				attempts[i]++
				var v int64
				if err := tx.QueryRowContext(ctx, `SELECT n FROM counter`).Scan(&v); err != nil {
					return err
				}
				if attempts[i] == 1 {
					read.Done()
					read.Wait()
				}
				_, err := tx.ExecContext(ctx, `UPDATE counter SET n = $1`, v+1)
				return err
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("transaction %d: %v", i, err)
		}
	}
	var v int64
	if err := db.db.QueryRowContext(ctx, `SELECT n FROM counter`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != n {
		t.Errorf("counter = %d after %d increments, want %d", v, n, n)
	}
	if attempts[0]+attempts[1] <= n {
		t.Errorf("attempts: %v, want a transaction run again", attempts)
	}
}

// TestPostgresConcurrentReadWrite runs readers and writers at once, on two handles of one database as two instances
// would, and wants every call to succeed: transactions that fail to serialize are run again.
func TestPostgresConcurrentReadWrite(t *testing.T) {
	dsn, _ := createPostgresDB(t, "")
	testConcurrentReadWrite(t, mustOpenPostgres(t, dsn), mustOpenPostgres(t, dsn))
}

// TestListOrder checks that lists, and pages of them, are in the bytewise order of their keys in both dialects,
// with keys that a language's collation orders otherwise (case, punctuation, accents). Keys are ASCII or UTF-8,
// whose bytewise order is that of code points.
func TestListOrder(t *testing.T) {
	keys := []string{"b", "B", "-x", "a_1", "a-1", "A1", "ä", "a 1", "a1", "Z", "_"}
	want := slices.Sorted(slices.Values(keys))
	for _, dialect := range []struct {
		name string
		open func(t *testing.T) *DB
	}{
		{"sqlite", func(t *testing.T) *DB { return mustOpen(t, tempDSN(t)) }},
		{"postgres", func(t *testing.T) *DB { dsn, _ := createPostgresDB(t, ""); return mustOpenPostgres(t, dsn) }},
	} {
		t.Run(dialect.name, func(t *testing.T) {
			db := dialect.open(t)
			ctx := t.Context()
			t0 := time.Now().UTC().Truncate(time.Millisecond)
			var events []*auth.AuditEvent
			for _, k := range keys {
				if err := db.CreateOrg(ctx, &auth.Org{ID: "org_" + k, Name: k, Version: 1, CreatedAt: t0, UpdatedAt: t0}); err != nil {
					t.Fatal(err)
				}
				if err := db.CreateAPI(ctx, &auth.API{ID: "api_" + k, Identifier: "urn:" + k, Version: 1, CreatedAt: t0,
					UpdatedAt: t0}); err != nil {
					t.Fatal(err)
				}
				events = append(events, &auth.AuditEvent{ID: "evt_" + k, Time: t0})
			}
			if err := db.AppendAuditEvents(ctx, events); err != nil {
				t.Fatal(err)
			}

			var orgs []string
			for p := (auth.Page{Limit: 3}); ; {
				page, err := db.ListOrgs(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				for _, o := range page {
					orgs = append(orgs, strings.TrimPrefix(o.ID, "org_"))
				}
				p.After = page[len(page)-1].ID
			}
			if diff := gocmp.Diff(want, orgs); diff != "" {
				t.Errorf("ListOrgs, page by page: mismatch (-want +got):\n%s", diff)
			}

			apis, err := db.ListAPIs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var identifiers []string
			for _, a := range apis {
				identifiers = append(identifiers, strings.TrimPrefix(a.Identifier, "urn:"))
			}
			if diff := gocmp.Diff(want, identifiers); diff != "" {
				t.Errorf("ListAPIs by identifier: mismatch (-want +got):\n%s", diff)
			}

			var ids []string
			for f := (auth.AuditFilter{Limit: 3}); ; {
				page, err := db.ListAuditEvents(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				for _, e := range page {
					ids = append(ids, strings.TrimPrefix(e.ID, "evt_"))
				}
				f.Before = page[len(page)-1].ID
			}
			slices.Reverse(ids)
			if diff := gocmp.Diff(want, ids); diff != "" {
				t.Errorf("ListAuditEvents, page by page, reversed: mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
