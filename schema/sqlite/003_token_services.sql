-- 003_token_services: an API token may be limited to named services (docs/api.md).
-- SPDX-License-Identifier: MIT
--
-- Never edit this file once it has landed; add schema/NNN_name.sql instead.

-- NULL: every service of the sites the token reaches (restricted ones only
-- for admin tokens). Else a JSON array of service names, the only services
-- the token may use, restricted ones included.
ALTER TABLE api_tokens ADD COLUMN services TEXT
    CHECK (services IS NULL OR (json_valid(services) AND json_type(services) = 'array'));
