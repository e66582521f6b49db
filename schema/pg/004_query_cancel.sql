-- 004_query_cancel (PostgreSQL): two more final result states, skipped and cancelled, and when a query was cancelled (docs/queries.md).
-- SPDX-License-Identifier: MIT
--
-- Never edit this file once it has landed; add schema/pg/NNN_name.sql instead.

-- Set by POST /v1/queries/{id}/cancel; NULL while not cancelled.
ALTER TABLE queries ADD COLUMN cancelled_at bigint;

-- PostgreSQL changes a CHECK in place (SQLite's twin rebuilds the table):
-- 'skipped' (a site picked by "*" or labels that does not offer the
-- service) and 'cancelled' (not sent before the query was cancelled).
ALTER TABLE query_results DROP CONSTRAINT query_results_status,
    ADD CONSTRAINT query_results_status
    CHECK (status IN ('queued', 'sent', 'done', 'error', 'timeout', 'expired', 'skipped',
                      'cancelled'));
