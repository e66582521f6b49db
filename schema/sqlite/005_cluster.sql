-- 005_cluster: the hubs that share this registry, and which hub holds each session (docs/scale-out.md).
-- SPDX-License-Identifier: MIT
--
-- Never edit this file once it has landed; add schema/NNN_name.sql instead.

-- One row per hub of the cluster: `tether-hub init` inserts it (the first
-- hub, or one that joins a database that already holds a registry) and
-- `run` refreshes it. Sites trust the pins of the active hubs: enrollment
-- tokens carry them, with every hub's public endpoints. A hub is its key:
-- names (what its certificate and tokens say) may repeat.
CREATE TABLE hubs (
    id        INTEGER PRIMARY KEY,
    name      TEXT    NOT NULL CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 253),
    pin       TEXT    NOT NULL UNIQUE CHECK (length(CAST(pin AS BLOB)) BETWEEN 1 AND 64),
    public    TEXT    NOT NULL DEFAULT '[]'
              CHECK (json_valid(public) AND json_type(public) = 'array'),
    state     TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'removed')),
    joined_at INTEGER NOT NULL,
    seen_at   INTEGER NOT NULL
);

-- The hub that held the session; NULL for sessions recorded before 005. A
-- hub that starts closes only its own open sessions (and unowned ones).
ALTER TABLE sessions ADD COLUMN hub_id INTEGER;
