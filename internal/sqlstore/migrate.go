package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// migrationFiles holds one directory of numbered migrations per dialect: migrations/DIALECT/NNNN_name.sql.
//
//go:embed migrations/*/*.sql
var migrationFiles embed.FS

// migration is one schema change, applied once and recorded in schema_migrations.
type migration struct {
	version int64
	name    string // the file name, for errors
	sql     string
}

// loadMigrations returns the dialect's migrations in version order.
func loadMigrations(dialect string) ([]migration, error) {
	dir := "migrations/" + dialect
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: the name must start with a positive version number, e.g. 0001_init.sql", e.Name())
		}
		b, err := fs.ReadFile(migrationFiles, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s have the same version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

// migrationLock is the key of the PostgreSQL advisory lock that migrate holds: "gatehous" in ASCII. The lock is
// the database's (a cluster's databases each have their own), and an application sharing the database would have to
// pick the same key to collide.
const migrationLock int64 = 0x67617465686f7573

// migrate applies the dialect's migrations that the database lacks, in order, each in its own transaction. It is a
// no-op on an up-to-date database, and safe when several processes open the same database at once.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := loadMigrations(db.dialect)
	if err != nil {
		return err
	}
	return db.applyMissing(ctx, ms)
}

// applyMissing applies each of ms (in version order) that schema_migrations does not record, whatever the versions
// recorded around it: a migration merged after a higher-numbered one had already been applied (0003 arriving on a
// database at 0004) is applied then, after it. So a migration must not depend on one numbered after it. A database
// that records a version ms lacks was migrated by another build, and is refused.
//
// Processes that migrate at once take turns. On PostgreSQL, applyMissing does all its work on one connection that
// holds an advisory lock (a session's), from creating schema_migrations (which concurrent CREATE TABLE IF NOT
// EXISTS would race on) to the last migration. SQLite has no such lock, nor needs one: each migration's transaction
// begins IMMEDIATE, taking the database's write lock, and apply checks again in it that no other process applied
// the migration first.
func (db *DB) applyMissing(ctx context.Context, ms []migration) error {
	conn, err := db.db.Conn(ctx)
	if err != nil {
		return db.translate(err)
	}
	defer conn.Close()
	if db.dialect == postgresDialect {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("lock the migrations: %w", db.translate(err))
		}
		defer unlockMigrations(ctx, conn)
	}

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    BIGINT PRIMARY KEY,
	applied_at BIGINT NOT NULL
)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", db.translate(err))
	}
	applied, err := appliedVersions(ctx, conn)
	if err != nil {
		return fmt.Errorf("read schema version: %w", db.translate(err))
	}
	known := make(map[int64]bool, len(ms))
	for _, m := range ms {
		known[m.version] = true
	}
	newest := ms[len(ms)-1].version
	for _, v := range applied {
		switch {
		case v > newest:
			return fmt.Errorf("the database schema is at version %d, newer than this build of gatehouse knows (%d): run a newer gatehouse", v, newest)
		case !known[v]:
			return fmt.Errorf("the database schema has migration %d, which this build of gatehouse lacks: run the build that applied it, or a newer one", v)
		}
	}
	for _, m := range ms {
		if slices.Contains(applied, m.version) {
			continue
		}
		// A plain transaction, not inTx's retried one: the lock (or SQLite's write lock) keeps other migrators out.
		if err := db.runTx(ctx, conn, nil, func(tx *sql.Tx) error { return apply(ctx, tx, m) }); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}

// unlockMigrations releases migrate's advisory lock, even once ctx is done. If it cannot, it closes the connection
// instead of returning it to the pool, which ends the session and so releases the lock.
func unlockMigrations(ctx context.Context, conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, migrationLock); err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn }) // database/sql closes a connection that returns it
	}
}

// appliedVersions returns the versions schema_migrations records, in increasing order.
func appliedVersions(ctx context.Context, q interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}) ([]int64, error) {
	rows, err := q.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var vs []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, rows.Err()
}

// apply runs m in tx unless another process applied it first.
func apply(ctx context.Context, tx *sql.Tx, m migration) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
		m.version, millis(time.Now()))
	return err
}
