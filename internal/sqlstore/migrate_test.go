package sqlstore

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// TestUpgradeFrom1 opens a database that version 1 of the schema holds data in, and checks that the data reads as
// before with the new fields at their zero values (version 0, no organization, no rate limit, the default key
// token lifetime), and that the first compare-and-swap update names version 0.
func TestUpgradeFrom1(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "gh.db")
	sdb, err := sql.Open("sqlite", "file:"+path+"?"+sqliteParams)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := loadMigrations("sqlite")
	if err != nil {
		t.Fatal(err)
	}
	old := &DB{db: sdb, dialect: sqliteDialect}
	if _, err := sdb.ExecContext(ctx, `CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if err := old.inTx(ctx, func(tx *sql.Tx) error { return apply(ctx, tx, ms[0]) }); err != nil {
		t.Fatal(err)
	}
	// Rows as version 1's queries wrote them.
	for _, q := range []string{
		`INSERT INTO apis (id, identifier, name, scopes, token_lifetime, signing_alg, created_at, updated_at)
		VALUES ('api_1', 'urn:one', 'One', '[{"name":"read"}]', 3600, 'RS256', 1000, 2000)`,
		`INSERT INTO clients (id, name, description, disabled, created_at, updated_at) VALUES ('c1', 'C', 'd', FALSE, 1000, 2000)`,
		`INSERT INTO client_secrets (id, client_id, hash, hint, created_at, expires_at) VALUES ('sec_1', 'c1', x'00ff', 'abcd', 1000, NULL)`,
		`INSERT INTO grants (id, client_id, api_id, scopes, created_at, updated_at) VALUES ('grt_1', 'c1', 'api_1', '["read"]', 1000, 2000)`,
	} {
		if _, err := sdb.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	sdb.Close()

	db := mustOpen(t, "sqlite:"+path)
	t1, t2 := time.UnixMilli(1000).UTC(), time.UnixMilli(2000).UTC()
	wantAPI := &auth.API{ID: "api_1", Identifier: "urn:one", Name: "One", Scopes: []auth.Scope{{Name: "read"}},
		TokenLifetime: time.Hour, SigningAlg: auth.RS256, Version: 1, CreatedAt: t1, UpdatedAt: t2}
	gotAPI, err := db.FindAPI(ctx, "api_1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantAPI, gotAPI); diff != "" {
		t.Errorf("FindAPI after the upgrade: mismatch (-want +got):\n%s", diff)
	}
	wantClient := &auth.Client{ID: "c1", Name: "C", Description: "d", Version: 1, CreatedAt: t1, UpdatedAt: t2,
		Secrets: []auth.Secret{{ID: "sec_1", Hash: []byte{0, 0xff}, Hint: "abcd", CreatedAt: t1}}}
	gotClient, err := db.FindClient(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantClient, gotClient); diff != "" {
		t.Errorf("FindClient after the upgrade: mismatch (-want +got):\n%s", diff)
	}
	wantGrant := &auth.Grant{ID: "grt_1", ClientID: "c1", APIID: "api_1", Scopes: []string{"read"}, Version: 1, CreatedAt: t1, UpdatedAt: t2}
	gotGrant, err := db.FindGrant(ctx, "grt_1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantGrant, gotGrant); diff != "" {
		t.Errorf("FindGrant after the upgrade: mismatch (-want +got):\n%s", diff)
	}

	for name, update := range map[string]func(context.Context) error{
		"UpdateAPI":    func(ctx context.Context) error { return db.UpdateAPI(ctx, gotAPI) },
		"UpdateClient": func(ctx context.Context) error { return db.UpdateClient(ctx, gotClient) },
		"UpdateGrant":  func(ctx context.Context) error { return db.UpdateGrant(ctx, gotGrant) },
	} {
		if err := update(ctx); err != nil {
			t.Errorf("%s at version 1 after the upgrade: %v", name, err)
		}
	}
	if gotAPI.Version != 2 || gotClient.Version != 2 || gotGrant.Version != 2 {
		t.Errorf("Versions after one update: API %d, client %d, grant %d; want 2", gotAPI.Version, gotClient.Version, gotGrant.Version)
	}
}
