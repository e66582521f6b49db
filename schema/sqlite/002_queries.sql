-- 002_queries: federated queries and their per-site results (docs/queries.md).
-- SPDX-License-Identifier: MIT
--
-- Never edit this file once it has landed; add schema/NNN_name.sql instead.
-- Timestamps are unix seconds; NULL means "not yet" / "never".

-- One row per question. The submitter is kept by token id (ownership) and by
-- name (display); neither is a foreign key: the record outlives the token.
CREATE TABLE queries (
    id           INTEGER PRIMARY KEY,
    -- Public id: "q_" + 22 base64url characters (16 random bytes).
    qid          TEXT    NOT NULL UNIQUE
                 CHECK (length(CAST(qid AS BLOB)) = 24 AND substr(qid, 1, 2) = 'q_'
                        AND substr(qid, 3) NOT GLOB '*[^A-Za-z0-9_-]*'),
    created_at   INTEGER NOT NULL,
    token_id     INTEGER NOT NULL,
    actor        TEXT    NOT NULL CHECK (length(CAST(actor AS BLOB)) BETWEEN 1 AND 63),
    remote       TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(remote AS BLOB)) < 64),
    -- The "sites" selector as the user gave it ("*", a list, or {"labels":{}}).
    target       TEXT    NOT NULL CHECK (json_valid(target)),
    service      TEXT    NOT NULL CHECK (length(CAST(service AS BLOB)) BETWEEN 1 AND 63),
    method       TEXT    NOT NULL CHECK (length(CAST(method AS BLOB)) BETWEEN 1 AND 16),
    path         TEXT    NOT NULL
                 CHECK (substr(path, 1, 1) = '/' AND length(CAST(path AS BLOB)) <= 4096),
    headers      TEXT    NOT NULL DEFAULT '{}'
                 CHECK (json_valid(headers) AND json_type(headers) = 'object'),
    body         BLOB    NOT NULL DEFAULT x'',
    timeout_s    INTEGER NOT NULL CHECK (timeout_s BETWEEN 1 AND 86400),
    ttl_s        INTEGER NOT NULL CHECK (ttl_s BETWEEN 0 AND 31536000),
    expires_at   INTEGER NOT NULL,
    n_sites      INTEGER NOT NULL CHECK (n_sites >= 1),
    -- Results in a final state (done, error, timeout, expired); the query is
    -- complete when it reaches n_sites.
    n_final      INTEGER NOT NULL DEFAULT 0 CHECK (n_final BETWEEN 0 AND n_sites),
    completed_at INTEGER,
    CHECK ((completed_at IS NULL) = (n_final < n_sites))
);
-- A user token's own history, newest first.
CREATE INDEX queries_token ON queries (token_id, id);

-- One row per (query, target site). site_id is the site's id at submit time
-- (not a foreign key: the result outlives the site, and a site removed and
-- re-created under the same name is another site that must not receive it).
CREATE TABLE query_results (
    query_id    INTEGER NOT NULL REFERENCES queries (id) ON DELETE CASCADE,
    site_id     INTEGER NOT NULL,
    site        TEXT    NOT NULL CHECK (length(CAST(site AS BLOB)) BETWEEN 1 AND 63),
    status      TEXT    NOT NULL
                CHECK (status IN ('queued', 'sent', 'done', 'error', 'timeout', 'expired')),
    -- Copy of queries.expires_at, so that the expiry scan is one partial index.
    expires_at  INTEGER NOT NULL,
    sent_at     INTEGER,
    http_status INTEGER CHECK (http_status IS NULL OR http_status BETWEEN 100 AND 599),
    headers     TEXT    CHECK (headers IS NULL
                               OR (json_valid(headers) AND json_type(headers) = 'object')),
    body        BLOB,
    detail      TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(detail AS BLOB)) <= 1024),
    latency_ms  INTEGER CHECK (latency_ms IS NULL OR latency_ms >= 0),
    finished_at INTEGER,
    -- Arrival order of the final results of one query: 1, 2, ... n_sites.
    seq         INTEGER CHECK (seq IS NULL OR seq >= 1),
    PRIMARY KEY (query_id, site_id),
    CHECK ((status IN ('queued', 'sent')) = (seq IS NULL)),
    CHECK ((seq IS NULL) = (finished_at IS NULL)),
    CHECK ((status = 'queued') <= (sent_at IS NULL))
);
-- Delivery when a site connects: its queued results.
CREATE INDEX query_results_queued ON query_results (site_id, query_id) WHERE status = 'queued';
-- The expiry scan.
CREATE INDEX query_results_expiry ON query_results (expires_at) WHERE status = 'queued';
-- Start-up: results a previous run left in flight.
CREATE INDEX query_results_sent ON query_results (query_id) WHERE status = 'sent';
-- Arrival order is unique per query; also serves the events stream.
CREATE UNIQUE INDEX query_results_seq ON query_results (query_id, seq) WHERE seq IS NOT NULL;
