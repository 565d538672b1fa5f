"""What the Engine returns to users: runs, steps, events, inspections and queues, payloads
decoded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import _codec
from .._errors import StepError
from ..core.calls import waits_for
from ..core.queues import QueueConfig
from ..core.rate import Rate
from ..core.rows import (
    EventRow,
    Excerpt,
    Gate,
    RunRow,
    RunStatus,
    StepRow,
    StepStatus,
    WorkflowPlan,
)
from ..core.spawn import spawner_of


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def _span(start: float | None, end: float | None) -> float | None:
    return round(end - start, 6) if start is not None and end is not None else None


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    workflow: str
    version: str
    fingerprint: str
    status: RunStatus
    input: Any
    output: Any
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deadline: datetime | None = None  # past it, the run fails with deadline_exceeded
    parent_run: str | None = None  # the run this one was forked from, or that called it
    forked_from: str | None = None  # the step of the parent it was forked from
    updated_at: datetime | None = None  # when its status last changed (`watch_runs` sets it)
    state: dict[str, Any] = field(default_factory=dict)  # its session state (ctx.state), as now
    name: str | None = None  # the human name it was started with
    labels: dict[str, str] = field(default_factory=dict)  # the labels it was started with
    metadata: dict[str, Any] = field(default_factory=dict)  # the metadata it was started with
    # a sub-workflow run: the step of `parent_run` that called it (`ctx.call`); its end makes
    # that step run again
    called_by: str | None = None

    @property
    def duration(self) -> float | None:
        end = self.finished_at
        return (end - self.created_at).total_seconds() if end is not None else None

    @classmethod
    def from_row(cls, row: RunRow) -> Run:
        return cls(
            id=row.id,
            workflow=row.workflow,
            version=row.version,
            fingerprint=row.fingerprint,
            status=row.status,
            input=_payload(row.input),
            output=_payload(row.output),
            error=row.error,
            created_at=_dt(row.created_at) or datetime.fromtimestamp(0, UTC),
            started_at=_dt(row.started_at),
            finished_at=_dt(row.finished_at),
            deadline=_dt(row.deadline),
            parent_run=row.parent_run,
            forked_from=row.forked_from,
            state=_codec.loads(row.state) if row.state else {},
            name=row.name,
            labels=dict(row.labels or {}),
            metadata=_codec.loads(row.metadata) if row.metadata else {},
            called_by=row.called_by,
        )


@dataclass(frozen=True, slots=True)
class Step:
    run_id: str
    name: str
    status: StepStatus
    attempts: int
    output: Any
    error: StepError | None
    skip_reason: str | None
    worker: str | None
    ready_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    queued: float | None  # seconds between ready and started (last attempt)
    duration: float | None  # seconds between started and finished (last attempt)
    gate: Gate | None = None  # an approval or a signal: what it waits for in `waiting`
    expires_at: datetime | None = None  # a waiting approval is decided by its expiry then
    reused_from: str | None = None  # a fork reused this step's output, recorded by that run
    iteration: int = 0  # passes a plait.Goto made it go through before the last one
    task: str | None = None  # a spawned step: the task it runs
    parent: str | None = None  # a spawned step: the step that spawned it
    joining: int = 0  # a parent waiting for this many of the steps it spawned
    code: str | None = None  # the digest of the code that ran its latest attempt
    # what its handler received (its last attempt that reported an outcome): a static step's
    # arguments by parameter, a spawned step's input; None before it ran
    input: Any = None
    calling: str | None = None  # waiting for the sub-workflow run of this id (`ctx.call`)

    @classmethod
    def from_row(cls, row: StepRow) -> Step:
        error = StepError(row.error_code, row.error_message or "") if row.error_code else None
        return cls(
            run_id=row.run_id,
            name=row.name,
            status=row.status,
            attempts=row.attempt,
            output=_payload(row.output),
            error=error,
            skip_reason=row.skip_reason if row.status is StepStatus.SKIPPED else None,
            worker=row.worker_id,
            ready_at=_dt(row.ready_at),
            started_at=_dt(row.started_at),
            finished_at=_dt(row.finished_at),
            queued=_span(row.ready_at, row.started_at) if row.started_at else None,
            duration=_span(row.started_at, row.finished_at),
            gate=(
                row.options.gate
                if row.options is not None and not row.joining and waits_for(row) is None
                else None
            ),
            expires_at=_dt(row.available_at) if row.status is StepStatus.WAITING else None,
            reused_from=row.reused_from,
            iteration=row.iteration,
            task=row.task,
            parent=spawner_of(row),
            joining=row.unmet if row.joining else 0,
            code=row.code,
            input=_payload(row.input),
            calling=waits_for(row),
        )


@dataclass(frozen=True, slots=True)
class Waiting:
    """A step waiting for a decision (an approval) or a payload (a signal)."""

    run_id: str
    workflow: str
    step: str
    gate: Gate
    since: datetime
    expires_at: datetime | None  # an approval's expiry, if it has one
    # what an approval asks about, when its workflow says (a workflow file's step: its action
    # and its arguments, expanded from the run as it is now); None otherwise
    request: dict[str, Any] | None = None

    @classmethod
    def from_row(
        cls, row: StepRow, workflow: str, request: dict[str, Any] | None = None
    ) -> Waiting:
        return cls(
            run_id=row.run_id,
            workflow=workflow,
            step=row.name,
            gate=row.options.gate if row.options and row.options.gate else Gate.APPROVAL,
            since=_dt(row.ready_at) or datetime.fromtimestamp(0, UTC),
            expires_at=_dt(row.available_at),
            request=request,
        )


@dataclass(frozen=True, slots=True)
class Event:
    run_id: str
    seq: int
    type: str
    step: str | None
    payload: dict[str, Any]
    ts: datetime

    @classmethod
    def from_row(cls, row: EventRow) -> Event:
        return cls(
            row.run_id,
            row.seq,
            row.type,
            row.step,
            dict(row.payload),
            _dt(row.ts) or datetime.now(UTC),
        )


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of `list_runs`; pass `next_cursor` back to get the next (None: no more)."""

    runs: list[Run]
    next_cursor: str | None

    def __iter__(self):  # type: ignore[no-untyped-def]  # iterate the runs directly
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """A workflow version: when it was registered, its steps and their code digests (as first
    registered; under code_changes="deploy" later code keeps the version, and each attempt
    records its own), its runs in flight and the live workers that serve it (`workflows()`)."""

    name: str
    version: str
    fingerprint: str
    steps: tuple[str, ...]
    registered_at: datetime
    code_changes: str = "pin"
    code: dict[str, str | None] = field(default_factory=dict)
    runs_in_flight: int = 0
    workers: tuple[str, ...] = ()

    @classmethod
    def from_plan(
        cls, plan: WorkflowPlan, *, runs_in_flight: int = 0, workers: tuple[str, ...] = ()
    ) -> WorkflowInfo:
        return cls(
            plan.name,
            plan.version,
            plan.fingerprint,
            tuple(s.name for s in plan.steps),
            _dt(plan.created_at) or datetime.fromtimestamp(0, UTC),
            plan.code_changes,
            {s.name: s.code for s in plan.steps},
            runs_in_flight,
            workers,
        )


@dataclass(frozen=True, slots=True)
class Inspection:
    """A debugging snapshot of one run."""

    run: Run
    steps: list[Step]
    counts: dict[str, int]  # step status → number of steps
    blockers: dict[str, list[str]]  # step → what it waits on, in words
    duration: float | None = None  # whole run, once finished
    notes: list[str] = field(default_factory=list)


def inspect_run(run_row: RunRow, rows: list[StepRow], now: float) -> Inspection:
    steps = [Step.from_row(r) for r in rows]
    counts = {s.value: 0 for s in StepStatus}
    for r in rows:
        counts[r.status.value] += 1
    status = {r.name: r.status for r in rows}
    waits_on: dict[str, list[str]] = {r.name: [] for r in rows}
    for r in rows:
        for edge in r.dependents:
            if not status[r.name].terminal and edge.target in waits_on:
                waits_on[edge.target].append(r.name)
    blockers: dict[str, list[str]] = {}
    for r in rows:
        if r.status is StepStatus.PENDING:
            blockers[r.name] = [f"{d} ({status[d].value})" for d in waits_on[r.name]]
        elif r.status is StepStatus.READY:
            if r.available_at is not None and r.available_at > now:
                why = "retry backoff" if r.attempt else "delay"
                blockers[r.name] = [f"{why}: claimable in {r.available_at - now:.1f}s"]
            elif run_row.status in (RunStatus.PENDING, RunStatus.RUNNING):
                blockers[r.name] = [
                    "no worker has claimed it yet (is a worker serving this workflow version?)"
                ]
            else:
                blockers[r.name] = [f"run is {run_row.status.value}"]
        elif r.joining:
            left = [f"{d} ({status[d].value})" for d in waits_on[r.name]]
            blockers[r.name] = [f"waiting for {r.unmet} spawned step(s): {', '.join(left[:5])}"]
        elif (child := waits_for(r)) is not None:
            blockers[r.name] = [f"waiting for the sub-workflow run it called, {child}"]
        elif r.status is StepStatus.WAITING:
            gate = r.options.gate if r.options is not None else None
            waits = (
                "a signal (engine.signal)" if gate is Gate.SIGNAL else "approval (engine.approve)"
            )
            expiry = f"; decided on expiry in {r.available_at - now:.0f}s" if r.available_at else ""
            blockers[r.name] = [f"waiting for {waits}{expiry}"]
    run = Run.from_row(run_row)
    return Inspection(
        run=run,
        steps=steps,
        counts=counts,
        blockers=blockers,
        duration=_span(run_row.created_at, run_row.finished_at),
    )


@dataclass(frozen=True, slots=True)
class Queue:
    """A configured queue as `engine.queues()` shows it: its limits, and the tokens its rate
    limit had when last counted (None without a rate limit)."""

    name: str
    concurrency: int | None
    rate: Rate | None
    tokens: float | None

    @classmethod
    def of(cls, q: QueueConfig) -> Queue:
        return cls(q.name, q.concurrency, q.rate, None if q.bucket is None else q.bucket.tokens)


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a list, a count or a bulk action takes: every given condition holds.
    `created_from`/`created_to`: a creation time range [from, to), a datetime (naive: UTC) or
    epoch seconds; `text`: found in the run id, its name or its error, case-insensitive;
    `labels`: runs having every one of these labels ({"customer": "42"})."""

    workflow: str | None = None
    status: RunStatus | str | None = None
    created_from: datetime | float | None = None
    created_to: datetime | float | None = None
    text: str | None = None
    labels: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class FailedStep:
    """A failed step, as the failed steps across runs list it."""

    run_id: str
    workflow: str
    step: str
    error: StepError
    attempts: int
    finished_at: datetime | None
    task: str | None = None  # a spawned step: the task it runs


@dataclass(frozen=True, slots=True)
class FailedStepPage:
    """One page of `failures`; pass `next_cursor` back to get the next (None: no more)."""

    steps: list[FailedStep]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class FailureFilter:
    """Which failed steps `failures` lists and `retry_failures` retries: every given condition
    holds. `workflow`: of that workflow's runs; `step`: of that name; `code`: failed with that
    error code; `since`: ended at or after (a datetime, naive: UTC, or epoch seconds);
    `labels`: of runs with every one of these labels (as `RunFilter.labels`)."""

    workflow: str | None = None
    step: str | None = None
    code: str | None = None
    since: datetime | float | None = None
    labels: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class FailureRetryItem:
    """What `retry_failures` did to one failed step: "done", or "error" (the Engine refused:
    its message, such as a run cancelled meanwhile)."""

    run_id: str
    step: str
    outcome: str
    message: str | None = None


@dataclass(frozen=True, slots=True)
class FailureRetry:
    """`retry_failures`'s count (a dry run) or what it did.

    `matched`: failed steps the filter matches, counted up to the call's `limit`; `more`: True
    when more match than that (call again after these are retried); `runs`: how many runs they
    belong to; `sample`: some of them as "run_id/step". Executed, `items` says what happened to
    each."""

    dry_run: bool
    matched: int
    more: bool
    runs: int
    sample: list[str]
    items: list[FailureRetryItem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BulkItem:
    """What a bulk action did to one run: "done", "skipped" (its status does not allow the
    action: `message` says so) or "error" (the Engine refused it: its message)."""

    run_id: str
    outcome: str
    message: str | None = None


@dataclass(frozen=True, slots=True)
class BulkResult:
    """A bulk action's dry run or its execution.

    `matched`: runs the selection names (all of a filter's, not only the first `limit`);
    `selected`: those this call looks at (at most its limit: run it again for the rest);
    `eligible`: the selected runs whose status allows the action; `skipped_by_status`: the
    others, counted per status; `sample`: some eligible ids. Executed (`dry_run` False),
    `items` says what happened to each selected run."""

    action: str
    dry_run: bool
    matched: int
    selected: int
    eligible: int
    skipped_by_status: dict[str, int]
    sample: list[str]
    items: list[BulkItem] = field(default_factory=list)


def _payload(data: bytes | None) -> Any:
    """A payload decoded; an Excerpt (a read with `excerpt=`) stays what it is: cut JSON."""
    return data if isinstance(data, Excerpt) else _codec.loads(data)
