-- The plait schema as it is now (SQLite dialect). A new database is created from this file; an
-- older one is brought here by replaying migrations/NNNN_*.sql. tests/stores/test_sqlite.py
-- checks that both roads lead to the same schema. Timestamps are seconds since the epoch (REAL);
-- payloads (input, output) are BLOBs of JSON bytes that the store never decodes.

CREATE TABLE plait_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Workflow versions, keyed by fingerprint; `registered` orders them (latest version of a name).
CREATE TABLE workflows (
    fingerprint TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    registered  INTEGER NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    plan        TEXT NOT NULL  -- the WorkflowPlan as JSON
);

CREATE INDEX workflows_name ON workflows (name, registered);

CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    workflow    TEXT NOT NULL,
    version     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      TEXT NOT NULL,
    input       BLOB NOT NULL,
    sinks       TEXT NOT NULL,  -- JSON list of step names
    unfinished  INTEGER NOT NULL,
    failures    INTEGER NOT NULL,
    next_seq    INTEGER NOT NULL,
    output      BLOB,
    error       TEXT,
    created_at  DOUBLE PRECISION NOT NULL,
    started_at  DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    deadline    DOUBLE PRECISION,  -- past it, the run fails with deadline_exceeded
    parent_run  TEXT,  -- the run this one was forked from
    forked_from TEXT,  -- the step it was forked from
    next_idx    INTEGER NOT NULL DEFAULT 0,  -- idx of the next step added (spawned) to the run
    input_blob  TEXT,  -- the input is the blob of this hash (`input` is then empty)
    output_blob TEXT,  -- the output is the blob of this hash (`output` is then NULL)
    updated_at  DOUBLE PRECISION NOT NULL DEFAULT 0,  -- when its status last changed
    state       BLOB,  -- the session state (ctx.state): a JSON object; NULL while it is empty
    name        TEXT,  -- a human name given at start
    labels      TEXT,  -- a JSON object of strings given at start (run_labels indexes them)
    metadata    BLOB,  -- a JSON object given at start
    called_by   TEXT  -- the step of parent_run that called it as a sub-workflow (ctx.call)
);

CREATE INDEX runs_created ON runs (created_at, id);

CREATE INDEX runs_workflow ON runs (workflow, created_at, id);

CREATE INDEX runs_workflow_status ON runs (workflow, status, created_at, id);

-- deadlines to enforce: unfinished runs by deadline
CREATE INDEX runs_deadline ON runs (deadline)
WHERE deadline IS NOT NULL AND status IN ('pending', 'running', 'pausing', 'paused');

-- the run-list change feed: runs by the time their status last changed
CREATE INDEX runs_updated ON runs (updated_at, id);

-- a run's labels, one row each, so that a list filtered by labels reads an index: the runs of
-- a label are found by (key, value), and several labels are a join of such ranges
CREATE TABLE run_labels (
    run_id TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE INDEX run_labels_value ON run_labels (key, value, run_id);

CREATE TABLE steps (
    run_id           TEXT NOT NULL,
    name             TEXT NOT NULL,
    idx              INTEGER NOT NULL,
    status           TEXT NOT NULL,
    unmet            INTEGER NOT NULL,
    dependents       TEXT NOT NULL,  -- JSON list of [target, kind, absorbs]; never rewritten
    optional         BOOLEAN NOT NULL,
    priority         INTEGER NOT NULL,
    attempt          INTEGER NOT NULL,
    recoveries       INTEGER NOT NULL,
    skip_reason      TEXT,
    output           BLOB,
    error_code       TEXT,
    error_message    TEXT,
    available_at     DOUBLE PRECISION,
    lease_token      TEXT,
    lease_expires_at DOUBLE PRECISION,
    worker_id        TEXT,
    ready_at         DOUBLE PRECISION,
    started_at       DOUBLE PRECISION,
    finished_at      DOUBLE PRECISION,
    options          TEXT,  -- JSON: delay, gate (approval or signal), expiry; never rewritten
    reused_from      TEXT,  -- a fork reused this step's output from that run
    iteration        INTEGER NOT NULL DEFAULT 0,  -- times a Goto sent the run back through it
    task             TEXT,  -- a spawned step: the workflow's task it runs
    input            BLOB,  -- a spawned step: the JSON value its task receives
    gather           BLOB,  -- a parent that returned handles: JSON name or list of names
    queue            TEXT,  -- its flow-control queue (NULL: the queue 'default')
    concurrency_key  TEXT,  -- at most its key_limit (in options) steps of one key run at once
    target           TEXT,  -- placement: a worker label, '@' + a worker id, '=' + a step's name
    output_blob      TEXT,  -- the output is the blob of this hash (`output` is then NULL)
    input_blob       TEXT,  -- the input's blob (`input` NULL), or its biggest output's
                            -- (`input` is then the rest around it: core.blobs.framed)
    code             TEXT,  -- the code digest of the handler that ran its latest attempt
    PRIMARY KEY (run_id, name)
);

-- claim: ready steps, highest priority first, then the longest waiting
CREATE INDEX steps_ready ON steps (priority DESC, available_at) WHERE status = 'ready';

-- claim, no starvation: the longest waiting ready step, whatever its priority
CREATE INDEX steps_ready_age ON steps (available_at) WHERE status = 'ready';

-- claim, flow control: running steps by queue and by concurrency key
CREATE INDEX steps_queue_running ON steps (queue) WHERE status = 'running' AND queue IS NOT NULL;

CREATE INDEX steps_key_running ON steps (concurrency_key)
WHERE status = 'running' AND concurrency_key IS NOT NULL;

-- recover_expired: running steps by lease expiry
CREATE INDEX steps_leases ON steps (lease_expires_at) WHERE status = 'running';

-- failed steps across runs, the latest first
CREATE INDEX steps_failed ON steps (finished_at, run_id, name) WHERE status = 'failed';

-- list_waiting, and approvals expiring: waiting steps by expiry (available_at)
CREATE INDEX steps_waiting ON steps (available_at) WHERE status = 'waiting';

-- Configured queues: limits every worker obeys, and the persisted token bucket of a rate limit
-- (`tokens` as counted at `counted_at`), so a restart neither refills nor loses tokens.
CREATE TABLE queues (
    name        TEXT PRIMARY KEY,
    concurrency INTEGER,           -- at most this many of its steps running at once (NULL: no limit)
    rate        DOUBLE PRECISION,  -- at most `rate` starts per `per` seconds, bursts of `burst`
    per         DOUBLE PRECISION,
    burst       DOUBLE PRECISION,
    tokens      DOUBLE PRECISION,
    counted_at  DOUBLE PRECISION,
    updated_at  DOUBLE PRECISION NOT NULL
);

CREATE TABLE events (
    run_id  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    type    TEXT NOT NULL,
    step    TEXT,
    payload TEXT NOT NULL,  -- JSON object
    ts      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Records: JSON documents in named collections, each with a revision (engine.records).
CREATE TABLE records (
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    doc        BLOB NOT NULL,  -- JSON; empty: deleted (a tombstone, kept for its revision)
    revision   INTEGER NOT NULL,  -- 1 when created, +1 per write or delete: never repeated
    updated_at DOUBLE PRECISION NOT NULL,
    run_id     TEXT,  -- the run and step that wrote it last, if a step did
    step       TEXT,
    PRIMARY KEY (collection, key)
);

-- Blobs: payloads longer than the store's threshold, kept once under their SHA-256 (core.blobs).
-- `refs` counts the columns that name it; gc removes a blob with none once it is older than a
-- grace period (`created_at` is refreshed by every put, so a blob put for a row about to commit
-- is never removed under it).
-- `data` comes last: SQLite writes a zeroblob at the end of a record without making it, so a
-- blob is inserted with zeroblob(size) and its data written in place (stores.sql.ops).
CREATE TABLE blobs (
    sha256     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    refs       INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    data       BLOB NOT NULL
);

-- gc: unreferenced blobs by age
CREATE INDEX blobs_unreferenced ON blobs (created_at) WHERE refs <= 0;

-- Artifacts: files steps saved (ctx.save_artifact), visible once the step succeeded; the bytes
-- are in the artifact folder under `path`, or in the blob of their `sha256` (data.artifacts).
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
