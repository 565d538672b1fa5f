"""The Store protocol: what the engine asks of durable state, in engine operations, not queries.

Every store (memory, SQLite, PostgreSQL) implements it and passes one contract suite
(plait.testing.contract). A store is thin: the decisions are made by the state machine
(`core`), the store loads the rows a transition asks for and commits what it changed, atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ..core.blobs import BlobStats
from ..core.durability import Durability
from ..core.queues import QueueConfig
from ..core.rate import Rate
from ..core.rows import (
    ArtifactRow,
    Claim,
    Claims,
    CodeOf,
    CommitResult,
    EventRow,
    Lease,
    Outcome,
    RecordRow,
    RunRow,
    RunStatus,
    StepInputs,
    StepRow,
    StepStatus,
    WorkflowPlan,
)
from ..core.txn import Action

T = TypeVar("T")

if TYPE_CHECKING:
    from .._clock import Clock

# A run to create: its row, its steps and its first events (what `core.cascade.new_run` makes).
NewRun = tuple[RunRow, Sequence[StepRow], Sequence[EventRow]]
# The dependencies whose ends a claimed step's handler needs (`Store.claim`'s `inputs`).
InputsWanted = Callable[[Claim], Collection[str]]


class Store(Protocol):
    url: str
    # Names of optional features this store supports; the contract suite checks each one it claims:
    # "push" (`subscribe` is called), "push_events" (`_engine_watch.PushesEvents`),
    # "change_counter" (`_idle_wait.CountsChanges`: a read that tells whether others committed).
    capabilities: frozenset[str]
    # The clock of the times a store stamps itself (a claim made in one call with completions, a
    # record's tombstone); the Runtime sets its own (`_clock`: a test's may be virtual).
    clock: Clock

    async def open(self) -> None:
        """Connect, create or check the schema. Raises StoreError / SchemaVersionError."""

    async def close(self) -> None: ...

    def subscribe(
        self,
        *,
        ready: Callable[[], None],
        ended: Callable[[], None],
        cancelled: Callable[[], None],
        live: Callable[[bool], None],
    ) -> None:
        """Call `ready` when steps become ready, `ended` when runs end and `cancelled` when runs
        are cancelled in *another* process, and `live(True/False)` as such push notifications
        start and stop flowing. A store without push (capability "push") never calls them, and
        its users poll."""

    # -- definitions
    async def save_workflow(self, plan: WorkflowPlan) -> None:
        """Remember a workflow version (idempotent by fingerprint)."""

    async def get_workflow(self, name: str, fingerprint: str | None = None) -> WorkflowPlan | None:
        """That version, or the most recently registered version of `name`."""

    async def list_workflows(self) -> list[WorkflowPlan]: ...

    async def workflow_known(self, fingerprint: str) -> bool:
        """Whether a workflow version of this fingerprint is saved: what registering asks
        before it checks a new version, without reading (and decoding) the plan."""

    # -- runs
    async def create_run(
        self, run: RunRow, steps: Sequence[StepRow], events: Sequence[EventRow]
    ) -> tuple[RunRow, bool]:
        """Insert a new run atomically; if the id exists, return the existing run (its input
        read whole, so that the engine can tell whether a start repeats it) and False. A run's
        `name`, `labels` and `metadata` are kept as given and read back by every read."""

    async def create_runs(self, runs: Sequence[NewRun]) -> list[tuple[RunRow, bool]]:
        """Insert new runs in one transaction (one commit), each as `create_run` would: for
        each, in order, the run and True, or the run that already had its id and False (an id
        twice in `runs`: the second gets the first). All or nothing: if an id is taken by a
        run of another workflow than the new run's, nothing is written and RunConflict
        (`RunConflict.taken`) names the first such id."""

    async def get_run(self, run_id: str, *, excerpt: int | None = None) -> RunRow | None:
        """The run, or None. With `excerpt`, a payload (input, output) longer than `excerpt`
        bytes is read only that far, as an `Excerpt` (what shows a payload cut reads no more:
        `plait runs show` of a 100 MB output)."""

    async def get_runs(self, run_ids: Collection[str]) -> list[RunRow]:
        """The runs of these ids that exist, in any order (one round trip for many)."""

    async def list_runs(
        self,
        *,
        workflow: str | None,
        status: RunStatus | None,
        limit: int,
        before: tuple[float, str] | None,
        created_from: float | None = None,
        created_to: float | None = None,
        text: str | None = None,
        excerpt: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[RunRow]:
        """Newest first (created_at, id descending), strictly before the `before` position;
        created in [`created_from`, `created_to`) where given; with `text`, only runs whose id,
        name or error contains it (case-insensitive); with `labels`, only runs having every one
        of them (`core.identity.matches`; the engine passes it only when some are asked for).
        `excerpt` as for `get_run`."""

    async def count_runs(
        self,
        *,
        workflow: str | None,
        status: RunStatus | None,
        created_from: float | None = None,
        created_to: float | None = None,
        text: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> int:
        """How many runs `list_runs` with these filters would give, all pages together."""

    async def list_run_changes(
        self, after: tuple[float, str], limit: int
    ) -> list[tuple[float, str]]:
        """The run-list change feed: (when its status last changed, run id) of runs whose status
        changed (or that were created) after the (updated_at, id) position `after`, in that
        order. A run appears once, at its latest change."""

    async def step_backlog(self, now: float) -> list[tuple[str, StepStatus, int, float | None]]:
        """Steps ready, running or waiting, per queue ("default" for none) and status: (queue,
        status, how many, since when the oldest of the ready ones claimable by `now` is)."""

    async def list_failed_steps(
        self,
        *,
        workflow: str | None,
        limit: int,
        before: tuple[float, str, str] | None,
        step: str | None = None,
        code: str | None = None,
        since: float | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[StepRow]:
        """Failed steps across runs, the latest ended first (finished_at, run_id, name
        descending), strictly before the `before` position; only those of `workflow`'s runs,
        named `step`, failed with error `code`, ended at or after `since`, of runs with every
        one of `labels`, where given."""

    async def get_steps(self, run_id: str, *, excerpt: int | None = None) -> list[StepRow]:
        """Every step of the run in definition order. `excerpt` as for `get_run` (a step's
        output and input)."""

    async def get_events(
        self, run_id: str, after_seq: int, limit: int | None
    ) -> list[EventRow]: ...

    # -- workers
    async def claim(
        self,
        *,
        worker_id: str,
        fingerprints: Collection[str],
        limit: int,
        lease: float,
        now: float,
        queues: Collection[str] | None = None,
        aged_before: float | None = None,
        labels: Collection[str] = (),
        inputs: InputsWanted | None = None,
        code: CodeOf | None = None,
    ) -> Claims:
        """Take up to `limit` ready steps (highest priority, then oldest) of runs of these
        fingerprints that may progress, each under a new lease. No step is given to two claims.
        Flow control (`core.claiming`): only steps of `queues` (None: any); never past a configured
        queue's concurrency or tokens, nor a key's limit, counted across every worker; the
        oldest ready step, if ready since before `aged_before`, comes first. Placement
        (`core.placement`): only steps this worker (`worker_id`, `labels`) may run.
        A claim that takes nothing says whether limits held ready work back from it
        (`Claims.limited`) and when the earliest rate-limited queue among them has a token again
        (`Claims.next_token_at`); it charges a rate limit only for the steps it takes.
        With `inputs`, the same transaction reads what the claimed steps' handlers need
        (`Claims.inputs`, as `step_inputs` of `inputs(claim)` for each claim would give), so
        a worker makes no second round trip before it runs them. `code` gives the digest of
        the code that runs each claimed step, recorded on the step (`StepRow.code`) and in its
        `step_started` event."""

    async def complete_and_claim(
        self,
        outcomes: Sequence[Outcome],
        now: float,
        *,
        worker_id: str,
        fingerprints: Collection[str],
        limit: int,
        lease: float,
        queues: Collection[str] | None = None,
        aged_before: float | None = None,
        labels: Collection[str] = (),
        inputs: InputsWanted | None = None,
        code: CodeOf | None = None,
    ) -> tuple[CommitResult, Claims]:
        """`complete(outcomes, now)` and then `claim(...)` in one transaction (one commit per
        hand-off): the claim sees the steps the completions made ready. The claim's durability
        is the completion's. The result's `readied` counts only the steps made ready that the
        claim did not take (what other workers should be woken for); a claim that passed over
        runs others held (`busy`) keeps it at least 1, so that a claim loop looks again.
        (NATS: two batches, the completions' then the claim's, since its replica applies a
        batch only once the server has it.)"""

    async def configure_queue(
        self, name: str, concurrency: int | None, rate: Rate | None, now: float
    ) -> QueueConfig:
        """Store a queue's limits (`queues.reconfigure`); its bucket keeps its tokens."""

    async def list_queues(self) -> list[QueueConfig]:
        """The configured queues, by name."""

    async def step_inputs(self, wanted: Mapping[str, Collection[str]]) -> dict[str, StepInputs]:
        """For each run id: its input, session state and labels (`ctx.run_labels`), and the
        status/output (error, if failed) of the named steps."""

    async def complete(self, outcomes: Sequence[Outcome], now: float) -> CommitResult:
        """Record outcomes in one transaction (group commit), each fenced by its lease token.
        `freed` says that a step of a queue with a concurrency limit, or with a concurrency key,
        stopped running (a store that pushes wakes other processes' workers with it). A
        success's records written with an expected revision are checked by the transition: the
        store loads the revisions a `Need.records` names into `Txn.records`, unchanged by
        anyone else until this transaction commits (a lock, or a conditional commit)."""

    async def heartbeat(self, leases: Sequence[Lease], lease: float, now: float) -> list[Lease]:
        """Extend these leases; return the ones that are no longer held (fenced off)."""

    async def release(
        self, leases: Sequence[Lease], now: float, max_recoveries: int | None
    ) -> CommitResult:
        """Give steps back (graceful stop): ready at once, attempt not counted; a hand-back counts
        toward `max_recoveries` as a lease expiry does (past it: failed, `abandoned`). None:
        the steps were claimed but never started (a worker's prefetch), so the hand-back is
        not counted at all."""

    async def admit_key(
        self, run_id: str, step: str, token: str, key: str, now: float
    ) -> CommitResult:
        """Store the concurrency key a worker resolved for a step it claimed (one read from
        dependency outputs) and, under the same count as claims, keep it running if its key has
        room (`accepted == [True]`); else hand it back like `release` (`transitions.admit_key`)."""

    async def recover_expired(self, now: float, max_recoveries: int, limit: int) -> CommitResult:
        """Make steps with expired leases claimable again (or fail them past max_recoveries)."""

    async def apply(self, action: Action, now: float) -> CommitResult:
        """Run an operator action (a transition of `core.actions`, bound to its arguments) in
        one transaction, loading what it asks for; its refusal, if any, is in the result. An
        upgrade (`core.upgrade.move`) also deletes the steps of `Txn.dropped_steps`, adds
        `Txn.new_steps`, and rewrites the edges, options, optional flag and priority of the
        steps of `Txn.reshaped` (columns no other transition changes), and the run's version
        and sinks (`Txn.moved_runs`)."""

    async def fire_timers(self, now: float, limit: int) -> CommitResult:
        """Act on what the clock decides: approvals past their expiry (`gates.expire_approval`)
        and unfinished runs past their deadline (`gates.pass_deadline`), up to `limit` of each."""

    async def next_timer_at(self) -> float | None:
        """When `fire_timers` next has something to do (None if nothing is timed)."""

    async def list_waiting(self, limit: int) -> list[StepRow]:
        """Waiting steps (approvals, signals) across runs, the longest waiting first."""

    async def next_ready_at(
        self, fingerprints: Collection[str], after: float | None = None
    ) -> float | None:
        """When the earliest ready step of these fingerprints becomes claimable (None if none);
        with `after`, the earliest strictly later than that (the next delayed step)."""

    # -- records (`engine.records`; steps write them with their outcome: `Outcome.data`). A
    # key's revisions never repeat: a delete leaves a tombstone one revision on (`TOMBSTONE`),
    # which reads as absent (revision 0) and which a re-creation continues from.
    async def get_record(self, collection: str, key: str) -> RecordRow | None: ...

    async def put_record(self, row: RecordRow, expected_revision: int | None) -> tuple[bool, int]:
        """Write `row.doc` (its revision is ignored) if the document is at `expected_revision`
        (None: whatever it is; 0: absent). (True, the new revision), or (False, the revision it
        has, 0 if absent) and nothing written."""

    async def delete_record(
        self, collection: str, key: str, expected_revision: int | None
    ) -> tuple[bool, int]:
        """Delete the document if it is at `expected_revision` (None: any), leaving a tombstone
        at the next revision; (deleted, the revision it had or has, 0 if absent)."""

    async def purge_record_tombstones(self, older_than: float) -> int:
        """Delete the tombstones of records deleted before `older_than` (a re-created key then
        starts again at revision 1); how many."""

    async def list_records(
        self, collection: str, prefix: str, after: str, limit: int
    ) -> list[RecordRow]:
        """Documents whose key starts with `prefix` and sorts after `after`, by key."""

    # -- artifacts (steps save them with their outcome: `Outcome.data`; see `data.artifacts`)
    async def list_artifacts(self, run_id: str) -> list[ArtifactRow]:
        """The run's artifacts, oldest first (`data` None: the bytes are in the artifact folder
        under `path`, or, when `path` is None, in the blob of their `sha256`)."""

    async def get_artifact(self, artifact_id: str) -> ArtifactRow | None:
        """One artifact (`data` None, as in `list_artifacts`)."""

    async def known_artifacts(self, artifact_ids: Collection[str]) -> set[str]:
        """Which of these ids are artifacts of this store."""

    # -- deleting
    async def delete_run(self, run_id: str) -> bool:
        """Delete a finished run: its steps, events, artifacts and the run, and the references
        they held on blobs. False (nothing deleted) if it does not exist or is not finished (checked in
        the deleting transaction)."""

    # -- blobs (`core.blobs`): payloads longer than the store's `blob_threshold` are kept once
    # under their SHA-256 by the writes above, and read back by the reads, transparently
    blob_threshold: int

    async def put_blob(self, sha256: str, data: bytes, now: float) -> None:
        """Store `data` under its hash with no reference (a row committed later counts one,
        in its own transaction); a blob already stored only has its age refreshed. ValueError
        if `sha256` is not the data's hash."""

    async def get_blob(self, sha256: str) -> bytes:
        """A blob's data; BlobNotFound (naming the hash) if the store has none of that hash."""

    async def blob_stats(self) -> BlobStats:
        """How many blobs, their bytes, and the references to them."""

    async def gc_blobs(self, older_than: float) -> int:
        """Delete the blobs nobody refers to that were stored (or put) before `older_than`;
        how many."""


# -- capabilities some stores have (see `Store.capabilities`) ---------------------------------


@runtime_checkable
class CountsChanges(Protocol):
    """A store that can tell, with a read, whether other connections committed (capability
    "change_counter"): `change_counter()` returns a number that differs from the one it
    returned before if and only if some other connection (another process, or another store
    object on the same database) committed since; this store's own commits do not change it."""

    async def change_counter(self) -> int: ...


@runtime_checkable
class CallsDirect(Protocol):
    """A store that a thread free to block may call without an event loop (capability
    "direct"): `direct(call)` runs `call()`, a coroutine of this store's own methods, to its
    end on the caller's thread and returns its result. For a store whose connection is in this
    process (SQLite), where a call crossing to the event loop and back costs more than the
    call's own work; the engine's sync `start()` and `result()` use it."""

    def direct(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T: ...


@runtime_checkable
class PushesEvents(Protocol):
    """A store that tells which runs other processes appended events to (capability
    "push_events"). `events(None)` means: some runs, which is not known (a notification may
    have been missed)."""

    def subscribe_events(self, events: Callable[[Collection[str] | None], None]) -> None: ...


@runtime_checkable
class ReportsDurability(Protocol):
    """A store that can say what its settings promise about an acknowledged commit (every
    store of plait's does; `plait doctor` says "unknown" for one that does not)."""

    async def durability(self) -> Durability: ...
