-- Migration 4: flow control (queues with concurrency and rate limits, per-key limits).

ALTER TABLE steps ADD COLUMN queue TEXT;

ALTER TABLE steps ADD COLUMN concurrency_key TEXT;

CREATE INDEX steps_queue_running ON steps (queue) WHERE status = 'running' AND queue IS NOT NULL;

CREATE INDEX steps_key_running ON steps (concurrency_key)
WHERE status = 'running' AND concurrency_key IS NOT NULL;

CREATE INDEX steps_ready_age ON steps (available_at) WHERE status = 'ready';

CREATE TABLE queues (
    name        TEXT PRIMARY KEY,
    concurrency INTEGER,
    rate        DOUBLE PRECISION,
    per         DOUBLE PRECISION,
    burst       DOUBLE PRECISION,
    tokens      DOUBLE PRECISION,
    counted_at  DOUBLE PRECISION,
    updated_at  DOUBLE PRECISION NOT NULL
);
