-- Migration 2: run control (deadlines, forks, gates and delays, loops).

ALTER TABLE runs ADD COLUMN deadline DOUBLE PRECISION;

ALTER TABLE runs ADD COLUMN parent_run TEXT;

ALTER TABLE runs ADD COLUMN forked_from TEXT;

ALTER TABLE steps ADD COLUMN options TEXT;

ALTER TABLE steps ADD COLUMN reused_from TEXT;

ALTER TABLE steps ADD COLUMN iteration INTEGER NOT NULL DEFAULT 0;

CREATE INDEX runs_deadline ON runs (deadline)
WHERE deadline IS NOT NULL AND status IN ('pending', 'running', 'pausing', 'paused');

CREATE INDEX steps_waiting ON steps (available_at) WHERE status = 'waiting';
