package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// PutGrant creates the grant for (ClientID, APIID), or replaces its Scopes and UpdatedAt if one exists, keeping
// the stored ID and CreatedAt, which it writes back into g. It returns auth.ErrNotFound if the client or the API
// does not exist.
func (db *DB) PutGrant(ctx context.Context, g *auth.Grant) error {
	// A missing client or API fails a foreign key, which translate makes auth.ErrNotFound.
	var created int64
	err := db.db.QueryRowContext(ctx, `INSERT INTO grants (id, client_id, api_id, scopes, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (client_id, api_id) DO UPDATE SET scopes = excluded.scopes, updated_at = excluded.updated_at
RETURNING id, created_at`,
		g.ID, g.ClientID, g.APIID, jsonList(g.Scopes), millis(g.CreatedAt), millis(g.UpdatedAt),
	).Scan(&g.ID, &created)
	if err != nil {
		return fmt.Errorf("put grant of api %q to client %q: %w", g.APIID, g.ClientID, translate(err))
	}
	g.CreatedAt = fromMillis(created)
	return nil
}

// ListGrants returns the client's grants ordered by APIID; an unknown client has none.
func (db *DB) ListGrants(ctx context.Context, clientID string) ([]*auth.Grant, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT id, client_id, api_id, scopes, created_at, updated_at
FROM grants WHERE client_id = $1 ORDER BY api_id`, clientID)
	if err != nil {
		return nil, fmt.Errorf("list grants of client %q: %w", clientID, err)
	}
	defer rows.Close()
	grants := []*auth.Grant{}
	for rows.Next() {
		var (
			g                auth.Grant
			scopes           string
			created, updated int64
		)
		if err := rows.Scan(&g.ID, &g.ClientID, &g.APIID, &scopes, &created, &updated); err != nil {
			return nil, fmt.Errorf("list grants of client %q: %w", clientID, err)
		}
		if err := json.Unmarshal([]byte(scopes), &g.Scopes); err != nil {
			return nil, fmt.Errorf("list grants of client %q: grant %q: scopes: %w", clientID, g.ID, err)
		}
		g.CreatedAt = fromMillis(created)
		g.UpdatedAt = fromMillis(updated)
		grants = append(grants, &g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list grants of client %q: %w", clientID, err)
	}
	return grants, nil
}

// DeleteGrant removes the grant for (clientID, apiID). It returns auth.ErrNotFound if there is none.
func (db *DB) DeleteGrant(ctx context.Context, clientID, apiID string) error {
	if err := execOne(ctx, db.db, `DELETE FROM grants WHERE client_id = $1 AND api_id = $2`, clientID, apiID); err != nil {
		return fmt.Errorf("delete grant of api %q to client %q: %w", apiID, clientID, err)
	}
	return nil
}
