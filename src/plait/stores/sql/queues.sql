-- Queries of the SQL stores: the configured queues and their token buckets.
-- How a query file is written (blocks, [postgres] overrides, fragments, list parameters, lock
-- markers): the docstring of `plait.stores.sql.queries`.

-- name: get_queues
-- The configured queues, by name.
SELECT name, concurrency, rate, per, burst, tokens, counted_at, updated_at
FROM queues ORDER BY name;

-- name: put_queue
-- Create or reconfigure a queue.
INSERT INTO queues (name, concurrency, rate, per, burst, tokens, counted_at, updated_at)
VALUES (:name, :concurrency, :rate, :per, :burst, :tokens, :counted_at, :updated_at)
ON CONFLICT (name) DO UPDATE SET
    concurrency = excluded.concurrency, rate = excluded.rate, per = excluded.per,
    burst = excluded.burst, tokens = excluded.tokens, counted_at = excluded.counted_at,
    updated_at = excluded.updated_at;

-- name: update_queue_bucket
-- Store a queue's token bucket after a claim took tokens.
UPDATE queues SET tokens = :tokens, counted_at = :counted_at WHERE name = :name;
