package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// clientQuery selects clients with their secrets, one row per secret (or one row of NULLs for a client without
// any), in one statement so that a client and its secrets are read from the same snapshot.
const clientQuery = `SELECT c.id, c.name, c.description, c.disabled, c.org_id, c.rate_limit_count, c.rate_limit_per,
	c.version, c.created_at, c.updated_at, s.id, s.hash, s.hint, s.created_at, s.expires_at
FROM clients c LEFT JOIN client_secrets s ON s.client_id = c.id`

// queryClients runs clientQuery with a WHERE and ORDER BY clause that orders rows by client, then by the order of
// its secrets.
func (db *DB) queryClients(ctx context.Context, where string, args ...any) ([]*auth.Client, error) {
	rows, err := db.db.QueryContext(ctx, clientQuery+" "+where, args...)
	if err != nil {
		return nil, db.translate(err)
	}
	defer rows.Close()
	clients := []*auth.Client{}
	for rows.Next() {
		var (
			c                auth.Client
			orgID            sql.NullString
			perMillis        int64
			created, updated int64
			secretID, hint   sql.NullString
			hash             []byte
			secretCreated    sql.NullInt64
			secretExpires    sql.NullInt64
		)
		err := rows.Scan(&c.ID, &c.Name, &c.Description, &c.Disabled, &orgID, &c.RateLimit.Count, &perMillis,
			&c.Version, &created, &updated, &secretID, &hash, &hint, &secretCreated, &secretExpires)
		if err != nil {
			return nil, db.translate(err)
		}
		if n := len(clients); n == 0 || clients[n-1].ID != c.ID {
			c.OrgID = orgID.String
			c.RateLimit.Per = time.Duration(perMillis) * time.Millisecond
			c.CreatedAt = fromMillis(created)
			c.UpdatedAt = fromMillis(updated)
			c.Secrets = []auth.Secret{}
			clients = append(clients, &c)
		}
		if secretID.Valid {
			last := clients[len(clients)-1]
			last.Secrets = append(last.Secrets, auth.Secret{
				ID:        secretID.String,
				Hash:      hash,
				Hint:      hint.String,
				CreatedAt: fromMillis(secretCreated.Int64),
				ExpiresAt: fromNullMillis(secretExpires),
			})
		}
	}
	return clients, db.translate(rows.Err())
}

const insertSecret = `INSERT INTO client_secrets (id, client_id, hash, hint, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)`

func secretArgs(clientID string, s auth.Secret) []any {
	return []any{s.ID, clientID, blob(s.Hash), s.Hint, millis(s.CreatedAt), nullMillis(s.ExpiresAt)}
}

// CreateClient stores a new client with its secrets and its Version as given, in one transaction. It returns
// auth.ErrConflict if the ID or a secret ID is taken, and auth.ErrNotFound if c.OrgID names no organization.
func (db *DB) CreateClient(ctx context.Context, c *auth.Client) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		// A missing organization fails the foreign key, which translate makes auth.ErrNotFound.
		err := db.exec(ctx, tx, `INSERT INTO clients
	(id, name, description, disabled, org_id, rate_limit_count, rate_limit_per, version, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			c.ID, c.Name, c.Description, c.Disabled, nullString(c.OrgID), c.RateLimit.Count,
			c.RateLimit.Per.Milliseconds(), c.Version, millis(c.CreatedAt), millis(c.UpdatedAt))
		if err != nil {
			return err
		}
		for _, s := range c.Secrets {
			if err := db.exec(ctx, tx, insertSecret, secretArgs(c.ID, s)...); err != nil {
				return fmt.Errorf("secret %q: %w", s.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create client %q: %w", c.ID, err)
	}
	return nil
}

// UpdateClient replaces the Name, Description, Disabled, RateLimit and UpdatedAt of the client with the same ID,
// if the stored Version is c.Version, and then increments c.Version; its OrgID and secrets are untouched. It
// returns auth.ErrNotFound if there is none, and auth.ErrStale if the version differs.
func (db *DB) UpdateClient(ctx context.Context, c *auth.Client) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		return db.updateVersioned(ctx, tx, "clients", c.ID, `UPDATE clients
SET name = $1, description = $2, disabled = $3, rate_limit_count = $4, rate_limit_per = $5, updated_at = $6,
	version = version + 1
WHERE id = $7 AND version = $8`,
			c.Name, c.Description, c.Disabled, c.RateLimit.Count, c.RateLimit.Per.Milliseconds(), millis(c.UpdatedAt),
			c.ID, c.Version)
	})
	if err != nil {
		return fmt.Errorf("update client %q at version %d: %w", c.ID, c.Version, err)
	}
	c.Version++
	return nil
}

// FindClient returns the client with its secrets, ordered by CreatedAt, then ID, or auth.ErrNotFound.
func (db *DB) FindClient(ctx context.Context, id string) (*auth.Client, error) {
	clients, err := db.queryClients(ctx, `WHERE c.id = $1 ORDER BY s.created_at, s.id`, id)
	if err == nil && len(clients) == 0 {
		err = auth.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("find client %q: %w", id, err)
	}
	return clients[0], nil
}

// ListClients returns every client, with its secrets, ordered by ID.
func (db *DB) ListClients(ctx context.Context) ([]*auth.Client, error) {
	clients, err := db.queryClients(ctx, `ORDER BY c.id, s.created_at, s.id`)
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	return clients, nil
}

// ListClientsPage returns the clients f selects, with their secrets, ordered by ID.
func (db *DB) ListClientsPage(ctx context.Context, f auth.ClientFilter) ([]*auth.Client, error) {
	// The page is of clients, not of rows of the join with their secrets: pick the clients first.
	var q filter
	if f.OrgID != "" {
		q.where("org_id = %s", f.OrgID)
	}
	orderLimit := q.page("id", f.Page)
	clients, err := db.queryClients(ctx, `WHERE c.id IN (SELECT id FROM clients `+q.clause()+` `+orderLimit+`)
ORDER BY c.id, s.created_at, s.id`, q.args...)
	if err != nil {
		return nil, fmt.Errorf("list clients of organization %q after %q: %w", f.OrgID, f.After, err)
	}
	return clients, nil
}

// DeleteClient removes the client, its secrets and its grants, if version is 0 or the stored Version is version.
// It returns auth.ErrNotFound if there is none, and auth.ErrStale if the version differs; then nothing is removed.
func (db *DB) DeleteClient(ctx context.Context, id string, version int64) error {
	// Secrets and grants: ON DELETE CASCADE.
	if err := db.deleteVersioned(ctx, "clients", id, version); err != nil {
		return fmt.Errorf("delete client %q at version %d: %w", id, version, err)
	}
	return nil
}

// AddClientSecret adds a secret to a client and, if othersExpireAt is not zero, makes each of its other secrets
// that would live longer expire then, in one transaction. It returns auth.ErrNotFound if the client does not
// exist, and auth.ErrConflict if the secret ID is taken.
func (db *DB) AddClientSecret(ctx context.Context, clientID string, s auth.Secret, othersExpireAt time.Time) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		// A missing client fails the foreign key, which translate makes auth.ErrNotFound.
		if err := db.exec(ctx, tx, insertSecret, secretArgs(clientID, s)...); err != nil {
			return err
		}
		if othersExpireAt.IsZero() {
			return nil
		}
		return db.exec(ctx, tx, `UPDATE client_secrets SET expires_at = $1
WHERE client_id = $2 AND id <> $3 AND (expires_at IS NULL OR expires_at > $1)`,
			millis(othersExpireAt), clientID, s.ID)
	})
	if err != nil {
		return fmt.Errorf("add secret %q to client %q: %w", s.ID, clientID, err)
	}
	return nil
}

// UpdateClientSecretExpiry sets when a secret stops working (zero: never). It returns auth.ErrNotFound if the
// client has no such secret.
func (db *DB) UpdateClientSecretExpiry(ctx context.Context, clientID, secretID string, expiresAt time.Time) error {
	err := db.execOne(ctx, db.db, `UPDATE client_secrets SET expires_at = $1 WHERE client_id = $2 AND id = $3`,
		nullMillis(expiresAt), clientID, secretID)
	if err != nil {
		return fmt.Errorf("update expiry of secret %q of client %q: %w", secretID, clientID, err)
	}
	return nil
}

// DeleteClientSecret removes one secret. It returns auth.ErrNotFound if the client has no such secret, and
// auth.ErrConflict if it is the client's last one.
func (db *DB) DeleteClientSecret(ctx context.Context, clientID, secretID string) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		// Lock the client's row so that deletions of its secrets take turns and two of them cannot each leave the
		// other's secret as the last one. (A SQLite write transaction holds the database's write lock already. On
		// PostgreSQL, SERIALIZABLE would refuse one of the two at its commit anyway; with the lock, the second waits,
		// then fails and is run again by inTx as soon as the first commits.)
		if err := db.execOne(ctx, tx, `UPDATE clients SET updated_at = updated_at WHERE id = $1`, clientID); err != nil {
			return err
		}
		var total, found int
		err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(CASE WHEN id = $1 THEN 1 END)
FROM client_secrets WHERE client_id = $2`, secretID, clientID).Scan(&total, &found)
		switch {
		case err != nil:
			return err
		case found == 0:
			return auth.ErrNotFound
		case total == 1:
			return fmt.Errorf("%w: it is the client's last secret", auth.ErrConflict)
		}
		return db.execOne(ctx, tx, `DELETE FROM client_secrets WHERE client_id = $1 AND id = $2`, clientID, secretID)
	})
	if err != nil {
		return fmt.Errorf("delete secret %q of client %q: %w", secretID, clientID, err)
	}
	return nil
}
