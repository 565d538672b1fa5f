-- Queries of the SQL stores: blobs, payloads kept once under their SHA-256 (`core.blobs`).
-- On SQLite, data is written and read in place by the store's driver (stores.sql.ops: write_blob,
-- read_blobs): the queries insert a zeroblob and return rowids.
-- How a query file is written (blocks, [postgres] overrides, fragments, list parameters, lock
-- markers): the docstring of `plait.stores.sql.queries`.

-- name: get_blobs
-- The blobs of a list of hashes: hash, rowid (the driver reads the data in place), size.
SELECT sha256, rowid, size FROM blobs WHERE sha256 IN (SELECT value FROM json_each(:sha_list));

-- name: get_blobs [postgres]
-- The blobs of a list of hashes: hash, data, size.
SELECT sha256, data, size FROM blobs
WHERE sha256 = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:sha_list AS jsonb))));

-- name: get_blob_excerpts
-- The blobs of a list of hashes: hash, rowid (the driver reads the first bytes in place), size.
SELECT sha256, rowid, size FROM blobs WHERE sha256 IN (SELECT value FROM json_each(:sha_list));

-- name: get_blob_excerpts [postgres]
-- The first bytes of the blobs of a list of hashes (a prefix of a TOASTed value is read alone).
SELECT sha256, substring(data FROM 1 FOR :excerpt), size FROM blobs
WHERE sha256 = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:sha_list AS jsonb))));

-- name: add_blob_refs
-- Count new references to a blob, if the store has it (then its data need not be sent).
UPDATE blobs SET refs = refs + :refs WHERE sha256 = :sha256;

-- name: insert_blob
-- Store a blob with its first references (or count them): zeroblob, the data written in place.
INSERT INTO blobs (sha256, size, refs, data, created_at)
VALUES (:sha256, :size, :refs, zeroblob(:size), :created_at)
ON CONFLICT (sha256) DO UPDATE SET refs = blobs.refs + excluded.refs
RETURNING rowid;

-- name: insert_blob [postgres]
-- Store a blob with its first references (or count them, if another writer stored it first).
INSERT INTO blobs (sha256, size, refs, data, created_at)
VALUES (:sha256, :size, :refs, :data, :created_at)
ON CONFLICT (sha256) DO UPDATE SET refs = blobs.refs + excluded.refs;

-- name: put_blob
-- Store a blob without references, or refresh its age: zeroblob, the data written in place.
INSERT INTO blobs (sha256, size, refs, data, created_at)
VALUES (:sha256, :size, 0, zeroblob(:size), :created_at)
ON CONFLICT (sha256) DO UPDATE SET created_at = excluded.created_at
RETURNING rowid;

-- name: put_blob [postgres]
-- Store a blob without references (its row commits later), or refresh its age if it is known.
INSERT INTO blobs (sha256, size, refs, data, created_at)
VALUES (:sha256, :size, 0, :data, :created_at)
ON CONFLICT (sha256) DO UPDATE SET created_at = excluded.created_at;

-- name: touch_blob
-- Refresh the age of a blob the store has (a put of a known blob sends no data); its hash.
UPDATE blobs SET created_at = :created_at WHERE sha256 = :sha256
RETURNING sha256;

-- name: change_blob_refs
-- Add to the reference counts of blobs, given as a list of [hash, change]; the hashes found.
UPDATE blobs
SET refs = refs + (SELECT json_extract(d.value, '$[1]') FROM json_each(:delta_list) AS d
                   WHERE json_extract(d.value, '$[0]') = blobs.sha256)
WHERE sha256 IN (SELECT json_extract(value, '$[0]') FROM json_each(:delta_list))
RETURNING sha256;

-- name: change_blob_refs [postgres]
-- Add to the reference counts of blobs, given as a list of [hash, change]; the hashes found.
UPDATE blobs AS b SET refs = b.refs + CAST(d.value ->> 1 AS integer)
FROM jsonb_array_elements(CAST(:delta_list AS jsonb)) AS d (value)
WHERE b.sha256 = d.value ->> 0
RETURNING b.sha256;

-- name: blob_stats
-- How many blobs, their bytes, and the references to them.
SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(refs), 0) FROM blobs;

-- name: gc_blobs
-- Delete the blobs nobody refers to that are older than a time; their hashes.
DELETE FROM blobs WHERE refs <= 0 AND created_at < :older_than
RETURNING sha256;
