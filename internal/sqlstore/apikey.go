package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// keyGrantJSON is how an API key's grant is stored, so that changing auth.KeyGrant's JSON, which the management
// API shows, cannot change the stored format.
type keyGrantJSON struct {
	APIID  string   `json:"api_id"`
	Scopes []string `json:"scopes"`
}

func encodeKeyGrants(grants []auth.KeyGrant) string {
	js := make([]keyGrantJSON, len(grants))
	for i, g := range grants {
		js[i] = keyGrantJSON{APIID: g.APIID, Scopes: g.Scopes}
		if js[i].Scopes == nil {
			js[i].Scopes = []string{}
		}
	}
	return jsonList(js)
}

// nullJSON returns a JSON value for a TEXT column, or NULL for none.
func nullJSON(v json.RawMessage) sql.NullString {
	return sql.NullString{String: string(v), Valid: len(v) > 0}
}

// apiKeyColumns are a key's columns, of the table aliased k.
const apiKeyColumns = `k.id, k.org_id, k.owner, k.name, k.hint, k.grants, k.expires_at, k.metadata, k.disabled,
	k.version, k.created_at, k.updated_at, k.last_used_at`

// scanAPIKey scans apiKeyColumns, then dest.
func scanAPIKey(row scanner, dest ...any) (*auth.APIKey, error) {
	var (
		k                auth.APIKey
		orgID, metadata  sql.NullString
		grants           string
		expires, used    sql.NullInt64
		created, updated int64
	)
	err := row.Scan(append([]any{&k.ID, &orgID, &k.Owner, &k.Name, &k.Hint, &grants, &expires, &metadata,
		&k.Disabled, &k.Version, &created, &updated, &used}, dest...)...)
	if err != nil {
		return nil, err
	}
	var js []keyGrantJSON
	if err := json.Unmarshal([]byte(grants), &js); err != nil {
		return nil, fmt.Errorf("API key %q: grants: %w", k.ID, err)
	}
	k.Grants = make([]auth.KeyGrant, len(js))
	for i, g := range js {
		if g.Scopes == nil {
			g.Scopes = []string{}
		}
		k.Grants[i] = auth.KeyGrant{APIID: g.APIID, Scopes: g.Scopes}
	}
	k.OrgID = orgID.String
	if metadata.Valid {
		k.Metadata = json.RawMessage(metadata.String)
	}
	k.ExpiresAt = fromNullMillis(expires)
	k.CreatedAt = fromMillis(created)
	k.UpdatedAt = fromMillis(updated)
	k.LastUsedAt = fromNullMillis(used)
	return &k, nil
}

func scanAPIKeyRow(row scanner) (*auth.APIKey, error) { return scanAPIKey(row) }

const insertAPIKeyHash = `INSERT INTO api_key_hashes (hash, key_id, expires_at) VALUES ($1, $2, NULL)`

// CreateAPIKey stores a new key, with its Version as given, and the hash of its secret as the current one, in one
// transaction. It returns auth.ErrConflict if the ID or the hash is taken, and auth.ErrNotFound if k.OrgID names
// no organization.
func (db *DB) CreateAPIKey(ctx context.Context, k *auth.APIKey, hash []byte) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		// A missing organization fails the foreign key, which translate makes auth.ErrNotFound.
		err := db.exec(ctx, tx, `INSERT INTO api_keys
	(id, org_id, owner, name, hint, grants, expires_at, metadata, disabled, version, created_at, updated_at,
	last_used_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			k.ID, nullString(k.OrgID), k.Owner, k.Name, k.Hint, encodeKeyGrants(k.Grants), nullMillis(k.ExpiresAt),
			nullJSON(k.Metadata), k.Disabled, k.Version, millis(k.CreatedAt), millis(k.UpdatedAt),
			nullMillis(k.LastUsedAt))
		if err != nil {
			return err
		}
		if err := db.exec(ctx, tx, insertAPIKeyHash, blob(hash), k.ID); err != nil {
			return fmt.Errorf("hash: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create API key %q: %w", k.ID, err)
	}
	return nil
}

// FindAPIKey returns the key with the given ID, or auth.ErrNotFound.
func (db *DB) FindAPIKey(ctx context.Context, id string) (*auth.APIKey, error) {
	k, err := scanAPIKey(db.db.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys k WHERE k.id = $1`, id))
	if err = db.rowErr(err); err != nil {
		return nil, fmt.Errorf("find API key %q: %w", id, err)
	}
	return k, nil
}

// FindAPIKeyByHash returns the key a hash belongs to, with that hash's record, or auth.ErrNotFound, in one query:
// a seek on the hash's primary key, joined to the key by its own. It does not look at expiry.
func (db *DB) FindAPIKeyByHash(ctx context.Context, hash []byte) (*auth.APIKey, *auth.APIKeyHash, error) {
	var (
		h       auth.APIKeyHash
		expires sql.NullInt64
	)
	k, err := scanAPIKey(db.db.QueryRowContext(ctx, `SELECT `+apiKeyColumns+`, h.hash, h.expires_at
FROM api_key_hashes h JOIN api_keys k ON k.id = h.key_id
WHERE h.hash = $1`, blob(hash)), &h.Hash, &expires)
	if err = db.rowErr(err); err != nil {
		// Name no hash: it stands in for a secret.
		return nil, nil, fmt.Errorf("find API key by hash: %w", err)
	}
	h.KeyID = k.ID
	h.ExpiresAt = fromNullMillis(expires)
	return k, &h, nil
}

// ListAPIKeys returns the keys f selects, ordered by ID.
func (db *DB) ListAPIKeys(ctx context.Context, f auth.APIKeyFilter) ([]*auth.APIKey, error) {
	var q filter
	if f.OrgID != "" {
		q.where("k.org_id = %s", f.OrgID)
	}
	if f.Owner != "" {
		q.where("k.owner = %s", f.Owner)
	}
	orderLimit := q.page("k.id", f.Page)
	keys, err := queryList(ctx, db, scanAPIKeyRow,
		`SELECT `+apiKeyColumns+` FROM api_keys k `+q.clause()+` `+orderLimit, q.args...)
	if err != nil {
		return nil, fmt.Errorf("list API keys (organization %q, owner %q) after %q: %w", f.OrgID, f.Owner, f.After, err)
	}
	return keys, nil
}

// UpdateAPIKey replaces the Name, Grants, ExpiresAt, Metadata, Disabled and UpdatedAt of the key with the same ID,
// if the stored Version is k.Version, and then increments k.Version; its hashes are untouched. It returns
// auth.ErrNotFound if there is none, and auth.ErrStale if the version differs.
func (db *DB) UpdateAPIKey(ctx context.Context, k *auth.APIKey) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		return db.updateVersioned(ctx, tx, "api_keys", k.ID, `UPDATE api_keys
SET name = $1, grants = $2, expires_at = $3, metadata = $4, disabled = $5, updated_at = $6, version = version + 1
WHERE id = $7 AND version = $8`,
			k.Name, encodeKeyGrants(k.Grants), nullMillis(k.ExpiresAt), nullJSON(k.Metadata), k.Disabled,
			millis(k.UpdatedAt), k.ID, k.Version)
	})
	if err != nil {
		return fmt.Errorf("update API key %q at version %d: %w", k.ID, k.Version, err)
	}
	k.Version++
	return nil
}

// RotateAPIKey gives the key hash as its current hash, k.Hint as its hint and k.UpdatedAt, if the stored Version
// is k.Version, in one transaction. The key's other hashes are removed if oldExpireAt is zero, or else expire at
// oldExpireAt unless they expire earlier already. It then increments k.Version. It returns auth.ErrNotFound if
// there is no such key, auth.ErrStale if the version differs, and auth.ErrConflict if the hash is taken; then
// nothing has changed.
func (db *DB) RotateAPIKey(ctx context.Context, k *auth.APIKey, hash []byte, oldExpireAt time.Time) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		// The compare-and-swap first, so that a stale rotation touches no hash.
		err := db.updateVersioned(ctx, tx, "api_keys", k.ID, `UPDATE api_keys
SET hint = $1, updated_at = $2, version = version + 1
WHERE id = $3 AND version = $4`,
			k.Hint, millis(k.UpdatedAt), k.ID, k.Version)
		if err != nil {
			return err
		}
		// Every hash the key has now is an old one: the new hash goes in after.
		if oldExpireAt.IsZero() {
			err = db.exec(ctx, tx, `DELETE FROM api_key_hashes WHERE key_id = $1`, k.ID)
		} else {
			err = db.exec(ctx, tx, `UPDATE api_key_hashes SET expires_at = $1
WHERE key_id = $2 AND (expires_at IS NULL OR expires_at > $1)`, millis(oldExpireAt), k.ID)
		}
		if err != nil {
			return fmt.Errorf("old hashes: %w", err)
		}
		if err := db.exec(ctx, tx, insertAPIKeyHash, blob(hash), k.ID); err != nil {
			return fmt.Errorf("hash: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rotate API key %q at version %d: %w", k.ID, k.Version, err)
	}
	k.Version++
	return nil
}

// DeleteAPIKey removes a key and its hashes, if version is 0 or the stored Version is version. It returns
// auth.ErrNotFound if there is none, and auth.ErrStale if the version differs; then nothing is removed.
func (db *DB) DeleteAPIKey(ctx context.Context, id string, version int64) error {
	// Hashes: ON DELETE CASCADE.
	if err := db.deleteVersioned(ctx, "api_keys", id, version); err != nil {
		return fmt.Errorf("delete API key %q at version %d: %w", id, version, err)
	}
	return nil
}

// TouchAPIKeys sets the LastUsedAt of each key named to the time given, if later than the stored one, in one
// transaction; keys that no longer exist are skipped. It changes neither Version nor UpdatedAt.
func (db *DB) TouchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE api_keys SET last_used_at = $1
WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		// In ID order, so that instances flushing overlapping batches at once lock rows in the same order (where a
		// backend locks rows, not the database) and cannot deadlock.
		for _, id := range slices.Sorted(maps.Keys(used)) {
			if _, err := stmt.ExecContext(ctx, millis(used[id]), id); err != nil {
				return fmt.Errorf("key %q: %w", id, db.translate(err))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch %d API keys: %w", len(used), err)
	}
	return nil
}

// PruneAPIKeyHashes removes the hashes that expired before before (rotated-out keys past their grace period), and
// returns how many it removed.
func (db *DB) PruneAPIKeyHashes(ctx context.Context, before time.Time) (int64, error) {
	n, err := db.execCount(ctx, db.db, `DELETE FROM api_key_hashes WHERE expires_at < $1`, millis(before))
	if err != nil {
		return 0, fmt.Errorf("prune API key hashes expired before %v: %w", before, err)
	}
	return n, nil
}
