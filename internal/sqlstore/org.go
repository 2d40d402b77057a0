package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// orgGrantJSON is how an organization's allowed grant is stored, so that changing auth.OrgGrant's JSON, which the
// management API shows, cannot change the stored format.
type orgGrantJSON struct {
	APIID  string   `json:"api_id"`
	Scopes []string `json:"scopes"`
}

func encodeOrgGrants(grants []auth.OrgGrant) string {
	js := make([]orgGrantJSON, len(grants))
	for i, g := range grants {
		js[i] = orgGrantJSON{APIID: g.APIID, Scopes: g.Scopes}
		if js[i].Scopes == nil {
			js[i].Scopes = []string{}
		}
	}
	return jsonList(js)
}

const orgColumns = `id, name, description, api_key_prefix, allowed_grants, version, created_at, updated_at`

func scanOrg(row scanner) (*auth.Org, error) {
	var (
		o                auth.Org
		grants           string
		created, updated int64
	)
	err := row.Scan(&o.ID, &o.Name, &o.Description, &o.APIKeyPrefix, &grants, &o.Version, &created, &updated)
	if err != nil {
		return nil, err
	}
	var js []orgGrantJSON
	if err := json.Unmarshal([]byte(grants), &js); err != nil {
		return nil, fmt.Errorf("organization %q: allowed grants: %w", o.ID, err)
	}
	o.AllowedGrants = make([]auth.OrgGrant, len(js))
	for i, g := range js {
		if g.Scopes == nil {
			g.Scopes = []string{}
		}
		o.AllowedGrants[i] = auth.OrgGrant{APIID: g.APIID, Scopes: g.Scopes}
	}
	o.CreatedAt = fromMillis(created)
	o.UpdatedAt = fromMillis(updated)
	return &o, nil
}

// CreateOrg stores a new organization with its Version as given. It returns auth.ErrConflict if the ID or Name
// is taken.
func (db *DB) CreateOrg(ctx context.Context, o *auth.Org) error {
	err := db.exec(ctx, db.db, `INSERT INTO orgs (`+orgColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		o.ID, o.Name, o.Description, o.APIKeyPrefix, encodeOrgGrants(o.AllowedGrants), o.Version,
		millis(o.CreatedAt), millis(o.UpdatedAt))
	if err != nil {
		return fmt.Errorf("create organization %q: %w", o.ID, err)
	}
	return nil
}

// UpdateOrg replaces every field of the organization with the same ID but its CreatedAt, if the stored Version
// is o.Version, and then increments o.Version. It returns auth.ErrNotFound if there is none, auth.ErrStale if the
// version differs, and auth.ErrConflict if the new Name is taken.
func (db *DB) UpdateOrg(ctx context.Context, o *auth.Org) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		return db.updateVersioned(ctx, tx, "orgs", o.ID, `UPDATE orgs
SET name = $1, description = $2, api_key_prefix = $3, allowed_grants = $4, updated_at = $5, version = version + 1
WHERE id = $6 AND version = $7`,
			o.Name, o.Description, o.APIKeyPrefix, encodeOrgGrants(o.AllowedGrants), millis(o.UpdatedAt),
			o.ID, o.Version)
	})
	if err != nil {
		return fmt.Errorf("update organization %q at version %d: %w", o.ID, o.Version, err)
	}
	o.Version++
	return nil
}

// FindOrg returns the organization with the given ID, or auth.ErrNotFound.
func (db *DB) FindOrg(ctx context.Context, id string) (*auth.Org, error) {
	o, err := scanOrg(db.db.QueryRowContext(ctx, `SELECT `+orgColumns+` FROM orgs WHERE id = $1`, id))
	if err = db.rowErr(err); err != nil {
		return nil, fmt.Errorf("find organization %q: %w", id, err)
	}
	return o, nil
}

// ListOrgs returns a page of organizations ordered by ID.
func (db *DB) ListOrgs(ctx context.Context, p auth.Page) ([]*auth.Org, error) {
	var f filter
	orderLimit := f.page("id", p)
	orgs, err := queryList(ctx, db, scanOrg, `SELECT `+orgColumns+` FROM orgs `+f.clause()+` `+orderLimit, f.args...)
	if err != nil {
		return nil, fmt.Errorf("list organizations after %q: %w", p.After, err)
	}
	return orgs, nil
}

// orgOwned lists what an organization owns, as tables with an org_id column that refers to it. DeleteOrg refuses
// while any of them has a row of the organization: a table that gains such a column joins the list.
var orgOwned = []struct{ table, what string }{
	{"clients", "clients"},
	{"api_keys", "API keys"},
}

// DeleteOrg removes an organization, if version is 0 or the stored Version is version. It returns
// auth.ErrNotFound if there is none, auth.ErrStale if the version differs, and auth.ErrConflict if it still owns
// something orgOwned lists; then nothing is removed.
func (db *DB) DeleteOrg(ctx context.Context, id string, version int64) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		// Lock the organization's row, so that the version check, the owners' check and the delete see the same
		// row and owners. (A SQLite write transaction holds the database's write lock already.)
		var err error
		if version == 0 {
			err = db.execOne(ctx, tx, `UPDATE orgs SET updated_at = updated_at WHERE id = $1`, id)
		} else {
			err = db.updateVersioned(ctx, tx, "orgs", id,
				`UPDATE orgs SET updated_at = updated_at WHERE id = $1 AND version = $2`, id, version)
		}
		if err != nil {
			return err
		}
		for _, o := range orgOwned {
			var n int
			err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+o.table+` WHERE org_id = $1`, id).Scan(&n)
			if err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("%w: the organization still owns %d %s", auth.ErrConflict, n, o.what)
			}
		}
		// Where a row lock does not keep others from adding an owned row (PostgreSQL's foreign key checks take a
		// weaker one), the foreign key refuses the delete instead: the organization is still referenced.
		err = db.exec(ctx, tx, `DELETE FROM orgs WHERE id = $1`, id)
		if errors.Is(err, auth.ErrNotFound) {
			return fmt.Errorf("%w: the organization still owns something: %v", auth.ErrConflict, err)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("delete organization %q at version %d: %w", id, version, err)
	}
	return nil
}
