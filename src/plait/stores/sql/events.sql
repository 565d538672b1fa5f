-- Queries of the SQL stores: the event logs of runs.
-- How a query file is written (blocks, [postgres] overrides, fragments, list parameters, lock
-- markers): the docstring of `plait.stores.sql.queries`.

-- name: insert_event
-- Append an entry to a run's event log.
INSERT INTO events (run_id, seq, type, step, payload, ts)
VALUES (:run_id, :seq, :type, :step, :payload, :ts);

-- name: insert_event [postgres]
-- Append entries to runs' event logs.
INSERT INTO events (run_id, seq, type, step, payload, ts)
SELECT * FROM unnest(
    CAST(:run_id AS text[]), CAST(:seq AS int[]), CAST(:type AS text[]), CAST(:step AS text[]),
    CAST(:payload AS text[]), CAST(:ts AS double precision[])
);

-- name: get_events
-- A run's events after a sequence number, in order.
SELECT run_id, seq, type, step, payload, ts
FROM events WHERE run_id = :run_id AND seq > :after_seq
ORDER BY seq
LIMIT :limit;
