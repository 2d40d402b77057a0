package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// CreateNextSigningKey stores k, a next key, if currentKID is the current key of k.Alg and the algorithm has no next
// key; otherwise it returns auth.ErrConflict.
func (db *DB) CreateNextSigningKey(ctx context.Context, k *auth.SigningKey, currentKID string) error {
	if k.State != auth.KeyNext {
		return fmt.Errorf("create next signing key %q: state is %s, not next", k.ID, k.State)
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		// Writing the current key's row (to what it holds) checks that it is still current and, in databases with
		// row locks, makes a concurrent rotation of the same algorithm wait for this transaction, so that it then
		// sees the next key inserted here. SQLite transactions are serialized anyway (BEGIN IMMEDIATE).
		err := db.execOne(ctx, tx, `UPDATE signing_keys SET updated_at = updated_at WHERE id = $1 AND alg = $2 AND state = $3`,
			currentKID, string(k.Alg), string(auth.KeyCurrent))
		if errors.Is(err, auth.ErrNotFound) {
			return fmt.Errorf("%w: %q is not the current %s key", auth.ErrConflict, currentKID, k.Alg)
		}
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM signing_keys WHERE alg = $1 AND state = $2`,
			string(k.Alg), string(auth.KeyNext)).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: %s has a next key already", auth.ErrConflict, k.Alg)
		}
		return db.exec(ctx, tx, `INSERT INTO signing_keys (id, alg, state, public_jwk, private, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			k.ID, string(k.Alg), string(k.State), blob(k.PublicJWK), blob(k.Private), millis(k.CreatedAt), millis(k.UpdatedAt))
	})
	if err != nil {
		return fmt.Errorf("create next signing key %q: %w", k.ID, err)
	}
	return nil
}

// RotateSigningKey retires currentKID and makes nextKID current in one transaction, or returns auth.ErrConflict
// and changes nothing unless currentKID is alg's current key and nextKID one of its next keys.
func (db *DB) RotateSigningKey(ctx context.Context, alg auth.Algorithm, currentKID, nextKID string, at time.Time) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		// Retire first: the unique index allows one current key per algorithm.
		err := db.execOne(ctx, tx, `UPDATE signing_keys SET state = $1, updated_at = $2 WHERE id = $3 AND alg = $4 AND state = $5`,
			string(auth.KeyRetired), millis(at), currentKID, string(alg), string(auth.KeyCurrent))
		if errors.Is(err, auth.ErrNotFound) {
			return fmt.Errorf("%w: %q is not the current %s key", auth.ErrConflict, currentKID, alg)
		}
		if err != nil {
			return err
		}
		err = db.execOne(ctx, tx, `UPDATE signing_keys SET state = $1, updated_at = $2 WHERE id = $3 AND alg = $4 AND state = $5`,
			string(auth.KeyCurrent), millis(at), nextKID, string(alg), string(auth.KeyNext))
		if errors.Is(err, auth.ErrNotFound) {
			return fmt.Errorf("%w: %q is not a next %s key", auth.ErrConflict, nextKID, alg)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("rotate %s signing key %q to %q: %w", alg, currentKID, nextKID, err)
	}
	return nil
}

// DeleteRetiredSigningKey removes kid if it is retired and was retired at or before retiredBy. It returns
// auth.ErrNotFound if there is no such key and auth.ErrConflict if it is not retired, or was retired later.
func (db *DB) DeleteRetiredSigningKey(ctx context.Context, kid string, retiredBy time.Time) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		err := db.execOne(ctx, tx, `DELETE FROM signing_keys WHERE id = $1 AND state = $2 AND updated_at <= $3`,
			kid, string(auth.KeyRetired), millis(retiredBy))
		if !errors.Is(err, auth.ErrNotFound) {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM signing_keys WHERE id = $1`, kid).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return auth.ErrNotFound
		}
		return fmt.Errorf("%w: the key is not retired, or was retired after %s", auth.ErrConflict, retiredBy.UTC().Format(time.RFC3339))
	})
	if err != nil {
		return fmt.Errorf("delete retired signing key %q: %w", kid, err)
	}
	return nil
}

// RevokeToken records a revoked token; a jti recorded already is left as it is.
func (db *DB) RevokeToken(ctx context.Context, r auth.RevokedToken) error {
	err := db.exec(ctx, db.db, `INSERT INTO revoked_tokens (jti, expires_at, revoked_at) VALUES ($1, $2, $3)
ON CONFLICT (jti) DO NOTHING`, r.JTI, millis(r.ExpiresAt), millis(r.RevokedAt))
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	return nil
}

// RevokeSubject records a subject's cut-off, moving a stored one forward only.
func (db *DB) RevokeSubject(ctx context.Context, c auth.SubjectCutoff) error {
	err := db.exec(ctx, db.db, `INSERT INTO revoked_subjects (subject, issued_before, expires_at, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (subject) DO UPDATE SET
	issued_before = CASE WHEN excluded.issued_before > revoked_subjects.issued_before THEN excluded.issued_before ELSE revoked_subjects.issued_before END,
	expires_at = CASE WHEN excluded.expires_at > revoked_subjects.expires_at THEN excluded.expires_at ELSE revoked_subjects.expires_at END,
	updated_at = excluded.updated_at`,
		c.Subject, millis(c.IssuedBefore), millis(c.ExpiresAt), millis(c.UpdatedAt))
	if err != nil {
		return fmt.Errorf("revoke subject %q: %w", c.Subject, err)
	}
	return nil
}

// ListRevocations returns the revoked tokens and cut-offs changed after since.
func (db *DB) ListRevocations(ctx context.Context, since time.Time) ([]auth.RevokedToken, []auth.SubjectCutoff, error) {
	after := int64(-1 << 63)
	if !since.IsZero() {
		after = millis(since)
	}
	tokens := []auth.RevokedToken{}
	rows, err := db.db.QueryContext(ctx, `SELECT jti, expires_at, revoked_at FROM revoked_tokens WHERE revoked_at > $1
ORDER BY revoked_at, jti`, after)
	if err != nil {
		return nil, nil, fmt.Errorf("list revoked tokens: %w", db.translate(err))
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r                auth.RevokedToken
			expires, revoked int64
		)
		if err := rows.Scan(&r.JTI, &expires, &revoked); err != nil {
			return nil, nil, fmt.Errorf("list revoked tokens: %w", db.translate(err))
		}
		r.ExpiresAt, r.RevokedAt = fromMillis(expires), fromMillis(revoked)
		tokens = append(tokens, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list revoked tokens: %w", db.translate(err))
	}
	rows.Close()

	cutoffs := []auth.SubjectCutoff{}
	rows, err = db.db.QueryContext(ctx, `SELECT subject, issued_before, expires_at, updated_at FROM revoked_subjects
WHERE updated_at > $1 ORDER BY updated_at, subject`, after)
	if err != nil {
		return nil, nil, fmt.Errorf("list revoked subjects: %w", db.translate(err))
	}
	defer rows.Close()
	for rows.Next() {
		var (
			c                        auth.SubjectCutoff
			before, expires, updated int64
		)
		if err := rows.Scan(&c.Subject, &before, &expires, &updated); err != nil {
			return nil, nil, fmt.Errorf("list revoked subjects: %w", db.translate(err))
		}
		c.IssuedBefore, c.ExpiresAt, c.UpdatedAt = fromMillis(before), fromMillis(expires), fromMillis(updated)
		cutoffs = append(cutoffs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list revoked subjects: %w", db.translate(err))
	}
	return tokens, cutoffs, nil
}

// PruneRevocations deletes the revocations that expired before before.
func (db *DB) PruneRevocations(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		total = 0 // inTx may run this again
		for _, table := range []string{"revoked_tokens", "revoked_subjects"} {
			n, err := db.execCount(ctx, tx, `DELETE FROM `+table+` WHERE expires_at < $1`, millis(before))
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune revocations: %w", err)
	}
	return total, nil
}
