-- Queries of the SQL stores: the workflow versions registered.
-- How a query file is written (blocks, [postgres] overrides, fragments, list parameters, lock
-- markers): the docstring of `plait.stores.sql.queries`.

-- name: workflow_known
-- Whether a workflow version of this fingerprint is saved.
SELECT 1 FROM workflows WHERE fingerprint = :fingerprint;

-- name: save_workflow
-- Remember a workflow version; a fingerprint already known is left as it is.
INSERT INTO workflows (fingerprint, name, version, registered, created_at, plan)
VALUES (
    :fingerprint, :name, :version,
    (SELECT COALESCE(MAX(registered), 0) + 1 FROM workflows),
    :created_at, :plan
)
ON CONFLICT (fingerprint) DO NOTHING;

-- name: get_workflow
-- One workflow version of a name, by fingerprint.
SELECT plan FROM workflows WHERE fingerprint = :fingerprint AND name = :name;

-- name: get_latest_workflow
-- The most recently registered version of a workflow.
SELECT plan FROM workflows WHERE name = :name ORDER BY registered DESC LIMIT 1;

-- name: list_workflows
-- Every workflow version, in registration order.
SELECT plan FROM workflows ORDER BY registered;
