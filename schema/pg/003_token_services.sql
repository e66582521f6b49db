-- 003_token_services (PostgreSQL): an API token may be limited to named services (docs/api.md).
-- SPDX-License-Identifier: MIT
--
-- Never edit this file once it has landed; add schema/pg/NNN_name.sql instead.

-- NULL: every service of the sites the token reaches (restricted ones only
-- for admin tokens). Else a JSON array of service names, the only services
-- the token may use, restricted ones included.
ALTER TABLE api_tokens ADD COLUMN services json
    CHECK (services IS NULL OR json_typeof(services) = 'array');
