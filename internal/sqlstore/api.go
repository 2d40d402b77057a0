package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// scopeJSON is how an API scope is stored, so that renaming a field of auth.Scope cannot change the stored format.
type scopeJSON struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

func encodeScopes(scopes []auth.Scope) string {
	js := make([]scopeJSON, len(scopes))
	for i, s := range scopes {
		js[i] = scopeJSON(s)
	}
	return jsonList(js)
}

const apiColumns = `id, identifier, name, scopes, token_lifetime, signing_alg, created_at, updated_at`

func scanAPI(row scanner) (*auth.API, error) {
	var (
		a                          auth.API
		scopes                     string
		lifetime, created, updated int64
	)
	if err := row.Scan(&a.ID, &a.Identifier, &a.Name, &scopes, &lifetime, &a.SigningAlg, &created, &updated); err != nil {
		return nil, err
	}
	var js []scopeJSON
	if err := json.Unmarshal([]byte(scopes), &js); err != nil {
		return nil, fmt.Errorf("api %q: scopes: %w", a.ID, err)
	}
	a.Scopes = make([]auth.Scope, len(js))
	for i, s := range js {
		a.Scopes[i] = auth.Scope(s)
	}
	a.TokenLifetime = time.Duration(lifetime) * time.Second
	a.CreatedAt = fromMillis(created)
	a.UpdatedAt = fromMillis(updated)
	return &a, nil
}

// CreateAPI stores a new API. It returns auth.ErrConflict if its ID or Identifier is taken.
func (db *DB) CreateAPI(ctx context.Context, api *auth.API) error {
	err := exec(ctx, db.db, `INSERT INTO apis (`+apiColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		api.ID, api.Identifier, api.Name, encodeScopes(api.Scopes), int64(api.TokenLifetime/time.Second),
		string(api.SigningAlg), millis(api.CreatedAt), millis(api.UpdatedAt))
	if err != nil {
		return fmt.Errorf("create api %q: %w", api.ID, err)
	}
	return nil
}

// UpdateAPI replaces every field of the API with the same ID but its CreatedAt. It returns auth.ErrNotFound if
// there is none, and auth.ErrConflict if the new Identifier is taken by another API.
func (db *DB) UpdateAPI(ctx context.Context, api *auth.API) error {
	err := execOne(ctx, db.db, `UPDATE apis
SET identifier = $1, name = $2, scopes = $3, token_lifetime = $4, signing_alg = $5, updated_at = $6
WHERE id = $7`,
		api.Identifier, api.Name, encodeScopes(api.Scopes), int64(api.TokenLifetime/time.Second),
		string(api.SigningAlg), millis(api.UpdatedAt), api.ID)
	if err != nil {
		return fmt.Errorf("update api %q: %w", api.ID, err)
	}
	return nil
}

// FindAPI returns the API with the given ID, or auth.ErrNotFound.
func (db *DB) FindAPI(ctx context.Context, id string) (*auth.API, error) {
	a, err := scanAPI(db.db.QueryRowContext(ctx, `SELECT `+apiColumns+` FROM apis WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = auth.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("find api %q: %w", id, err)
	}
	return a, nil
}

// FindAPIByIdentifier returns the API whose Identifier is exactly identifier, or auth.ErrNotFound.
func (db *DB) FindAPIByIdentifier(ctx context.Context, identifier string) (*auth.API, error) {
	a, err := scanAPI(db.db.QueryRowContext(ctx, `SELECT `+apiColumns+` FROM apis WHERE identifier = $1`, identifier))
	if errors.Is(err, sql.ErrNoRows) {
		err = auth.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("find api by identifier %q: %w", identifier, err)
	}
	return a, nil
}

// ListAPIs returns every API ordered by Identifier.
func (db *DB) ListAPIs(ctx context.Context) ([]*auth.API, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+apiColumns+` FROM apis ORDER BY identifier`)
	if err != nil {
		return nil, fmt.Errorf("list apis: %w", err)
	}
	defer rows.Close()
	apis := []*auth.API{}
	for rows.Next() {
		a, err := scanAPI(rows)
		if err != nil {
			return nil, fmt.Errorf("list apis: %w", err)
		}
		apis = append(apis, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list apis: %w", err)
	}
	return apis, nil
}

// DeleteAPI removes the API and every grant for it. It returns auth.ErrNotFound if there is none.
func (db *DB) DeleteAPI(ctx context.Context, id string) error {
	if err := execOne(ctx, db.db, `DELETE FROM apis WHERE id = $1`, id); err != nil { // grants: ON DELETE CASCADE
		return fmt.Errorf("delete api %q: %w", id, err)
	}
	return nil
}
