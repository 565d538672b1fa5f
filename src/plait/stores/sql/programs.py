"""The transactions of the SQL stores, written once for SQLite and PostgreSQL.

A store transaction here is a *program*: a generator that yields the statements it wants run and
is sent back their results (`stores.sql.ops`: `fetch` → rows, `execute` → row count,
`execute_many` → nothing). The SQLite store drives a program synchronously on its thread
(`run_sync`), the PostgreSQL store with `await` on a pooled connection; the statements, the order
in which rows are loaded and locked, and the writing of what the state machine changed are the
same for both. (The same inversion lets a transition ask for rows without doing I/O: `core.txn`.)

How to read a program, with `claim` cut down to its steps:

    txn = SQLTxn(now)
    rows = yield from fetch(self.claim_candidates, params)
        # 1. the driver runs the query and sends its rows back here: a list[Row]
    steps = yield from self.blobs.steps(rows)
        # 2. a sub-program: the rows as StepRows (one more fetch if they name blobs)
    for run_id, name in keys:
        yield from self.drive(claim(txn, run_id, name, ...), txn)
        # 3. the state machine decides; each Need it yields becomes a loading fetch (`load`)
    yield from self.write(txn)
        # 4. what the transition changed, written back with execute_many
    return txn
        # 5. the driver commits the transaction and hands txn to the store

Locking: the loading queries carry a `/*for update*/` marker that `Queries.locked` turns into a
row lock on PostgreSQL (SQLite's BEGIN IMMEDIATE already serialises writers). Runs are locked
first, in id order, then steps; claims take ready steps with SKIP LOCKED, which no other
transaction waits on. So concurrent transactions wait for each other instead of deadlocking.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..._errors import RunConflict
from ...core.blobs import payload_of, row_blobs
from ...core.cascade import FAN_OUT_CHUNK
from ...core.claiming import (
    admit_candidates,
    blocked,
    charge,
    claim_time,
    flow_candidate,
    frees_room,
    starved_first,
    token_wait,
    unclaimed_ready,
    waited_since,
)
from ...core.gates import expire_approval, pass_deadline
from ...core.placement import worker_targets
from ...core.queues import QueueConfig, queue_of, reconfigure
from ...core.rate import Bucket, Rate
from ...core.rows import (
    TOMBSTONE,
    CodeOf,
    EventRow,
    Lease,
    Outcome,
    RunRow,
    RunStatus,
    StepInputs,
    StepRow,
    StepStatus,
)
from ...core.transitions import admit_key, claim, complete, recover, release
from ...core.txn import Action, Need, RecordKey, StepKey, Transition, Txn
from ..protocol import InputsWanted, NewRun
from .artifact_rows import artifact_params
from .blobs import BlobPrograms, BlobWrites, input_blobs, output_blobs
from .data_programs import DataPrograms
from .ops import Program, Row, execute, execute_all, execute_many, fetch
from .queries import Queries
from .rows import (
    EVENT_COLUMNS,
    NEW_RUN_COLUMNS,
    NEW_STEP_COLUMNS,
    RECORD_WRITE,
    RUN_COLUMNS,
    RUN_OUTPUT_BLOB,
    STEP_COLUMNS,
    STEP_STATUS,
    UPDATE_RUN,
    UPDATE_RUN_COUNTERS,
    UPDATE_RUN_OUTPUT,
    UPDATE_STEP,
    UPDATE_STEP_ATTEMPT,
    UPDATE_STEP_CLAIMED,
    UPDATE_STEP_OUTPUT,
    event_row,
    label_rows,
    labels_of,
    new_run_row,
    new_step_row,
    options_to_json,
    run_counters_row,
    run_insert_params,
    run_insert_row,
    run_update_output_row,
    run_update_row,
    sinks_to_json,
    step_claimed_row,
    step_insert_row,
    step_reshape_row,
    step_update_attempt_row,
    step_update_output_row,
    step_update_row,
)

T = TypeVar("T")
# Steps loaded (and rows written) per statement: a big set (a fan-out's 100,000 dependents) is
# read and written a chunk at a time, so that its rows are never all held beside its records.
CHUNK = 2000


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def _uncounted(sql: str, rows: Sequence[Sequence[Any]]) -> Program[int]:
    """`execute_many`, typed as `execute_all` is: its count is not known (0)."""
    yield from execute_many(sql, rows)
    return 0


class RunsTaken(Exception):
    """A hopeful `create_runs` met a taken id: its transaction is rolled back and run again,
    careful."""


class SQLTxn(Txn):
    """A transaction that remembers the payloads it loaded, to write back only changed ones."""

    def __init__(self, now: float) -> None:
        super().__init__(now)
        self.step_outputs: dict[StepKey, bytes | None] = {}
        self.run_outputs: dict[str, bytes | None] = {}
        # the blobs the loaded outputs were kept in: a rewritten output drops its reference
        self.step_output_blobs: dict[StepKey, str] = {}
        # the recorded inputs loaded (a static step's attempt rewrites its own), and their blobs
        self.step_inputs: dict[StepKey, bytes | None] = {}
        self.step_input_blobs: dict[StepKey, str] = {}
        self.run_output_blobs: dict[str, str] = {}
        # each run's status, error, start and end as loaded (`settled`): a run whose status
        # changed moves `updated_at`; one that changed in its counters only writes those alone
        self.run_states: dict[str, RunState] = {}
        self.busy = False  # a claim passed over runs that other transactions held
        # a claim that took nothing: did limits hold ready work back, and until when (Claims)
        self.limited = False
        self.next_token_at: float | None = None
        self.inputs: dict[str, StepInputs] | None = None  # a claim asked for its inputs

    def borrow(self, other: SQLTxn, run_ids: Iterable[str]) -> None:
        """Use the rows of these runs that `other`, an earlier part of the same store
        transaction, loaded (and may have changed): they are not read again, and each is
        written once, by the part that writes the runs (`adopt`, `Programs.write_runs`)."""
        for run_id in run_ids:
            run = other.runs.get(run_id)
            if run is None or run_id not in other.run_states:
                continue
            self.runs[run_id] = run
            self.run_states[run_id] = other.run_states[run_id]
            self.run_outputs[run_id] = other.run_outputs.get(run_id)
            if run_id in other.run_output_blobs:
                self.run_output_blobs[run_id] = other.run_output_blobs[run_id]

    def adopt(self, other: SQLTxn) -> None:
        """Take over the runs `other` (a later part of the same store transaction) changed and
        the events it made, to write them with this one's: a run changed by both is one row."""
        self.changed_runs.update(other.changed_runs)
        self.events.extend(other.events)
        for run_id, state in other.run_states.items():
            if run_id not in self.run_states:
                self.run_states[run_id] = state
                self.run_outputs[run_id] = other.run_outputs.get(run_id)
                if run_id in other.run_output_blobs:
                    self.run_output_blobs[run_id] = other.run_output_blobs[run_id]

    def forget(self, keys: Iterable[StepKey]) -> None:
        keys = list(keys)
        super().forget(keys)
        for key in keys:
            self.step_outputs.pop(key, None)
            self.step_output_blobs.pop(key, None)
            self.step_inputs.pop(key, None)
            self.step_input_blobs.pop(key, None)


class Programs(DataPrograms):
    """The store transactions of one dialect, as programs (see the module docstring)."""

    def __init__(self, queries: Queries, blob_threshold: int) -> None:
        self.q = q = queries
        self.dialect = q.dialect
        self.blobs = BlobPrograms(q, blob_threshold)
        # the hot path binds tuples: cheaper to build and to bind than dicts
        self.insert_runs = q.positional("insert_runs", RUN_COLUMNS)
        self.insert_new_run = q.positional("insert_new_run", NEW_RUN_COLUMNS)
        self.insert_step = q.positional("insert_step", STEP_COLUMNS)
        self.insert_new_step = q.positional("insert_new_step", NEW_STEP_COLUMNS)
        self.insert_event = q.positional("insert_event", EVENT_COLUMNS)
        self.update_step = q.positional("update_step", UPDATE_STEP)
        self.update_step_output = q.positional("update_step_output", UPDATE_STEP_OUTPUT)
        self.update_step_attempt = q.positional("update_step_attempt", UPDATE_STEP_ATTEMPT)
        self.update_step_claimed = q.positional("update_step_claimed", UPDATE_STEP_CLAIMED)
        self.update_run = q.positional("update_run", UPDATE_RUN)
        self.update_run_output = q.positional("update_run_output", UPDATE_RUN_OUTPUT)
        self.update_run_counters = q.positional("update_run_counters", UPDATE_RUN_COUNTERS)
        self.insert_run_labels = q.positional("insert_run_labels", ("run_id", "key", "value"))
        self.lock_run = q.locked("get_run")
        self.lock_runs = q.locked("get_runs")
        self.lock_step = q.locked("get_step")
        self.lock_steps_named = q.locked("get_steps_named")
        self.lock_steps_by_key = q.locked("get_steps_by_key")
        self.lock_all_steps = q.locked("get_steps")
        self.try_lock_runs = q.locked("get_runs", skip_locked=True)
        # a claim passes over the candidates other claims hold (SKIP LOCKED), waiting for none
        self.claim_candidates = q.locked("claim_candidates", skip_locked=True)
        self.claim_oldest = q.locked("claim_oldest", skip_locked=True)
        self.write_step_records = q.positional("write_step_records", RECORD_WRITE)
        self.lock_record = q.locked("lock_record")
        # settings a dialect wants for a worker's transaction: a claim, a commit, or both
        # (PostgreSQL: claim_session)
        self.claim_session = q.get("claim_session")
        self.flow_lock = q.get("flow_lock")  # PostgreSQL; SQLite's write lock serialises claims
        # the queues with a concurrency limit, as this process's last claim read them: the
        # completion of one of their steps wakes the workers it held back (`CommitResult.slot_freed`)
        self.slotted_queues: frozenset[str] = frozenset()

    # -- runs

    def create_run(
        self, run: RunRow, steps: Sequence[StepRow], events: Sequence[EventRow]
    ) -> Program[tuple[RunRow, bool]]:
        q = self.q
        writes = self.blobs.writes()
        params = run_insert_params(run, writes)
        yield from writes.announce()
        inserted = yield from execute(q["insert_run"], params)
        if inserted == 0:
            rows = yield from fetch(q["get_run"], {"id": run.id})
            return (yield from self.blobs.runs(rows))[0], False
        rows = [step_insert_row(s, writes) for s in steps]
        yield from writes.announce()
        yield from execute_many(self.insert_step, rows)
        yield from execute_many(self.insert_event, [event_row(e) for e in events])
        if run.labels:
            yield from execute_many(self.insert_run_labels, label_rows([run]))
        if writes:
            yield from self.blobs.write(writes, run.created_at)
        return run, True

    def create_runs(
        self, runs: Sequence[NewRun], careful: bool, counted: bool = True
    ) -> Program[list[tuple[RunRow, bool]]]:
        """`Store.create_runs`. Hopeful first (`careful=False`): insert every run and, if one
        id was taken (by an existing run, an earlier run of the batch, or, on PostgreSQL, a
        transaction that committed it meanwhile), raise `RunsTaken` to be run again, careful:
        the runs of these ids are read (and locked) first, and only the others inserted.
        `counted=False` (PostgreSQL, hopeful): the runs' inserts are not counted, so that the
        whole transaction travels in one round trip; a taken id then fails the transaction on
        the events' key instead (every run has an event 1, `run_created`), which the driver
        turns into `RunsTaken`."""
        found: dict[str, RunRow] = {}
        if careful:
            ids = self.dialect.list_param(sorted({run.id for run, _, _ in runs}))
            rows = yield from fetch(self.lock_runs, {"id_list": ids})
            found = {row.id: row for row in (yield from self.blobs.runs(rows))}
        results: list[tuple[RunRow, bool]] = []
        fresh: list[NewRun] = []
        for new in runs:
            run = new[0]
            existing = found.get(run.id)
            if existing is None:
                found[run.id] = run
                fresh.append(new)
                results.append((run, True))
            elif existing.workflow != run.workflow:
                raise RunConflict.taken(run.id, existing.workflow, run.workflow)
            else:
                results.append((existing, False))
        if not fresh:
            return results
        writes = self.blobs.writes()
        # runs and steps as a start makes them (all of them, from the engine) bind only the
        # columns they set
        new_run_rows: list[tuple[Any, ...]] = []
        run_rows: list[tuple[Any, ...]] = []
        for run, _, _ in fresh:
            row = new_run_row(run, writes)
            if row is not None:
                new_run_rows.append(row)
            else:
                run_rows.append(run_insert_row(run, writes))
        yield from writes.announce()
        inserted = 0
        insert = execute_all if counted or careful else _uncounted
        # in id order, as rows are locked: two batches sharing ids wait, never deadlock
        if new_run_rows:
            new_run_rows.sort(key=_first)
            inserted += yield from insert(self.insert_new_run, new_run_rows)
        if run_rows:
            run_rows.sort(key=_first)
            inserted += yield from insert(self.insert_runs, run_rows)
        if inserted != len(fresh) and (counted or careful):
            raise RunsTaken  # nothing else written yet: the driver rolls back
        # the steps' rows made and sent a chunk at a time (a run of 100,000 steps)
        new_step_rows: list[tuple[Any, ...]] = []
        step_rows: list[tuple[Any, ...]] = []
        edges: dict[int, str] = {}
        for _, steps, _ in fresh:
            for step in steps:
                row = new_step_row(step, edges)
                if row is not None:
                    new_step_rows.append(row)
                    if len(new_step_rows) == CHUNK:
                        yield from execute_many(self.insert_new_step, new_step_rows)
                        new_step_rows = []
                else:
                    step_rows.append(step_insert_row(step, writes))
                    if len(step_rows) == CHUNK:
                        yield from writes.announce()
                        yield from execute_many(self.insert_step, step_rows)
                        step_rows = []
        if new_step_rows:
            yield from execute_many(self.insert_new_step, new_step_rows)
        if step_rows:
            yield from writes.announce()
            yield from execute_many(self.insert_step, step_rows)
        yield from execute_many(
            self.insert_event, [event_row(e) for _, _, events in fresh for e in events]
        )
        labelled = label_rows(run for run, _, _ in fresh)
        if labelled:  # after the events: a taken id fails on theirs first (see above)
            yield from execute_many(self.insert_run_labels, labelled)
        if writes:
            yield from self.blobs.write(writes, fresh[0][0].created_at)
        return results

    # -- workers

    def claim(
        self,
        worker_id: str,
        fingerprints: list[str],
        limit: int,
        lease: float,
        now: float,
        queues: Collection[str] | None = None,
        aged_before: float | None = None,
        labels: Collection[str] = (),
        inputs: InputsWanted | None = None,
        session: bool = True,
        code: CodeOf | None = None,
        shared: SQLTxn | None = None,
    ) -> Program[SQLTxn]:
        """`Store.claim`. `session=False`: the transaction is another's (`complete_and_claim`),
        whose settings stay as they are. `shared`: that transaction's completions, whose runs
        this claim uses as they loaded and changed them (`SQLTxn.borrow`) and which write the
        runs this claim changes and its events (`complete_and_claim`)."""
        q, dialect = self.q, self.dialect
        if self.claim_session is not None and session:  # a write nobody waits for: pipelined
            yield from execute_many(self.claim_session, [()])
        # flow control (`core.claiming`): the limits of the queues served, counted under the
        # flow lock (SQLite's write lock is one already) so that claims never overshoot together
        limited = self._limited((yield from fetch(q["get_queues"], {})), queues)
        locked = False
        queue_running: dict[str, int] = {}
        if limited:
            yield from self._flow_lock()
            locked = True
            limited = self._limited((yield from fetch(q["get_queues"], {})), queues)
            params = {"queue_list": dialect.list_param(limited)}
            queue_running = dict((yield from fetch(q["count_queue_running"], params)))
        now = claim_time(limited, now)  # never before a bucket's last charge (under the lock)
        txn = SQLTxn(now)
        if inputs is not None:
            txn.inputs = {}
        held_queues = blocked(limited, queue_running, now)
        params = {
            "now": now,
            "fingerprint_list": dialect.list_param(fingerprints),
            "limit": limit,
            "queue_list": None if queues is None else dialect.list_param(sorted(queues)),
            "blocked_list": dialect.list_param(held_queues),
            "target_list": dialect.list_param(worker_targets(worker_id, labels)),
            "worker_id": worker_id,
        }
        # the candidates, best first; and the longest waiting, if it waited too long (SQL
        # sorts and limits: the policy is `core.claiming`, these queries its SQL form)
        rows = yield from fetch(self.claim_candidates, params)
        where = {k: v for k, v in params.items() if k not in ("limit", "now")}
        oldest: list[Row] = []
        if aged_before is not None and len(rows) >= limit:
            params_aged = {**where, "aged_before": aged_before}
            oldest = yield from fetch(self.claim_oldest, params_aged)
            rows = [*rows, *oldest]
        steps = yield from self.blobs.steps(rows)  # no query when nothing was found
        if oldest:  # it goes first, whatever its priority (no starvation)
            steps = starved_first(steps[:-1], steps[-1], aged_before)
        elif steps:  # fewer than the limit: every claimable step is a candidate, the oldest too
            steps = starved_first(steps, min(steps, key=waited_since), aged_before)
        flow = [flow_candidate(step.options) for step in steps]
        keyed = sorted({c.key for c in flow if c.key is not None})
        key_running: dict[str, int] = {}
        if keyed:
            if not locked:
                yield from self._flow_lock()
            params_keys = {"key_list": dialect.list_param(keyed)}
            key_running = dict((yield from fetch(q["count_key_running"], params_keys)))
        buckets: dict[str, Bucket] = {}
        if limited or keyed:
            chosen, buckets = admit_candidates(
                flow, limited, queue_running, key_running, now, limit
            )
            txn.limited = len(chosen) < min(limit, len(steps))  # a key (or tokens) was full
            steps = [steps[i] for i in chosen]
        if not steps:
            if held_queues:  # what is held back in the blocked queues, and until when
                found = yield from fetch(q["held_queues"], {**where, "now": now})
                txn.limited = txn.limited or bool(found)
                txn.next_token_at = token_wait(limited, queue_running, [r[0] for r in found], now)
            return txn  # no token taken: the buckets need no write (refilling is idempotent)
        keys = []
        blobs = output_blobs(rows), input_blobs(rows)
        for step in steps[:limit]:
            _add_step(txn, step, blobs)
            keys.append((step.run_id, step.name))
        # Runs that another transaction holds are passed over, not waited for: a claim then
        # never waits while it holds step locks, so it can be in no deadlock (its SKIP LOCKED
        # re-check may keep a lock on a candidate it passed over, which a completer may want).
        run_ids = sorted({run_id for run_id, _ in keys})
        if shared is not None:  # the completions' runs: loaded (locked) already
            txn.borrow(shared, run_ids)
        unread = [run_id for run_id in run_ids if run_id not in txn.runs]
        if unread:
            params = {"id_list": self.dialect.list_param(unread)}
            rows = yield from fetch(self.try_lock_runs, params)
            self._add_runs(txn, rows, (yield from self.blobs.runs(rows, with_input=False)))
        for run_id in run_ids:
            if run_id not in txn.runs:
                txn.runs[run_id] = None  # held elsewhere: its steps wait for the next claim
                txn.busy = True
        for run_id, name in keys:
            token = secrets.token_hex(16)
            transition = claim(
                txn, run_id, name, token=token, worker_id=worker_id, lease=lease, code=code
            )
            yield from self.drive(transition, txn)
        yield from self._store_buckets(limited, buckets, txn)
        # the claimed steps: only what a claim changes (no transition but the claims ran here)
        claimed = [txn.changed_steps.pop((c.run_id, c.step)) for c in txn.claims]
        if claimed:
            yield from execute_many(self.update_step_claimed, list(map(step_claimed_row, claimed)))
        # with `shared`, its runs and events are written with the completions'
        yield from self.write(txn, runs=shared is None)
        if inputs is not None and txn.claims:
            wanted: dict[str, set[str]] = {}
            for c in txn.claims:
                wanted.setdefault(c.run_id, set()).update(inputs(c))
            txn.inputs = yield from self.step_inputs(wanted)
        return txn

    def _store_buckets(
        self, limited: Mapping[str, QueueConfig], buckets: Mapping[str, Bucket], txn: SQLTxn
    ) -> Program[None]:
        """Charge the rate limits for the steps this claim took, and no others: a step passed
        over (its run held by another transaction) must not spend a token."""
        if not buckets:
            return
        claimed = []
        for c in txn.claims:
            step = txn.steps.get((c.run_id, c.step))
            claimed.append(queue_of(None if step is None else step.options))
        for name, bucket in charge(limited, buckets, claimed, txn.now).items():
            params = {"name": name, "tokens": bucket.tokens, "counted_at": bucket.updated_at}
            yield from execute(self.q["update_queue_bucket"], params)

    def _flow_lock(self) -> Program[None]:
        if self.flow_lock is not None:
            yield from fetch(self.flow_lock, {})

    def _limited(
        self, rows: Sequence[Sequence[Any]], served: Collection[str] | None
    ) -> dict[str, QueueConfig]:
        limited = [c for c in map(queue_from_row, rows) if c.limited]
        self.slotted_queues = frozenset(c.name for c in limited if c.concurrency is not None)
        return {c.name: c for c in limited if served is None or c.name in served}

    def configure_queue(
        self, name: str, concurrency: int | None, rate: Rate | None, now: float
    ) -> Program[QueueConfig]:
        yield from self._flow_lock()
        rows = yield from fetch(self.q["get_queues"], {})
        old = {c.name: c for c in map(queue_from_row, rows)}.get(name)
        config = reconfigure(old, name, concurrency, rate, now)
        yield from execute(self.q["put_queue"], queue_params(config))
        return config

    def step_inputs(self, wanted: Mapping[str, Collection[str]]) -> Program[dict[str, StepInputs]]:
        """Each run's input and the ends of the named steps: one read (and one more for the
        blobs its rows name, if any)."""
        keys = [[run_id, name] for run_id, names in wanted.items() for name in names]
        params = {
            "id_list": self.dialect.list_param(wanted),
            "key_list": self.dialect.list_param(keys),
        }
        rows = yield from fetch(self.q["get_inputs"], params)
        blobs = yield from self.blobs.fetch(row_blobs(rows, -1))  # each row ends with its blob
        inputs: dict[str, bytes] = {}
        states: dict[str, bytes | None] = {}
        labels: dict[str, dict[str, str] | None] = {}
        ends: dict[str, dict[str, tuple[StepStatus, bytes | None]]] = {}
        errors: dict[str, dict[str, tuple[str | None, str | None]]] = {}
        for run_id, name, status, data, state, code, message, sha in rows:
            if name is None:  # the run's input and session state
                what = f"run {run_id!r}"
                inputs[run_id] = bytes(data) if sha is None else payload_of(blobs, sha, what)
                states[run_id] = None if state is None else bytes(state)
                labels[run_id] = labels_of(code)  # the run row's labels, in that column
                continue
            if sha is not None:
                data = payload_of(blobs, sha, f"step {name!r} of run {run_id!r}")
            ends.setdefault(run_id, {})[name] = (
                STEP_STATUS[status],
                None if data is None else bytes(data),
            )
            if STEP_STATUS[status] is StepStatus.FAILED:
                errors.setdefault(run_id, {})[name] = (code, message)
        return {
            run_id: StepInputs(
                inputs[run_id],
                ends.get(run_id, {}),
                states[run_id],
                errors.get(run_id, {}),
                labels[run_id],
            )
            for run_id in inputs
        }

    def complete(
        self, outcomes: Sequence[Outcome], now: float, session: bool = True, runs: bool = True
    ) -> Program[SQLTxn]:
        """`Store.complete`. `session=False`: the caller has set the transaction's settings;
        `runs=False`: it leaves the runs and the events to the caller (`write_runs`)."""
        txn = SQLTxn(now)
        if self.claim_session is not None and session:  # its writes probe by key
            yield from execute_many(self.claim_session, [()])
        yield from self._preload(txn, outcomes)
        for outcome in outcomes:
            yield from self.drive(complete(txn, outcome), txn)
        txn.result.slot_freed = frees_room(txn.ended_attempts, self.slotted_queues)
        yield from self.write(txn, runs=runs)
        return txn

    def complete_and_claim(
        self,
        outcomes: Sequence[Outcome],
        now: float,
        claim: Callable[[SQLTxn], Program[SQLTxn]],
    ) -> Program[tuple[SQLTxn, SQLTxn]]:
        """`complete`, then a claim (`claim(done)`, made by the caller with `session=False` and
        `shared=done`) in the same transaction, so that it sees the steps the completions made
        ready. The claim uses the runs the completions loaded, and each run both change is
        written once, at the end, with both halves' events. Only the steps made ready that the
        claim did not take still wake other workers."""
        if self.claim_session is not None:  # for both halves (see claims.sql)
            yield from execute_many(self.claim_session, [()])
        done = yield from self.complete(outcomes, now, session=False, runs=False)
        taken = yield from claim(done)
        done.adopt(taken)
        yield from self.write_runs(done)
        done.result.readied = unclaimed_ready(done, taken.claims)
        if taken.busy and not taken.claims:
            done.result.readied = max(done.result.readied, 1)  # the claim loop looks again
        return done, taken

    def heartbeat(self, leases: Sequence[Lease], expires: float) -> Program[list[Lease]]:
        extend = self.q["extend_lease"]
        lost = []
        for h in leases:
            params = {
                "run_id": h.run_id,
                "name": h.step,
                "token": h.token,
                "lease_expires_at": expires,
            }
            if (yield from execute(extend, params)) == 0:
                lost.append(h)
        return lost

    def release(
        self, leases: Sequence[Lease], now: float, max_recoveries: int | None
    ) -> Program[SQLTxn]:
        txn = SQLTxn(now)
        yield from self._preload_keys(txn, [(h.run_id, h.step) for h in leases])
        for h in leases:
            yield from self.drive(release(txn, h.run_id, h.step, h.token, max_recoveries), txn)
        yield from self.write(txn)
        return txn

    def admit_key(
        self, run_id: str, name: str, token: str, key: str, now: float
    ) -> Program[SQLTxn]:
        """Store the key a worker resolved for a claimed step, and keep it running only if its
        key has room, counted under the flow lock like a claim counts (`transitions.admit_key`)."""
        txn = SQLTxn(now)
        yield from self._preload_keys(txn, [(run_id, name)])
        yield from self._flow_lock()
        params = {"key_list": self.dialect.list_param([key])}
        running = sum(n for _, n in (yield from fetch(self.q["count_key_running"], params)))
        yield from self.drive(admit_key(txn, run_id, name, token, key, running), txn)
        txn.result.slot_freed = frees_room(txn.ended_attempts, self.slotted_queues)
        yield from self.write(txn)
        return txn

    def apply(self, action: Action, now: float) -> Program[SQLTxn]:
        txn = SQLTxn(now)
        yield from self.drive(action(txn), txn)
        yield from self.write(txn)
        return txn

    def recover_expired(self, now: float, max_recoveries: int, limit: int) -> Program[SQLTxn]:
        txn = SQLTxn(now)
        if limit <= 0:
            return txn
        rows = yield from fetch(self.q["expired_leases"], {"now": now, "limit": limit})
        keys = [(r[0], r[1]) for r in rows]
        if not keys:
            return txn
        yield from self._preload_keys(txn, keys)
        for run_id, name in keys:
            yield from self.drive(recover(txn, run_id, name, max_recoveries), txn)
        yield from self.write(txn)
        return txn

    def fire_timers(self, now: float, limit: int) -> Program[SQLTxn]:
        txn = SQLTxn(now)
        params = {"now": now, "limit": limit}
        waits = [(r[0], r[1]) for r in (yield from fetch(self.q["expired_waits"], params))]
        late = [r[0] for r in (yield from fetch(self.q["passed_deadlines"], params))]
        if not waits and not late:
            return txn
        yield from self.load_runs(txn, {run_id for run_id, _ in waits} | set(late))
        for run_id, name in waits:
            yield from self.drive(expire_approval(txn, run_id, name), txn)
        for run_id in late:
            yield from self.drive(pass_deadline(txn, run_id), txn)
        yield from self.write(txn)
        return txn

    # -- loading rows into a transaction (locked on PostgreSQL), and writing it

    def drive(self, transition: Transition, txn: SQLTxn) -> Program[None]:
        for need in transition:
            yield from self.load(txn, need)

    def load_runs(self, txn: SQLTxn, run_ids: Iterable[str]) -> Program[None]:
        missing = sorted(r for r in run_ids if r not in txn.runs)  # lock order: by id
        if not missing:
            return
        if len(missing) == 1:
            rows = yield from fetch(self.lock_run, {"id": missing[0]})
        else:
            rows = yield from fetch(self.lock_runs, {"id_list": self.dialect.list_param(missing)})
        self._add_runs(txn, rows, (yield from self.blobs.runs(rows, with_input=False)))

    def _add_runs(self, txn: SQLTxn, rows: Sequence[Sequence[Any]], runs: list[RunRow]) -> None:
        for row, run in zip(rows, runs, strict=True):
            txn.runs[run.id] = run
            txn.run_states[run.id] = run_state(run)
            txn.run_outputs[run.id] = run.output
            if row[RUN_OUTPUT_BLOB] is not None:
                txn.run_output_blobs[run.id] = row[RUN_OUTPUT_BLOB]

    def _add_steps(self, txn: SQLTxn, rows: Sequence[Sequence[Any]]) -> Program[None]:
        blobs = output_blobs(rows), input_blobs(rows)
        for step in (yield from self.blobs.steps(rows)):
            _add_step(txn, step, blobs)

    def _load_keys(self, txn: SQLTxn, keys: Collection[tuple[str, str]]) -> Program[None]:
        """Load these steps, a chunk of keys at a time (in key order, as rows are locked): the
        100,000 dependents of a fan-out's root are never held as rows and records at once."""
        steps = txn.steps
        missing = sorted([k for k in keys if k not in steps])  # tuples: JSON arrays alike
        for start in range(0, len(missing), CHUNK):
            params = {"key_list": self.dialect.list_param(missing[start : start + CHUNK])}
            yield from self._add_steps(txn, (yield from fetch(self.lock_steps_by_key, params)))

    def _preload_keys(self, txn: SQLTxn, keys: list[tuple[str, str]]) -> Program[None]:
        yield from self.load_runs(txn, {run_id for run_id, _ in keys})
        yield from self._load_keys(txn, keys)

    def _preload(self, txn: SQLTxn, outcomes: Sequence[Outcome]) -> Program[None]:
        """Load in three batched reads what a group of completions will need: the runs, the
        steps, and the dependents of the steps that will end (a transition loads the rest)."""
        keys = [(o.run_id, o.step) for o in outcomes]
        yield from self._preload_keys(txn, keys)
        dependents: dict[tuple[str, str], None] = {}
        for outcome in outcomes:
            step = txn.steps.get((outcome.run_id, outcome.step))
            if (
                step is not None
                and step.dependents
                and len(step.dependents) <= FAN_OUT_CHUNK  # else loaded a chunk at a time
                and step.status is StepStatus.RUNNING
                and step.lease_token == outcome.token
                and (outcome.succeeded or outcome.retry_at is None)
            ):
                for edge in step.dependents:
                    dependents[(outcome.run_id, edge.target)] = None
        if dependents:
            yield from self._load_keys(txn, dependents)
        checked = {
            (w.collection, w.key)
            for o in outcomes
            if o.data is not None
            and o.succeeded
            and (step := txn.steps.get((o.run_id, o.step))) is not None
            and step.lease_token == o.token
            for w in o.data.records
            if w.expected is not None
        }
        if checked:  # locked last, in one order, as every transaction locks records
            yield from self._lock_records(txn, checked)

    def _lock_records(self, txn: SQLTxn, keys: Iterable[RecordKey]) -> Program[None]:
        """Load records' revisions for a transition's check, each row locked until the commit
        (PostgreSQL): a key without a row gets one first (a tombstone at revision 0, read as no
        document), since a lock needs a row and a concurrent create must wait for this one."""
        for collection, key in sorted(k for k in set(keys) if k not in txn.records):
            params: dict[str, Any] = {"collection": collection, "key": key}
            reserve = {**params, "tombstone": TOMBSTONE, "updated_at": txn.now}
            yield from execute(self.q["reserve_record"], reserve)
            rows = yield from fetch(self.lock_record, params)
            txn.add_record((collection, key), int(rows[0][0]), bool(rows[0][1]))

    def load(self, txn: SQLTxn, need: Need) -> Program[None]:
        """Load what a transition asked for: the run and the named steps (one query each);
        write and forget the steps it released."""
        if need.release:
            yield from self._release(txn, need)
        yield from self.load_runs(txn, (need.run_id,))
        if need.all_steps:
            rows = yield from fetch(self.lock_all_steps, {"run_id": need.run_id})
            yield from self._add_steps(txn, rows)
        if need.records:
            yield from self._lock_records(txn, need.records)
        if not need.steps:
            return
        if len(need.steps) == 1:
            params: dict[str, Any] = {"run_id": need.run_id, "name": need.steps[0]}
            rows = yield from fetch(self.lock_step, params)
        else:
            names = self.dialect.list_param(sorted(need.steps))
            params = {"run_id": need.run_id, "name_list": names}
            rows = yield from fetch(self.lock_steps_named, params)
        yield from self._add_steps(txn, rows)

    def _release(self, txn: SQLTxn, need: Need) -> Program[None]:
        """Write the released steps' changes now, in this transaction, and forget them: a
        fan-out's dependents are held a chunk at a time (`Need.release`)."""
        keys = txn.releasable(need.run_id, need.release)
        changed = {k: s for k in keys if (s := txn.changed_steps.get(k)) is not None}
        if changed:
            writes = self.blobs.writes()
            changed = yield from self._write_attempts(txn, changed, writes)
            yield from self._write_changed(
                changed, txn.step_outputs, txn.step_output_blobs, writes, step_update_row,
                step_update_output_row, self.update_step, self.update_step_output,
            )  # fmt: skip
            if writes:
                yield from self.blobs.write(writes, txn.now)
        txn.forget(keys)

    def write(self, txn: SQLTxn, *, runs: bool = True) -> Program[None]:
        """Write what the transaction changed: mutable columns only, payloads only if changed;
        and the steps it added (spawned), as they are now. `runs=False`: all but the runs'
        rows and the events, which the caller writes later in the transaction (`write_runs`)."""
        changed = txn.changed_steps
        writes = self.blobs.writes()
        for run_id, name in sorted(txn.dropped_steps):  # an upgrade's (rare)
            yield from execute(self.q["delete_step"], {"run_id": run_id, "name": name})
        if txn.new_steps:
            rows = [step_insert_row(s, writes) for s in txn.new_steps.values()]
            yield from writes.announce()
            yield from execute_many(self.insert_step, rows)
            changed = {k: s for k, s in changed.items() if k not in txn.new_steps}
        changed = yield from self._write_attempts(txn, changed, writes)
        yield from self._write_changed(
            changed, txn.step_outputs, txn.step_output_blobs, writes, step_update_row,
            step_update_output_row, self.update_step, self.update_step_output,
        )  # fmt: skip
        if txn.rekeyed:  # concurrency keys resolved from outputs, or pending again (rare)
            yield from self._write_keys(txn)
        for run_id, name in sorted(txn.reshaped):  # edges and options an upgrade changed
            step = txn.steps[(run_id, name)]
            assert step is not None
            yield from execute(self.q["reshape_step"], step_reshape_row(step))
        for run_id in sorted(txn.moved_runs):  # runs moved to another version (rare)
            row = txn.runs[run_id]
            assert row is not None
            params = {
                "id": run_id, "fingerprint": row.fingerprint, "version": row.version,
                "sinks": sinks_to_json(row.sinks),
            }  # fmt: skip
            yield from execute(self.q["set_run_version"], params)
        for run_id in sorted(txn.changed_states):  # session states steps changed (ctx.state)
            run = txn.runs[run_id]
            assert run is not None
            yield from execute(self.q["set_run_state"], {"id": run_id, "state": run.state})
        if txn.data:
            yield from self._write_data(txn, writes)
        if not runs:  # the blobs now: the rest of the transaction may read them (inputs)
            if writes:
                yield from self.blobs.write(writes, txn.now)
            return
        yield from self.write_runs(txn, writes)

    def write_runs(self, txn: SQLTxn, writes: BlobWrites | None = None) -> Program[None]:
        """Write the runs the transaction changed, each in one statement: most changed only
        their counters (a step claimed or ended: no index to update), the others their every
        mutable column (with `updated_at` if the status changed: the change feed reads it);
        then its events, and the blob references of everything it wrote (`writes`, with the
        steps' written before)."""
        writes = self.blobs.writes() if writes is None else writes
        states, outputs, now = txn.run_states, txn.run_outputs, txn.now
        counted: list[tuple[Any, ...]] = []
        rest: dict[str, RunRow] = {}
        for run_id, run in txn.changed_runs.items():
            if run_id in outputs and outputs[run_id] is run.output and settled(run, states):
                counted.append(run_counters_row(run))
                if len(counted) == CHUNK:
                    yield from execute_many(self.update_run_counters, counted)
                    counted = []
            else:
                rest[run_id] = run
        if counted:
            yield from execute_many(self.update_run_counters, counted)

        def moved(r: RunRow) -> float | None:
            state = states.get(r.id)
            return None if state is not None and state[0] is r.status else now

        def row(r: RunRow) -> tuple[Any, ...]:
            return run_update_row(r, moved(r))

        def row_with_output(r: RunRow, output: bytes | None, blob: str | None) -> tuple[Any, ...]:
            return run_update_output_row(r, moved(r), output, blob)

        yield from self._write_changed(
            rest, outputs, txn.run_output_blobs, writes, row, row_with_output, self.update_run,
            self.update_run_output,
        )  # fmt: skip
        if txn.events:
            yield from execute_many(self.insert_event, [event_row(e) for e in txn.events])
        if writes:
            yield from self.blobs.write(writes, txn.now)

    def _write_attempts(
        self, txn: SQLTxn, changed: Mapping[StepKey, StepRow], writes: BlobWrites
    ) -> Program[dict[StepKey, StepRow]]:
        """Write the steps whose recorded input changed (an attempt reported an outcome:
        `Outcome.input`), their output and input with the rest of the row in one statement;
        the other changed steps are returned, for `_write_changed`. A changed payload drops
        the blob it was kept in, if any, and may be kept in one; an output still the very
        object loaded is written back as it is kept (its blob keeps its reference)."""
        rest: dict[StepKey, StepRow] = {}
        rows: list[tuple[Any, ...]] = []
        loaded_inputs, loaded_outputs = txn.step_inputs, txn.step_outputs
        for key, step in changed.items():
            if key not in loaded_inputs or loaded_inputs[key] is step.input:
                rest[key] = step
                continue
            writes.drop(txn.step_input_blobs.get(key))
            given, given_blob = writes.keep(step.input)
            output_blob: str | None
            if key in loaded_outputs and loaded_outputs[key] is step.output:
                output_blob = txn.step_output_blobs.get(key)
                output = step.output if output_blob is None else None
            else:
                writes.drop(txn.step_output_blobs.get(key))
                output, output_blob = writes.keep(step.output)
            rows.append(step_update_attempt_row(step, output, output_blob, given, given_blob))
            if len(rows) == CHUNK:
                yield from writes.announce()
                yield from execute_many(self.update_step_attempt, rows)
                rows = []
        if rows:
            yield from writes.announce()
            yield from execute_many(self.update_step_attempt, rows)
        return rest

    def _write_keys(self, txn: SQLTxn) -> Program[None]:
        for run_id, name in sorted(txn.rekeyed):
            step = txn.steps[(run_id, name)]
            assert step is not None and step.options is not None
            params = {
                "run_id": run_id,
                "name": name,
                "options": options_to_json(step.options),
                "concurrency_key": step.options.key,
            }
            yield from execute(self.q["set_step_key"], params)

    def _write_data(self, txn: SQLTxn, writes: BlobWrites) -> Program[None]:
        """What succeeded steps wrote besides their outputs: records (a key written twice in
        one transaction is one row counting two writes: PostgreSQL's upsert takes a key once),
        and artifacts (the bytes of one kept in the database: a reference to their blob)."""
        records: dict[tuple[str, str], list[Any]] = {}
        for run_id, step, data in txn.data:
            for w in data.records:
                row = records.get((w.collection, w.key))
                count = 1 if row is None else row[3] + 1
                records[(w.collection, w.key)] = [
                    w.collection, w.key, w.doc, count, txn.now, run_id, step,
                ]  # fmt: skip
        if records:
            rows = [tuple(r) for r in records.values()]
            yield from execute_many(self.write_step_records, rows)
        for _run_id, _step, data in txn.data:
            for artifact in data.artifacts:  # few per step: one statement each
                if artifact.path is None and artifact.data is not None:
                    writes.refer(artifact.sha256, artifact.data)
                yield from execute(self.q["insert_artifact"], artifact_params(artifact))

    def _write_changed(
        self,
        changed: Mapping[Any, Any],
        loaded_outputs: Mapping[Any, bytes | None],
        loaded_blobs: Mapping[Any, str],
        writes: BlobWrites,
        row: Callable[[Any], tuple[Any, ...]],
        row_with_output: Callable[[Any, bytes | None, str | None], tuple[Any, ...]],
        update: str,
        update_with_output: str,
    ) -> Program[None]:
        # An output still the very object loaded from the database was not changed: skip it.
        # A changed one drops the blob it was kept in, if any, and may be kept in one.
        # Rows are made and sent a chunk at a time (a fan-out readies 100,000 steps at once).
        plain: list[tuple[Any, ...]] = []
        with_output: list[tuple[Any, ...]] = []
        for key, record in changed.items():
            if key in loaded_outputs and loaded_outputs[key] is record.output:
                plain.append(row(record))
                if len(plain) == CHUNK:
                    yield from execute_many(update, plain)
                    plain = []
            else:
                writes.drop(loaded_blobs.get(key))
                with_output.append(row_with_output(record, *writes.keep(record.output)))
                if len(with_output) == CHUNK:
                    yield from writes.announce()
                    yield from execute_many(update_with_output, with_output)
                    with_output = []
        if plain:
            yield from execute_many(update, plain)
        if with_output:
            yield from writes.announce()
            yield from execute_many(update_with_output, with_output)


RunState = tuple[RunStatus, str | None, float | None, float | None]


def run_state(run: RunRow) -> RunState:
    """What of a run changes with its status: the status, error, start and end."""
    return (run.status, run.error, run.started_at, run.finished_at)


def settled(run: RunRow, states: Mapping[str, RunState]) -> bool:
    """The run's status, error, start and end are as loaded: its status did not move."""
    return states.get(run.id) == run_state(run)


def _add_step(
    txn: SQLTxn, step: StepRow, blobs: tuple[Mapping[StepKey, str], Mapping[StepKey, str]]
) -> None:
    key = (step.run_id, step.name)
    if key not in txn.steps:
        txn.steps[key] = step
        txn.step_outputs[key] = step.output
        txn.step_inputs[key] = step.input
        outputs, inputs = blobs
        if key in outputs:
            txn.step_output_blobs[key] = outputs[key]
        if key in inputs:
            txn.step_input_blobs[key] = inputs[key]


def queue_from_row(row: Sequence[Any]) -> QueueConfig:
    name, concurrency, rate, per, burst, tokens, counted_at, updated_at = row
    limit = None if rate is None else Rate(rate, per=per, burst=burst)
    bucket = None if tokens is None else Bucket(tokens, counted_at)
    return QueueConfig(name, concurrency, limit, bucket, updated_at)


def queue_params(c: QueueConfig) -> dict[str, Any]:
    rate, bucket = c.rate, c.bucket
    return {
        "name": c.name,
        "concurrency": c.concurrency,
        "rate": None if rate is None else rate.count,
        "per": None if rate is None else rate.per,
        "burst": None if rate is None else rate.capacity,
        "tokens": None if bucket is None else bucket.tokens,
        "counted_at": None if bucket is None else bucket.updated_at,
        "updated_at": c.updated_at,
    }
