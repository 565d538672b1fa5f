-- Migration 12: a version is the graph, not the code. A step records the digest of the code
-- that ran its latest attempt (its `step_started` event says so too). Runs started before this
-- migration keep the fingerprint they were started with, which covers their code: they stay
-- pinned to it (see the CHANGELOG).
ALTER TABLE steps ADD COLUMN code TEXT;
