-- API keys and their hashes. PostgreSQL dialect; keep in step with migrations/sqlite. (0003 is another change's:
-- migrations apply by the versions a database lacks, so it may arrive after this one.)
--
-- A key's secret is never stored, only keyed hashes of it: the current key's, and rotated-out keys' for the rest of
-- their grace period. Checking a presented key is one seek on the hash's primary key, joined to the key by its own.
-- Keys are listed by keyset pagination on id, COLLATE "C" (see 0002).

CREATE TABLE api_keys (
	id           TEXT COLLATE "C" PRIMARY KEY,
	-- NULL for none. No ON DELETE action: DeleteOrg refuses while keys remain, and the foreign key stops one that
	-- would slip in between its check and its delete.
	org_id       TEXT COLLATE "C" REFERENCES orgs (id),
	owner        TEXT NOT NULL, -- '' for none
	name         TEXT NOT NULL,
	hint         TEXT NOT NULL,
	grants       TEXT NOT NULL, -- JSON: [{"api_id": "api_…", "scopes": ["read:items"]}]
	expires_at   BIGINT,        -- NULL: never
	metadata     TEXT,          -- a JSON object, kept byte for byte; NULL for none
	disabled     BOOLEAN NOT NULL,
	version      BIGINT NOT NULL,
	created_at   BIGINT NOT NULL,
	updated_at   BIGINT NOT NULL,
	last_used_at BIGINT         -- NULL: never used
);

-- An organization's keys ordered by ID: ListAPIKeys by organization, and DeleteOrg's check.
CREATE INDEX api_keys_org_id ON api_keys (org_id, id);
-- An owner's keys, in an organization, ordered by ID: ListAPIKeys by owner.
CREATE INDEX api_keys_owner ON api_keys (owner, org_id, id);

CREATE TABLE api_key_hashes (
	hash       BYTEA PRIMARY KEY, -- the unique index every key check seeks in
	key_id     TEXT COLLATE "C" NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
	expires_at BIGINT            -- NULL for the current key's; a rotated-out key's end of grace
);

-- A key's hashes: rotation, and the cascade of DeleteAPIKey.
CREATE INDEX api_key_hashes_key_id ON api_key_hashes (key_id);
-- Rotated-out hashes by expiry, for PruneAPIKeyHashes; current ones (NULL) are left out.
CREATE INDEX api_key_hashes_expires_at ON api_key_hashes (expires_at) WHERE expires_at IS NOT NULL;
