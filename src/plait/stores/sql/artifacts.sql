-- Queries of the SQL stores: artifacts, the files steps save (ctx.save_artifact).
-- How a query file is written (blocks, [postgres] overrides, fragments, list parameters, lock
-- markers): the docstring of `plait.stores.sql.queries`.

-- name: insert_artifact
-- Make an artifact a step saved visible (in the transaction recording the step's success).
INSERT INTO artifacts (id, run_id, step, name, size, sha256, content_type, path, metadata,
                       created_at)
VALUES (:id, :run_id, :step, :name, :size, :sha256, :content_type, :path, :metadata,
        :created_at);

-- name: list_artifacts
-- The artifacts of a run, oldest first.
SELECT id, run_id, step, name, size, sha256, content_type, path, metadata, created_at
FROM artifacts WHERE run_id = :run_id
ORDER BY created_at, id;

-- name: get_artifact
-- One artifact (the bytes of one kept in the database are its blob's).
SELECT id, run_id, step, name, size, sha256, content_type, path, metadata, created_at
FROM artifacts WHERE id = :id;

-- name: known_artifacts
-- Which of a list of artifact ids have a row (the others' files may be swept).
SELECT id FROM artifacts WHERE id IN (SELECT value FROM json_each(:id_list));

-- name: known_artifacts [postgres]
-- Which of a list of artifact ids have a row (the others' files may be swept).
SELECT id FROM artifacts
WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:id_list AS jsonb))));
