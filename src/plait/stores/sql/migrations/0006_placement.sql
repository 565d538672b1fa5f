-- Migration 6: placement (a step runs only on a worker with its label, or on a given worker).

ALTER TABLE steps ADD COLUMN target TEXT;
