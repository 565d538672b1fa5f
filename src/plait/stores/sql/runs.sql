-- Queries of the SQL stores: runs, and deleting them.
-- How a query file is written (blocks, [postgres] overrides, fragments, list parameters, lock
-- markers): the docstring of `plait.stores.sql.queries`.

-- fragment: run_columns
-- The columns of a run: RunRow's fields, then the blob hashes (rows.RUN_ROW_COLUMNS).
id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq, output,
error, created_at, started_at, finished_at, deadline, parent_run, forked_from, next_idx, state,
name, labels, metadata, called_by, input_blob, output_blob

-- name: insert_run
-- Create a run; nothing happens if the id is taken.
INSERT INTO runs (
    id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
    output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
    next_idx, input_blob, output_blob, updated_at, state, name, labels, metadata, called_by
) VALUES (
    :id, :workflow, :version, :fingerprint, :status, :input, :sinks, :unfinished, :failures,
    :next_seq, :output, :error, :created_at, :started_at, :finished_at, :deadline, :parent_run,
    :forked_from, :next_idx, :input_blob, :output_blob, :created_at, :state, :name, :labels,
    :metadata, :called_by
)
ON CONFLICT (id) DO NOTHING;

-- name: insert_runs
-- Create runs (create_runs); nothing happens for an id that is taken.
INSERT INTO runs (
    id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
    output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
    next_idx, state, name, labels, metadata, called_by, input_blob, output_blob, updated_at
) VALUES (
    :id, :workflow, :version, :fingerprint, :status, :input, :sinks, :unfinished, :failures,
    :next_seq, :output, :error, :created_at, :started_at, :finished_at, :deadline, :parent_run,
    :forked_from, :next_idx, :state, :name, :labels, :metadata, :called_by, :input_blob,
    :output_blob, :updated_at
)
ON CONFLICT (id) DO NOTHING;

-- name: insert_runs [postgres]
-- Create runs (create_runs); nothing happens for an id that is taken.
INSERT INTO runs (
    id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
    output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
    next_idx, state, name, labels, metadata, called_by, input_blob, output_blob, updated_at
)
SELECT * FROM unnest(
    CAST(:id AS text[]), CAST(:workflow AS text[]), CAST(:version AS text[]),
    CAST(:fingerprint AS text[]), CAST(:status AS text[]), CAST(:input AS bytea[]),
    CAST(:sinks AS text[]), CAST(:unfinished AS int[]), CAST(:failures AS int[]),
    CAST(:next_seq AS int[]), CAST(:output AS bytea[]), CAST(:error AS text[]),
    CAST(:created_at AS double precision[]), CAST(:started_at AS double precision[]),
    CAST(:finished_at AS double precision[]), CAST(:deadline AS double precision[]),
    CAST(:parent_run AS text[]), CAST(:forked_from AS text[]), CAST(:next_idx AS int[]),
    CAST(:state AS bytea[]), CAST(:name AS text[]), CAST(:labels AS text[]),
    CAST(:metadata AS bytea[]), CAST(:called_by AS text[]), CAST(:input_blob AS text[]),
    CAST(:output_blob AS text[]),
    CAST(:updated_at AS double precision[])
)
ON CONFLICT (id) DO NOTHING;

-- name: insert_new_run
-- Create a run as a start makes it (create_runs): only the columns it has set.
INSERT INTO runs (
    id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
    created_at, deadline, next_idx, input_blob, updated_at
) VALUES (
    :id, :workflow, :version, :fingerprint, :status, :input, :sinks, :unfinished, :failures,
    :next_seq, :created_at, :deadline, :next_idx, :input_blob, :updated_at
)
ON CONFLICT (id) DO NOTHING;

-- name: insert_new_run [postgres]
-- Create runs as starts make them (create_runs): only the columns they have set.
INSERT INTO runs (
    id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
    created_at, deadline, next_idx, input_blob, updated_at
)
SELECT * FROM unnest(
    CAST(:id AS text[]), CAST(:workflow AS text[]), CAST(:version AS text[]),
    CAST(:fingerprint AS text[]), CAST(:status AS text[]), CAST(:input AS bytea[]),
    CAST(:sinks AS text[]), CAST(:unfinished AS int[]), CAST(:failures AS int[]),
    CAST(:next_seq AS int[]), CAST(:created_at AS double precision[]),
    CAST(:deadline AS double precision[]), CAST(:next_idx AS int[]),
    CAST(:input_blob AS text[]), CAST(:updated_at AS double precision[])
)
ON CONFLICT (id) DO NOTHING;

-- name: get_run
-- One run by id.
SELECT /*include run_columns*/
FROM runs WHERE id = :id /*for update*/;

-- name: get_runs
-- The runs of a list of ids.
SELECT /*include run_columns*/
FROM runs WHERE id IN (SELECT value FROM json_each(:id_list))
ORDER BY id /*for update*/;

-- name: get_runs [postgres]
-- The runs of a list of ids.
SELECT /*include run_columns*/
FROM runs WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:id_list AS jsonb))))
ORDER BY id /*for update*/;

-- fragment: run_filter
-- The filters of a run list beside workflow and status: created, text, labels (run_labels).
(:created_from IS NULL OR created_at >= :created_from)
AND (:created_to IS NULL OR created_at < :created_to)
AND (:text IS NULL OR instr(lower(id), :text) > 0 OR instr(lower(coalesce(name, '')), :text) > 0
     OR instr(lower(coalesce(error, '')), :text) > 0)
AND (:labels IS NULL OR id IN (
    SELECT l.run_id FROM run_labels AS l JOIN json_each(:labels) AS w
        ON l.key = w.key AND l.value = w.value
    GROUP BY l.run_id HAVING count(*) = :label_count))

-- fragment: run_filter [postgres]
-- The filters of a run list beside workflow and status (see the common text).
(CAST(:created_from AS double precision) IS NULL
 OR created_at >= CAST(:created_from AS double precision))
AND (CAST(:created_to AS double precision) IS NULL
     OR created_at < CAST(:created_to AS double precision))
AND (CAST(:text AS text) IS NULL OR strpos(lower(id), CAST(:text AS text)) > 0
     OR strpos(lower(coalesce(name, '')), CAST(:text AS text)) > 0
     OR strpos(lower(coalesce(error, '')), CAST(:text AS text)) > 0)
AND (CAST(:labels AS text) IS NULL OR id IN (
    SELECT l.run_id FROM run_labels AS l
        JOIN jsonb_each_text(CAST(:labels AS jsonb)) AS w ON l.key = w.key AND l.value = w.value
    GROUP BY l.run_id HAVING count(*) = CAST(:label_count AS int)))

-- name: list_runs
-- A page of runs, newest first, strictly before a (created_at, id) position (an index range).
SELECT /*include run_columns*/
FROM runs
WHERE (:status IS NULL OR status = :status)
  AND (created_at, id) < (:before_at, :before_id)
  AND /*include run_filter*/
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_runs [postgres]
-- A page of runs, newest first, strictly before a (created_at, id) position (an index range).
SELECT /*include run_columns*/
FROM runs
WHERE (CAST(:status AS text) IS NULL OR status = CAST(:status AS text))
  AND (created_at, id) < (CAST(:before_at AS double precision), CAST(:before_id AS text))
  AND /*include run_filter*/
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_runs_of_workflow
-- A page of runs of one workflow, newest first, strictly before a (created_at, id) position.
SELECT /*include run_columns*/
FROM runs
WHERE workflow = :workflow
  AND (created_at, id) < (:before_at, :before_id)
  AND /*include run_filter*/
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_runs_of_workflow [postgres]
-- A page of runs of one workflow, newest first, strictly before a (created_at, id) position.
SELECT /*include run_columns*/
FROM runs
WHERE workflow = :workflow
  AND (created_at, id) < (CAST(:before_at AS double precision), CAST(:before_id AS text))
  AND /*include run_filter*/
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_runs_of_workflow_status
-- A page of runs of one workflow in one status, newest first, before a (created_at, id) position.
SELECT /*include run_columns*/
FROM runs
WHERE workflow = :workflow AND status = :status
  AND (created_at, id) < (:before_at, :before_id)
  AND /*include run_filter*/
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_runs_of_workflow_status [postgres]
-- A page of runs of one workflow in one status, newest first, before a (created_at, id) position.
SELECT /*include run_columns*/
FROM runs
WHERE workflow = :workflow AND status = :status
  AND (created_at, id) < (CAST(:before_at AS double precision), CAST(:before_id AS text))
  AND /*include run_filter*/
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: count_runs
-- How many runs a filter matches (a bulk action's dry run).
SELECT count(*) FROM runs
WHERE (:workflow IS NULL OR workflow = :workflow)
  AND (:status IS NULL OR status = :status)
  AND /*include run_filter*/;

-- name: count_runs [postgres]
-- How many runs a filter matches (a bulk action's dry run).
SELECT count(*) FROM runs
WHERE (CAST(:workflow AS text) IS NULL OR workflow = CAST(:workflow AS text))
  AND (CAST(:status AS text) IS NULL OR status = CAST(:status AS text))
  AND /*include run_filter*/;

-- name: list_run_changes
-- Runs whose status changed after an (updated_at, id) position: that time and id, in order.
SELECT updated_at, id
FROM runs
WHERE (updated_at, id) > (:after_at, :after_id)
ORDER BY updated_at, id
LIMIT :limit;

-- The writes of a transaction: the common text is run once per row (executemany); the
-- [postgres] versions take one array per column and write every row in one statement (the
-- store's driver turns the rows into columns), which costs the server a fraction per row.

-- name: update_run
-- Write the mutable fields of a run, except its output; `updated_at` only if given (its status changed: the change feed reads it).
UPDATE runs
SET status = :status, unfinished = :unfinished, failures = :failures, next_seq = :next_seq,
    error = :error, started_at = :started_at, finished_at = :finished_at, next_idx = :next_idx,
    updated_at = COALESCE(:updated_at, updated_at)
WHERE id = :id;

-- name: update_run [postgres]
-- Write the mutable fields of runs, except their output; `updated_at` only where given.
UPDATE runs AS r
SET status = v.status, unfinished = v.unfinished, failures = v.failures, next_seq = v.next_seq,
    error = v.error, started_at = v.started_at, finished_at = v.finished_at,
    next_idx = v.next_idx, updated_at = COALESCE(v.updated_at, r.updated_at)
FROM unnest(
    CAST(:status AS text[]), CAST(:unfinished AS int[]), CAST(:failures AS int[]),
    CAST(:next_seq AS int[]), CAST(:error AS text[]), CAST(:started_at AS double precision[]),
    CAST(:finished_at AS double precision[]), CAST(:next_idx AS int[]),
    CAST(:updated_at AS double precision[]), CAST(:id AS text[])
) AS v (status, unfinished, failures, next_seq, error, started_at, finished_at, next_idx,
        updated_at, id)
WHERE r.id = v.id;

-- name: update_run_counters
-- Write the counters of a run, all that changed (its status did not): no index reads them.
UPDATE runs
SET unfinished = :unfinished, failures = :failures, next_seq = :next_seq, next_idx = :next_idx
WHERE id = :id;

-- name: update_run_counters [postgres]
-- Write the counters of runs, all that changed (their status did not): no index reads them.
UPDATE runs AS r
SET unfinished = v.unfinished, failures = v.failures, next_seq = v.next_seq,
    next_idx = v.next_idx
FROM unnest(
    CAST(:unfinished AS int[]), CAST(:failures AS int[]), CAST(:next_seq AS int[]),
    CAST(:next_idx AS int[]), CAST(:id AS text[])
) AS v (unfinished, failures, next_seq, next_idx, id)
WHERE r.id = v.id;

-- name: update_run_output
-- Write the mutable fields of a run, its output included; `updated_at` only if given.
UPDATE runs
SET status = :status, unfinished = :unfinished, failures = :failures, next_seq = :next_seq,
    error = :error, started_at = :started_at, finished_at = :finished_at, next_idx = :next_idx,
    updated_at = COALESCE(:updated_at, updated_at), output = :output, output_blob = :output_blob
WHERE id = :id;

-- name: update_run_output [postgres]
-- Write the mutable fields of runs, their outputs included; `updated_at` only where given.
UPDATE runs AS r
SET status = v.status, unfinished = v.unfinished, failures = v.failures, next_seq = v.next_seq,
    error = v.error, started_at = v.started_at, finished_at = v.finished_at,
    next_idx = v.next_idx, updated_at = COALESCE(v.updated_at, r.updated_at), output = v.output,
    output_blob = v.output_blob
FROM unnest(
    CAST(:status AS text[]), CAST(:unfinished AS int[]), CAST(:failures AS int[]),
    CAST(:next_seq AS int[]), CAST(:error AS text[]), CAST(:started_at AS double precision[]),
    CAST(:finished_at AS double precision[]), CAST(:next_idx AS int[]),
    CAST(:updated_at AS double precision[]), CAST(:output AS bytea[]),
    CAST(:output_blob AS text[]), CAST(:id AS text[])
) AS v (status, unfinished, failures, next_seq, error, started_at, finished_at, next_idx,
        updated_at, output, output_blob, id)
WHERE r.id = v.id;

-- name: insert_run_labels
-- The labels of new runs, a row each (the index list_runs filters by).
INSERT INTO run_labels (run_id, key, value) VALUES (:run_id, :key, :value);

-- name: insert_run_labels [postgres]
-- The labels of new runs, a row each (the index list_runs filters by).
INSERT INTO run_labels (run_id, key, value)
SELECT * FROM unnest(CAST(:run_id AS text[]), CAST(:key AS text[]), CAST(:value AS text[]));

-- name: set_run_version
-- Move a run to another version of its workflow (engine.upgrade), with the sinks of its graph.
UPDATE runs SET fingerprint = :fingerprint, version = :version, sinks = :sinks WHERE id = :id;

-- name: set_run_state
-- Write the session state of a run (ctx.state), changed by the steps whose success commits.
UPDATE runs SET state = :state WHERE id = :id;

-- Deleting runs -----------------------------------------------------------------------------------

-- name: delete_finished_run
-- Delete a run if it is finished; its id and the blobs it referred to if it was deleted.
DELETE FROM runs WHERE id = :id AND status IN ('completed', 'failed', 'cancelled')
RETURNING id, input_blob, output_blob;

-- name: delete_run_steps
-- Delete the steps of a (deleted) run.
DELETE FROM steps WHERE run_id = :id;

-- name: delete_run_events
-- Delete the event log of a (deleted) run.
DELETE FROM events WHERE run_id = :id;

-- name: delete_run_labels
-- Delete the labels of a (deleted) run.
DELETE FROM run_labels WHERE run_id = :id;

-- name: run_step_blobs
-- The blob hashes the steps of a run refer to (outputs and spawned inputs).
SELECT output_blob, input_blob FROM steps
WHERE run_id = :id AND (output_blob IS NOT NULL OR input_blob IS NOT NULL);

-- name: delete_run_artifacts
-- Delete the artifacts of a (deleted) run; the blobs of those kept in the database.
DELETE FROM artifacts WHERE run_id = :id
RETURNING path, sha256;
