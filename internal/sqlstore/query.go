package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// filter builds the WHERE and LIMIT clauses of a list query whose conditions depend on the caller's filter,
// numbering the placeholders in order.
type filter struct {
	conds []string
	args  []any
}

// arg adds a value and returns its placeholder.
func (f *filter) arg(v any) string {
	f.args = append(f.args, v)
	return "$" + strconv.Itoa(len(f.args))
}

// where adds a condition; a %s in cond is replaced by the placeholder of v.
func (f *filter) where(cond string, v any) {
	f.conds = append(f.conds, fmt.Sprintf(cond, f.arg(v)))
}

// clause returns the WHERE clause, or "" for no conditions.
func (f *filter) clause() string {
	if len(f.conds) == 0 {
		return ""
	}
	return "WHERE " + strings.Join(f.conds, " AND ")
}

// limit returns a LIMIT clause for n > 0, or "" for all rows.
func (f *filter) limit(n int) string {
	if n <= 0 {
		return ""
	}
	return "LIMIT " + f.arg(n)
}

// page adds the conditions of a page of a list ordered by key and returns the ORDER BY and LIMIT clauses: the rows
// after p.After, walked through an index on key rather than skipped with OFFSET.
func (f *filter) page(key string, p auth.Page) (orderLimit string) {
	if p.After != "" {
		f.where(key+" > %s", p.After)
	}
	return "ORDER BY " + key + " " + f.limit(p.Limit)
}

// queryList runs a query and scans each row with scan. The list is empty, never nil, when there are no rows.
func queryList[T any](ctx context.Context, db *DB, scan func(scanner) (*T, error), query string,
	args ...any) ([]*T, error) {
	rows, err := db.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, db.translate(err)
	}
	defer rows.Close()
	list := []*T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, db.translate(err)
		}
		list = append(list, v)
	}
	return list, db.translate(rows.Err())
}

// updateVersioned runs update, an UPDATE (or DELETE) of the row of table with the given id that matches only while
// the row has the version the caller read, as one compare-and-swap. If it changes no row, it tells a missing row
// (auth.ErrNotFound) from a changed one (auth.ErrStale). Run it in a transaction, so that the two answer about the
// same row.
func (db *DB) updateVersioned(ctx context.Context, tx *sql.Tx, table, id, update string, args ...any) error {
	n, err := db.execCount(ctx, tx, update, args...)
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	var found int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE id = $1`, id).Scan(&found); err != nil {
		return db.translate(err)
	}
	if found == 0 {
		return auth.ErrNotFound
	}
	return auth.ErrStale
}

// deleteVersioned deletes the row of table with the given id: any version if version is 0, else only while the
// stored version is version, as one compare-and-delete in a transaction. It returns auth.ErrNotFound if there is no
// such row, and auth.ErrStale if its version differs; then nothing is deleted. Rows that refer to it go by their
// foreign keys' ON DELETE CASCADE.
func (db *DB) deleteVersioned(ctx context.Context, table, id string, version int64) error {
	if version == 0 {
		return db.execOne(ctx, db.db, `DELETE FROM `+table+` WHERE id = $1`, id)
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		return db.updateVersioned(ctx, tx, table, id, `DELETE FROM `+table+` WHERE id = $1 AND version = $2`, id, version)
	})
}

// nullString returns s, or NULL for "".
func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }
