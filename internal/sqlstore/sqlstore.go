// Package sqlstore implements auth.Store on database/sql. SQLite (pure Go, modernc.org/sqlite) is the default,
// embedded backend.
//
// The schema lives in embedded migrations, one directory per SQL dialect, applied in order by Open. The queries
// (DML) are written once for every dialect: $1, $2, … placeholders numbered in order of first appearance,
// INSERT … ON CONFLICT, no dialect-only functions, times as BIGINT unix milliseconds (NULL for an unset optional
// time), lists as JSON in TEXT columns.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// DB is an auth.Store on a SQL database. It is safe for concurrent use.
type DB struct {
	db *sql.DB
}

var _ auth.Store = (*DB)(nil)

// Open connects to the database that dsn names and brings its schema up to date. The supported form is
// sqlite:PATH, e.g. sqlite:gatehouse.db or sqlite:/var/lib/gatehouse/gatehouse.db; the file is created if
// it does not exist.
func Open(ctx context.Context, dsn string) (*DB, error) {
	const forms = "use sqlite:PATH (e.g. sqlite:gatehouse.db or sqlite:/var/lib/gatehouse/gatehouse.db)"
	scheme, rest, ok := strings.Cut(dsn, ":")
	switch {
	case ok && scheme == "sqlite":
		return openSQLite(ctx, rest)
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

	db := &DB{db: sdb}
	err = enableWAL(ctx, sdb)
	if err == nil {
		err = db.migrate(ctx, "sqlite")
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

// Ping reports whether the database is reachable.
func (db *DB) Ping(ctx context.Context) error { return db.db.PingContext(ctx) }

// Close closes the database.
func (db *DB) Close() error { return db.db.Close() }

// translate turns a driver error into auth.ErrConflict (a unique or primary key is taken) or auth.ErrNotFound (a
// row refers to a parent that does not exist), by its result code; other errors are returned as they are. The
// driver's message is kept for the log, but not its type, so that no caller comes to depend on the driver.
func translate(err error) error {
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

// inTx runs f in a write transaction and commits if f returns nil.
func (db *DB) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// execer is a *sql.DB or *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// exec runs a statement and translates its error.
func exec(ctx context.Context, e execer, query string, args ...any) error {
	_, err := e.ExecContext(ctx, query, args...)
	return translate(err)
}

// execOne runs a statement that must affect a row, and returns auth.ErrNotFound if it affected none.
func execOne(ctx context.Context, e execer, query string, args ...any) error {
	res, err := e.ExecContext(ctx, query, args...)
	if err != nil {
		return translate(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return auth.ErrNotFound
	}
	return nil
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
