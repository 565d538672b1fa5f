-- Queries of the SQL stores: steps waiting on a decision, a signal or the clock, and run deadlines.
-- How a query file is written (blocks, [postgres] overrides, fragments, list parameters, lock
-- markers): the docstring of `plait.stores.sql.queries`.

-- name: list_waiting
-- Steps waiting for a decision or a signal across runs (not parents joining), longest first.
SELECT /*include step_columns*/
FROM steps AS s WHERE status = 'waiting' AND unmet = 0
ORDER BY ready_at, run_id, name
LIMIT :limit;

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
