package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// grantColumns are a grant's columns, of the table aliased g.
const grantColumns = `g.id, g.client_id, g.api_id, g.scopes, g.version, g.created_at, g.updated_at`

func scanGrant(row scanner) (*auth.Grant, error) {
	var (
		g                auth.Grant
		scopes           string
		created, updated int64
	)
	if err := row.Scan(&g.ID, &g.ClientID, &g.APIID, &scopes, &g.Version, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(scopes), &g.Scopes); err != nil {
		return nil, fmt.Errorf("grant %q: scopes: %w", g.ID, err)
	}
	g.CreatedAt = fromMillis(created)
	g.UpdatedAt = fromMillis(updated)
	return &g, nil
}

// PutGrant creates the grant for (ClientID, APIID) with its Version as given, or replaces its Scopes and UpdatedAt
// and increments its version if one exists, keeping the stored ID and CreatedAt. It writes the stored ID,
// CreatedAt and Version back into g. It returns auth.ErrNotFound if the client or the API does not exist, and
// auth.ErrConflict if a new grant's ID is taken.
func (db *DB) PutGrant(ctx context.Context, g *auth.Grant) error {
	// A missing client or API fails a foreign key, which translate makes auth.ErrNotFound.
	var created int64
	err := db.db.QueryRowContext(ctx, `INSERT INTO grants
	(id, client_id, api_id, scopes, version, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (client_id, api_id) DO UPDATE
SET scopes = excluded.scopes, updated_at = excluded.updated_at, version = grants.version + 1
RETURNING id, created_at, version`,
		g.ID, g.ClientID, g.APIID, jsonList(g.Scopes), g.Version, millis(g.CreatedAt), millis(g.UpdatedAt),
	).Scan(&g.ID, &created, &g.Version)
	if err != nil {
		return fmt.Errorf("put grant of api %q to client %q: %w", g.APIID, g.ClientID, db.translate(err))
	}
	g.CreatedAt = fromMillis(created)
	return nil
}

// CreateGrant stores a new grant with its Version as given. It returns auth.ErrConflict if its ID is taken or the
// client has a grant for the API already, and auth.ErrNotFound if the client or the API does not exist.
func (db *DB) CreateGrant(ctx context.Context, g *auth.Grant) error {
	// A missing client or API fails a foreign key, which translate makes auth.ErrNotFound.
	err := db.exec(ctx, db.db, `INSERT INTO grants (id, client_id, api_id, scopes, version, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		g.ID, g.ClientID, g.APIID, jsonList(g.Scopes), g.Version, millis(g.CreatedAt), millis(g.UpdatedAt))
	if err != nil {
		return fmt.Errorf("create grant %q of api %q to client %q: %w", g.ID, g.APIID, g.ClientID, err)
	}
	return nil
}

// UpdateGrant replaces the Scopes and UpdatedAt of the grant with the same ID, if the stored Version is g.Version,
// and then increments g.Version. It returns auth.ErrNotFound if there is none, and auth.ErrStale if the version
// differs.
func (db *DB) UpdateGrant(ctx context.Context, g *auth.Grant) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		return db.updateVersioned(ctx, tx, "grants", g.ID, `UPDATE grants
SET scopes = $1, updated_at = $2, version = version + 1
WHERE id = $3 AND version = $4`,
			jsonList(g.Scopes), millis(g.UpdatedAt), g.ID, g.Version)
	})
	if err != nil {
		return fmt.Errorf("update grant %q at version %d: %w", g.ID, g.Version, err)
	}
	g.Version++
	return nil
}

// FindGrant returns the grant with the given ID, or auth.ErrNotFound.
func (db *DB) FindGrant(ctx context.Context, id string) (*auth.Grant, error) {
	g, err := scanGrant(db.db.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM grants g WHERE g.id = $1`, id))
	if err = db.rowErr(err); err != nil {
		return nil, fmt.Errorf("find grant %q: %w", id, err)
	}
	return g, nil
}

// ListGrants returns the client's grants ordered by APIID; an unknown client has none.
func (db *DB) ListGrants(ctx context.Context, clientID string) ([]*auth.Grant, error) {
	grants, err := queryList(ctx, db, scanGrant,
		`SELECT `+grantColumns+` FROM grants g WHERE g.client_id = $1 ORDER BY g.api_id`, clientID)
	if err != nil {
		return nil, fmt.Errorf("list grants of client %q: %w", clientID, err)
	}
	return grants, nil
}

// ListGrantsPage returns the grants f selects, ordered by ID.
func (db *DB) ListGrantsPage(ctx context.Context, f auth.GrantFilter) ([]*auth.Grant, error) {
	var q filter
	if f.ClientID != "" {
		q.where("g.client_id = %s", f.ClientID)
	}
	if f.APIID != "" {
		q.where("g.api_id = %s", f.APIID)
	}
	if f.OrgID != "" {
		q.where("g.client_id IN (SELECT id FROM clients WHERE org_id = %s)", f.OrgID)
	}
	orderLimit := q.page("g.id", f.Page)
	grants, err := queryList(ctx, db, scanGrant,
		`SELECT `+grantColumns+` FROM grants g `+q.clause()+` `+orderLimit, q.args...)
	if err != nil {
		return nil, fmt.Errorf("list grants (client %q, api %q, organization %q) after %q: %w",
			f.ClientID, f.APIID, f.OrgID, f.After, err)
	}
	return grants, nil
}

// DeleteGrant removes the grant with the given ID, if version is 0 or the stored Version is version. It returns
// auth.ErrNotFound if there is none, and auth.ErrStale if the version differs; then nothing is removed.
func (db *DB) DeleteGrant(ctx context.Context, id string, version int64) error {
	if err := db.deleteVersioned(ctx, "grants", id, version); err != nil {
		return fmt.Errorf("delete grant %q at version %d: %w", id, version, err)
	}
	return nil
}
