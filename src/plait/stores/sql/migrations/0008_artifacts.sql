-- Migration 8: artifacts, files steps saved (ctx.save_artifact), visible once the step succeeded.
CREATE TABLE artifacts (
    id           TEXT PRIMARY KEY,  -- random hex made by plait; also the file's name
    run_id       TEXT NOT NULL,
    step         TEXT NOT NULL,
    name         TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    path         TEXT,  -- in the artifact folder (relative); NULL: a blob (one reference)
    metadata     TEXT,  -- JSON object
    created_at   DOUBLE PRECISION NOT NULL
);

CREATE INDEX artifacts_run ON artifacts (run_id, created_at);
