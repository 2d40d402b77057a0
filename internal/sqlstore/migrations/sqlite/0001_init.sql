-- The initial schema, SQLite dialect.
--
-- Times are unix milliseconds (UTC); NULL is an unset optional time. Lists are JSON in TEXT columns. The DML in the
-- Go files is shared with PostgreSQL, so keep column names and types in step with a migrations/postgres set
-- (where BLOB becomes BYTEA).

CREATE TABLE apis (
	id             TEXT PRIMARY KEY,
	identifier     TEXT NOT NULL UNIQUE,
	name           TEXT NOT NULL,
	scopes         TEXT NOT NULL, -- JSON: [{"name": "read:items", "description": "…"}]
	token_lifetime BIGINT NOT NULL, -- seconds
	signing_alg    TEXT NOT NULL,
	created_at     BIGINT NOT NULL,
	updated_at     BIGINT NOT NULL
);

CREATE TABLE clients (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL,
	description TEXT NOT NULL,
	disabled    BOOLEAN NOT NULL,
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL
);

CREATE TABLE client_secrets (
	id         TEXT PRIMARY KEY,
	client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
	hash       BLOB NOT NULL,
	hint       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT
);

-- A client's secrets, in the order FindClient returns them.
CREATE INDEX client_secrets_client_id ON client_secrets (client_id, created_at, id);

CREATE TABLE grants (
	id         TEXT PRIMARY KEY,
	client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
	api_id     TEXT NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
	scopes     TEXT NOT NULL, -- JSON: ["read:items"]
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	UNIQUE (client_id, api_id) -- also the index for a client's grants, ordered by api_id
);

-- Grants by API, for DeleteAPI's cascade.
CREATE INDEX grants_api_id ON grants (api_id);

CREATE TABLE signing_keys (
	id         TEXT PRIMARY KEY,
	alg        TEXT NOT NULL,
	state      TEXT NOT NULL CHECK (state IN ('next', 'current', 'retired')),
	public_jwk BLOB NOT NULL,
	private    BLOB NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);

-- At most one current key per algorithm. This index is the compare-and-swap that key rotation relies on: of several
-- instances making a key current at once, one wins and the others get a unique violation (auth.ErrConflict).
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (alg) WHERE state = 'current';

CREATE TABLE settings (
	name  TEXT PRIMARY KEY,
	value BLOB NOT NULL
);
