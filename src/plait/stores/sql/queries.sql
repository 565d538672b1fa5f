-- The named queries of the SQL stores. Each query starts with `-- name: <name>`, optionally
-- followed by a dialect in brackets (`-- name: user_tables [postgres]`) to override the common
-- text for that dialect only, then a one-line description. Parameters are `:name`; the query layer
-- (plait/stores/_sql.py) rewrites them for the driver. A parameter ending in `_list` is a list,
-- passed as a JSON array and read with json_each() (SQLite) or jsonb_array_elements (PostgreSQL).
-- A `/*for update*/` marker says where a query that loads rows for a transition locks them on
-- PostgreSQL (Queries.locked); it stays a comment elsewhere and in plain reads.
-- Column lists of steps and runs follow the field order of StepRow and RunRow.

-- name: user_tables
-- The names of the tables in the database that are not the engine's own.
SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\';

-- name: get_schema_version
-- The schema version recorded in plait_meta.
SELECT value FROM plait_meta WHERE key = 'schema_version';

-- name: set_schema_version
-- Record the schema version in plait_meta.
INSERT INTO plait_meta (key, value) VALUES ('schema_version', :version)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

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

-- name: insert_run
-- Create a run; nothing happens if the id is taken.
INSERT INTO runs (
    id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
    output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
    next_idx, input_blob, output_blob
) VALUES (
    :id, :workflow, :version, :fingerprint, :status, :input, :sinks, :unfinished, :failures,
    :next_seq, :output, :error, :created_at, :started_at, :finished_at, :deadline, :parent_run,
    :forked_from, :next_idx, :input_blob, :output_blob
)
ON CONFLICT (id) DO NOTHING;

-- name: insert_step
-- Create a step record (of a new run, or spawned by a step).
INSERT INTO steps (
    run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
    skip_reason, output, error_code, error_message, available_at, lease_token, lease_expires_at,
    worker_id, ready_at, started_at, finished_at, options, reused_from, iteration, task, input,
    gather, queue, concurrency_key, target, output_blob, input_blob
) VALUES (
    :run_id, :name, :idx, :status, :unmet, :dependents, :optional, :priority, :attempt,
    :recoveries, :skip_reason, :output, :error_code, :error_message, :available_at, :lease_token,
    :lease_expires_at, :worker_id, :ready_at, :started_at, :finished_at, :options, :reused_from,
    :iteration, :task, :input, :gather, :queue, :concurrency_key, :target, :output_blob,
    :input_blob
);

-- name: insert_event
-- Append an entry to a run's event log.
INSERT INTO events (run_id, seq, type, step, payload, ts)
VALUES (:run_id, :seq, :type, :step, :payload, :ts);

-- name: get_run
-- One run by id.
SELECT id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
       output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
       next_idx, input_blob, output_blob
FROM runs WHERE id = :id /*for update*/;

-- name: get_runs
-- The runs of a list of ids.
SELECT id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
       output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
       next_idx, input_blob, output_blob
FROM runs WHERE id IN (SELECT value FROM json_each(:id_list))
ORDER BY id /*for update*/;

-- name: list_runs
-- A page of runs, newest first, strictly before a (created_at, id) position, of any workflow.
SELECT id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
       output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
       next_idx, input_blob, output_blob
FROM runs
WHERE (:status IS NULL OR status = :status)
  AND (:before_at IS NULL OR (created_at, id) < (:before_at, :before_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_runs_of_workflow
-- A page of runs of one workflow, newest first, strictly before a (created_at, id) position.
SELECT id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
       output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
       next_idx, input_blob, output_blob
FROM runs
WHERE workflow = :workflow
  AND (:before_at IS NULL OR (created_at, id) < (:before_at, :before_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_runs_of_workflow_status
-- A page of runs of one workflow in one status, newest first, before a (created_at, id) position.
SELECT id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
       output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
       next_idx, input_blob, output_blob
FROM runs
WHERE workflow = :workflow AND status = :status
  AND (:before_at IS NULL OR (created_at, id) < (:before_at, :before_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: update_run
-- Write the mutable fields of a run, except its output.
UPDATE runs
SET status = :status, unfinished = :unfinished, failures = :failures, next_seq = :next_seq,
    error = :error, started_at = :started_at, finished_at = :finished_at, next_idx = :next_idx
WHERE id = :id;

-- name: update_run_output
-- Write the mutable fields of a run, its output included.
UPDATE runs
SET status = :status, unfinished = :unfinished, failures = :failures, next_seq = :next_seq,
    error = :error, started_at = :started_at, finished_at = :finished_at, next_idx = :next_idx,
    output = :output, output_blob = :output_blob
WHERE id = :id;

-- name: get_steps
-- Every step of a run, in definition order.
SELECT run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
       skip_reason, output, error_code, error_message, available_at, lease_token,
       lease_expires_at, worker_id, ready_at, started_at, finished_at, options, reused_from,
       iteration, task, input, gather, output_blob, input_blob
FROM steps WHERE run_id = :run_id ORDER BY idx /*for update*/;

-- name: get_step
-- One step of a run.
SELECT run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
       skip_reason, output, error_code, error_message, available_at, lease_token,
       lease_expires_at, worker_id, ready_at, started_at, finished_at, options, reused_from,
       iteration, task, input, gather, output_blob, input_blob
FROM steps WHERE run_id = :run_id AND name = :name /*for update*/;

-- name: get_steps_named
-- The named steps of one run.
SELECT run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
       skip_reason, output, error_code, error_message, available_at, lease_token,
       lease_expires_at, worker_id, ready_at, started_at, finished_at, options, reused_from,
       iteration, task, input, gather, output_blob, input_blob
FROM steps WHERE run_id = :run_id AND name IN (SELECT value FROM json_each(:name_list))
ORDER BY name /*for update*/;

-- name: get_steps_by_key
-- Steps of several runs, given as a list of [run_id, name] pairs.
SELECT s.run_id, s.name, s.idx, s.status, s.unmet, s.dependents, s.optional, s.priority,
       s.attempt, s.recoveries, s.skip_reason, s.output, s.error_code, s.error_message,
       s.available_at, s.lease_token, s.lease_expires_at, s.worker_id, s.ready_at, s.started_at,
       s.finished_at, s.options, s.reused_from, s.iteration, s.task, s.input,
       s.gather, s.output_blob, s.input_blob
FROM json_each(:key_list) AS k
CROSS JOIN steps AS s
WHERE s.run_id = json_extract(k.value, '$[0]') AND s.name = json_extract(k.value, '$[1]')
ORDER BY s.run_id, s.name /*for update of s*/;

-- name: get_step_ends_by_key
-- Status and output of steps of several runs, given as a list of [run_id, name] pairs.
SELECT s.run_id, s.name, s.status, s.output, s.output_blob
FROM json_each(:key_list) AS k
CROSS JOIN steps AS s
WHERE s.run_id = json_extract(k.value, '$[0]') AND s.name = json_extract(k.value, '$[1]');

-- name: get_run_inputs
-- The input of each run of a list of ids.
SELECT id, input, input_blob FROM runs WHERE id IN (SELECT value FROM json_each(:id_list));

-- name: update_step
-- Write the mutable fields of a step, except its output (dependents are never rewritten).
UPDATE steps
SET status = :status, unmet = :unmet, attempt = :attempt, recoveries = :recoveries,
    skip_reason = :skip_reason, error_code = :error_code, error_message = :error_message,
    available_at = :available_at, lease_token = :lease_token, lease_expires_at = :lease_expires_at,
    worker_id = :worker_id, ready_at = :ready_at, started_at = :started_at,
    finished_at = :finished_at, iteration = :iteration, gather = :gather
WHERE run_id = :run_id AND name = :name;

-- name: update_step_output
-- Write the mutable fields of a step, its output included.
UPDATE steps
SET status = :status, unmet = :unmet, attempt = :attempt, recoveries = :recoveries,
    skip_reason = :skip_reason, error_code = :error_code, error_message = :error_message,
    available_at = :available_at, lease_token = :lease_token, lease_expires_at = :lease_expires_at,
    worker_id = :worker_id, ready_at = :ready_at, started_at = :started_at,
    finished_at = :finished_at, iteration = :iteration, gather = :gather, output = :output,
    output_blob = :output_blob
WHERE run_id = :run_id AND name = :name;

-- name: claim_candidates
-- Ready steps whose time has come, of active runs of the given fingerprints, best first.
SELECT s.run_id, s.name, s.idx, s.status, s.unmet, s.dependents, s.optional, s.priority,
       s.attempt, s.recoveries, s.skip_reason, s.output, s.error_code, s.error_message,
       s.available_at, s.lease_token, s.lease_expires_at, s.worker_id, s.ready_at, s.started_at,
       s.finished_at, s.options, s.reused_from, s.iteration, s.task, s.input,
       s.gather, s.output_blob, s.input_blob
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE s.status = 'ready'
  AND s.available_at <= :now
  AND (r.status IN ('pending', 'running') OR (r.status = 'pausing' AND s.attempt > 0))
  AND r.fingerprint IN (SELECT value FROM json_each(:fingerprint_list))
  AND (:queue_list IS NULL OR COALESCE(s.queue, 'default') IN (SELECT value FROM json_each(:queue_list)))
  AND COALESCE(s.queue, 'default') NOT IN (SELECT value FROM json_each(:blocked_list))
  AND (s.target IS NULL OR s.target IN (SELECT value FROM json_each(:target_list))
       OR (substr(s.target, 1, 1) = '=' AND EXISTS (
           SELECT 1 FROM steps AS c
           WHERE c.run_id = s.run_id AND c.name = substr(s.target, 2) AND c.worker_id = :worker_id)))
ORDER BY s.priority DESC, s.available_at
LIMIT :limit;

-- name: claim_oldest
-- The longest waiting claimable step, if it has waited since before :aged_before (no starvation).
SELECT s.run_id, s.name, s.idx, s.status, s.unmet, s.dependents, s.optional, s.priority,
       s.attempt, s.recoveries, s.skip_reason, s.output, s.error_code, s.error_message,
       s.available_at, s.lease_token, s.lease_expires_at, s.worker_id, s.ready_at, s.started_at,
       s.finished_at, s.options, s.reused_from, s.iteration, s.task, s.input,
       s.gather, s.output_blob, s.input_blob
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE s.status = 'ready'
  AND s.available_at <= :aged_before
  AND (r.status IN ('pending', 'running') OR (r.status = 'pausing' AND s.attempt > 0))
  AND r.fingerprint IN (SELECT value FROM json_each(:fingerprint_list))
  AND (:queue_list IS NULL OR COALESCE(s.queue, 'default') IN (SELECT value FROM json_each(:queue_list)))
  AND COALESCE(s.queue, 'default') NOT IN (SELECT value FROM json_each(:blocked_list))
  AND (s.target IS NULL OR s.target IN (SELECT value FROM json_each(:target_list))
       OR (substr(s.target, 1, 1) = '=' AND EXISTS (
           SELECT 1 FROM steps AS c
           WHERE c.run_id = s.run_id AND c.name = substr(s.target, 2) AND c.worker_id = :worker_id)))
ORDER BY s.available_at
LIMIT 1;

-- name: held_queues
-- Of the queues a claim found blocked (full, or out of tokens), those holding back ready steps it could take.
SELECT DISTINCT COALESCE(s.queue, 'default')
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE s.status = 'ready'
  AND s.available_at <= :now
  AND (r.status IN ('pending', 'running') OR (r.status = 'pausing' AND s.attempt > 0))
  AND r.fingerprint IN (SELECT value FROM json_each(:fingerprint_list))
  AND (:queue_list IS NULL OR COALESCE(s.queue, 'default') IN (SELECT value FROM json_each(:queue_list)))
  AND COALESCE(s.queue, 'default') IN (SELECT value FROM json_each(:blocked_list))
  AND (s.target IS NULL OR s.target IN (SELECT value FROM json_each(:target_list))
       OR (substr(s.target, 1, 1) = '=' AND EXISTS (
           SELECT 1 FROM steps AS c
           WHERE c.run_id = s.run_id AND c.name = substr(s.target, 2) AND c.worker_id = :worker_id)));

-- name: get_queues
-- The configured queues, by name.
SELECT name, concurrency, rate, per, burst, tokens, counted_at, updated_at
FROM queues ORDER BY name;

-- name: count_queue_running
-- Running steps of these queues (steps without a queue are in 'default').
SELECT COALESCE(queue, 'default'), COUNT(*) FROM steps
WHERE status = 'running'
  AND COALESCE(queue, 'default') IN (SELECT value FROM json_each(:queue_list))
GROUP BY COALESCE(queue, 'default');

-- name: count_key_running
-- Running steps of these concurrency keys.
SELECT concurrency_key, COUNT(*) FROM steps
WHERE status = 'running'
  AND concurrency_key IN (SELECT value FROM json_each(:key_list))
GROUP BY concurrency_key;

-- name: set_step_key
-- Store the concurrency key a worker resolved from a step's dependency outputs (NULL: pending).
UPDATE steps SET options = :options, concurrency_key = :concurrency_key
WHERE run_id = :run_id AND name = :name;

-- name: update_queue_bucket
-- Store a queue's token bucket after a claim took tokens.
UPDATE queues SET tokens = :tokens, counted_at = :counted_at WHERE name = :name;

-- name: put_queue
-- Create or reconfigure a queue.
INSERT INTO queues (name, concurrency, rate, per, burst, tokens, counted_at, updated_at)
VALUES (:name, :concurrency, :rate, :per, :burst, :tokens, :counted_at, :updated_at)
ON CONFLICT (name) DO UPDATE SET
    concurrency = excluded.concurrency, rate = excluded.rate, per = excluded.per,
    burst = excluded.burst, tokens = excluded.tokens, counted_at = excluded.counted_at,
    updated_at = excluded.updated_at;

-- name: next_ready_at
-- When the earliest ready step of active runs of the given fingerprints becomes claimable (after :after).
SELECT MIN(s.available_at)
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE s.status = 'ready'
  AND s.available_at > :after
  AND (r.status IN ('pending', 'running') OR (r.status = 'pausing' AND s.attempt > 0))
  AND r.fingerprint IN (SELECT value FROM json_each(:fingerprint_list));

-- name: expired_leases
-- Running steps whose lease has expired, the oldest expiry first.
SELECT run_id, name FROM steps
WHERE status = 'running' AND lease_expires_at <= :now
ORDER BY lease_expires_at
LIMIT :limit;

-- name: extend_lease
-- Extend a running step's lease if its token still holds it and its run has not ended (stop it).
UPDATE steps SET lease_expires_at = :lease_expires_at
WHERE run_id = :run_id AND name = :name AND status = 'running' AND lease_token = :token
  AND NOT EXISTS (
      SELECT 1 FROM runs WHERE id = :run_id AND status IN ('cancelled', 'failed', 'completed')
  );

-- name: expired_waits
-- Waiting steps (approvals) past their expiry, the oldest expiry first.
SELECT run_id, name FROM steps
WHERE status = 'waiting' AND available_at <= :now
ORDER BY available_at
LIMIT :limit;

-- name: passed_deadlines
-- Unfinished runs past their deadline, the oldest deadline first.
SELECT id FROM runs
WHERE deadline <= :now AND status IN ('pending', 'running', 'pausing', 'paused')
ORDER BY deadline
LIMIT :limit;

-- name: next_timer_at
-- The earliest approval expiry or run deadline still to come.
SELECT MIN(at) FROM (
    SELECT MIN(available_at) AS at FROM steps WHERE status = 'waiting'
    UNION ALL
    SELECT MIN(deadline) AS at FROM runs
    WHERE deadline IS NOT NULL AND status IN ('pending', 'running', 'pausing', 'paused')
) AS timers;

-- name: list_waiting
-- Steps waiting for a decision or a signal across runs (not parents joining), longest first.
SELECT run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
       skip_reason, output, error_code, error_message, available_at, lease_token,
       lease_expires_at, worker_id, ready_at, started_at, finished_at, options, reused_from,
       iteration, task, input, gather, output_blob, input_blob
FROM steps WHERE status = 'waiting' AND unmet = 0
ORDER BY ready_at, run_id, name
LIMIT :limit;

-- name: get_events
-- A run's events after a sequence number, in order.
SELECT run_id, seq, type, step, payload, ts
FROM events WHERE run_id = :run_id AND seq > :after_seq
ORDER BY seq
LIMIT :limit;

-- PostgreSQL: where the common text cannot serve ------------------------------------------------
-- Lists arrive as JSON text. They are unpacked so that every lookup is an index probe whatever
-- the table size: `= ANY(ARRAY(...))` for ids, a LATERAL subquery per [run_id, name] pair (the
-- planner would otherwise guess 100 rows for a JSON function and hash-join a scan of the whole
-- table). A parameter that may be NULL is cast: PostgreSQL cannot infer the type of a parameter
-- that is only compared with NULL.

-- name: user_tables [postgres]
-- The names of the tables in the store's schema.
SELECT table_name FROM information_schema.tables
WHERE table_schema = current_schema() AND table_type = 'BASE TABLE';

-- name: get_runs [postgres]
-- The runs of a list of ids.
SELECT id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
       output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
       next_idx, input_blob, output_blob
FROM runs WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:id_list AS jsonb))))
ORDER BY id /*for update*/;

-- name: list_runs [postgres]
-- A page of runs, newest first, strictly before a (created_at, id) position, of any workflow.
SELECT id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
       output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
       next_idx, input_blob, output_blob
FROM runs
WHERE (CAST(:status AS text) IS NULL OR status = CAST(:status AS text))
  AND (CAST(:before_at AS double precision) IS NULL
       OR (created_at, id) < (CAST(:before_at AS double precision), CAST(:before_id AS text)))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_runs_of_workflow [postgres]
-- A page of runs of one workflow, newest first, strictly before a (created_at, id) position.
SELECT id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
       output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
       next_idx, input_blob, output_blob
FROM runs
WHERE workflow = :workflow
  AND (CAST(:before_at AS double precision) IS NULL
       OR (created_at, id) < (CAST(:before_at AS double precision), CAST(:before_id AS text)))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_runs_of_workflow_status [postgres]
-- A page of runs of one workflow in one status, newest first, before a (created_at, id) position.
SELECT id, workflow, version, fingerprint, status, input, sinks, unfinished, failures, next_seq,
       output, error, created_at, started_at, finished_at, deadline, parent_run, forked_from,
       next_idx, input_blob, output_blob
FROM runs
WHERE workflow = :workflow AND status = :status
  AND (CAST(:before_at AS double precision) IS NULL
       OR (created_at, id) < (CAST(:before_at AS double precision), CAST(:before_id AS text)))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: get_steps_named [postgres]
-- The named steps of one run.
SELECT run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
       skip_reason, output, error_code, error_message, available_at, lease_token,
       lease_expires_at, worker_id, ready_at, started_at, finished_at, options, reused_from,
       iteration, task, input, gather, output_blob, input_blob
FROM steps
WHERE run_id = :run_id
  AND name = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:name_list AS jsonb))))
ORDER BY name /*for update*/;

-- name: get_steps_by_key [postgres]
-- Steps of several runs, given as a list of [run_id, name] pairs (locked in the list's order).
SELECT s.run_id, s.name, s.idx, s.status, s.unmet, s.dependents, s.optional, s.priority,
       s.attempt, s.recoveries, s.skip_reason, s.output, s.error_code, s.error_message,
       s.available_at, s.lease_token, s.lease_expires_at, s.worker_id, s.ready_at, s.started_at,
       s.finished_at, s.options, s.reused_from, s.iteration, s.task, s.input,
       s.gather, s.output_blob, s.input_blob
FROM jsonb_array_elements(CAST(:key_list AS jsonb)) WITH ORDINALITY AS k (key, n)
CROSS JOIN LATERAL (
    SELECT * FROM steps
    WHERE run_id = k.key ->> 0 AND name = k.key ->> 1
    OFFSET 0 /*for update*/
) AS s
ORDER BY k.n;

-- name: get_step_ends_by_key [postgres]
-- Status and output of steps of several runs, given as a list of [run_id, name] pairs.
SELECT s.run_id, s.name, s.status, s.output, s.output_blob
FROM jsonb_array_elements(CAST(:key_list AS jsonb)) AS k (key)
CROSS JOIN LATERAL (
    SELECT run_id, name, status, output, output_blob FROM steps
    WHERE run_id = k.key ->> 0 AND name = k.key ->> 1
    OFFSET 0
) AS s;

-- name: get_run_inputs [postgres]
-- The input of each run of a list of ids.
SELECT id, input, input_blob FROM runs
WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:id_list AS jsonb))));

-- A claim's transaction walks the ready index rather than sorting every ready step, which is what
-- the planner picks while a fresh table has no statistics yet (10-23 ms per claim instead of
-- 0.2 ms with 10,000 ready steps).
-- name: claim_session [postgres]
-- Planner settings for a claim's transaction.
SELECT set_config('enable_sort', 'off', true);

-- name: claim_candidates [postgres]
-- Ready steps due, of active runs of these fingerprints, best first; locked, skipping others' claims.
SELECT s.run_id, s.name, s.idx, s.status, s.unmet, s.dependents, s.optional, s.priority,
       s.attempt, s.recoveries, s.skip_reason, s.output, s.error_code, s.error_message,
       s.available_at, s.lease_token, s.lease_expires_at, s.worker_id, s.ready_at, s.started_at,
       s.finished_at, s.options, s.reused_from, s.iteration, s.task, s.input,
       s.gather, s.output_blob, s.input_blob
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE s.status = 'ready'
  AND s.available_at <= :now
  AND (r.status IN ('pending', 'running') OR (r.status = 'pausing' AND s.attempt > 0))
  AND r.fingerprint IN (SELECT jsonb_array_elements_text(CAST(:fingerprint_list AS jsonb)))
  AND (CAST(:queue_list AS jsonb) IS NULL
       OR COALESCE(s.queue, 'default') IN (SELECT jsonb_array_elements_text(CAST(:queue_list AS jsonb))))
  AND COALESCE(s.queue, 'default') NOT IN
      (SELECT jsonb_array_elements_text(CAST(:blocked_list AS jsonb)))
  AND (s.target IS NULL
       OR s.target IN (SELECT jsonb_array_elements_text(CAST(:target_list AS jsonb)))
       OR (substr(s.target, 1, 1) = '=' AND EXISTS (
           SELECT 1 FROM steps AS c
           WHERE c.run_id = s.run_id AND c.name = substr(s.target, 2) AND c.worker_id = :worker_id)))
ORDER BY s.priority DESC, s.available_at
LIMIT :limit
FOR UPDATE OF s SKIP LOCKED;

-- name: claim_oldest [postgres]
-- The longest waiting claimable step, if it has waited since before :aged_before; locked.
SELECT s.run_id, s.name, s.idx, s.status, s.unmet, s.dependents, s.optional, s.priority,
       s.attempt, s.recoveries, s.skip_reason, s.output, s.error_code, s.error_message,
       s.available_at, s.lease_token, s.lease_expires_at, s.worker_id, s.ready_at, s.started_at,
       s.finished_at, s.options, s.reused_from, s.iteration, s.task, s.input,
       s.gather, s.output_blob, s.input_blob
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE s.status = 'ready'
  AND s.available_at <= :aged_before
  AND (r.status IN ('pending', 'running') OR (r.status = 'pausing' AND s.attempt > 0))
  AND r.fingerprint IN (SELECT jsonb_array_elements_text(CAST(:fingerprint_list AS jsonb)))
  AND (CAST(:queue_list AS jsonb) IS NULL
       OR COALESCE(s.queue, 'default') IN (SELECT jsonb_array_elements_text(CAST(:queue_list AS jsonb))))
  AND COALESCE(s.queue, 'default') NOT IN
      (SELECT jsonb_array_elements_text(CAST(:blocked_list AS jsonb)))
  AND (s.target IS NULL
       OR s.target IN (SELECT jsonb_array_elements_text(CAST(:target_list AS jsonb)))
       OR (substr(s.target, 1, 1) = '=' AND EXISTS (
           SELECT 1 FROM steps AS c
           WHERE c.run_id = s.run_id AND c.name = substr(s.target, 2) AND c.worker_id = :worker_id)))
ORDER BY s.available_at
LIMIT 1
FOR UPDATE OF s SKIP LOCKED;

-- name: held_queues [postgres]
-- Of the queues a claim found blocked (full, or out of tokens), those holding back ready steps it could take.
SELECT DISTINCT COALESCE(s.queue, 'default')
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE s.status = 'ready'
  AND s.available_at <= :now
  AND (r.status IN ('pending', 'running') OR (r.status = 'pausing' AND s.attempt > 0))
  AND r.fingerprint IN (SELECT jsonb_array_elements_text(CAST(:fingerprint_list AS jsonb)))
  AND (CAST(:queue_list AS jsonb) IS NULL
       OR COALESCE(s.queue, 'default') IN (SELECT jsonb_array_elements_text(CAST(:queue_list AS jsonb))))
  AND COALESCE(s.queue, 'default') IN
      (SELECT jsonb_array_elements_text(CAST(:blocked_list AS jsonb)))
  AND (s.target IS NULL
       OR s.target IN (SELECT jsonb_array_elements_text(CAST(:target_list AS jsonb)))
       OR (substr(s.target, 1, 1) = '=' AND EXISTS (
           SELECT 1 FROM steps AS c
           WHERE c.run_id = s.run_id AND c.name = substr(s.target, 2) AND c.worker_id = :worker_id)));

-- name: flow_lock [postgres]
-- Serialise the claims (and queue changes) that count running steps against limits.
SELECT pg_advisory_xact_lock(7215090);

-- name: count_queue_running [postgres]
-- Running steps of these queues (steps without a queue are in 'default').
SELECT COALESCE(queue, 'default'), COUNT(*) FROM steps
WHERE status = 'running'
  AND COALESCE(queue, 'default') IN (SELECT jsonb_array_elements_text(CAST(:queue_list AS jsonb)))
GROUP BY COALESCE(queue, 'default');

-- name: count_key_running [postgres]
-- Running steps of these concurrency keys.
SELECT concurrency_key, COUNT(*) FROM steps
WHERE status = 'running'
  AND concurrency_key IN (SELECT jsonb_array_elements_text(CAST(:key_list AS jsonb)))
GROUP BY concurrency_key;

-- name: next_ready_at [postgres]
-- When the earliest ready step of active runs of the given fingerprints becomes claimable (after :after).
SELECT MIN(s.available_at)
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE s.status = 'ready'
  AND s.available_at > CAST(:after AS double precision)
  AND (r.status IN ('pending', 'running') OR (r.status = 'pausing' AND s.attempt > 0))
  AND r.fingerprint IN (SELECT jsonb_array_elements_text(CAST(:fingerprint_list AS jsonb)));

-- The writes of a transaction: the common text is run once per row (executemany); these
-- PostgreSQL versions take one array per column and write every row in one statement (the
-- store's driver turns the rows into columns), which costs the server a fraction per row.

-- name: insert_step [postgres]
-- Create step records (of a new run, or spawned by steps).
INSERT INTO steps (
    run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
    skip_reason, output, error_code, error_message, available_at, lease_token, lease_expires_at,
    worker_id, ready_at, started_at, finished_at, options, reused_from, iteration, task, input,
    gather, queue, concurrency_key, target, output_blob, input_blob
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
    CAST(:input AS bytea[]), CAST(:gather AS bytea[]), CAST(:queue AS text[]),
    CAST(:concurrency_key AS text[]), CAST(:target AS text[]), CAST(:output_blob AS text[]),
    CAST(:input_blob AS text[])
);

-- name: insert_event [postgres]
-- Append entries to runs' event logs.
INSERT INTO events (run_id, seq, type, step, payload, ts)
SELECT * FROM unnest(
    CAST(:run_id AS text[]), CAST(:seq AS int[]), CAST(:type AS text[]), CAST(:step AS text[]),
    CAST(:payload AS text[]), CAST(:ts AS double precision[])
);

-- name: update_step [postgres]
-- Write the mutable fields of steps, except their output.
UPDATE steps AS s
SET status = v.status, unmet = v.unmet, attempt = v.attempt, recoveries = v.recoveries,
    skip_reason = v.skip_reason, error_code = v.error_code, error_message = v.error_message,
    available_at = v.available_at, lease_token = v.lease_token,
    lease_expires_at = v.lease_expires_at, worker_id = v.worker_id, ready_at = v.ready_at,
    started_at = v.started_at, finished_at = v.finished_at, iteration = v.iteration,
    gather = v.gather
FROM unnest(
    CAST(:status AS text[]), CAST(:unmet AS int[]), CAST(:attempt AS int[]),
    CAST(:recoveries AS int[]), CAST(:skip_reason AS text[]), CAST(:error_code AS text[]),
    CAST(:error_message AS text[]), CAST(:available_at AS double precision[]),
    CAST(:lease_token AS text[]), CAST(:lease_expires_at AS double precision[]),
    CAST(:worker_id AS text[]), CAST(:ready_at AS double precision[]),
    CAST(:started_at AS double precision[]), CAST(:finished_at AS double precision[]),
    CAST(:iteration AS int[]), CAST(:gather AS bytea[]), CAST(:run_id AS text[]),
    CAST(:name AS text[])
) AS v (status, unmet, attempt, recoveries, skip_reason, error_code, error_message,
        available_at, lease_token, lease_expires_at, worker_id, ready_at, started_at,
        finished_at, iteration, gather, run_id, name)
WHERE s.run_id = v.run_id AND s.name = v.name;

-- name: update_step_output [postgres]
-- Write the mutable fields of steps, their outputs included.
UPDATE steps AS s
SET status = v.status, unmet = v.unmet, attempt = v.attempt, recoveries = v.recoveries,
    skip_reason = v.skip_reason, error_code = v.error_code, error_message = v.error_message,
    available_at = v.available_at, lease_token = v.lease_token,
    lease_expires_at = v.lease_expires_at, worker_id = v.worker_id, ready_at = v.ready_at,
    started_at = v.started_at, finished_at = v.finished_at, iteration = v.iteration,
    gather = v.gather, output = v.output, output_blob = v.output_blob
FROM unnest(
    CAST(:status AS text[]), CAST(:unmet AS int[]), CAST(:attempt AS int[]),
    CAST(:recoveries AS int[]), CAST(:skip_reason AS text[]), CAST(:error_code AS text[]),
    CAST(:error_message AS text[]), CAST(:available_at AS double precision[]),
    CAST(:lease_token AS text[]), CAST(:lease_expires_at AS double precision[]),
    CAST(:worker_id AS text[]), CAST(:ready_at AS double precision[]),
    CAST(:started_at AS double precision[]), CAST(:finished_at AS double precision[]),
    CAST(:iteration AS int[]), CAST(:gather AS bytea[]), CAST(:output AS bytea[]),
    CAST(:output_blob AS text[]), CAST(:run_id AS text[]), CAST(:name AS text[])
) AS v (status, unmet, attempt, recoveries, skip_reason, error_code, error_message,
        available_at, lease_token, lease_expires_at, worker_id, ready_at, started_at,
        finished_at, iteration, gather, output, output_blob, run_id, name)
WHERE s.run_id = v.run_id AND s.name = v.name;

-- name: update_run [postgres]
-- Write the mutable fields of runs, except their output.
UPDATE runs AS r
SET status = v.status, unfinished = v.unfinished, failures = v.failures, next_seq = v.next_seq,
    error = v.error, started_at = v.started_at, finished_at = v.finished_at,
    next_idx = v.next_idx
FROM unnest(
    CAST(:status AS text[]), CAST(:unfinished AS int[]), CAST(:failures AS int[]),
    CAST(:next_seq AS int[]), CAST(:error AS text[]), CAST(:started_at AS double precision[]),
    CAST(:finished_at AS double precision[]), CAST(:next_idx AS int[]), CAST(:id AS text[])
) AS v (status, unfinished, failures, next_seq, error, started_at, finished_at, next_idx, id)
WHERE r.id = v.id;

-- name: update_run_output [postgres]
-- Write the mutable fields of runs, their outputs included.
UPDATE runs AS r
SET status = v.status, unfinished = v.unfinished, failures = v.failures, next_seq = v.next_seq,
    error = v.error, started_at = v.started_at, finished_at = v.finished_at,
    next_idx = v.next_idx, output = v.output, output_blob = v.output_blob
FROM unnest(
    CAST(:status AS text[]), CAST(:unfinished AS int[]), CAST(:failures AS int[]),
    CAST(:next_seq AS int[]), CAST(:error AS text[]), CAST(:started_at AS double precision[]),
    CAST(:finished_at AS double precision[]), CAST(:next_idx AS int[]), CAST(:output AS bytea[]),
    CAST(:output_blob AS text[]), CAST(:id AS text[])
) AS v (status, unfinished, failures, next_seq, error, started_at, finished_at, next_idx, output,
        output_blob, id)
WHERE r.id = v.id;

-- Records: documents of collections (engine.records, ctx.record) ---------------------------------

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

-- Deleting runs ----------------------------------------------------------------------------------

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

-- name: run_step_blobs
-- The blob hashes the steps of a run refer to (outputs and spawned inputs).
SELECT output_blob, input_blob FROM steps
WHERE run_id = :id AND (output_blob IS NOT NULL OR input_blob IS NOT NULL);

-- name: delete_run_artifacts
-- Delete the artifacts of a (deleted) run; the blobs of those kept in the database.
DELETE FROM artifacts WHERE run_id = :id
RETURNING path, sha256;

-- Blobs: payloads kept once under their SHA-256 (plait/_blobs.py) --------------------------------

-- name: get_blobs
-- The data of the blobs of a list of hashes.
SELECT sha256, data FROM blobs WHERE sha256 IN (SELECT value FROM json_each(:sha_list));

-- name: get_blobs [postgres]
-- The data of the blobs of a list of hashes.
SELECT sha256, data FROM blobs
WHERE sha256 = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:sha_list AS jsonb))));

-- name: add_blob_refs
-- Count new references to a blob, if the store has it (then its data need not be sent).
UPDATE blobs SET refs = refs + :refs WHERE sha256 = :sha256;

-- name: insert_blob
-- Store a blob with its first references (or count them, if another writer stored it first).
INSERT INTO blobs (sha256, size, refs, data, created_at)
VALUES (:sha256, :size, :refs, :data, :created_at)
ON CONFLICT (sha256) DO UPDATE SET refs = blobs.refs + excluded.refs;

-- name: put_blob
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

-- Artifacts: files steps saved (ctx.save_artifact), written with their success ------------------

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
