package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// CreateSigningKey stores a new key. It returns auth.ErrConflict if the ID is taken, or if k.State is
// auth.KeyCurrent and the algorithm has a current key already (a unique index allows one).
func (db *DB) CreateSigningKey(ctx context.Context, k *auth.SigningKey) error {
	err := db.exec(ctx, db.db, `INSERT INTO signing_keys (id, alg, state, public_jwk, private, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.ID, string(k.Alg), string(k.State), blob(k.PublicJWK), blob(k.Private), millis(k.CreatedAt), millis(k.UpdatedAt))
	if err != nil {
		return fmt.Errorf("create signing key %q: %w", k.ID, err)
	}
	return nil
}

// ListSigningKeys returns every key ordered by CreatedAt, then ID.
func (db *DB) ListSigningKeys(ctx context.Context) ([]*auth.SigningKey, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT id, alg, state, public_jwk, private, created_at, updated_at
FROM signing_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", db.translate(err))
	}
	defer rows.Close()
	keys := []*auth.SigningKey{}
	for rows.Next() {
		var (
			k                auth.SigningKey
			created, updated int64
		)
		if err := rows.Scan(&k.ID, &k.Alg, &k.State, &k.PublicJWK, &k.Private, &created, &updated); err != nil {
			return nil, fmt.Errorf("list signing keys: %w", db.translate(err))
		}
		k.CreatedAt = fromMillis(created)
		k.UpdatedAt = fromMillis(updated)
		keys = append(keys, &k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list signing keys: %w", db.translate(err))
	}
	return keys, nil
}

// UpdateSigningKeyState moves a key from state from to state to, setting UpdatedAt to at, as one compare-and-swap.
// It returns auth.ErrNotFound if there is no such key, and auth.ErrConflict if its state is not from, or if to is
// auth.KeyCurrent and the algorithm has a current key already.
func (db *DB) UpdateSigningKeyState(ctx context.Context, kid string, from, to auth.KeyState, at time.Time) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		// The unique index on current keys turns a second current key into auth.ErrConflict.
		err := db.execOne(ctx, tx, `UPDATE signing_keys SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4`,
			string(to), millis(at), kid, string(from))
		if !errors.Is(err, auth.ErrNotFound) {
			return err
		}
		// No row had both the ID and the state: tell a missing key from one in another state.
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM signing_keys WHERE id = $1`, kid).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return auth.ErrNotFound
		}
		return fmt.Errorf("%w: the key is not %s", auth.ErrConflict, from)
	})
	if err != nil {
		return fmt.Errorf("move signing key %q from %s to %s: %w", kid, from, to, err)
	}
	return nil
}

// DeleteSigningKey removes a key. It returns auth.ErrNotFound if there is none.
func (db *DB) DeleteSigningKey(ctx context.Context, kid string) error {
	if err := db.execOne(ctx, db.db, `DELETE FROM signing_keys WHERE id = $1`, kid); err != nil {
		return fmt.Errorf("delete signing key %q: %w", kid, err)
	}
	return nil
}
