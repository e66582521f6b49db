-- 006_result_status_check (PostgreSQL): nothing to change; the number is kept in step with schema/sqlite/ (docs/queries.md).
-- SPDX-License-Identifier: MIT
--
-- Never edit this file once it has landed; add schema/pg/NNN_name.sql instead.

-- SQLite's 006 rewrites query_results' status CHECK from an IN list to a
-- chain of comparisons, because SQLite fills a temporary b-tree for the
-- list on every statement run (one per landing result). PostgreSQL
-- compares against the list's constants directly, so its CHECK
-- (query_results_status, 004_query_cancel.sql) stays as it is.
SELECT 1;
