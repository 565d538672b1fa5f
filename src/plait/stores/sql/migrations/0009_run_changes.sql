-- Migration 9: what the HTTP server lists. Runs remember when their status last changed (the
-- run-list change feed reads them by it), and failed steps are found across runs by their end.
ALTER TABLE runs ADD COLUMN updated_at DOUBLE PRECISION NOT NULL DEFAULT 0;

UPDATE runs SET updated_at = COALESCE(finished_at, started_at, created_at);

CREATE INDEX runs_updated ON runs (updated_at, id);

CREATE INDEX steps_failed ON steps (finished_at, run_id, name) WHERE status = 'failed';
