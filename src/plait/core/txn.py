"""How a transition asks for rows: the `Txn` it works on, and the `Need` it yields. Pure.

A transition is a generator working on a `Txn`, the in-memory view of one store transaction.
When it needs records it has not seen, it yields a `Need`; the store loads those rows into the
`Txn` and resumes it. So a store loads exactly the rows a transition touches (the step, its
dependents, the run), and the logic is written once for every store:

    txn = Txn(now)
    drive(complete(txn, outcome), load, txn)      # or: await drive_async(..., load_async, txn)
    store.write(txn)                              # changed rows, new events: one commit

The transitions themselves are in `core.transitions` (the worker's: claim, complete, release,
recover), `core.cascade` (what follows when a step ends), `core.actions` and `core.gates` (the
operator's and the clock's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from .rows import Claim, CommitResult, EventRow, RunRow, StepData, StepRow, StepStatus

StepKey = tuple[str, str]
RecordKey = tuple[str, str]  # (collection, key)


@dataclass(frozen=True, slots=True)
class Need:
    """Rows a transition needs: the run, and the named steps of it (those not loaded yet), or
    every step of it (`all_steps`: operator actions, never the hot path); and the revisions of
    records (`records`: (collection, key) pairs, for `Txn.records`), which the store locks
    until the transaction ends, so that the revision checked is the one written over."""

    run_id: str
    steps: tuple[str, ...] = ()
    all_steps: bool = False
    records: tuple[RecordKey, ...] = ()
    # steps of the run the transition is done with (a big fan-out's dependents, a chunk at a
    # time): a store that loads rows (SQL) writes their changes now, in this transaction, and
    # forgets them (`Txn.releasable`, `Txn.forget`), so that readying 100,000 dependents never
    # holds them all at once; a later Need naming one loads it again, as written. A store that
    # holds every row anyway (memory) may ignore it.
    release: tuple[str, ...] = ()


class Txn:
    """The records one store transaction has loaded, and what it changed."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.runs: dict[str, RunRow | None] = {}
        self.steps: dict[StepKey, StepRow | None] = {}
        self.changed_steps: dict[StepKey, StepRow] = {}
        self.new_steps: dict[StepKey, StepRow] = {}  # added to their run (spawned)
        self.changed_runs: dict[str, RunRow] = {}
        self.events: list[EventRow] = []
        self.claims: list[Claim] = []
        # steps whose running attempt ended here (what their end frees wakes workers)
        self.ended_attempts: list[StepRow] = []
        self.result = CommitResult()
        self.whole_runs: set[str] = set()  # runs whose every step is loaded
        self.data: list[tuple[str, str, StepData]] = []  # (run, step, what it wrote) to commit
        self.rekeyed: set[StepKey] = set()  # steps whose concurrency key changed (rare)
        self.changed_states: set[str] = set()  # runs whose session state changed (`run.state`)
        self.moved_runs: set[str] = set()  # runs moved to another version (`upgrade.move`)
        # steps an upgrade deleted (not started, not in the new version), and steps whose
        # columns that are otherwise never rewritten changed (edges, options, priority)
        self.dropped_steps: set[StepKey] = set()
        self.reshaped: set[StepKey] = set()
        # records' (stored revision, whether a document is there: not deleted) as loaded for a
        # Need's `records`; (0, False) for a key never written. `records_written`: writes of
        # each key this transaction commits (steps' `ctx.record`), each one revision more
        self.records: dict[RecordKey, tuple[int, bool]] = {}
        self.records_written: dict[RecordKey, int] = {}
        self.released_ready = 0  # steps forgotten (`forget`) ready: `claiming.unclaimed_ready`

    def missing(self, run_id: str, names: Iterable[str]) -> Need | None:
        absent = tuple(n for n in names if (run_id, n) not in self.steps)
        if absent or run_id not in self.runs:
            return Need(run_id, absent)
        return None

    def add_run(self, run_id: str, run: RunRow | None) -> None:
        self.runs.setdefault(run_id, run)

    def add_step(self, run_id: str, name: str, step: StepRow | None) -> None:
        self.steps.setdefault((run_id, name), step)

    def add_record(self, key: RecordKey, revision: int, live: bool) -> None:
        self.records.setdefault(key, (revision, live))

    def record_revision(self, key: RecordKey) -> int:
        """The revision a reader would see now, this transaction's writes included (0: there is
        no document). The key must be loaded (`need_records`)."""
        stored, live = self.records[key]
        written = self.records_written.get(key, 0)
        return stored + written if written else (stored if live else 0)

    def releasable(self, run_id: str, names: Iterable[str]) -> list[StepKey]:
        """Which of these loaded steps a store may write now and forget (`Need.release`): not
        those another write of the transaction handles (added, dropped, reshaped, rekeyed), nor
        any of a run loaded whole (`steps_of` must see them all)."""
        if run_id in self.whole_runs:
            return []
        special = self.new_steps.keys() | self.dropped_steps | self.reshaped | self.rekeyed
        keys = [(run_id, n) for n in names]
        return [k for k in keys if self.steps.get(k) is not None and k not in special]

    def forget(self, keys: Iterable[StepKey]) -> None:
        """Drop these steps (`releasable`, written by the store already): a later `need`
        loads them again."""
        for key in keys:
            step = self.steps.pop(key, None)
            self.changed_steps.pop(key, None)
            if step is not None and step.status is StepStatus.READY:
                self.released_ready += 1

    def step(self, run_id: str, name: str) -> StepRow | None:
        return self.steps.get((run_id, name))

    def touch(self, step: StepRow) -> None:
        self.changed_steps[(step.run_id, step.name)] = step

    def insert(self, step: StepRow) -> None:
        key = (step.run_id, step.name)
        self.steps[key] = self.new_steps[key] = step

    def drop(self, step: StepRow) -> None:
        """Delete a step from its run (an upgrade drops a step that has not started)."""
        key = (step.run_id, step.name)
        self.steps[key] = None
        self.changed_steps.pop(key, None)
        self.reshaped.discard(key)
        if self.new_steps.pop(key, None) is None:
            self.dropped_steps.add(key)

    def reshape(self, step: StepRow) -> None:
        """The step's edges, options, optional flag or priority changed (an upgrade)."""
        key = (step.run_id, step.name)
        if key not in self.new_steps:
            self.reshaped.add(key)
        self.touch(step)

    def emit(self, run: RunRow, type_: str, step: str | None, **payload: object) -> None:
        if step is not None:
            payload["step"] = step
        self.events.append(EventRow(run.id, run.next_seq, type_, step, payload, self.now))
        run.next_seq += 1
        self.changed_runs[run.id] = run


Transition = Iterator[Need]
Action = Callable[[Txn], Transition]  # an operator action, bound to its arguments


def need(txn: Txn, run_id: str, names: Iterable[str] = ()) -> Transition:
    """Yield a Need for whatever of (run, steps) the transaction has not loaded."""
    missing = txn.missing(run_id, names)
    if missing is not None:
        yield missing
        for name in missing.steps:  # rows that do not exist are remembered as None
            txn.add_step(run_id, name, None)
        txn.add_run(run_id, None)


def need_all(txn: Txn, run_id: str) -> Transition:
    """Yield a Need for every step of the run, unless the transaction has them already."""
    if run_id not in txn.whole_runs:
        yield Need(run_id, all_steps=True)
        txn.whole_runs.add(run_id)
        txn.add_run(run_id, None)


def need_records(txn: Txn, run_id: str, keys: Iterable[RecordKey]) -> Transition:
    """Yield a Need for the revisions of the records the transaction has not loaded."""
    missing = tuple(sorted({k for k in keys if k not in txn.records}))
    if missing:
        yield Need(run_id, records=missing)
        for key in missing:  # keys the store had no row for were never written
            txn.add_record(key, 0, False)


def steps_of(txn: Txn, run_id: str) -> list[StepRow]:
    """The loaded steps of a run, in definition order."""
    found = [s for (r, _), s in txn.steps.items() if r == run_id and s is not None]
    return sorted(found, key=lambda s: s.idx)


def drive(transition: Transition, load: Callable[[Txn, Need], None], txn: Txn) -> None:
    """Run a transition to its end, loading what it asks for with `load` (a synchronous store)."""
    for request in transition:
        load(txn, request)


async def drive_async(
    transition: Transition, load: Callable[[Txn, Need], Awaitable[None]], txn: Txn
) -> None:
    """Run a transition to its end, loading what it asks for with `await load(...)`."""
    for request in transition:
        await load(txn, request)
