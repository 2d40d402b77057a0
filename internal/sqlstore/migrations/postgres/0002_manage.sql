-- The management API: organizations, versions for compare-and-swap updates, API key token lifetimes, client rate
-- limits, indexes for paged lists, and the audit log. PostgreSQL dialect (see 0001 for what differs from SQLite's).
--
-- New columns have defaults, so that rows of an existing database read as before: version 0, no organization, no
-- rate limit, the default key token lifetime. Keyset pagination compares TEXT ids with < and >: COLLATE "C" makes
-- that bytewise, as in SQLite.

CREATE TABLE orgs (
	id             TEXT COLLATE "C" PRIMARY KEY,
	name           TEXT NOT NULL UNIQUE,
	description    TEXT NOT NULL,
	api_key_prefix TEXT NOT NULL,
	allowed_grants TEXT NOT NULL, -- JSON: [{"api_id": "api_…", "scopes": ["read:items"]}]
	version        BIGINT NOT NULL,
	created_at     BIGINT NOT NULL,
	updated_at     BIGINT NOT NULL
);

ALTER TABLE apis ADD COLUMN key_token_lifetime BIGINT NOT NULL DEFAULT 0; -- seconds; 0: auth.DefaultKeyTokenLifetime
ALTER TABLE apis ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

-- A client's organization: NULL for none. No ON DELETE action: DeleteOrg refuses while clients remain, and the
-- foreign key stops one that would slip in between its check and its delete.
ALTER TABLE clients ADD COLUMN org_id TEXT COLLATE "C" REFERENCES orgs (id);
ALTER TABLE clients ADD COLUMN rate_limit_count BIGINT NOT NULL DEFAULT 0; -- 0: no limit
ALTER TABLE clients ADD COLUMN rate_limit_per BIGINT NOT NULL DEFAULT 0;   -- milliseconds
ALTER TABLE clients ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

-- An organization's clients ordered by ID: ListClientsPage by organization, and DeleteOrg's check.
CREATE INDEX clients_org_id ON clients (org_id, id);

ALTER TABLE grants ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

-- A client's or an API's grants ordered by ID, for ListGrantsPage. The API's also serves DeleteAPI's cascade, which
-- the index on api_id alone did.
CREATE INDEX grants_client_id ON grants (client_id, id);
DROP INDEX grants_api_id;
CREATE INDEX grants_api_id ON grants (api_id, id);

CREATE TABLE audit_events (
	id          TEXT COLLATE "C" PRIMARY KEY, -- increasing with occurred_at: the newest first is ORDER BY id DESC
	occurred_at BIGINT NOT NULL,
	actor       TEXT NOT NULL,
	action      TEXT NOT NULL,
	resource    TEXT NOT NULL, -- '' for none
	org_id      TEXT COLLATE "C" NOT NULL, -- '' for none; no foreign key: the log outlives the organization
	request_id  TEXT NOT NULL,
	address     TEXT NOT NULL,
	details     TEXT           -- a JSON object; NULL for none
);

-- Time ranges and PruneAuditEvents.
CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at);
-- An organization's log, and one resource's history, newest first.
CREATE INDEX audit_events_org_id ON audit_events (org_id, id);
CREATE INDEX audit_events_resource ON audit_events (resource, id);
