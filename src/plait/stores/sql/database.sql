-- Queries of the SQL stores: the database itself: whose tables, which schema version.
-- How a query file is written (blocks, [postgres] overrides, fragments, list parameters, lock
-- markers): the docstring of `plait.stores.sql.queries`.

-- name: user_tables
-- The names of the tables in the database that are not the engine's own.
SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\';

-- name: user_tables [postgres]
-- The names of the tables in the store's schema.
SELECT table_name FROM information_schema.tables
WHERE table_schema = current_schema() AND table_type = 'BASE TABLE';

-- name: get_schema_version
-- The schema version recorded in plait_meta.
SELECT value FROM plait_meta WHERE key = 'schema_version';

-- name: set_schema_version
-- Record the schema version in plait_meta.
INSERT INTO plait_meta (key, value) VALUES ('schema_version', :version)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: durability_settings [postgres]
-- The server settings on which an acknowledged commit's survival depends (`plait doctor`).
SELECT name, setting FROM pg_settings
WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes');
