-- 007_query_sent_by (PostgreSQL): which hub sent each result to its site, so that a hub that starts fails only its own (docs/scale-out.md).
-- SPDX-License-Identifier: MIT
--
-- Never edit this file once it has landed; add schema/pg/NNN_name.sql instead.

-- The hubs.id of the hub that sent the request to the site (status 'sent'
-- and after); NULL while queued, and for rows sent before 007. A hub that
-- starts again fails the 'sent' results it left (their answers died with
-- its tunnels), never another hub's.
ALTER TABLE query_results ADD COLUMN sent_by bigint;
