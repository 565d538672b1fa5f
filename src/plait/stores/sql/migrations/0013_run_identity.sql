-- Migration 13: a run's identity beside its id (issue 17, item 4). Runs keep the name, labels
-- and metadata they were started with; run_labels holds each label again as a row, indexed by
-- (key, value), so that a run list filtered by labels reads index ranges on SQLite and
-- PostgreSQL alike (one query for both, where a JSONB column would be PostgreSQL's alone).
ALTER TABLE runs ADD COLUMN name TEXT;

ALTER TABLE runs ADD COLUMN labels TEXT;

ALTER TABLE runs ADD COLUMN metadata BLOB;

CREATE TABLE run_labels (
    run_id TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE INDEX run_labels_value ON run_labels (key, value, run_id);
