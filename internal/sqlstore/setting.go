package sqlstore

import (
	"context"
	"fmt"
)

// FindSetting returns a named value, or auth.ErrNotFound.
func (db *DB) FindSetting(ctx context.Context, name string) ([]byte, error) {
	var value []byte
	err := db.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&value)
	if err = db.rowErr(err); err != nil {
		return nil, fmt.Errorf("find setting %q: %w", name, err)
	}
	return value, nil
}

// CreateSetting stores a named value once. It returns auth.ErrConflict if the name is taken.
func (db *DB) CreateSetting(ctx context.Context, name string, value []byte) error {
	if err := db.exec(ctx, db.db, `INSERT INTO settings (name, value) VALUES ($1, $2)`, name, blob(value)); err != nil {
		return fmt.Errorf("create setting %q: %w", name, err)
	}
	return nil
}
