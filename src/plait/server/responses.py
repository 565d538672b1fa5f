"""What the routes answer, as pydantic models: the OpenAPI document's response schemas.

They describe, field for field, the JSON that encode.py makes of the Engine's views (a
dataclass becomes an object of its fields, a datetime an ISO 8601 string, an enum its value,
epoch seconds stay numbers, payloads stay whatever JSON they are). They document and are never
run: a route answers with encode.JSON, which FastAPI sends as it is, so a page of 500 runs is not
validated again on its way out. What keeps them honest is tests/server/test_schemathesis.py,
which checks every answer it gets against its schema: a field added to a view, and not here,
fails it (every model forbids fields it does not name)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.rows import EdgeKind, Gate, RunStatus, StepStatus


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ----------------------------------------------------------------------------------------


class Problem(Answer):
    """One invalid parameter or body field."""

    where: str = Field(description="where it is: `query.limit`, `body.rate.count`, …")
    problem: str


class ErrorDetail(Answer):
    type: str = Field(
        description="the Engine's exception (RunNotFound, RunStateError, InputError, …) or "
        "the API's own kind (NotFound, ValidationError, MalformedJSON, Unauthorized, "
        "Forbidden, MethodNotAllowed)"
    )
    message: str = Field(description="the Engine's own message: what happened, what to do")
    details: list[Problem] = Field(
        default_factory=list, description="a ValidationError's problems, one per field"
    )


class Error(Answer):
    """Every error: the status says what went wrong; nothing was done."""

    error: ErrorDetail


# -- runs, steps, events ---------------------------------------------------------------------------


class Run(Answer):
    id: str
    workflow: str
    version: str
    fingerprint: str
    status: RunStatus
    input: Any = Field(description="the run's input, as JSON")
    output: Any = Field(description="the run's output, as JSON (null until it completes)")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deadline: datetime | None = Field(description="past it, the run fails")
    parent_run: str | None = Field(description="the run this one was forked from")
    forked_from: str | None = Field(description="the step of the parent it was forked from")
    updated_at: datetime | None = Field(
        description="when its status last changed (set in the run-list feed)"
    )
    state: dict[str, Any] = Field(
        default_factory=dict,
        description="its session state (ctx.state, post:), as the successes so far left it",
    )
    name: str | None = Field(default=None, description="the human name it was started with")
    labels: dict[str, str] = Field(
        default_factory=dict, description="the labels it was started with"
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="the metadata it was started with"
    )
    called_by: str | None = Field(
        default=None,
        description="a sub-workflow run (ctx.call): the step of parent_run that called it",
    )


class RunPage(Answer):
    runs: list[Run]
    next_cursor: str | None = Field(description="pass it back as `cursor`; null: no more")
    count: int = Field(
        default=0, description="runs matching the filters, only when asked with `count=true`"
    )
    as_of: float = Field(
        description="the server's time (epoch seconds) just before the read: pass it as `since` "
        "to /stream/runs to miss no change made after the read"
    )


class StepError(Answer):
    code: str
    message: str


class Step(Answer):
    run_id: str
    name: str
    status: StepStatus
    attempts: int
    output: Any = Field(description="the step's output, as JSON")
    error: StepError | None
    skip_reason: str | None
    worker: str | None
    ready_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    queued: float | None = Field(description="seconds from ready to started (last attempt)")
    duration: float | None = Field(description="seconds from started to finished")
    gate: Gate | None = Field(description="what a waiting step waits for")
    expires_at: datetime | None = Field(description="a waiting approval's expiry")
    reused_from: str | None = Field(description="the run whose output a fork reused")
    iteration: int
    task: str | None = Field(description="a spawned step: its task")
    parent: str | None = Field(description="a spawned step: the step that spawned it")
    joining: int = Field(description="a parent: how many spawned steps it still waits for")
    code: str | None = Field(description="the digest of the code that ran its latest attempt")
    input: Any = Field(
        description="what its handler received, as JSON: a static step's arguments by "
        "parameter (its last attempt), a spawned step's input; null before it ran"
    )
    calling: str | None = Field(
        default=None, description="waiting for the sub-workflow run of this id (ctx.call)"
    )


class StepList(Answer):
    steps: list[Step]


class Event(Answer):
    run_id: str
    seq: int
    type: str = Field(description="run_created, step_started, step_completed, …")
    step: str | None
    payload: dict[str, Any]
    ts: datetime


class EventPage(Answer):
    events: list[Event]
    last_seq: int = Field(description="pass it back as `after_seq` for the next events")


class Inspection(Answer):
    run: Run
    counts: dict[StepStatus, int] = Field(description="steps per status")
    blockers: dict[str, list[str]] = Field(description="step → what it waits on, in words")
    duration: float | None
    notes: list[str]


# -- the dashboard's views -------------------------------------------------------------------------


class GraphNode(Answer):
    id: str = Field(description="a step's name, or `group:…` for a group of alike steps")
    label: str
    group: bool
    size: int = Field(description="steps it shows")
    status: StepStatus = Field(description="a group's: its members' most pressing one")
    counts: dict[StepStatus, int]
    attempts: int | None = Field(description="a step's attempts; null for a group")
    task: str | None
    x: int
    y: int
    w: int
    h: int


class GraphEdge(Answer):
    from_: str = Field(alias="from")
    to: str
    kind: Literal["data", "after", "after_any", "catch", "spawn"]


class Graph(Answer):
    run_id: str
    last_seq: int = Field(description="the last event before the steps were read")
    steps: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    width: int
    height: int


class Attempt(Answer):
    """One attempt of a step: queued from `queued_at`, running from `started_at` until
    `ended_at`. Times are epoch seconds."""

    step: str
    attempt: int | None
    worker: str | None
    queued_at: float | None
    started_at: float
    ended_at: float | None
    outcome: Literal[
        "running", "done", "failed", "retrying", "lease_expired", "released", "cancelled",
        "key_full", "ready", "pending", "waiting", "skipped",
    ]  # fmt: skip
    code: str | None = Field(description="the error code it ended with")


class Timeline(Answer):
    run_id: str
    source: Literal["events", "steps"] = Field(
        description="steps: the log was too long, each step's last attempt only"
    )
    start: float
    end: float
    bars: list[Attempt] = Field(description="at most 2,000, by start")
    total: int = Field(description="bars there are")


class RunBrief(Answer):
    id: str
    workflow: str
    status: RunStatus
    input: Any


class Dependency(Answer):
    name: str
    kind: EdgeKind
    status: StepStatus


class Dependent(Answer):
    name: str
    kind: EdgeKind


class Artifact(Answer):
    id: str
    name: str
    size: int
    sha256: str
    content_type: str
    uri: str
    run_id: str
    step: str
    metadata: dict[str, Any] | None
    created_at: float


class ArtifactList(Answer):
    artifacts: list[Artifact]


class StepDetail(Answer):
    run: RunBrief
    step: Step
    spawned_input: Any = Field(description="a spawned step's input")
    dependencies: list[Dependency]
    dependents: list[Dependent]
    inputs: dict[str, Any] = Field(description="the outputs of its done data dependencies")
    attempts: list[Attempt]
    events: list[Event] = Field(description="its last 500 events")
    artifacts: list[Artifact]
    why: list[str] | None = Field(description="why it is not moving, in words")


class DiffEntry(Answer):
    path: str = Field(description="a JSON Pointer into the step's status, output and error")
    op: Literal["changed", "added", "removed"]
    a: Any = Field(default=None, description="run a's value (not for `added`)")
    b: Any = Field(default=None, description="run b's value (not for `removed`)")


class StepDiff(Answer):
    status: Literal["same", "changed", "only_a", "only_b"]
    diff: list[DiffEntry] | None = Field(description="null for a step only one run has")


class Diff(Answer):
    steps: dict[str, StepDiff]


# -- operator actions ------------------------------------------------------------------------------


class Signalled(Answer):
    delivered: bool = Field(description="false: an earlier signal already counted")


class Annotated(Answer):
    run_id: str
    type: str = Field(description="the event's type as stored: `user.<type>`")


class Deleted(Answer):
    deleted: str


class BulkItem(Answer):
    run_id: str
    outcome: Literal["done", "skipped", "error"]
    message: str | None


class BulkResult(Answer):
    action: Literal["cancel", "pause", "resume", "retry", "delete"]
    dry_run: bool
    matched: int = Field(description="runs the selection names")
    selected: int = Field(description="those this call looked at (at most its limit)")
    eligible: int = Field(description="selected runs whose status allows the action")
    skipped_by_status: dict[RunStatus, int]
    sample: list[str] = Field(description="some eligible run ids")
    items: list[BulkItem] = Field(description="what happened to each run (executed only)")


class Waiting(Answer):
    run_id: str
    workflow: str
    step: str
    gate: Gate
    since: datetime
    expires_at: datetime | None
    request: dict[str, Any] | None = Field(
        default=None,
        description="what an approval asks about: a workflow file's step's action and its "
        "arguments, expanded (null otherwise)",
    )


class WaitingList(Answer):
    waiting: list[Waiting]


class FailedStep(Answer):
    run_id: str
    workflow: str
    step: str
    error: StepError
    attempts: int
    finished_at: datetime | None
    task: str | None


class FailedStepPage(Answer):
    steps: list[FailedStep]
    next_cursor: str | None


class FailureRetryItem(Answer):
    run_id: str
    step: str
    outcome: Literal["done", "error"]
    message: str | None


class FailureRetry(Answer):
    dry_run: bool
    matched: int = Field(description="failed steps the filter matches, up to the call's limit")
    more: bool = Field(description="more match than the limit: call again for the rest")
    runs: int = Field(description="runs the matched steps belong to")
    sample: list[str] = Field(description='some matched steps, as "run_id/step"')
    items: list[FailureRetryItem] = Field(description="what happened to each (executed only)")


# -- data ------------------------------------------------------------------------------------------


class Record(Answer):
    key: str
    doc: Any
    revision: int
    updated_at: datetime
    run_id: str | None = Field(description="the run whose step wrote it last, if one did")
    step: str | None


class RecordPage(Answer):
    records: list[Record]
    next_after: str | None = Field(description="pass it back as `after`; null: no more")


class Document(Answer):
    key: str
    doc: Any
    revision: int


class StateDoc(Answer):
    id: str
    phase: str
    iteration: int
    max_iterations: int | None = Field(description="null: no limit")
    context: dict[str, Any]
    error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = Field(description="set once it has ended (completed or failed)")
    revision: int = Field(description="pass it as expected_revision to change it")


class StatePage(Answer):
    states: list[StateDoc]
    next_after: str | None = Field(description="pass it back as `after`; null: no more")


# -- workflows, workers, queues, schedules ---------------------------------------------------------


class WorkflowInfo(Answer):
    name: str
    version: str
    fingerprint: str
    steps: list[str]
    registered_at: datetime
    code_changes: str = Field(description="'deploy' (the version is the graph) or 'pin'")
    code: dict[str, str | None] = Field(description="each step's code digest, as registered")
    runs_in_flight: int = Field(description="its runs not yet ended")
    workers: list[str] = Field(description="the live workers that serve it")


class WorkflowList(Answer):
    workflows: list[WorkflowInfo]


class StepTopology(Answer):
    step: str
    queue: str
    target: str | None
    workers: list[str] = Field(description="ids of the live workers that can run it")
    blocker: str | None = Field(description="why none can; null if some can")


class Topology(Answer):
    workflow: str
    version: str
    fingerprint: str
    workers: list[str] = Field(description="ids of the live workers serving this version")
    steps: list[StepTopology]


class ServedWorkflow(Answer):
    name: str
    version: str
    fingerprint: str


class Worker(Answer):
    id: str
    host: str
    pid: int
    labels: list[str]
    queues: list[str] | None = Field(description="null: it serves every queue")
    workflows: list[ServedWorkflow]
    concurrency: int
    started_at: float
    heartbeat_at: float
    expires_at: float = Field(description="live until then, unless it heartbeats again")
    live: bool


class WorkerList(Answer):
    workers: list[Worker]


class Rate(Answer):
    count: float
    per: float
    burst: float | None


class Queue(Answer):
    name: str
    concurrency: int | None
    rate: Rate | None
    tokens: float | None = Field(description="its rate limit's tokens when last counted")


class QueueBacklog(Answer):
    name: str
    configured: bool = Field(description="false: steps use it, no limits are set")
    concurrency: int | None
    rate: Rate | None
    tokens: float | None
    ready: int
    running: int
    waiting: int
    oldest_ready_age: float | None = Field(description="seconds the oldest ready step waited")


class QueueList(Answer):
    queues: list[QueueBacklog]


class Schedule(Answer):
    name: str
    workflow: str
    cron: str
    timezone: str
    input: Any
    catch_up: Literal["skip", "run_once"]
    paused: bool
    next_at: float = Field(description="the next tick to start (epoch seconds)")
    revision: int


class ScheduleList(Answer):
    schedules: list[Schedule]
