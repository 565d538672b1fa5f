-- Migration 7: content-addressed blobs. A payload longer than the store's threshold is kept
-- once in `blobs` under its SHA-256; the row that holds it keeps only the hash.

ALTER TABLE runs ADD COLUMN input_blob TEXT;

ALTER TABLE runs ADD COLUMN output_blob TEXT;

ALTER TABLE steps ADD COLUMN output_blob TEXT;

ALTER TABLE steps ADD COLUMN input_blob TEXT;

CREATE TABLE blobs (
    sha256     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    refs       INTEGER NOT NULL,
    data       BLOB NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX blobs_unreferenced ON blobs (created_at) WHERE refs <= 0;
