-- Queries of the SQL stores: claims and leases.
-- How a query file is written (blocks, [postgres] overrides, fragments, list parameters, lock
-- markers): the docstring of `plait.stores.sql.queries`.
--
-- The claim queries are the SQL form of `core/claiming.py`, the claim policy: a claimable step is
-- ready, of a run that dispatches (`dispatchable`), of a workflow version the worker registered,
-- in a queue it serves, placed where it may run, and not in a queue that is blocked at the moment
-- (full, or out of tokens); candidates come best first (priority, then the longest waiting), and
-- the longest waiting goes first of all once it has waited too long (`claim_oldest`, no
-- starvation). The programs admit them under flow control with the same module's functions.

-- fragment: dispatchable
-- The run `r` of a ready step `s` lets it be claimed: pending or running; pausing, only a retry.
(r.status IN ('pending', 'running') OR (r.status = 'pausing' AND s.attempt > 0))

-- fragment: claimable
-- A ready step `s` of run `r` that this worker may claim, its queue's limits aside.
s.status = 'ready'
  AND /*include dispatchable*/
  AND r.fingerprint IN (SELECT value FROM json_each(:fingerprint_list))
  AND (:queue_list IS NULL OR COALESCE(s.queue, 'default') IN (SELECT value FROM json_each(:queue_list)))
  AND (s.target IS NULL OR s.target IN (SELECT value FROM json_each(:target_list))
       OR (substr(s.target, 1, 1) = '=' AND EXISTS (
           SELECT 1 FROM steps AS c
           WHERE c.run_id = s.run_id AND c.name = substr(s.target, 2) AND c.worker_id = :worker_id)))

-- fragment: claimable [postgres]
-- A ready step `s` of run `r` that this worker may claim, its queue's limits aside.
s.status = 'ready'
  AND /*include dispatchable*/
  AND r.fingerprint IN (SELECT jsonb_array_elements_text(CAST(:fingerprint_list AS jsonb)))
  AND (CAST(:queue_list AS jsonb) IS NULL
       OR COALESCE(s.queue, 'default') IN (SELECT jsonb_array_elements_text(CAST(:queue_list AS jsonb))))
  AND (s.target IS NULL
       OR s.target IN (SELECT jsonb_array_elements_text(CAST(:target_list AS jsonb)))
       OR (substr(s.target, 1, 1) = '=' AND EXISTS (
           SELECT 1 FROM steps AS c
           WHERE c.run_id = s.run_id AND c.name = substr(s.target, 2) AND c.worker_id = :worker_id)))

-- fragment: in_blocked_queue
-- The step `s` is in one of the queues the claim found blocked (full, or out of tokens).
COALESCE(s.queue, 'default') IN (SELECT value FROM json_each(:blocked_list))

-- fragment: in_blocked_queue [postgres]
-- The step `s` is in one of the queues the claim found blocked (full, or out of tokens).
COALESCE(s.queue, 'default') IN (SELECT jsonb_array_elements_text(CAST(:blocked_list AS jsonb)))

-- A worker's transaction (a claim, a commit, both) walks the ready index rather than sorting every
-- ready step, which is what the planner picks while a fresh table has no statistics yet (10-23 ms
-- per claim instead of 0.2 ms with 10,000 ready steps); and its bulk writes (`unnest` of a few
-- hundred rows) probe the steps and runs they change by key instead of hashing the whole table,
-- which the planner prefers on small tables (W1's 6,000 steps: 6-7 ms per write against 1-2 ms)
-- and which makes a commit's cost grow with the table.
-- name: claim_session [postgres]
-- Planner settings for a worker's transaction.
SELECT set_config('enable_sort', 'off', true), set_config('enable_hashjoin', 'off', true),
    set_config('enable_mergejoin', 'off', true);

-- name: claim_candidates
-- Claimable steps whose time has come, best first; locked on PostgreSQL, skipping others' claims.
SELECT /*include step_columns*/
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE /*include claimable*/
  AND s.available_at <= :now
  AND NOT (/*include in_blocked_queue*/)
ORDER BY s.priority DESC, s.available_at
LIMIT :limit /*for update of s*/;

-- name: claim_oldest
-- The longest waiting claimable step, if it has waited since before :aged_before (no starvation).
SELECT /*include step_columns*/
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE /*include claimable*/
  AND s.available_at <= :aged_before
  AND NOT (/*include in_blocked_queue*/)
ORDER BY s.available_at
LIMIT 1 /*for update of s*/;

-- name: held_queues
-- Of the queues a claim found blocked (full, or out of tokens), those holding back ready steps it could take.
SELECT DISTINCT COALESCE(s.queue, 'default')
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE /*include claimable*/
  AND s.available_at <= :now
  AND /*include in_blocked_queue*/;

-- name: next_ready_at
-- When the earliest ready step of active runs of the given fingerprints becomes claimable (after :after).
SELECT MIN(s.available_at)
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE s.status = 'ready'
  AND s.available_at > :after
  AND /*include dispatchable*/
  AND r.fingerprint IN (SELECT value FROM json_each(:fingerprint_list));

-- name: next_ready_at [postgres]
-- When the earliest ready step of active runs of the given fingerprints becomes claimable (after :after).
SELECT MIN(s.available_at)
FROM steps AS s
JOIN runs AS r ON r.id = s.run_id
WHERE s.status = 'ready'
  AND s.available_at > CAST(:after AS double precision)
  AND /*include dispatchable*/
  AND r.fingerprint IN (SELECT jsonb_array_elements_text(CAST(:fingerprint_list AS jsonb)));

-- Flow control: what a claim counts, under a lock that serialises the claims that count.

-- name: flow_lock [postgres]
-- Serialise the claims (and queue changes) that count running steps against limits.
SELECT pg_advisory_xact_lock(7215090);

-- name: count_queue_running
-- Running steps of these queues (steps without a queue are in 'default').
SELECT COALESCE(queue, 'default'), COUNT(*) FROM steps
WHERE status = 'running'
  AND COALESCE(queue, 'default') IN (SELECT value FROM json_each(:queue_list))
GROUP BY COALESCE(queue, 'default');

-- name: count_queue_running [postgres]
-- Running steps of these queues (steps without a queue are in 'default').
SELECT COALESCE(queue, 'default'), COUNT(*) FROM steps
WHERE status = 'running'
  AND COALESCE(queue, 'default') IN (SELECT jsonb_array_elements_text(CAST(:queue_list AS jsonb)))
GROUP BY COALESCE(queue, 'default');

-- name: count_key_running
-- Running steps of these concurrency keys.
SELECT concurrency_key, COUNT(*) FROM steps
WHERE status = 'running'
  AND concurrency_key IN (SELECT value FROM json_each(:key_list))
GROUP BY concurrency_key;

-- name: count_key_running [postgres]
-- Running steps of these concurrency keys.
SELECT concurrency_key, COUNT(*) FROM steps
WHERE status = 'running'
  AND concurrency_key IN (SELECT jsonb_array_elements_text(CAST(:key_list AS jsonb)))
GROUP BY concurrency_key;

-- Leases: a claim's lease is extended while its worker runs the step, and recovered once expired.

-- name: extend_lease
-- Extend a running step's lease if its token still holds it and its run has not ended (stop it).
UPDATE steps SET lease_expires_at = :lease_expires_at
WHERE run_id = :run_id AND name = :name AND status = 'running' AND lease_token = :token
  AND NOT EXISTS (
      SELECT 1 FROM runs WHERE id = :run_id AND status IN ('cancelled', 'failed', 'completed')
  );

-- name: expired_leases
-- Running steps whose lease has expired, the oldest expiry first.
SELECT run_id, name FROM steps
WHERE status = 'running' AND lease_expires_at <= :now
ORDER BY lease_expires_at
LIMIT :limit;
