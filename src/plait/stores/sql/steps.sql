-- Queries of the SQL stores: steps.
-- How a query file is written (blocks, [postgres] overrides, fragments, list parameters, lock
-- markers): the docstring of `plait.stores.sql.queries`.

-- fragment: step_columns
-- The columns of a step `s`: StepRow's fields, then the blob hashes (rows.STEP_ROW_COLUMNS).
s.run_id, s.name, s.idx, s.status, s.unmet, s.dependents, s.optional, s.priority, s.attempt,
s.recoveries, s.skip_reason, s.output, s.error_code, s.error_message, s.available_at,
s.lease_token, s.lease_expires_at, s.worker_id, s.ready_at, s.started_at, s.finished_at,
s.options, s.reused_from, s.iteration, s.task, s.input, s.gather, s.code, s.output_blob,
s.input_blob

-- The writes of a transaction: the common text is run once per row (executemany); the
-- [postgres] versions take one array per column and write every row in one statement (the
-- store's driver turns the rows into columns), which costs the server a fraction per row.

-- name: insert_step
-- Create a step record (of a new run, or spawned by a step).
INSERT INTO steps (
    run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
    skip_reason, output, error_code, error_message, available_at, lease_token, lease_expires_at,
    worker_id, ready_at, started_at, finished_at, options, reused_from, iteration, task, input,
    gather, code, queue, concurrency_key, target, output_blob, input_blob
) VALUES (
    :run_id, :name, :idx, :status, :unmet, :dependents, :optional, :priority, :attempt,
    :recoveries, :skip_reason, :output, :error_code, :error_message, :available_at, :lease_token,
    :lease_expires_at, :worker_id, :ready_at, :started_at, :finished_at, :options, :reused_from,
    :iteration, :task, :input, :gather, :code, :queue, :concurrency_key, :target, :output_blob,
    :input_blob
);

-- name: insert_step [postgres]
-- Create step records (of a new run, or spawned by steps).
INSERT INTO steps (
    run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
    skip_reason, output, error_code, error_message, available_at, lease_token, lease_expires_at,
    worker_id, ready_at, started_at, finished_at, options, reused_from, iteration, task, input,
    gather, code, queue, concurrency_key, target, output_blob, input_blob
)
SELECT * FROM unnest(
    CAST(:run_id AS text[]), CAST(:name AS text[]), CAST(:idx AS int[]),
    CAST(:status AS text[]), CAST(:unmet AS int[]), CAST(:dependents AS text[]),
    CAST(:optional AS boolean[]), CAST(:priority AS int[]), CAST(:attempt AS int[]),
    CAST(:recoveries AS int[]), CAST(:skip_reason AS text[]), CAST(:output AS bytea[]),
    CAST(:error_code AS text[]), CAST(:error_message AS text[]),
    CAST(:available_at AS double precision[]), CAST(:lease_token AS text[]),
    CAST(:lease_expires_at AS double precision[]), CAST(:worker_id AS text[]),
    CAST(:ready_at AS double precision[]), CAST(:started_at AS double precision[]),
    CAST(:finished_at AS double precision[]), CAST(:options AS text[]),
    CAST(:reused_from AS text[]), CAST(:iteration AS int[]), CAST(:task AS text[]),
    CAST(:input AS bytea[]), CAST(:gather AS bytea[]), CAST(:code AS text[]),
    CAST(:queue AS text[]),
    CAST(:concurrency_key AS text[]), CAST(:target AS text[]), CAST(:output_blob AS text[]),
    CAST(:input_blob AS text[])
);

-- name: insert_new_step
-- Create a step of a new run that has not run (create_runs): only the columns it has set.
INSERT INTO steps (
    run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
    available_at, ready_at, options, iteration, queue, concurrency_key, target
) VALUES (
    :run_id, :name, :idx, :status, :unmet, :dependents, :optional, :priority, 0, 0,
    :available_at, :ready_at, :options, 0, :queue, :concurrency_key, :target
);

-- name: insert_new_step [postgres]
-- Create steps of new runs that have not run (create_runs): only the columns they have set.
INSERT INTO steps (
    run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
    available_at, ready_at, options, iteration, queue, concurrency_key, target
)
SELECT run_id, name, idx, status, unmet, dependents, optional, priority, 0, 0, available_at,
       ready_at, options, 0, queue, concurrency_key, target
FROM unnest(
    CAST(:run_id AS text[]), CAST(:name AS text[]), CAST(:idx AS int[]),
    CAST(:status AS text[]), CAST(:unmet AS int[]), CAST(:dependents AS text[]),
    CAST(:optional AS boolean[]), CAST(:priority AS int[]),
    CAST(:available_at AS double precision[]), CAST(:ready_at AS double precision[]),
    CAST(:options AS text[]), CAST(:queue AS text[]), CAST(:concurrency_key AS text[]),
    CAST(:target AS text[])
) AS new (
    run_id, name, idx, status, unmet, dependents, optional, priority, available_at, ready_at,
    options, queue, concurrency_key, target
);

-- name: get_steps
-- Every step of a run, in definition order.
SELECT /*include step_columns*/
FROM steps AS s WHERE run_id = :run_id ORDER BY idx /*for update*/;

-- name: get_step
-- One step of a run.
SELECT /*include step_columns*/
FROM steps AS s WHERE run_id = :run_id AND name = :name /*for update*/;

-- name: get_steps_named
-- The named steps of one run.
SELECT /*include step_columns*/
FROM steps AS s WHERE run_id = :run_id AND name IN (SELECT value FROM json_each(:name_list))
ORDER BY name /*for update*/;

-- name: get_steps_named [postgres]
-- The named steps of one run.
SELECT /*include step_columns*/
FROM steps AS s
WHERE run_id = :run_id
  AND name = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:name_list AS jsonb))))
ORDER BY name /*for update*/;

-- name: get_steps_by_key
-- Steps of several runs, given as a list of [run_id, name] pairs.
SELECT /*include step_columns*/
FROM json_each(:key_list) AS k
CROSS JOIN steps AS s
WHERE s.run_id = json_extract(k.value, '$[0]') AND s.name = json_extract(k.value, '$[1]')
ORDER BY s.run_id, s.name /*for update of s*/;

-- name: get_steps_by_key [postgres]
-- Steps of several runs, given as a list of [run_id, name] pairs (locked in the list's order).
SELECT /*include step_columns*/
FROM jsonb_array_elements(CAST(:key_list AS jsonb)) WITH ORDINALITY AS k (key, n)
CROSS JOIN LATERAL (
    SELECT * FROM steps
    WHERE run_id = k.key ->> 0 AND name = k.key ->> 1
    OFFSET 0 /*for update*/
) AS s
ORDER BY k.n;

-- name: get_inputs
-- What claimed steps' handlers need, in one read: run inputs, states and labels (name NULL), then the ends (and errors) of the [run_id, name] pairs.
SELECT id, NULL, NULL, input, state, labels, NULL, input_blob FROM runs
WHERE id IN (SELECT value FROM json_each(:id_list))
UNION ALL
SELECT s.run_id, s.name, s.status, s.output, NULL, s.error_code, s.error_message, s.output_blob
FROM json_each(:key_list) AS k
CROSS JOIN steps AS s
WHERE s.run_id = json_extract(k.value, '$[0]') AND s.name = json_extract(k.value, '$[1]');

-- name: get_inputs [postgres]
-- What claimed steps' handlers need, in one read: run inputs, states and labels (name NULL), then the ends (and errors) of the [run_id, name] pairs.
SELECT id, NULL, NULL, input, state, labels, NULL, input_blob FROM runs
WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:id_list AS jsonb))))
UNION ALL
SELECT s.run_id, s.name, s.status, s.output, NULL, s.error_code, s.error_message, s.output_blob
FROM jsonb_array_elements(CAST(:key_list AS jsonb)) AS k (key)
CROSS JOIN LATERAL (
    SELECT run_id, name, status, output, error_code, error_message, output_blob FROM steps
    WHERE run_id = k.key ->> 0 AND name = k.key ->> 1
    OFFSET 0
) AS s;

-- name: update_step
-- Write the mutable fields of a step, except its output (dependents are never rewritten).
UPDATE steps
SET status = :status, unmet = :unmet, attempt = :attempt, recoveries = :recoveries,
    skip_reason = :skip_reason, error_code = :error_code, error_message = :error_message,
    available_at = :available_at, lease_token = :lease_token, lease_expires_at = :lease_expires_at,
    worker_id = :worker_id, ready_at = :ready_at, started_at = :started_at,
    finished_at = :finished_at, iteration = :iteration, gather = :gather, code = :code
WHERE run_id = :run_id AND name = :name;

-- name: update_step [postgres]
-- Write the mutable fields of steps, except their output.
UPDATE steps AS s
SET status = v.status, unmet = v.unmet, attempt = v.attempt, recoveries = v.recoveries,
    skip_reason = v.skip_reason, error_code = v.error_code, error_message = v.error_message,
    available_at = v.available_at, lease_token = v.lease_token,
    lease_expires_at = v.lease_expires_at, worker_id = v.worker_id, ready_at = v.ready_at,
    started_at = v.started_at, finished_at = v.finished_at, iteration = v.iteration,
    gather = v.gather, code = v.code
FROM unnest(
    CAST(:status AS text[]), CAST(:unmet AS int[]), CAST(:attempt AS int[]),
    CAST(:recoveries AS int[]), CAST(:skip_reason AS text[]), CAST(:error_code AS text[]),
    CAST(:error_message AS text[]), CAST(:available_at AS double precision[]),
    CAST(:lease_token AS text[]), CAST(:lease_expires_at AS double precision[]),
    CAST(:worker_id AS text[]), CAST(:ready_at AS double precision[]),
    CAST(:started_at AS double precision[]), CAST(:finished_at AS double precision[]),
    CAST(:iteration AS int[]), CAST(:gather AS bytea[]), CAST(:code AS text[]),
    CAST(:run_id AS text[]), CAST(:name AS text[])
) AS v (status, unmet, attempt, recoveries, skip_reason, error_code, error_message,
        available_at, lease_token, lease_expires_at, worker_id, ready_at, started_at,
        finished_at, iteration, gather, code, run_id, name)
WHERE s.run_id = v.run_id AND s.name = v.name;

-- name: update_step_claimed
-- Write what a claim changes of a step: its status, attempt, lease, worker, start and code.
UPDATE steps
SET status = :status, attempt = :attempt, lease_token = :lease_token,
    lease_expires_at = :lease_expires_at, worker_id = :worker_id, started_at = :started_at,
    code = :code
WHERE run_id = :run_id AND name = :name;

-- name: update_step_claimed [postgres]
-- Write what claims change of steps: their status, attempt, lease, worker, start and code.
UPDATE steps AS s
SET status = v.status, attempt = v.attempt, lease_token = v.lease_token,
    lease_expires_at = v.lease_expires_at, worker_id = v.worker_id, started_at = v.started_at,
    code = v.code
FROM unnest(
    CAST(:status AS text[]), CAST(:attempt AS int[]), CAST(:lease_token AS text[]),
    CAST(:lease_expires_at AS double precision[]), CAST(:worker_id AS text[]),
    CAST(:started_at AS double precision[]), CAST(:code AS text[]), CAST(:run_id AS text[]),
    CAST(:name AS text[])
) AS v (status, attempt, lease_token, lease_expires_at, worker_id, started_at, code, run_id,
        name)
WHERE s.run_id = v.run_id AND s.name = v.name;

-- name: update_step_output
-- Write the mutable fields of a step, its output included.
UPDATE steps
SET status = :status, unmet = :unmet, attempt = :attempt, recoveries = :recoveries,
    skip_reason = :skip_reason, error_code = :error_code, error_message = :error_message,
    available_at = :available_at, lease_token = :lease_token, lease_expires_at = :lease_expires_at,
    worker_id = :worker_id, ready_at = :ready_at, started_at = :started_at,
    finished_at = :finished_at, iteration = :iteration, gather = :gather, code = :code,
    output = :output, output_blob = :output_blob
WHERE run_id = :run_id AND name = :name;

-- name: update_step_output [postgres]
-- Write the mutable fields of steps, their outputs included.
UPDATE steps AS s
SET status = v.status, unmet = v.unmet, attempt = v.attempt, recoveries = v.recoveries,
    skip_reason = v.skip_reason, error_code = v.error_code, error_message = v.error_message,
    available_at = v.available_at, lease_token = v.lease_token,
    lease_expires_at = v.lease_expires_at, worker_id = v.worker_id, ready_at = v.ready_at,
    started_at = v.started_at, finished_at = v.finished_at, iteration = v.iteration,
    gather = v.gather, code = v.code, output = v.output, output_blob = v.output_blob
FROM unnest(
    CAST(:status AS text[]), CAST(:unmet AS int[]), CAST(:attempt AS int[]),
    CAST(:recoveries AS int[]), CAST(:skip_reason AS text[]), CAST(:error_code AS text[]),
    CAST(:error_message AS text[]), CAST(:available_at AS double precision[]),
    CAST(:lease_token AS text[]), CAST(:lease_expires_at AS double precision[]),
    CAST(:worker_id AS text[]), CAST(:ready_at AS double precision[]),
    CAST(:started_at AS double precision[]), CAST(:finished_at AS double precision[]),
    CAST(:iteration AS int[]), CAST(:gather AS bytea[]), CAST(:code AS text[]),
    CAST(:output AS bytea[]), CAST(:output_blob AS text[]), CAST(:run_id AS text[]),
    CAST(:name AS text[])
) AS v (status, unmet, attempt, recoveries, skip_reason, error_code, error_message,
        available_at, lease_token, lease_expires_at, worker_id, ready_at, started_at,
        finished_at, iteration, gather, code, output, output_blob, run_id, name)
WHERE s.run_id = v.run_id AND s.name = v.name;

-- name: update_step_attempt
-- Write an ended attempt's step fields, output and recorded input: one statement, not two.
UPDATE steps
SET status = :status, unmet = :unmet, attempt = :attempt, recoveries = :recoveries,
    skip_reason = :skip_reason, error_code = :error_code, error_message = :error_message,
    available_at = :available_at, lease_token = :lease_token, lease_expires_at = :lease_expires_at,
    worker_id = :worker_id, ready_at = :ready_at, started_at = :started_at,
    finished_at = :finished_at, iteration = :iteration, gather = :gather, code = :code,
    output = :output, output_blob = :output_blob, input = :input, input_blob = :input_blob
WHERE run_id = :run_id AND name = :name;

-- name: update_step_attempt [postgres]
-- Write the mutable fields of steps that attempts ended, their outputs and recorded inputs.
UPDATE steps AS s
SET status = v.status, unmet = v.unmet, attempt = v.attempt, recoveries = v.recoveries,
    skip_reason = v.skip_reason, error_code = v.error_code, error_message = v.error_message,
    available_at = v.available_at, lease_token = v.lease_token,
    lease_expires_at = v.lease_expires_at, worker_id = v.worker_id, ready_at = v.ready_at,
    started_at = v.started_at, finished_at = v.finished_at, iteration = v.iteration,
    gather = v.gather, code = v.code, output = v.output, output_blob = v.output_blob,
    input = v.input, input_blob = v.input_blob
FROM unnest(
    CAST(:status AS text[]), CAST(:unmet AS int[]), CAST(:attempt AS int[]),
    CAST(:recoveries AS int[]), CAST(:skip_reason AS text[]), CAST(:error_code AS text[]),
    CAST(:error_message AS text[]), CAST(:available_at AS double precision[]),
    CAST(:lease_token AS text[]), CAST(:lease_expires_at AS double precision[]),
    CAST(:worker_id AS text[]), CAST(:ready_at AS double precision[]),
    CAST(:started_at AS double precision[]), CAST(:finished_at AS double precision[]),
    CAST(:iteration AS int[]), CAST(:gather AS bytea[]), CAST(:code AS text[]),
    CAST(:output AS bytea[]), CAST(:output_blob AS text[]), CAST(:input AS bytea[]),
    CAST(:input_blob AS text[]), CAST(:run_id AS text[]), CAST(:name AS text[])
) AS v (status, unmet, attempt, recoveries, skip_reason, error_code, error_message,
        available_at, lease_token, lease_expires_at, worker_id, ready_at, started_at,
        finished_at, iteration, gather, code, output, output_blob, input, input_blob, run_id,
        name)
WHERE s.run_id = v.run_id AND s.name = v.name;

-- name: set_step_key
-- Store the concurrency key a worker resolved from a step's dependency outputs (NULL: pending).
UPDATE steps SET options = :options, concurrency_key = :concurrency_key
WHERE run_id = :run_id AND name = :name;

-- name: reshape_step
-- Rewrite what an upgrade changes of a step that stays: its edges, options and flow columns.
UPDATE steps SET dependents = :dependents, optional = :optional, priority = :priority,
    options = :options, queue = :queue, concurrency_key = :concurrency_key, target = :target
WHERE run_id = :run_id AND name = :name;

-- name: delete_step
-- Delete a step an upgrade dropped from its run (it has not started: no payload, no blob).
DELETE FROM steps WHERE run_id = :run_id AND name = :name;

-- name: list_failed_steps
-- Failed steps across runs (filtered), the latest ended first, before a (finished_at, run_id, name).
SELECT /*include step_columns*/
FROM steps AS s
WHERE status = 'failed'
  AND (:workflow IS NULL OR run_id IN (SELECT id FROM runs WHERE workflow = :workflow))
  AND (:labels IS NULL OR run_id IN (
       SELECT l.run_id FROM run_labels AS l JOIN json_each(:labels) AS w
           ON l.key = w.key AND l.value = w.value
       GROUP BY l.run_id HAVING count(*) = :label_count))
  AND (:step IS NULL OR name = :step)
  AND (:code IS NULL OR error_code = :code)
  AND (:since IS NULL OR finished_at >= :since)
  AND (:before_at IS NULL
       OR (finished_at, run_id, name) < (:before_at, :before_run, :before_name))
ORDER BY finished_at DESC, run_id DESC, name DESC
LIMIT :limit;

-- name: list_failed_steps [postgres]
-- Failed steps across runs (filtered), the latest ended first, before a (finished_at, run_id, name).
SELECT /*include step_columns*/
FROM steps AS s
WHERE status = 'failed'
  AND (CAST(:workflow AS text) IS NULL
       OR run_id IN (SELECT id FROM runs WHERE workflow = CAST(:workflow AS text)))
  AND (CAST(:labels AS text) IS NULL OR run_id IN (
       SELECT l.run_id FROM run_labels AS l
           JOIN jsonb_each_text(CAST(:labels AS jsonb)) AS w ON l.key = w.key AND l.value = w.value
       GROUP BY l.run_id HAVING count(*) = CAST(:label_count AS int)))
  AND (CAST(:step AS text) IS NULL OR name = CAST(:step AS text))
  AND (CAST(:code AS text) IS NULL OR error_code = CAST(:code AS text))
  AND (CAST(:since AS double precision) IS NULL
       OR finished_at >= CAST(:since AS double precision))
  AND (CAST(:before_at AS double precision) IS NULL
       OR (finished_at, run_id, name)
          < (CAST(:before_at AS double precision), CAST(:before_run AS text),
             CAST(:before_name AS text)))
ORDER BY finished_at DESC, run_id DESC, name DESC
LIMIT :limit;

-- name: step_backlog
-- Steps that wait or run, per queue and status: how many, and since when the oldest is claimable.
SELECT coalesce(queue, 'default') AS q, status, count(*),
       min(CASE WHEN status = 'ready' AND coalesce(available_at, ready_at) <= :now
                THEN coalesce(available_at, ready_at) END)
FROM steps
WHERE status IN ('ready', 'running', 'waiting')
GROUP BY coalesce(queue, 'default'), status;

-- name: step_backlog [postgres]
-- Steps that wait or run, per queue and status: how many, and since when the oldest is claimable.
SELECT coalesce(queue, 'default') AS q, status, count(*),
       min(CASE WHEN status = 'ready'
                     AND coalesce(available_at, ready_at) <= CAST(:now AS double precision)
                THEN coalesce(available_at, ready_at) END)
FROM steps
WHERE status IN ('ready', 'running', 'waiting')
GROUP BY coalesce(queue, 'default'), status;
