"""Runs: registering workflows, starting runs, reading them, and waiting for them to end.

Functions of a `Runtime`, called by the Engine facade (and by the scheduler, which starts runs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import operator
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from .. import _codec
from .._errors import (
    InputError,
    RunConflict,
    WorkflowNotFound,
)
from .._runtime import Runtime
from ..core import identity
from ..core.cascade import new_run
from ..core.policy import Policy, police, started_with
from ..core.queues import flow_of_run, queue_blockers
from ..core.rows import EventRow, RunRow, RunStatus, StepRow, StepStatus, WorkflowPlan
from ..core.topology import registry_blockers
from ..stores import Store
from ..stores.protocol import NewRun
from ..worker.registry import read_workers
from ..workflow.definition import Workflow
from ..workflow.options import approval_policy as approval_policy_of
from ..workflow.options import seconds
from .traces import check_trace_context
from .views import (
    Event,
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
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise InputError(
            f"invalid run id {run_id!r}: use 1-200 ASCII letters, digits or any of _ . : @ -"
        )
    return run_id


def new_run_id() -> str:
    # time-ordered, so ids sort roughly by start; random enough never to collide
    return f"{int(time.time() * 1000):012x}-{secrets.token_hex(6)}"


# -- definitions ----------------------------------------------------------------------------------


async def register(rt: Runtime, workflow: Workflow) -> WorkflowInfo:
    return WorkflowInfo.from_plan(await rt.register(workflow))


async def plan_and_input(
    rt: Runtime, workflow: Workflow | str, value: Any
) -> tuple[WorkflowPlan, Any]:
    """The plan a run of `workflow` (an object, or a name registered here or in the store) is
    started on, and its input validated against it."""
    plan, validate = await plan_and_validator(rt, workflow)
    return plan, validate(value)


async def plan_and_validator(
    rt: Runtime, workflow: Workflow | str
) -> tuple[WorkflowPlan, Callable[[Any], Any]]:
    """The plan a run of `workflow` (an object, or a name registered here or in the store) is
    started on, and what validates an input against it (InputError), returning the input the
    run gets."""
    if isinstance(workflow, Workflow):
        plan = await rt.register(workflow)
        return plan, workflow.validate_input
    if not isinstance(workflow, str):
        raise WorkflowNotFound(f"expected a plait.Workflow or a workflow name, got {workflow!r}")
    local = rt.workflows.latest(workflow)
    if local is not None:
        return local.plan(), local.validate_input
    store = await rt.ready()
    stored = await store.get_workflow(workflow)
    if stored is None:
        raise WorkflowNotFound(
            f"unknown workflow {workflow!r}: no such workflow is registered in {rt.url} "
            "(register it with engine.register(wf) or start it with the Workflow object)"
        )
    return stored, functools.partial(check_stored_input, stored)


def check_stored_input(stored: WorkflowPlan, value: Any) -> Any:
    """A start by the name of a workflow known only to the store: the required fields."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InputError(
            f"run input of {stored.name!r} must be a JSON object, got {type(value).__name__}"
        )
    for step in stored.steps:
        for field, required in step.inputs:
            if required and field not in value:
                raise InputError(
                    f"run input of {stored.name!r} misses field {field!r}, required by step "
                    f"{step.name!r}"
                )
    return value


def encode_input(plan: WorkflowPlan, value: Any) -> bytes:
    try:
        return _codec.dumps(value)
    except _codec.EncodeError as exc:
        raise InputError(f"run input of {plan.name!r} is not JSON: {exc}") from None


# -- starting -------------------------------------------------------------------------------------


def start_options(what: str, priority: int, deadline: float | timedelta | None) -> float | None:
    """Check a start's options; the seconds of its deadline from now (None: none)."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InputError(f"{what}: priority must be an integer, got {priority!r}")
    return seconds(what, "deadline", deadline, error=InputError)


IF_EXISTS = ("check", "return")


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """A start's name, labels and metadata (`core.identity`), checked, and what to do when its
    run id exists: "check" (the default: that run, if its workflow and input are the same,
    else RunConflict) or "return" (that run, whatever its input)."""

    name: str | None = None
    labels: dict[str, str] | None = None
    metadata: bytes | None = None
    if_exists: str = "check"

    @classmethod
    def of(
        cls, what: str, name: Any, labels: Any, metadata: Any, if_exists: Any = "check"
    ) -> Identity:
        if if_exists not in IF_EXISTS:
            raise InputError(
                f"{what}: if_exists must be one of {', '.join(map(repr, IF_EXISTS))}, got "
                f"{if_exists!r}"
            )
        return cls(
            identity.check_name(what, name),
            identity.check_labels(what, labels),
            identity.check_metadata(what, metadata),
            if_exists,
        )

    def apply(self, run: RunRow) -> None:
        run.name, run.labels, run.metadata = self.name, self.labels, self.metadata

    def existing(self, stored: RunRow, wanted: RunRow) -> None:
        """A start found its run id taken by `stored`: RunConflict unless it is this run."""
        if stored.workflow != wanted.workflow:
            raise RunConflict.taken(wanted.id, stored.workflow, wanted.workflow)
        if self.if_exists == "check" and not same_json(stored.input, wanted.input):
            raise RunConflict.input_differs(wanted.id, stored.workflow)


def same_json(a: bytes, b: bytes) -> bool:
    """Whether two JSON payloads hold the same value (whatever their keys' order)."""
    return a == b or _codec.loads(a or b"null") == _codec.loads(b or b"null")


def run_policy(what: str, value: Any) -> Policy | None:
    """A start's `approval_policy=`, checked: None (the workflow's applies), a mode ("auto",
    "ask", "deny") or a plait.ApprovalPolicy, which replaces the workflow's for the run."""
    checked = approval_policy_of(what, value, error=InputError)
    return None if checked is None else checked.rule("run")


def policed(workflow: Workflow | None, plan: WorkflowPlan, policy: Policy | None) -> WorkflowPlan:
    """The plan a run is made of: `plan`, with the run's approval policy (if any) resolved into
    its steps' options (`core.policy.police`). That needs the definition (a workflow file's
    policy matches actions, which the stored plan does not name)."""
    if policy is None:
        return plan
    if workflow is None or workflow.fingerprint != plan.fingerprint:
        raise InputError(
            f"workflow {plan.name!r}: a run's approval_policy is resolved from the workflow's "
            "definition: start it with the plait.Workflow (or a workflow file), in a process "
            "that defines it"
        )
    return police(plan, policy, workflow.policy_subjects())


def run_rows(
    rt: Runtime,
    plan: WorkflowPlan,
    run_id: str,
    value: Any,
    input_json: bytes,
    now: float,
    within: float | None,
    priority: int,
    who: Identity | None = None,
    policy: Policy | None = None,
) -> NewRun:
    """The rows of a new run of `plan`, ready for the store."""
    local = rt.workflows.latest(plan.name)
    run, steps, events = new_run(policed(local, plan, policy), run_id, input_json, now)
    if policy is not None:  # its first event says so: `runs show`, forks, the runs it calls
        events = started_with(events, policy)
    flow_of_run(local, plan, steps, value, priority)
    if within is not None:
        run.deadline = now + within
    if who is not None:
        who.apply(run)
    return run, steps, events


_RUN_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(RunRow)))
_STEP_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(StepRow)))


def rows_like(template: NewRun, run_id: str, input_json: bytes) -> NewRun:
    """The rows of a new run like `template` (what `new_run` made for another run of the same
    plan, at the same moment), with its own id and input: a copy, cheaper than `new_run` when
    one plan starts many runs."""
    run, steps, events = template
    copy = RunRow(*_RUN_FIELDS(run))
    copy.id, copy.input = run_id, input_json
    copied = []
    for step in steps:
        row = StepRow(*_STEP_FIELDS(step))
        row.run_id = run_id
        copied.append(row)
    logged = [EventRow(run_id, e.seq, e.type, e.step, dict(e.payload), e.ts) for e in events]
    return copy, copied, logged


def _started(rt: Runtime, runs: Sequence[NewRun]) -> None:
    """Wake what runs created in this process concern: workers, and timers if they set any."""
    if not runs:
        return
    rt.work_ready.fire()
    if any(
        run.deadline is not None
        or any(s.status is StepStatus.WAITING and s.available_at for s in steps)
        for run, steps, _ in runs
    ):
        rt.timers_set.fire()


async def start(
    rt: Runtime,
    workflow: Workflow | str,
    input: Any,
    *,
    run_id: str | None,
    deadline: float | timedelta | None = None,
    priority: int = 0,
    trace_context: Mapping[str, str] | None = None,
    who: Identity | None = None,
    approval_policy: Any = None,
) -> tuple[str, bool]:
    """Start a run: its id, and whether this call created it (False: its id was started before,
    by this process or another, such as a second scheduler of a tick: `who.if_exists` says
    whether that run must have the same input). Starts made at once share a commit
    (`Runtime.starts`); this returns once this run's is made."""
    within = start_options("start", priority, deadline)
    who = who or Identity()
    if run_id is not None:
        check_run_id(run_id)
    policy = run_policy("start", approval_policy)
    plan, value = await plan_and_input(rt, workflow, input)
    run_id = run_id or new_run_id()
    input_json = encode_input(plan, value)
    run, steps, events = run_rows(
        rt, plan, run_id, value, input_json, rt.clock.time(), within, priority, who, policy
    )
    if trace_context is not None:  # kept in the run's first event (`engine.traces`)
        carried = check_trace_context(dict(trace_context))
        first = events[0]
        events = [replace(first, payload={**first.payload, "trace_context": carried}), *events[1:]]
    new = (run, steps, events)
    stored, created = await rt.starts.create_run(*new)
    if not created:
        who.existing(stored, run)
    if created:
        log.debug("run started", extra={"run_id": run_id, "workflow": plan.name})
        _started(rt, [new])
    return run_id, created


# A start_many transaction takes this many runs at most, and fewer when they have many steps.
CHUNK_RUNS = 1_000
CHUNK_STEPS = 20_000
READ_IDS = 1_000  # run ids start_many reads in one query, to refuse taken ones before writing


async def start_many(
    rt: Runtime,
    workflow: Workflow | str,
    inputs: Iterable[Any],
    *,
    run_ids: Iterable[str] | None,
    deadline: float | timedelta | None = None,
    priority: int = 0,
    progress: Callable[[int], None] | None = None,
    who: Identity | None = None,
    approval_policy: Any = None,
) -> list[tuple[str, bool]]:
    """Start a run of `workflow` for each input, in transactions of up to CHUNK_RUNS runs;
    their ids in order, each with whether this call created it. Every input is validated
    (and every run id checked) before anything is written. An id that exists as a run of the
    same workflow (and, unless `who.if_exists` is "return", the same input) is that run; of
    another workflow (or input), RunConflict, and its chunk is not written (the chunks before
    it are). `progress` is told after each chunk how many of the runs exist so far."""
    within = start_options("start_many", priority, deadline)
    policy = run_policy("start_many", approval_policy)
    who = who or Identity()
    if progress is not None and not callable(progress):
        raise InputError(f"start_many: progress must be a callable or None, got {progress!r}")
    if isinstance(inputs, str | bytes | Mapping) or not isinstance(inputs, Iterable):
        raise InputError(
            "start_many: inputs must be an iterable of run inputs (a list of dicts, say), "
            f"got {type(inputs).__name__}"
        )
    values = list(inputs)
    ids = _run_ids_for(values, run_ids)
    plan, validate = await plan_and_validator(rt, workflow)
    encoded: list[tuple[Any, bytes]] = []
    for i, value in enumerate(values):
        try:
            checked = validate(value)
            encoded.append((checked, encode_input(plan, checked)))
        except InputError as exc:
            raise _at(InputError(f"inputs[{i}]: {exc}"), i) from None
    store = await rt.ready()
    if run_ids is not None:  # ids taken by runs of another workflow: refused before any write
        await _check_taken(store, plan.name, ids, encoded, who)
    latest = rt.workflows.latest(plan.name)
    made_of = policed(latest, plan, policy)

    def chunk_from(first: int) -> list[NewRun]:
        """The rows of the runs of the next transaction, from inputs[first] on."""
        now = rt.clock.time()
        template = new_run(made_of, "", b"", now)
        if policy is not None:
            template = (template[0], template[1], started_with(template[2], policy))
        per_run = max(1, len(template[1]))
        size = min(CHUNK_RUNS, max(1, CHUNK_STEPS // per_run), len(values) - first)
        chunk: list[NewRun] = []
        for i in range(first, first + size):
            value, input_json = encoded[i]
            new = rows_like(template, ids[i], input_json)
            flow_of_run(latest, plan, new[1], value, priority)
            if within is not None:
                new[0].deadline = now + within
            who.apply(new[0])
            chunk.append(new)
        return chunk

    # While a chunk is written (on the store's thread or server), the next one is made here;
    # it is sent only once the one before has committed.
    done = 0
    created: list[bool] = []
    chunk = chunk_from(0) if values else []
    while chunk:
        writing = asyncio.ensure_future(store.create_runs(chunk))
        following = done + len(chunk)
        upcoming = chunk_from(following) if following < len(values) else []
        try:
            results = await writing
        except RunConflict as exc:
            raise _conflict_in(exc, chunk, done) from None
        _started(rt, [new for new, (_, made) in zip(chunk, results, strict=True) if made])
        for k, (new, (stored, made)) in enumerate(zip(chunk, results, strict=True)):
            if not made:  # checked before writing; this one was started meanwhile
                try:
                    who.existing(stored, new[0])
                except RunConflict as exc:
                    message = (
                        f"inputs[{done + k}]: {exc}; the runs of inputs[0] to "
                        f"inputs[{following - 1}] were started (but this one), none after"
                    )
                    raise _at(RunConflict(message), done + k, new[0].id) from None
        created.extend(made for _, made in results)
        done, chunk = following, upcoming
        if progress is not None:
            progress(done)
    log.debug("runs started", extra={"workflow": plan.name, "runs": len(values)})
    return list(zip(ids, created, strict=True))


async def _check_taken(
    store: Store, workflow: str, ids: list[str], encoded: list[tuple[Any, bytes]], who: Identity
) -> None:
    """RunConflict for the first of `ids` that names a run of another workflow (or, unless
    `who.if_exists` is "return", of another input than the one it would get)."""
    first = {run_id: i for i, run_id in reversed(list(enumerate(ids)))}
    taken: dict[int, RunConflict] = {}
    for i, run_id in enumerate(ids):  # an id twice: the second is the first's run
        j = first[run_id]
        if j != i and who.if_exists == "check" and not same_json(encoded[j][1], encoded[i][1]):
            taken[i] = RunConflict(
                f"run id {run_id!r} is also inputs[{j}]'s, with a different input; choose "
                "another run id, or pass if_exists='return' to start the first only"
            )
    for at in range(0, len(ids), READ_IDS):
        for row in await store.get_runs(ids[at : at + READ_IDS]):
            i = first[row.id]
            wanted = dataclasses.replace(row, workflow=workflow, input=encoded[i][1])
            try:
                who.existing(row, wanted)
            except RunConflict as exc:
                taken[i] = exc
    if taken:
        i = min(taken)
        raise _at(RunConflict(f"inputs[{i}]: {taken[i]}; no run was started"), i, ids[i])


def _conflict_in(exc: RunConflict, chunk: list[NewRun], done: int) -> RunConflict:
    """start_many's RunConflict from a chunk (a run of that id was created meanwhile, after
    the ids were checked): which input, and which runs were started before it."""
    at = next((k for k, (run, _, _) in enumerate(chunk) if run.id == exc.run_id), 0)
    started = (
        f"the runs of inputs[0] to inputs[{done - 1}] were started, none after"
        if done
        else "no run was started"
    )
    return _at(RunConflict(f"inputs[{done + at}]: {exc}; {started}"), done + at, exc.run_id)


E = TypeVar("E", InputError, RunConflict)


def _at(error: E, index: int, run_id: str | None = None) -> E:
    """`error`, saying which of start_many's inputs it is about."""
    error.index = index
    if isinstance(error, RunConflict):
        error.run_id = run_id
    return error


def _run_ids_for(values: list[Any], run_ids: Iterable[str] | None) -> list[str]:
    """The run ids of start_many: checked if given, one per input; made otherwise."""
    if run_ids is None:
        return [new_run_id() for _ in values]
    if isinstance(run_ids, str) or not isinstance(run_ids, Iterable):
        raise InputError(
            f"start_many: run_ids must be a list of run ids (one per input) or None, got "
            f"{type(run_ids).__name__}"
        )
    ids = list(run_ids)
    if len(ids) != len(values):
        raise InputError(
            f"start_many: {len(ids)} run ids for {len(values)} inputs; give one id per input"
        )
    for i, run_id in enumerate(ids):
        try:
            check_run_id(run_id)
        except InputError as exc:
            raise _at(InputError(f"run_ids[{i}]: {exc}"), i) from None
    return ids


# -- reading --------------------------------------------------------------------------------------


async def get_run(rt: Runtime, run_id: str, excerpt: int | None = None) -> Run:
    check_excerpt(excerpt)
    return Run.from_row(await rt.run_row(run_id, excerpt))


MAX_PAGE = 10_000  # runs or steps one page of a list may hold


def check_excerpt(excerpt: int | None) -> None:
    if excerpt is not None and (
        isinstance(excerpt, bool) or not isinstance(excerpt, int) or excerpt < 0
    ):
        raise InputError(f"excerpt must be a number of bytes >= 0 or None, got {excerpt!r}")


async def list_runs(
    rt: Runtime,
    filter: RunFilter,
    *,
    limit: int,
    cursor: str | None,
    excerpt: int | None = None,
) -> RunPage:
    check_limit(limit)
    check_excerpt(excerpt)
    conditions = store_filter(filter)
    before = _parse_cursor(cursor)
    store = await rt.ready()
    if excerpt is None:  # the call every store (and wrapper) has always taken
        rows = await store.list_runs(**conditions, limit=limit + 1, before=before)
    else:
        rows = await store.list_runs(**conditions, limit=limit + 1, before=before, excerpt=excerpt)
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
    conditions: dict[str, Any] = {
        "workflow": f.workflow,
        "status": status,
        "created_from": created_from,
        "created_to": created_to,
        "text": f.text or None,
    }
    labels = identity.check_labels("list_runs", f.labels)
    if labels:  # only then: a store written before labels never sees the argument
        conditions["labels"] = labels
    return conditions


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


async def steps(rt: Runtime, run_id: str, excerpt: int | None = None) -> list[Step]:
    check_excerpt(excerpt)
    await rt.run_row(run_id, excerpt=0)  # does it exist? (its payloads are not read)
    rows = await (
        rt.store.get_steps(run_id)
        if excerpt is None
        else rt.store.get_steps(run_id, excerpt=excerpt)
    )
    return [Step.from_row(r) for r in rows]


async def events(rt: Runtime, run_id: str, after_seq: int, limit: int | None) -> list[Event]:
    if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
        raise InputError(f"after_seq must be an integer >= 0, got {after_seq!r}")
    await rt.run_row(run_id, excerpt=0)  # does it exist? (its payloads are not read)
    return [Event.from_row(e) for e in await rt.store.get_events(run_id, after_seq, limit)]


async def inspect(rt: Runtime, run_id: str, excerpt: int | None = None) -> Inspection:
    check_excerpt(excerpt)
    row = await rt.run_row(run_id, excerpt)
    rows = await (
        rt.store.get_steps(run_id)
        if excerpt is None
        else rt.store.get_steps(run_id, excerpt=excerpt)
    )
    now = rt.clock.time()
    seen = inspect_run(row, rows, now)
    if any(r.status is StepStatus.READY for r in rows):  # held by flow control?
        queues = {q.name: q for q in await rt.store.list_queues()}
        seen.blockers.update(queue_blockers(rows, queues, now))
        live = await read_workers(rt.store, now)  # can any live worker take them?
        registry_blockers(row, rows, live, now, seen.blockers)
    return seen
