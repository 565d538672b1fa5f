"""The records the state machine reads and writes, shared by every store.

Timestamps are float seconds since the epoch; payloads (inputs, outputs) are JSON bytes and are
decoded only at the API boundary, so the hot path never parses what it merely moves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, overload


class Excerpt(bytes):
    """The first bytes of a payload read without the rest (the `excerpt=` of a store's reads,
    for what shows a payload cut: `plait runs show`); `size` is the whole payload's length.
    Not JSON: it is shown, never decoded."""

    size: int

    def __new__(cls, head: bytes, size: int) -> Excerpt:
        made = super().__new__(cls, head)
        made.size = size
        return made


@overload
def excerpt_of(payload: bytes, limit: int | None) -> bytes: ...
@overload
def excerpt_of(payload: bytes | None, limit: int | None) -> bytes | None: ...
def excerpt_of(payload: bytes | None, limit: int | None) -> bytes | None:
    """`payload` whole if `limit` is None or it is no longer, else an Excerpt of `limit` bytes."""
    if payload is None or limit is None or len(payload) <= limit:
        return payload
    return Excerpt(payload[:limit], getattr(payload, "size", len(payload)))  # an Excerpt's own


class StepStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_STEP


_TERMINAL_STEP = frozenset(
    {StepStatus.DONE, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
)


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_RUN


_TERMINAL_RUN = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class EdgeKind(StrEnum):
    DATA = "data"  # the dependent receives the output
    AFTER = "after"  # ordering only; a failure still cascades
    AFTER_ANY = "after_any"  # waits for the end, whatever it is; never cascades
    CHILD = "child"  # from a spawned step to the step that spawned it, which waits for it
    # from a step to the step that catches its failure: the catcher runs only if the step
    # failed (else it is skipped as a branch not taken), and the failure then fails no run
    CATCH = "catch"


@dataclass(frozen=True, slots=True)
class Edge:
    """An edge seen from the upstream step: who depends on me, and how."""

    target: str
    kind: EdgeKind
    absorbs: bool = False  # the target has a `defaults` entry for this dependency


class Gate(StrEnum):
    """What a `waiting` step waits for."""

    APPROVAL = "approval"  # approve() or reject(), or its expiry
    SIGNAL = "signal"  # a payload from outside: signal()


class AtEnd(StrEnum):
    """A step that runs once every other step of its run has ended (`cascade.new_run` gives it
    an `after_any` edge from each); it is no sink, so the run's output is not its."""

    ALWAYS = "always"  # however the others ended (a `finally`)
    FAILED = "failed"  # only if the run is failing (a run's `catch`); else skipped


class JoinMode(StrEnum):
    """When a step that spawned steps ends (its join, `cascade.join`); by default (None) when
    all of them have ended."""

    FIRST = "first"  # at the first that succeeds, with its output; the others are cancelled
    ANY_ERROR = "any_error"  # failed at the first that fails; the others are cancelled


class OnExpiry(StrEnum):
    REJECT = "reject"
    APPROVE = "approve"


@dataclass(frozen=True, slots=True)
class StepOptions:
    """A step's options that the state machine acts on; stored with each step, never rewritten
    but for a concurrency key read from dependency outputs (`key`, see `transitions.admit_key`)."""

    delay: float | None = None  # seconds between becoming ready and being claimable
    gate: Gate | None = None  # when ready, wait in `waiting` for this instead
    expires_after: float | None = None  # an approval undecided this long is decided by on_expiry
    on_expiry: OnExpiry = OnExpiry.REJECT
    queue: str | None = None  # its flow-control queue (None: "default"); see `core.queues`
    key: str | None = None  # its concurrency key (resolved per run, at start or after a claim)
    key_limit: int | None = None  # at most this many running steps share the key
    # the key reads dependency outputs: None (pending) until the worker that claimed the step
    # resolves it (`transitions.admit_key`); a Goto that runs the step again makes it pending again
    key_from_outputs: bool = False
    # placement: a worker label; "@" + a worker's id; "=" + the step whose worker it must use
    target: str | None = None
    # the run's priority (`start(priority=)`), already in the row's priority; the steps it
    # spawns add it to theirs (kept here, per row: a run row has no place for it)
    run_priority: int = 0
    # a step of a fail-fast workflow (`Workflow(fail_fast=True)`): its failure, if it fails the
    # run, ends the run at once (`cascade.settle`)
    fail_fast: bool = False
    at_end: AtEnd | None = None  # runs when the rest of the run has ended (`AtEnd`)
    join: JoinMode | None = None  # a step that spawns: when it ends (`JoinMode`; None: all)
    # a step that spawns: it fails (code `timeout`) if its children have not all ended, as
    # `join` wants, this long after it spawned them; the unfinished ones are cancelled
    join_timeout: float | None = None
    # a spawned step whose arguments are bound by parameter (`ctx.spawn(inputs=, args=)`, or
    # `input=` a handle): (parameter, step) pairs, each parameter given that step's output
    # when the step is claimed; its row's `input` then holds its literal arguments, a JSON
    # object by parameter. None: a step whose `input` is its task's one input, as it is
    reads: tuple[tuple[str, str], ...] | None = None
    # (code, message): an approval policy refuses the step (it blocks or denies its action,
    # `core.policy`): the worker that claims it fails it unrun, without retry
    refusal: tuple[str, str] | None = None
    # a run's own approval policy decided the step's verdict (`core.policy.police`): its
    # workflow's refusal, if any, does not apply (rows made before refusals were kept in them
    # have neither: the worker then applies its definition's)
    policed: bool = False


@dataclass(slots=True)
class StepRow:
    run_id: str
    name: str
    idx: int
    status: StepStatus
    unmet: int
    dependents: tuple[Edge, ...] = ()
    optional: bool = False
    priority: int = 0
    attempt: int = 0  # attempts started so far (a lease recovery gives its attempt back)
    recoveries: int = 0
    skip_reason: str | None = None  # set while pending once a dependency's failure dooms the step
    output: bytes | None = None
    error_code: str | None = None
    error_message: str | None = None
    available_at: float | None = None
    lease_token: str | None = None
    lease_expires_at: float | None = None
    worker_id: str | None = None
    ready_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    options: StepOptions | None = None
    reused_from: str | None = None  # a fork reused this step's output, recorded by that run
    iteration: int = 0  # times a Goto sent the run back through this step
    task: str | None = None  # a spawned step: the workflow's task it runs (None: a static step)
    # what its handler received, JSON: a spawned step's task input (from its spawn); a static
    # step's arguments by parameter, recorded by its last attempt that reported an outcome
    input: bytes | None = None
    gather: bytes | None = None  # a parent that returned handles: JSON name or list of names
    code: str | None = None  # the code digest of the handler that ran its latest attempt

    @property
    def joining(self) -> bool:
        """A parent waiting for the steps it spawned (`unmet` of them are unfinished); a step
        waiting at a gate has no unmet dependency."""
        return self.status is StepStatus.WAITING and self.unmet > 0


@dataclass(slots=True)
class RunRow:
    id: str
    workflow: str
    version: str
    fingerprint: str
    status: RunStatus
    input: bytes
    sinks: tuple[str, ...]
    unfinished: int  # steps not yet terminal: the run ends when this reaches 0
    failures: int = 0  # non-optional steps that failed or were skipped for a failure
    next_seq: int = 1
    output: bytes | None = None
    error: str | None = None  # summary of the first failure
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    deadline: float | None = None  # past it, the run fails with deadline_exceeded
    parent_run: str | None = None  # the run this one was forked from, or that called it
    forked_from: str | None = None  # the step of the parent it was forked from
    next_idx: int = 0  # the `idx` of the next step added to the run (spawned steps)
    state: bytes | None = None  # the session state (`ctx.state`): a JSON object, None if empty
    name: str | None = None  # a human name given at start (`core.identity`)
    labels: dict[str, str] | None = None  # string labels given at start; lists filter by them
    metadata: bytes | None = None  # a JSON object given at start, kept as it is
    # the step of `parent_run` that called this run as a sub-workflow (`ctx.call`,
    # `core.calls`): its end makes that step ready again. None for a fork or any other start
    called_by: str | None = None


@dataclass(frozen=True, slots=True)
class EventRow:
    """An entry of a run's event log; `seq` is 1, 2, 3 … per run, assigned in the writing transaction."""

    run_id: str
    seq: int
    type: str
    step: str | None
    payload: dict[str, object]
    ts: float


@dataclass(frozen=True, slots=True)
class StepPlan:
    """What a run needs to know about one step of its workflow (no code)."""

    name: str
    dependencies: tuple[tuple[str, EdgeKind], ...]
    defaults: tuple[str, ...] = ()  # dependencies whose failure is absorbed by a default
    optional: bool = False
    priority: int = 0
    inputs: tuple[tuple[str, bool], ...] = ()  # (run-input field, required)
    options: StepOptions | None = None
    code: str | None = None  # the digest of its handler's code when the version was registered


@dataclass(frozen=True, slots=True)
class WorkflowPlan:
    """A workflow version as the store keeps it: enough to create runs without the code.
    `code_changes`: "deploy" (the fingerprint covers the graph; steps not yet run take the
    code deployed now) or "pin" (it covers the code too: only that code serves its runs)."""

    name: str
    version: str
    fingerprint: str
    steps: tuple[StepPlan, ...]
    created_at: float = 0.0
    code_changes: str = "pin"
    graph: str | None = None  # the fingerprint without the code (None: saved before it was kept)


# The code digest of the handler a worker runs for a step: (fingerprint, step, task) -> digest,
# None if the worker does not know it (recorded on the step and its `step_started` event)
CodeOf = Callable[[str, str, str | None], str | None]


@dataclass(frozen=True, slots=True)
class Claim:
    """A step a worker now holds under a lease."""

    run_id: str
    step: str
    fingerprint: str
    attempt: int
    token: str
    lease_expires_at: float
    iteration: int = 0  # passes a Goto made the step go through before this one
    task: str | None = None  # a spawned step: the task it runs, and the input it receives
    input: bytes | None = None
    key_pending: bool = False  # its concurrency key is to be resolved and admitted first
    claimable_since: float | None = None  # when it became claimable (its wait ended with this)
    recoveries: int = 0  # its attempts that ended without an outcome so far (traces' span ids)
    # a spawned step bound by parameter (`StepOptions.reads`): (parameter, step) pairs whose
    # outputs its handler receives besides the literal arguments in `input`; None: `input` is
    # the task's one input
    reads: tuple[tuple[str, str], ...] | None = None
    refusal: tuple[str, str] | None = None  # its options' refusal: it fails, unrun
    policed: bool = False  # its options' `policed`: a run's policy decided, not its workflow's


@dataclass(frozen=True, slots=True)
class Spawn:
    """A step a handler added to its run (`ctx.spawn`, `ctx.map`); committed with its success."""

    name: str
    task: str
    input: bytes | None  # JSON, or None when the task takes no input
    after: tuple[str, ...] = ()  # names of steps spawned before it by the same handler
    optional: bool = False
    priority: int = 0
    not_before: float | None = None  # claimable from then on (epoch seconds)
    colocate: bool = False  # run on the worker that ran the step that spawned it
    options: StepOptions | None = None  # its task's queue and target
    # bound by parameter: (parameter, step) pairs, a step being one spawned before it by the
    # same handler (it waits for it) or a workflow step that has ended `done` (checked when
    # the spawn commits); `input` is then a JSON object of its literal arguments by parameter.
    # None: `input` is the task's one input
    reads: tuple[tuple[str, str], ...] | None = None
    join: bool = True  # its parent waits for it; False: detached, only the run waits for it


@dataclass(frozen=True, slots=True)
class RecordWrite:
    """A document a step wrote with `ctx.record`; committed with its success only. `expected`:
    the revision the document must have when the success commits (0: it must not exist), checked
    in that transaction (`core.transitions`: else the attempt fails, `revision_conflict`); None
    writes whatever is there."""

    collection: str
    key: str
    doc: bytes  # JSON
    expected: int | None = None


@dataclass(frozen=True, slots=True)
class RecordRow:
    """A document of a collection (`engine.records`), as the store keeps it."""

    collection: str
    key: str
    doc: bytes  # JSON
    revision: int  # 1 when created, +1 per write (and per delete: see TOMBSTONE)
    updated_at: float
    run_id: str | None = None  # the step that wrote it last, if a step did
    step: str | None = None


# The doc of a deleted record's row (no JSON document is empty): stores keep the row, one revision
# on, so that a re-creation continues the key's revisions instead of starting again at 1, where a
# writer that read the old document could overwrite the new one (ABA). Never shown by get/list.
TOMBSTONE = b""

# documents one list of a collection returns at most (`Records.list`); here rather than in
# data/records.py so that `plait records list --help` shows it without importing the data wing
PAGE_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class StepData:
    """What a handler wrote besides its output (`ctx.record`, `ctx.save_artifact`, `ctx.state`,
    `ctx.emit`), sent with its
    successful outcome only, so that a failed attempt leaves nothing behind."""

    records: tuple[RecordWrite, ...] = ()
    artifacts: tuple[ArtifactRow, ...] = ()
    state: tuple[StateChange, ...] = ()  # ctx.state.set/append, applied in commit order
    events: tuple[UserEvent, ...] = ()  # ctx.emit: appended to the run's log, in order


# what a user's event type is stored after (`core.user_events`): plait's own types have no dot
USER_EVENT_PREFIX = "user."


@dataclass(frozen=True, slots=True)
class UserEvent:
    """An event a step emitted (`ctx.emit`; `core.user_events`): its type, without the `user.`
    prefix it is stored with, and its payload, plain JSON values."""

    type: str
    payload: object


@dataclass(frozen=True, slots=True)
class StateChange:
    """A change a step made to its run's session state (`ctx.state`), applied to the state the
    run has when the step's success commits (`core.session`): `set` replaces the key's value,
    `append` adds `value` at the end of the key's list."""

    op: str  # "set" | "append"
    key: str
    value: bytes  # JSON


@dataclass(frozen=True, slots=True)
class ArtifactRow:
    """A file a step saved (`ctx.save_artifact`): its bytes are in the artifact folder under
    `path` (relative), or in the store's blob of `sha256` (path None; `data` carries them from
    the handler to the success transaction); the row makes it visible, so it exists only if the
    step succeeded (`data.artifacts`)."""

    id: str
    run_id: str
    step: str
    name: str
    size: int
    sha256: str
    content_type: str
    path: str | None
    metadata: bytes | None = None  # JSON object
    created_at: float = 0.0
    data: bytes | None = None  # the bytes kept in the database, on their way to a blob


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a worker reports for a claimed step. `retry_at` set on a failure means: try again then."""

    run_id: str
    step: str
    token: str
    output: bytes | None = None
    error_code: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    error_details: dict[str, Any] | None = None  # a JSON object raised with the error
    retry_at: float | None = None
    skipped: bool = False  # its `when=` condition was false: skipped, reason "condition"
    goto: str | None = None  # it returned plait.Goto(goto, max_iterations): loop back there
    max_iterations: int = 0
    spawned: tuple[Spawn, ...] = ()  # steps it added; it then waits for them before it is done
    gather: bytes | None = None  # it returned handles: their names (JSON), whose outputs it returns
    data: StepData | None = None  # records and artifacts, written only if it succeeded
    # when to try again if a record it wrote with an expected revision has another one at
    # commit (the attempt then fails, `revision_conflict`); None: no attempts left
    conflict_retry_at: float | None = None
    # what its handler received (`StepRow.input`): a static step's arguments, a JSON object
    # by parameter (a spawned step's input is recorded when it is spawned: None here)
    input: bytes | None = None
    # it called a sub-workflow (`ctx.call`) whose run, of this id, has not ended: the step
    # waits for it without a lease and runs again when it ends (`core.calls`); nothing else
    # of the attempt is committed
    call: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error_code is None and not self.skipped and self.call is None


@dataclass(slots=True)
class CommitResult:
    """What a store transaction changed that others may wait on."""

    accepted: list[bool] = field(default_factory=list)
    ended_runs: list[str] = field(default_factory=list)
    readied: int = 0
    cancelled_runs: list[str] = field(default_factory=list)  # their running steps must stop
    refusal: str | None = None  # an operator action not allowed in the run's state: why
    timers_changed: bool = False  # something now waits for the clock (an approval's expiry)
    # a step of a queue with a concurrency limit, or with a concurrency key, stopped running: a
    # claim that its limits held back may now succeed (wake workers here; PostgreSQL: everywhere)
    slot_freed: bool = False
    expired: int = 0  # leases found expired (`recover_expired`), for the worker's metrics
    # tokens of successes that failed at commit, `revision_conflict` (a record's revision
    # moved: `transitions.check_records`), for the worker's metrics
    conflicted: list[str] = field(default_factory=list)


class Claims(list[Claim]):
    """The steps one claim took, and, when limits held ready work back from it, what to wait
    for (see `core.claiming`): `limited` says that some ready step this worker could run waits for
    room under a queue's or a key's limits; `next_token_at`, when the earliest rate-limited
    queue among those gets its next token (None: none is waiting for tokens)."""

    def __init__(
        self, claims: list[Claim] | None = None, *, limited: bool = False,
        next_token_at: float | None = None, inputs: dict[str, StepInputs] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(claims or ())
        self.limited = limited
        self.next_token_at = next_token_at
        # when the claim was asked for its steps' inputs (`Store.claim`'s `inputs`): per run of
        # a claimed step, its input and the ends of the dependencies asked for; else None
        self.inputs = inputs


@dataclass(frozen=True, slots=True)
class StepInputs:
    """What a claimed step's handler needs: the run input and its dependencies' ends."""

    run_input: bytes
    # dependency → (status, output JSON or None)
    dependencies: dict[str, tuple[StepStatus, bytes | None]]
    state: bytes | None = None  # the run's session state when the step was claimed
    # dependency that failed → (error code, error message): what a catching step reads
    errors: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    labels: dict[str, str] | None = None  # the run's labels (`start(labels=)`; `ctx.run_labels`)


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease a worker holds: enough to heartbeat or release it."""

    run_id: str
    step: str
    token: str
