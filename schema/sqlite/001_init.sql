-- 001_init: sites, enrollment and API tokens, connection history, audit log.
-- SPDX-License-Identifier: MIT
--
-- Never edit this file once it has landed: databases in the field already ran
-- it. Change the schema with a new schema/NNN_name.sql (see docs/registry.md).
-- Timestamps are unix seconds; NULL means "not yet" / "never".

-- A site is what an operator registered. Its key pin is NULL unless a key is
-- registered, and a key is registered exactly in the states where the site may
-- connect or be re-enabled (CHECK at the end).
CREATE TABLE sites (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE
                  CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 63
                         AND name GLOB '[a-z0-9]*'
                         AND name NOT GLOB '*[^a-z0-9-]*'),
    state         TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'active', 'disabled', 'revoked')),
    -- "sha256//" + standard base64 (43 chars + one '=') of the SPKI digest.
    pin           TEXT
                  CHECK (pin IS NULL
                         OR (length(CAST(pin AS BLOB)) = 52
                             AND substr(pin, 1, 8) = 'sha256//'
                             AND substr(pin, 9, 43) NOT GLOB '*[^A-Za-z0-9+/]*'
                             AND substr(pin, 52, 1) = '=')),
    labels        TEXT    NOT NULL DEFAULT '{}'
                  CHECK (json_valid(labels) AND json_type(labels) = 'object'),
    services      TEXT    NOT NULL DEFAULT '[]'
                  CHECK (json_valid(services) AND json_type(services) = 'array'),
    agent_version TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(agent_version AS BLOB)) < 64),
    remote_addr   TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(remote_addr AS BLOB)) < 64),
    created_at    INTEGER NOT NULL,
    enrolled_at   INTEGER,
    last_seen     INTEGER,
    CHECK ((pin IS NOT NULL) = (state IN ('active', 'disabled')))
);
-- NULL pins do not collide under UNIQUE, so any number of keyless sites fit.
CREATE UNIQUE INDEX sites_pin ON sites (pin);

-- One-time enrollment secrets; only SHA-256 hex of the secret is stored.
CREATE TABLE enroll_tokens (
    id           INTEGER PRIMARY KEY,
    site_id      INTEGER NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    secret_hash  TEXT    NOT NULL
                 CHECK (length(CAST(secret_hash AS BLOB)) = 64
                        AND secret_hash NOT GLOB '*[^0-9a-f]*'),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL CHECK (expires_at > created_at),
    used_at      INTEGER,
    cancelled_at INTEGER,
    CHECK (used_at IS NULL OR cancelled_at IS NULL)
);
CREATE UNIQUE INDEX enroll_tokens_hash ON enroll_tokens (secret_hash);
-- Without it a site delete scans the whole table to cascade.
CREATE INDEX enroll_tokens_site ON enroll_tokens (site_id);

-- Bearer tokens for the HTTP API; only SHA-256 hex of the token is stored.
-- A name is unique among live tokens, so a revoked name can be reused.
CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL
               CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 63
                      AND name GLOB '[a-z0-9]*'
                      AND name NOT GLOB '*[^a-z0-9-]*'),
    role       TEXT    NOT NULL CHECK (role IN ('admin', 'user')),
    -- NULL: every site. Else ["a","b"] or {"labels":{...}}.
    scope      TEXT
               CHECK (scope IS NULL
                      OR (json_valid(scope) AND json_type(scope) IN ('array', 'object'))),
    hash       TEXT    NOT NULL
               CHECK (length(CAST(hash AS BLOB)) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    created_at INTEGER NOT NULL,
    expires_at INTEGER CHECK (expires_at IS NULL OR expires_at > created_at),
    revoked_at INTEGER
);
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (hash);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- Connection history: one row per tunnel, open while disconnected_at IS NULL.
CREATE TABLE sessions (
    id              INTEGER PRIMARY KEY,
    site_id         INTEGER NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    remote_addr     TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(remote_addr AS BLOB)) < 64),
    agent_version   TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(agent_version AS BLOB)) < 64),
    connected_at    INTEGER NOT NULL,
    disconnected_at INTEGER CHECK (disconnected_at IS NULL OR disconnected_at >= connected_at),
    reason          TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(reason AS BLOB)) < 128),
    bytes_in        INTEGER NOT NULL DEFAULT 0 CHECK (bytes_in >= 0),
    bytes_out       INTEGER NOT NULL DEFAULT 0 CHECK (bytes_out >= 0)
);
-- Serves the cascade on site delete and "newest sessions of a site".
CREATE INDEX sessions_site ON sessions (site_id, connected_at);
CREATE INDEX sessions_open ON sessions (site_id) WHERE disconnected_at IS NULL;

-- One row per state-changing action of an operator, a user or the hub.
-- Targets are names, not foreign keys: the record outlives what it names.
CREATE TABLE audit (
    id     INTEGER PRIMARY KEY,
    ts     INTEGER NOT NULL,
    actor  TEXT    NOT NULL CHECK (length(CAST(actor AS BLOB)) <= 255),
    remote TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(remote AS BLOB)) <= 255),
    action TEXT    NOT NULL CHECK (length(CAST(action AS BLOB)) BETWEEN 1 AND 255),
    target TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(target AS BLOB)) <= 255),
    result TEXT    NOT NULL CHECK (length(CAST(result AS BLOB)) <= 255),
    detail TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(detail AS BLOB)) <= 4096)
);
CREATE INDEX audit_ts ON audit (ts);
