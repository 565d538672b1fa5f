-- Queries of the SQL stores: records, the documents of collections (engine.records, ctx.record).
-- How a query file is written (blocks, [postgres] overrides, fragments, list parameters, lock
-- markers): the docstring of `plait.stores.sql.queries`.

-- name: get_record
-- One document of a collection (not a deleted one: its row is a tombstone, doc empty).
SELECT collection, key, doc, revision, updated_at, run_id, step
FROM records WHERE collection = :collection AND key = :key AND length(doc) > 0;

-- name: get_record_revision
-- The revision of one document (to say why a conditional write was refused); none if deleted.
SELECT revision FROM records WHERE collection = :collection AND key = :key AND length(doc) > 0;

-- name: list_records
-- Documents of a collection whose key starts with a prefix, by key, from after a key.
SELECT collection, key, doc, revision, updated_at, run_id, step
FROM records
WHERE collection = :collection AND key > :after AND substr(key, 1, :prefix_length) = :prefix
    AND length(doc) > 0
ORDER BY key
LIMIT :limit;

-- name: create_record
-- Create a document (revision 1, or a tombstone's + 1) unless its key is taken; its revision.
INSERT INTO records (collection, key, doc, revision, updated_at, run_id, step)
VALUES (:collection, :key, :doc, 1, :updated_at, NULL, NULL)
ON CONFLICT (collection, key) DO UPDATE
SET doc = excluded.doc, revision = records.revision + 1, updated_at = excluded.updated_at,
    run_id = NULL, step = NULL
WHERE length(records.doc) = 0
RETURNING revision;

-- name: put_record
-- Write a document whatever its revision (or its tombstone's); its new revision.
INSERT INTO records (collection, key, doc, revision, updated_at, run_id, step)
VALUES (:collection, :key, :doc, 1, :updated_at, NULL, NULL)
ON CONFLICT (collection, key) DO UPDATE
SET doc = excluded.doc, revision = records.revision + 1, updated_at = excluded.updated_at,
    run_id = NULL, step = NULL
RETURNING revision;

-- name: update_record
-- Write a document only over the revision expected; its new revision if it was written.
UPDATE records
SET doc = :doc, revision = revision + 1, updated_at = :updated_at, run_id = NULL, step = NULL
WHERE collection = :collection AND key = :key AND revision = :expected AND length(doc) > 0
RETURNING revision;

-- name: delete_record
-- Delete a document, leaving a tombstone (empty doc) one revision on; the revision it had.
UPDATE records
SET doc = :tombstone, revision = revision + 1, updated_at = :updated_at, run_id = NULL,
    step = NULL
WHERE collection = :collection AND key = :key AND length(doc) > 0
RETURNING revision - 1;

-- name: delete_record_at
-- Delete a document only at the revision expected (a tombstone, as above); the revision it had.
UPDATE records
SET doc = :tombstone, revision = revision + 1, updated_at = :updated_at, run_id = NULL,
    step = NULL
WHERE collection = :collection AND key = :key AND revision = :expected AND length(doc) > 0
RETURNING revision - 1;

-- name: purge_record_tombstones
-- Delete the tombstones of records deleted before a time (engine.gc); their keys.
DELETE FROM records WHERE length(doc) = 0 AND updated_at < :older_than
RETURNING key;

-- name: write_step_records
-- Write the documents steps recorded with their success (`revision`: writes of each to count).
INSERT INTO records (collection, key, doc, revision, updated_at, run_id, step)
VALUES (:collection, :key, :doc, :revision, :updated_at, :run_id, :step)
ON CONFLICT (collection, key) DO UPDATE
SET doc = excluded.doc, revision = records.revision + excluded.revision,
    updated_at = excluded.updated_at, run_id = excluded.run_id, step = excluded.step;

-- name: write_step_records [postgres]
-- Write the documents steps recorded with their success (`revision`: writes of each to count).
INSERT INTO records (collection, key, doc, revision, updated_at, run_id, step)
SELECT * FROM unnest(
    CAST(:collection AS text[]), CAST(:key AS text[]), CAST(:doc AS bytea[]),
    CAST(:revision AS int[]), CAST(:updated_at AS double precision[]), CAST(:run_id AS text[]),
    CAST(:step AS text[])
)
ON CONFLICT (collection, key) DO UPDATE
SET doc = excluded.doc, revision = records.revision + excluded.revision,
    updated_at = excluded.updated_at, run_id = excluded.run_id, step = excluded.step;

-- name: reserve_record
-- Give a record a row to lock if it has none: a tombstone at revision 0 (read as no document).
INSERT INTO records (collection, key, doc, revision, updated_at, run_id, step)
VALUES (:collection, :key, :tombstone, 0, :updated_at, NULL, NULL)
ON CONFLICT (collection, key) DO NOTHING;

-- name: lock_record
-- A record's revision and whether it holds a document, locked until the transaction ends.
SELECT revision, length(doc) > 0 FROM records
WHERE collection = :collection AND key = :key /*for update*/;
