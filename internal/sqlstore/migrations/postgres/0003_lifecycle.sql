-- The token lifecycle: revoked tokens and per-subject cut-offs (key rotation needs no new table: it moves keys
-- between the states of signing_keys). PostgreSQL dialect; keep in step with migrations/sqlite.

-- Access tokens revoked before they expire, by jti. A row is pruned once the token has expired.
CREATE TABLE revoked_tokens (
	jti        TEXT COLLATE "C" PRIMARY KEY,
	expires_at BIGINT NOT NULL, -- the token's exp
	revoked_at BIGINT NOT NULL
);

-- The revocations changed since a time, which every instance polls.
CREATE INDEX revoked_tokens_revoked_at ON revoked_tokens (revoked_at);
-- The pruning of expired rows.
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

-- Every token of a subject (the sub claim: a client id, an API key id) issued before issued_before is revoked. A
-- row is pruned once every token it revokes has expired.
CREATE TABLE revoked_subjects (
	subject       TEXT COLLATE "C" PRIMARY KEY,
	issued_before BIGINT NOT NULL,
	expires_at    BIGINT NOT NULL,
	updated_at    BIGINT NOT NULL
);

CREATE INDEX revoked_subjects_updated_at ON revoked_subjects (updated_at);
CREATE INDEX revoked_subjects_expires_at ON revoked_subjects (expires_at);
