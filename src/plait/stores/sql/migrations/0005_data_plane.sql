-- Data plane (issue 6): records, JSON documents in named collections with a revision each.
CREATE TABLE records (
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    doc        BLOB NOT NULL,  -- JSON
    revision   INTEGER NOT NULL,  -- 1 when created, +1 per write
    updated_at DOUBLE PRECISION NOT NULL,
    run_id     TEXT,  -- the run and step that wrote it last, if a step did
    step       TEXT,
    PRIMARY KEY (collection, key)
);
