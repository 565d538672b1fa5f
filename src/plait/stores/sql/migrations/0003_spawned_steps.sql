-- Migration 3: spawned steps (ctx.spawn, ctx.map).

ALTER TABLE runs ADD COLUMN next_idx INTEGER NOT NULL DEFAULT 0;

UPDATE runs SET next_idx = (SELECT COUNT(*) FROM steps WHERE steps.run_id = runs.id);

ALTER TABLE steps ADD COLUMN task TEXT;

ALTER TABLE steps ADD COLUMN input BLOB;

ALTER TABLE steps ADD COLUMN gather BLOB;
