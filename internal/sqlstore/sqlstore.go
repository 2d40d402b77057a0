// Package sqlstore implements auth.Store on database/sql, for two SQL dialects: SQLite (pure Go,
// modernc.org/sqlite), the default, embedded backend, and PostgreSQL (github.com/jackc/pgx/v5), for a cluster of
// instances sharing one database.
//
// The schema lives in embedded migrations, one directory per SQL dialect, applied in order by Open. The queries
// (DML) are written once for every dialect: $1, $2, … placeholders numbered in order of first appearance,
// INSERT … ON CONFLICT, no dialect-only functions, times as BIGINT unix milliseconds (NULL for an unset optional
// time), lists as JSON in TEXT columns. What the dialects do differently is in Open, migrate, inTx and translate.
package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// The dialects, named as their directories of migrations are.
const (
	sqliteDialect   = "sqlite"
	postgresDialect = "postgres"
)

// DB is an auth.Store on a SQL database. It is safe for concurrent use.
type DB struct {
	db      *sql.DB
	dialect string // sqliteDialect or postgresDialect
}

var _ auth.Store = (*DB)(nil)

// Open connects to the database that dsn names and brings its schema up to date. The supported forms are:
//
//   - sqlite:PATH, e.g. sqlite:gatehouse.db or sqlite:/var/lib/gatehouse/gatehouse.db; the file is created if it
//     does not exist.
//   - postgres://USER:PASSWORD@HOST:PORT/DATABASE?PARAMS or postgresql://…, a PostgreSQL connection URI as libpq
//     reads it (sslmode, connect_timeout, …; unset parts come from the PG* environment variables), e.g.
//     postgres://gatehouse@db.internal/gatehouse?sslmode=verify-full. The database must exist, and the role may
//     need to own it: Open creates the tables.
//
// On PostgreSQL, Open keeps a pool of up to max(8, 4×GOMAXPROCS) connections (pool_max_conns=N in the DSN's query
// sets another number, 1 to 1000), as many of them idle, and replaces
// each after 30 minutes, or after 5 minutes idle. A connection attempt gives up after 5 seconds unless the DSN sets
// connect_timeout, so that a database that is down fails calls fast instead of holding them. Open pings the
// database before it migrates; every method returns an error matching auth.ErrUnavailable when the database cannot
// be reached or does not answer in time. Errors never show a PostgreSQL DSN, which may hold a password.
func Open(ctx context.Context, dsn string) (*DB, error) {
	const forms = "use sqlite:PATH (e.g. sqlite:gatehouse.db or sqlite:/var/lib/gatehouse/gatehouse.db) or " +
		"postgres://USER:PASSWORD@HOST:PORT/DATABASE (e.g. postgres://gatehouse@db.internal/gatehouse)"
	scheme, rest, ok := strings.Cut(dsn, ":")
	switch {
	case ok && scheme == "sqlite":
		return openSQLite(ctx, rest)
	case ok && (scheme == "postgres" || scheme == "postgresql") && strings.HasPrefix(rest, "//"):
		return openPostgres(ctx, dsn)
	case ok && (scheme == "postgres" || scheme == "postgresql"):
		return nil, errors.New("postgres: the DSN is not a URL: " + forms)
	case !ok:
		return nil, errors.New("the database names no scheme: " + forms)
	}
	// Name only the scheme: the rest of a DSN may hold a password.
	return nil, fmt.Errorf("database scheme %q is not supported: %s", scheme, forms)
}

// busyTimeout is how long a SQLite write waits for another to finish before it fails with SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// sqliteParams configures every SQLite connection (modernc.org/sqlite DSN parameters):
//   - write transactions begin IMMEDIATE, taking the write lock up front, so that concurrent writers wait for each
//     other (busy_timeout) instead of failing with SQLITE_BUSY when a read would be upgraded to a write;
//   - synchronous FULL, so that an acknowledged write survives a power cut, not just a crash of the process;
//   - foreign keys on, for the ON DELETE CASCADEs.
//
// busy_timeout is applied first whatever its position in the list. WAL, the journal mode, is a property of the
// database file: enableWAL sets it once.
var sqliteParams = fmt.Sprintf("_txlock=immediate&_pragma=busy_timeout(%d)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)",
	busyTimeout.Milliseconds())

func openSQLite(ctx context.Context, path string) (*DB, error) {
	switch path {
	case "":
		return nil, errors.New("sqlite: the database path is empty: use sqlite:PATH (e.g. sqlite:gatehouse.db)")
	case ":memory:":
		// Every pooled connection would open its own, empty database.
		return nil, errors.New("sqlite: in-memory databases are not supported: use a file (e.g. sqlite:gatehouse.db)")
	}
	// A file: URI keeps a '?' or '#' in the path from being read as the start of the parameters.
	escape := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	sdb, err := sql.Open("sqlite", "file:"+escape.Replace(path)+"?"+sqliteParams)
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	// WAL lets readers run in parallel with each other and with the one writer, so keep a connection per CPU (at
	// least a few) open and idle rather than reconnecting, which re-runs the pragmas.
	n := max(4, runtime.GOMAXPROCS(0))
	sdb.SetMaxOpenConns(n)
	sdb.SetMaxIdleConns(n)

	db := &DB{db: sdb, dialect: sqliteDialect}
	err = enableWAL(ctx, sdb)
	if err == nil {
		err = db.migrate(ctx)
	}
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	return db, nil
}

// enableWAL puts the database in WAL mode, so that readers never wait for the writer, nor it for them. The mode is
// kept in the file, and every connection opened afterwards uses it. Switching needs the file to itself, and SQLite
// fails at once instead of waiting when it cannot have it (as when several processes open a new file together), so
// enableWAL tries again for as long as busy_timeout would wait.
func enableWAL(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		var e *sqlite.Error
		switch {
		case err == nil && mode != "wal":
			return fmt.Errorf("enable WAL: the journal mode is still %q", mode)
		case err == nil:
			return nil
		case !errors.As(err, &e) || e.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline):
			return fmt.Errorf("enable WAL: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// connectTimeout is how long a PostgreSQL connection attempt may take when the DSN does not say.
const connectTimeout = 5 * time.Second

// postgresConfig parses a PostgreSQL DSN and sets the defaults that Open documents.
func postgresConfig(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the DSN, with the password masked only as well as it can find it: give none.
		return nil, errors.New("postgres: the DSN cannot be parsed (it is not shown: it may hold a password): " +
			"use postgres://USER:PASSWORD@HOST:PORT/DATABASE?PARAMS, with reserved characters percent-encoded")
	}
	_, query, _ := strings.Cut(dsn, "?")
	params, _ := url.ParseQuery(query) // pgx has parsed it already
	if cfg.ConnectTimeout == 0 && !params.Has("connect_timeout") {
		cfg.ConnectTimeout = connectTimeout
	}
	return cfg, nil
}

// maxPoolSize bounds pool_max_conns.
const maxPoolSize = 1000

// takePoolSize removes pool_max_conns (the name pgxpool gives it) from a DSN's query and returns its value, or 0
// when it is absent. pgx would send an unknown parameter to the server, which refuses it.
func takePoolSize(dsn string) (string, int, error) {
	base, query, ok := strings.Cut(dsn, "?")
	if !ok {
		return dsn, 0, nil
	}
	params, err := url.ParseQuery(query)
	if err != nil || !params.Has("pool_max_conns") {
		return dsn, 0, nil // a query pgx will judge
	}
	n, err := strconv.Atoi(params.Get("pool_max_conns"))
	if err != nil || n < 1 || n > maxPoolSize {
		return "", 0, fmt.Errorf("postgres: pool_max_conns must be a number from 1 to %d", maxPoolSize)
	}
	params.Del("pool_max_conns")
	if len(params) == 0 {
		return base, n, nil
	}
	return base + "?" + params.Encode(), n, nil
}

func openPostgres(ctx context.Context, dsn string) (*DB, error) {
	dsn, n, err := takePoolSize(dsn)
	if err != nil {
		return nil, err
	}
	cfg, err := postgresConfig(dsn)
	if err != nil {
		return nil, err
	}
	pdb := stdlib.OpenDB(*cfg)
	// Connections mostly wait on the network, not on a CPU: keep more than a CPU's worth, open and idle, so that a
	// burst reuses them, and renew them now and then, so that they move to a replica or a restarted proxy.
	if n == 0 {
		n = max(8, 4*runtime.GOMAXPROCS(0))
	}
	pdb.SetMaxOpenConns(n)
	pdb.SetMaxIdleConns(n)
	pdb.SetConnMaxLifetime(30 * time.Minute)
	pdb.SetConnMaxIdleTime(5 * time.Minute)

	db := &DB{db: pdb, dialect: postgresDialect}
	err = db.Ping(ctx)
	if err == nil {
		err = db.migrate(ctx)
	}
	if err != nil {
		pdb.Close()
		// The host and database, never the DSN: it may hold a password.
		return nil, fmt.Errorf("postgres %s:%d/%s: %w", cfg.Host, cfg.Port, cfg.Database, err)
	}
	return db, nil
}

// Ping reports whether the database is reachable. On PostgreSQL its error matches auth.ErrUnavailable, unless
// ctx was canceled.
func (db *DB) Ping(ctx context.Context) error {
	err := db.db.PingContext(ctx)
	if err != nil && db.dialect == postgresDialect {
		// A failed ping is the store being unavailable, whatever the cause.
		err = db.translate(err)
		if !errors.Is(err, auth.ErrUnavailable) && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%w: %v", auth.ErrUnavailable, err)
		}
	}
	return err
}

// Close closes the database.
func (db *DB) Close() error { return db.db.Close() }

// translate turns a driver error into one of auth's, by its code: auth.ErrConflict (a unique or primary key is
// taken), auth.ErrNotFound (a row refers to a parent that does not exist) and, on PostgreSQL, auth.ErrUnavailable
// (the database cannot be reached, or did not answer in time). Other errors are returned as they are, nil
// included. The driver's message is kept for the log, but not its type, so that no caller comes to depend on the
// driver. Every error of a statement goes through translate once; translating twice changes nothing.
func (db *DB) translate(err error) error {
	if err == nil {
		return nil
	}
	if db.dialect == postgresDialect {
		return translatePostgres(err)
	}
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return err
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("%w: %v", auth.ErrConflict, err)
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("%w: %v", auth.ErrNotFound, err)
	}
	return err
}

// PostgreSQL error codes (SQLSTATE) that translate and inTx act on.
const (
	pgUniqueViolation      = "23505"
	pgForeignKeyViolation  = "23503"
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
	pgAdminShutdown        = "57P01"
	pgCrashShutdown        = "57P02"
	pgCannotConnectNow     = "57P03"
	pgQueryCanceled        = "57014" // statement_timeout, or a cancel request: the database did not answer in time
	pgConnectionException  = "08"    // the class: 08000, 08003, 08006, …
)

func translatePostgres(err error) error {
	var e *pgconn.PgError
	isPg := errors.As(err, &e)
	switch {
	case unreachable(err):
		return fmt.Errorf("%w: %v", auth.ErrUnavailable, err)
	case isPg && e.Code == pgUniqueViolation:
		return fmt.Errorf("%w: %v", auth.ErrConflict, err)
	case isPg && e.Code == pgForeignKeyViolation:
		return fmt.Errorf("%w: %v", auth.ErrNotFound, err)
	}
	return err
}

// unreachable reports whether err, from the PostgreSQL driver or database/sql, says that the database cannot be
// reached or did not answer in time: no connection could be made, the connection broke, the server is shutting
// down or starting, or the context's deadline passed first. A canceled context is not: the caller gave up.
func unreachable(err error) bool {
	var (
		pgErr      *pgconn.PgError
		connectErr *pgconn.ConnectError
		netErr     *net.OpError
	)
	if errors.As(err, &connectErr) {
		return true // whatever the cause, even one the server gave (too many connections, a bad password)
	}
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgAdminShutdown, pgCrashShutdown, pgCannotConnectNow, pgQueryCanceled:
			return true
		}
		return strings.HasPrefix(pgErr.Code, pgConnectionException)
	}
	return errors.As(err, &netErr) || // refused, reset, unreachable, a DNS failure, …
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || // the server closed the connection
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, pgconn.ErrConnClosed) || // a connection that broke before or while a statement ran ("conn closed")
		errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)
}

// txAttempts is how many times inTx runs a PostgreSQL transaction that fails to serialize, or deadlocks, before it
// gives up: enough for racers queued on one row, each losing to the one before it.
const txAttempts = 10

// inTx runs f in a write transaction and commits if f returns nil.
//
// On PostgreSQL the transaction is SERIALIZABLE: it commits only if it could have run alone, so that every
// check-then-write in f (a count before a delete, a version before an update) holds at the commit, with no locks
// taken by hand. When it cannot serialize (or deadlocks), inTx rolls back and runs f again, in a new transaction,
// after a short random pause. So f must do nothing but its statements: no change to anything outside tx (fields of
// its arguments included) that a second run would repeat. SQLite transactions begin IMMEDIATE, holding the
// database's write lock throughout, and run once.
func (db *DB) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	if db.dialect != postgresDialect {
		return db.runTx(ctx, db.db, nil, f)
	}
	opts := &sql.TxOptions{Isolation: sql.LevelSerializable}
	for attempt := 1; ; attempt++ {
		err := db.runTx(ctx, db.db, opts, f)
		var e *pgconn.PgError
		if attempt == txAttempts || !errors.As(err, &e) || (e.Code != pgSerializationFailure && e.Code != pgDeadlockDetected) {
			return err
		}
		// 1–2 ms, then doubling to at most 64–128 ms, at random within each, so that the racers spread out.
		pause := time.Millisecond << min(attempt-1, 6)
		select {
		case <-ctx.Done():
			return db.translate(fmt.Errorf("%w (retrying after: %v)", ctx.Err(), err))
		case <-time.After(pause + rand.N(pause)):
		}
	}
}

// beginner is a *sql.DB or *sql.Conn.
type beginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// runTx runs f in a transaction begun on b, and commits if f returns nil. Its error is translated.
func (db *DB) runTx(ctx context.Context, b beginner, opts *sql.TxOptions, f func(tx *sql.Tx) error) error {
	tx, err := b.BeginTx(ctx, opts)
	if err != nil {
		return db.translate(err)
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return db.translate(err)
	}
	err = tx.Commit()
	if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
		// ctx ended after f, and database/sql rolled the transaction back: say why.
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return db.translate(err)
}

// execer is a *sql.DB or *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// exec runs a statement and translates its error.
func (db *DB) exec(ctx context.Context, e execer, query string, args ...any) error {
	_, err := e.ExecContext(ctx, query, args...)
	return db.translate(err)
}

// execOne runs a statement that must affect a row, and returns auth.ErrNotFound if it affected none.
func (db *DB) execOne(ctx context.Context, e execer, query string, args ...any) error {
	n, err := db.execCount(ctx, e, query, args...)
	if err != nil {
		return err
	}
	if n == 0 {
		return auth.ErrNotFound
	}
	return nil
}

// execCount runs a statement and returns how many rows it affected.
func (db *DB) execCount(ctx context.Context, e execer, query string, args ...any) (int64, error) {
	res, err := e.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, db.translate(err)
	}
	n, err := res.RowsAffected()
	return n, db.translate(err)
}

// rowErr translates the error of a query for one row, sql.ErrNoRows becoming auth.ErrNotFound.
func (db *DB) rowErr(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return auth.ErrNotFound
	}
	return db.translate(err)
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// Times are stored as unix milliseconds; an optional time is NULL when zero.

func millis(t time.Time) int64 { return t.UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func nullMillis(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromNullMillis(ms sql.NullInt64) time.Time {
	if !ms.Valid {
		return time.Time{}
	}
	return fromMillis(ms.Int64)
}

// blob returns b, or an empty slice for nil, which the driver would store as NULL.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// jsonList encodes a list for a TEXT column; nil becomes [], not null.
func jsonList[T any](v []T) string {
	if v == nil {
		v = []T{}
	}
	b, _ := json.Marshal(v) // cannot fail: strings and structs of strings
	return string(b)
}
