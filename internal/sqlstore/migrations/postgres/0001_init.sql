-- The initial schema, PostgreSQL dialect: migrations/sqlite one for one, with BYTEA for BLOB. Keep the two sets in
-- step (same versions, columns and types), as the Go files' DML is shared.
--
-- Times are unix milliseconds (UTC); NULL is an unset optional time. Lists are JSON in TEXT columns. Every TEXT
-- key (a primary key, or a column that refers to one or holds an ID) and apis.identifier is COLLATE "C": lists are
-- ordered by them and keyset pagination compares them with < and >, which must be bytewise, as in SQLite, whatever
-- the database's collation; and columns compared with each other must have the same collation.
--
-- PostgreSQL-compatible distributed databases take most of this set as it is. What needs care there:
--   - COLLATE "C" on a column: CockroachDB refuses it (its STRING compares bytewise already, so drop the clause);
--     YugabyteDB takes it.
--   - The advisory lock that Open takes while it migrates (pg_advisory_lock): CockroachDB accepts the call but does
--     not lock, and YugabyteDB has advisory locks only in recent releases; where they do not lock, start one
--     instance first, or migrate before starting the others.
--   - The partial unique index signing_keys_one_current (0001) and partial index api_key_hashes_expires_at (0004):
--     CockroachDB 20.2+ and YugabyteDB have partial indexes.
--   - Schema changes inside a transaction, several to a migration and with the INSERT into schema_migrations:
--     CockroachDB runs DDL in explicit transactions only partly atomically (it advises one schema change per
--     transaction), and 0002's DROP INDEX grants_api_id then CREATE INDEX of the same name in one transaction, and
--     its ALTER TABLE … ADD COLUMN … REFERENCES, may be refused there: apply 0002 a statement at a time if so.
--   - SERIALIZABLE transactions retried on SQLSTATE 40001 (inTx): CockroachDB's only isolation, and what it needs.

CREATE TABLE apis (
	id             TEXT COLLATE "C" PRIMARY KEY,
	identifier     TEXT COLLATE "C" NOT NULL UNIQUE,
	name           TEXT NOT NULL,
	scopes         TEXT NOT NULL, -- JSON: [{"name": "read:items", "description": "…"}]
	token_lifetime BIGINT NOT NULL, -- seconds
	signing_alg    TEXT NOT NULL,
	created_at     BIGINT NOT NULL,
	updated_at     BIGINT NOT NULL
);

CREATE TABLE clients (
	id          TEXT COLLATE "C" PRIMARY KEY,
	name        TEXT NOT NULL,
	description TEXT NOT NULL,
	disabled    BOOLEAN NOT NULL,
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL
);

CREATE TABLE client_secrets (
	id         TEXT COLLATE "C" PRIMARY KEY,
	client_id  TEXT COLLATE "C" NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
	hash       BYTEA NOT NULL,
	hint       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT
);

-- A client's secrets, in the order FindClient returns them.
CREATE INDEX client_secrets_client_id ON client_secrets (client_id, created_at, id);

CREATE TABLE grants (
	id         TEXT COLLATE "C" PRIMARY KEY,
	client_id  TEXT COLLATE "C" NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
	api_id     TEXT COLLATE "C" NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
	scopes     TEXT NOT NULL, -- JSON: ["read:items"]
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	UNIQUE (client_id, api_id) -- also the index for a client's grants, ordered by api_id
);

-- Grants by API, for DeleteAPI's cascade.
CREATE INDEX grants_api_id ON grants (api_id);

CREATE TABLE signing_keys (
	id         TEXT COLLATE "C" PRIMARY KEY,
	alg        TEXT NOT NULL,
	state      TEXT NOT NULL CHECK (state IN ('next', 'current', 'retired')),
	public_jwk BYTEA NOT NULL,
	private    BYTEA NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);

-- At most one current key per algorithm. This index is the compare-and-swap that key rotation relies on: of several
-- instances making a key current at once, one wins and the others get a unique violation (auth.ErrConflict).
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (alg) WHERE state = 'current';

CREATE TABLE settings (
	name  TEXT COLLATE "C" PRIMARY KEY,
	value BYTEA NOT NULL
);
