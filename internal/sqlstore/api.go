package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
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

const apiColumns = `id, identifier, name, scopes, token_lifetime, signing_alg, key_token_lifetime, version, created_at,
	updated_at`

func scanAPI(row scanner) (*auth.API, error) {
	var (
		a                                       auth.API
		scopes                                  string
		lifetime, keyLifetime, created, updated int64
	)
	err := row.Scan(&a.ID, &a.Identifier, &a.Name, &scopes, &lifetime, &a.SigningAlg, &keyLifetime, &a.Version,
		&created, &updated)
	if err != nil {
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
	a.KeyTokenLifetime = time.Duration(keyLifetime) * time.Second
	a.CreatedAt = fromMillis(created)
	a.UpdatedAt = fromMillis(updated)
	return &a, nil
}

// CreateAPI stores a new API with its Version as given. It returns auth.ErrConflict if its ID or Identifier is
// taken.
func (db *DB) CreateAPI(ctx context.Context, api *auth.API) error {
	err := db.exec(ctx, db.db, `INSERT INTO apis (`+apiColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		api.ID, api.Identifier, api.Name, encodeScopes(api.Scopes), seconds(api.TokenLifetime),
		string(api.SigningAlg), seconds(api.KeyTokenLifetime), api.Version, millis(api.CreatedAt),
		millis(api.UpdatedAt))
	if err != nil {
		return fmt.Errorf("create api %q: %w", api.ID, err)
	}
	return nil
}

// UpdateAPI replaces every field of the API with the same ID but its CreatedAt, if the stored Version is
// api.Version, and then increments api.Version. It returns auth.ErrNotFound if there is none, auth.ErrStale if the
// version differs, and auth.ErrConflict if the new Identifier is taken by another API.
func (db *DB) UpdateAPI(ctx context.Context, api *auth.API) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		return db.updateVersioned(ctx, tx, "apis", api.ID, `UPDATE apis
SET identifier = $1, name = $2, scopes = $3, token_lifetime = $4, signing_alg = $5, key_token_lifetime = $6,
	updated_at = $7, version = version + 1
WHERE id = $8 AND version = $9`,
			api.Identifier, api.Name, encodeScopes(api.Scopes), seconds(api.TokenLifetime), string(api.SigningAlg),
			seconds(api.KeyTokenLifetime), millis(api.UpdatedAt), api.ID, api.Version)
	})
	if err != nil {
		return fmt.Errorf("update api %q at version %d: %w", api.ID, api.Version, err)
	}
	api.Version++
	return nil
}

// seconds returns d in whole seconds, as API lifetimes are stored.
func seconds(d time.Duration) int64 { return int64(d / time.Second) }

// FindAPI returns the API with the given ID, or auth.ErrNotFound.
func (db *DB) FindAPI(ctx context.Context, id string) (*auth.API, error) {
	a, err := scanAPI(db.db.QueryRowContext(ctx, `SELECT `+apiColumns+` FROM apis WHERE id = $1`, id))
	if err = db.rowErr(err); err != nil {
		return nil, fmt.Errorf("find api %q: %w", id, err)
	}
	return a, nil
}

// FindAPIByIdentifier returns the API whose Identifier is exactly identifier, or auth.ErrNotFound.
func (db *DB) FindAPIByIdentifier(ctx context.Context, identifier string) (*auth.API, error) {
	a, err := scanAPI(db.db.QueryRowContext(ctx, `SELECT `+apiColumns+` FROM apis WHERE identifier = $1`, identifier))
	if err = db.rowErr(err); err != nil {
		return nil, fmt.Errorf("find api by identifier %q: %w", identifier, err)
	}
	return a, nil
}

// ListAPIs returns every API ordered by Identifier.
func (db *DB) ListAPIs(ctx context.Context) ([]*auth.API, error) {
	apis, err := queryList(ctx, db, scanAPI, `SELECT `+apiColumns+` FROM apis ORDER BY identifier`)
	if err != nil {
		return nil, fmt.Errorf("list apis: %w", err)
	}
	return apis, nil
}

// ListAPIsPage returns a page of APIs ordered by ID.
func (db *DB) ListAPIsPage(ctx context.Context, p auth.Page) ([]*auth.API, error) {
	var f filter
	orderLimit := f.page("id", p)
	apis, err := queryList(ctx, db, scanAPI, `SELECT `+apiColumns+` FROM apis `+f.clause()+` `+orderLimit, f.args...)
	if err != nil {
		return nil, fmt.Errorf("list apis after %q: %w", p.After, err)
	}
	return apis, nil
}

// DeleteAPI removes the API and every grant for it, if version is 0 or the stored Version is version. It returns
// auth.ErrNotFound if there is none, and auth.ErrStale if the version differs; then nothing is removed.
func (db *DB) DeleteAPI(ctx context.Context, id string, version int64) error {
	if err := db.deleteVersioned(ctx, "apis", id, version); err != nil { // grants: ON DELETE CASCADE
		return fmt.Errorf("delete api %q at version %d: %w", id, version, err)
	}
	return nil
}
