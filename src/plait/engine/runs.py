"""Runs: registering workflows, starting runs, reading them, and waiting for them to end.

Functions of a `Runtime`, called by the Engine facade (and by the scheduler, which starts runs).
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import _codec
from .._errors import (
    InputError,
    RunCancelled,
    RunConflict,
    RunFailed,
    StepError,
    WorkflowNotFound,
)
from .._runtime import Runtime
from ..core.cascade import new_run
from ..core.gates import DEADLINE_EXCEEDED
from ..core.queues import flow_of_run, queue_blockers
from ..core.rows import RunRow, RunStatus, StepStatus, WorkflowPlan
from ..core.topology import registry_blockers
from ..worker.registry import read_workers
from ..workflow.definition import Workflow
from ..workflow.options import seconds, wait_limit
from .traces import check_trace_context
from .views import (
    Event,
    FailedStep,
    FailedStepPage,
    Inspection,
    Run,
    RunFilter,
    RunPage,
    Step,
    WorkflowInfo,
    inspect_run,
)

log = logging.getLogger(__name__)

RUN_ID_RE = re.compile(r"^[A-Za-z0-9_.:@\-]{1,200}$")


def check_run_id(run_id: Any) -> str:
    """A caller-chosen run id, checked."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise InputError(
            f"invalid run id {run_id!r}: use 1-200 ASCII letters, digits or any of _ . : @ -"
        )
    return run_id


def new_run_id() -> str:
    # time-ordered, so ids sort roughly by start; random enough never to collide
    return f"{int(time.time() * 1000):012x}-{uuid.uuid4().hex[:12]}"


# -- definitions ----------------------------------------------------------------------------------


async def register(rt: Runtime, workflow: Workflow) -> WorkflowInfo:
    return WorkflowInfo.from_plan(await rt.register(workflow))


async def workflows(rt: Runtime) -> list[WorkflowInfo]:
    store = await rt.ready()
    return [WorkflowInfo.from_plan(p) for p in await store.list_workflows()]


async def plan_and_input(
    rt: Runtime, workflow: Workflow | str, value: Any
) -> tuple[WorkflowPlan, Any]:
    """The plan a run of `workflow` (an object, or a name registered here or in the store) is
    started on, and its input validated against it."""
    if isinstance(workflow, Workflow):
        plan = await rt.register(workflow)
        return plan, workflow.validate_input(value)
    if not isinstance(workflow, str):
        raise WorkflowNotFound(f"expected a plait.Workflow or a workflow name, got {workflow!r}")
    local = rt.workflows.latest(workflow)
    if local is not None:
        return local.plan(), local.validate_input(value)
    store = await rt.ready()
    stored = await store.get_workflow(workflow)
    if stored is None:
        raise WorkflowNotFound(
            f"unknown workflow {workflow!r}: no such workflow is registered in {rt.url} "
            "(register it with engine.register(wf) or start it with the Workflow object)"
        )
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InputError(
            f"run input of {workflow!r} must be a JSON object, got {type(value).__name__}"
        )
    for step in stored.steps:
        for field, required in step.inputs:
            if required and field not in value:
                raise InputError(
                    f"run input of {workflow!r} misses field {field!r}, required by step {step.name!r}"
                )
    return stored, value


def encode_input(plan: WorkflowPlan, value: Any) -> bytes:
    try:
        return _codec.dumps(value)
    except _codec.EncodeError as exc:
        raise InputError(f"run input of {plan.name!r} is not JSON: {exc}") from None


# -- starting -------------------------------------------------------------------------------------


async def start(
    rt: Runtime,
    workflow: Workflow | str,
    input: Any,
    *,
    run_id: str | None,
    deadline: float | timedelta | None = None,
    priority: int = 0,
    trace_context: Mapping[str, str] | None = None,
) -> tuple[str, bool]:
    """Start a run: its id, and whether this call created it (False: its id was started before,
    by this process or another, such as a second scheduler of a tick)."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InputError(f"start: priority must be an integer, got {priority!r}")
    if run_id is not None:
        check_run_id(run_id)
    within = seconds("start", "deadline", deadline, error=InputError)
    plan, value = await plan_and_input(rt, workflow, input)
    run_id = run_id or new_run_id()
    input_json = encode_input(plan, value)
    now = time.time()
    run, steps, events = new_run(plan, run_id, input_json, now)
    if trace_context is not None:  # kept in the run's first event (`engine.traces`)
        carried = check_trace_context(dict(trace_context))
        first = events[0]
        events[0] = replace(first, payload={**first.payload, "trace_context": carried})
    flow_of_run(rt.workflows.latest(plan.name), plan, steps, value, priority)
    if within is not None:
        run.deadline = now + within
    store = await rt.ready()
    stored, created = await store.create_run(run, steps, events)
    if not created and stored.workflow != plan.name:
        raise RunConflict(
            f"run id {run_id!r} is already used by a run of workflow {stored.workflow!r}, "
            f"not {plan.name!r}; choose another run id"
        )
    if created:
        log.debug("run started", extra={"run_id": run_id, "workflow": plan.name})
        rt.work_ready.fire()
        if run.deadline is not None or any(
            s.status is StepStatus.WAITING and s.available_at for s in steps
        ):
            rt.timers_set.fire()
    return run_id, created


# -- reading --------------------------------------------------------------------------------------


async def get_run(rt: Runtime, run_id: str) -> Run:
    return Run.from_row(await rt.run_row(run_id))


MAX_PAGE = 10_000  # runs or steps one page of a list may hold


async def list_runs(rt: Runtime, filter: RunFilter, *, limit: int, cursor: str | None) -> RunPage:
    check_limit(limit)
    conditions = store_filter(filter)
    before = _parse_cursor(cursor)
    store = await rt.ready()
    rows = await store.list_runs(**conditions, limit=limit + 1, before=before)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = f"{rows[-1].created_at!r}|{rows[-1].id}" if more and rows else None
    return RunPage([Run.from_row(r) for r in rows], next_cursor)


async def count_runs(rt: Runtime, filter: RunFilter) -> int:
    conditions = store_filter(filter)
    store = await rt.ready()
    return await store.count_runs(**conditions)


def check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InputError(f"limit must be an integer between 1 and {MAX_PAGE}, got {limit!r}")
    return limit


def store_filter(f: RunFilter) -> dict[str, Any]:
    """A RunFilter checked, as the keyword arguments of the store's `list_runs`/`count_runs`."""
    if not isinstance(f, RunFilter):
        raise InputError(f"expected a plait.RunFilter, got {type(f).__name__}")
    status = f.status
    if status is not None:
        try:
            status = RunStatus(status)
        except ValueError:
            allowed = ", ".join(s.value for s in RunStatus)
            raise InputError(f"unknown run status {status!r}; use one of: {allowed}") from None
    if f.workflow is not None and not isinstance(f.workflow, str):
        raise InputError(f"workflow must be a string, got {type(f.workflow).__name__}")
    if f.text is not None and (not isinstance(f.text, str) or len(f.text) > 200):
        raise InputError(f"text must be a string of at most 200 characters, got {f.text!r}")
    created_from = epoch("created_from", f.created_from)
    created_to = epoch("created_to", f.created_to)
    return {
        "workflow": f.workflow,
        "status": status,
        "created_from": created_from,
        "created_to": created_to,
        "text": f.text or None,
    }


def epoch(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{name} must be a datetime or epoch seconds, got {value!r}")
    return float(value)


def _parse_cursor(cursor: str | None) -> tuple[float, str] | None:
    if cursor is None:
        return None
    try:
        created, run_id = cursor.split("|", 1)
        at = float(created)
        if not math.isfinite(at):
            raise ValueError(at)
        return at, run_id
    except (ValueError, AttributeError):
        raise InputError(
            f"invalid cursor {cursor!r}: pass the next_cursor of a previous page"
        ) from None


async def failed_steps(
    rt: Runtime, workflow: str | None, limit: int, cursor: str | None
) -> FailedStepPage:
    check_limit(limit)
    if workflow is not None and not isinstance(workflow, str):
        raise InputError(f"workflow must be a string, got {type(workflow).__name__}")
    before: tuple[float, str, str] | None = None
    if cursor is not None:
        try:
            at, run_id, name = cursor.split("|", 2)
            before = (float(at), run_id, name)
            if not math.isfinite(before[0]):
                raise ValueError(at)
        except (ValueError, AttributeError):
            raise InputError(
                f"invalid cursor {cursor!r}: pass the next_cursor of a previous page"
            ) from None
    store = await rt.ready()
    rows = await store.list_failed_steps(workflow=workflow, limit=limit + 1, before=before)
    more = len(rows) > limit
    rows = rows[:limit]
    workflows = {r.id: r.workflow for r in await store.get_runs({s.run_id for s in rows})}
    found = [
        FailedStep(
            run_id=s.run_id,
            workflow=workflows.get(s.run_id, "?"),
            step=s.name,
            error=StepError(s.error_code or "failed", s.error_message or ""),
            attempts=s.attempt,
            finished_at=datetime.fromtimestamp(s.finished_at, UTC) if s.finished_at else None,
            task=s.task,
        )
        for s in rows
    ]
    last = rows[-1] if rows else None
    next_cursor = (
        f"{last.finished_at or 0.0!r}|{last.run_id}|{last.name}" if more and last else None
    )
    return FailedStepPage(found, next_cursor)


async def steps(rt: Runtime, run_id: str) -> list[Step]:
    await rt.run_row(run_id)
    return [Step.from_row(r) for r in await rt.store.get_steps(run_id)]


async def events(rt: Runtime, run_id: str, after_seq: int, limit: int | None) -> list[Event]:
    if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
        raise InputError(f"after_seq must be an integer >= 0, got {after_seq!r}")
    await rt.run_row(run_id)
    return [Event.from_row(e) for e in await rt.store.get_events(run_id, after_seq, limit)]


async def inspect(rt: Runtime, run_id: str) -> Inspection:
    row = await rt.run_row(run_id)
    rows = await rt.store.get_steps(run_id)
    now = time.time()
    seen = inspect_run(row, rows, now)
    if any(r.status is StepStatus.READY for r in rows):  # held by flow control?
        queues = {q.name: q for q in await rt.store.list_queues()}
        seen.blockers.update(queue_blockers(rows, queues, now))
        live = await read_workers(rt.store, now)  # can any live worker take them?
        registry_blockers(row, rows, live, now, seen.blockers)
    return seen


# -- waiting --------------------------------------------------------------------------------------


async def wait(rt: Runtime, run_id: str, timeout: float | None) -> dict[str, Any]:
    """Wait for a run to end; its output, or RunFailed / RunCancelled / TimeoutError."""
    timeout = wait_limit(f"run {run_id!r}", "timeout", timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.005
    while True:
        seen = rt.runs_ended.generation
        row = await rt.run_row(run_id)
        if row.status.terminal:
            return await result_of(rt, row)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(
                f"run {run_id!r} did not end within {timeout}s (it is {row.status.value})"
            )
        # woken at once by runs ending in this process (or, on a push store, in any);
        # polling covers other processes
        await rt.runs_ended.wait(pause if left is None else min(pause, left), since=seen)
        pause = min(pause * 2, rt.idle_interval)


async def result_of(rt: Runtime, row: RunRow) -> dict[str, Any]:
    """An ended run's output, or the RunFailed / RunCancelled that says how it ended."""
    if row.status is RunStatus.COMPLETED:
        output = _codec.loads(row.output)
        return output if isinstance(output, dict) else {}
    if row.status is RunStatus.CANCELLED:
        raise RunCancelled(row.id, row.error)
    failures = {
        s.name: StepError(s.error_code or "failed", s.error_message or s.skip_reason or "")
        for s in await rt.store.get_steps(row.id)
        if s.status is StepStatus.FAILED
    }
    code = DEADLINE_EXCEEDED if (row.error or "").startswith(DEADLINE_EXCEEDED) else None
    raise RunFailed(row.id, failures, code=code, error=row.error)
