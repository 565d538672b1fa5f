-- Migration 10: a blob's data is the last column of its row. SQLite stores a row as one record
-- and can write a zeroblob at its end without making it, so that a blob's row is inserted with
-- zeroblob(size) and its data written in place (incremental blob I/O), never copied; with a
-- column after it, SQLite built the zeros in memory, twice. The table is made again under its
-- own name (so that its primary key keeps its name on PostgreSQL), its rows copied through a
-- holding table.
CREATE TABLE blobs_moving (
    sha256     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    refs       INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    data       BLOB NOT NULL
);

INSERT INTO blobs_moving (sha256, size, refs, created_at, data)
SELECT sha256, size, refs, created_at, data FROM blobs;

DROP TABLE blobs;

CREATE TABLE blobs (
    sha256     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    refs       INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    data       BLOB NOT NULL
);

INSERT INTO blobs (sha256, size, refs, created_at, data)
SELECT sha256, size, refs, created_at, data FROM blobs_moving;

DROP TABLE blobs_moving;

CREATE INDEX blobs_unreferenced ON blobs (created_at) WHERE refs <= 0;
