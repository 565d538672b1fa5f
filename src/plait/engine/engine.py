"""The Engine: the façade users call to register workflows, start runs, read them and serve them.

Every method is async (`*_async`); its blocking twin is derived by `_portal.blocking`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from .. import _codec
from .._errors import (
    InputError,
    PlaitError,
    RunCancelled,
    RunConflict,
    RunFailed,
    RunNotFound,
    StepError,
    WorkflowNotFound,
)
from .._portal import Broadcast, Portal, blocking
from ..core.cascade import new_run
from ..core.gates import DEADLINE_EXCEEDED
from ..core.queues import flow_of_run, queue_blockers
from ..core.rows import CommitResult, RunRow, RunStatus, StepStatus, WorkflowPlan
from ..stores import Store, open_store
from ..worker.registry import read_workers, registry_blockers
from ..workflow.definition import Workflow
from ..workflow.options import seconds
from .data import DataMethods
from .gates import GateMethods
from .history import ForkMethods
from .operator import ActionMethods
from .queues import QueueMethods
from .schedules import ScheduleMethods
from .views import Event, Inspection, Run, RunPage, Step, WorkflowInfo, inspect_run
from .watch import EventsWritten, WatchMethods
from .workers import WorkerMethods

log = logging.getLogger(__name__)

RUN_ID_RE = re.compile(r"^[A-Za-z0-9_.:@\-]{1,200}$")
DEFAULT_URL = "sqlite:///plait.db"


class RunHandle:
    """A started run: its id, and a way to wait for its result."""

    __slots__ = ("_engine", "id")

    def __init__(self, engine: Engine, run_id: str) -> None:
        self._engine = engine
        self.id = run_id

    async def result_async(self, timeout: float | None = None) -> dict[str, Any]:
        """The run's output {sink step: output}; raises RunFailed, RunCancelled or TimeoutError."""
        return await self._engine.wait_async(self.id, timeout=timeout)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        return self._engine._portal.call(self.result_async(timeout))

    async def get_async(self) -> Run:
        return await self._engine.get_run_async(self.id)

    def get(self) -> Run:
        return self._engine._portal.call(self.get_async())

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"


class Engine(
    ActionMethods,
    DataMethods,
    ForkMethods,
    GateMethods,
    QueueMethods,
    ScheduleMethods,
    WatchMethods,
    WorkerMethods,
):
    """plait's entry point. `Engine("sqlite:///plait.db")` (default), `"memory://"`, …

    `lease`: seconds a claimed step is held before another worker may take it over (heartbeats
    renew it). `max_recoveries`: lease expiries after which a step fails with `lease_expired`.
    `poll_interval`: how often idle workers and `result()` waiters look at the store for work
    done by other processes; on a store that pushes notifications (PostgreSQL) they are woken
    instead and look only every `sweep_interval`, a safety net for a missed notification. On
    SQLite a worker's look reads a change counter, and it claims only when another process has
    committed (or, as a safety net, every `sweep_interval`): see `_idle_wait.py`.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        lease: float = 30.0,
        max_recoveries: int = 10,
        poll_interval: float = 0.25,
        sweep_interval: float = 5.0,
    ) -> None:
        if not isinstance(lease, int | float) or lease <= 0:
            raise PlaitError(f"lease must be a positive number of seconds, got {lease!r}")
        if not isinstance(max_recoveries, int) or max_recoveries < 0:
            raise PlaitError(f"max_recoveries must be an integer >= 0, got {max_recoveries!r}")
        self.url = url
        self.lease = float(lease)
        self.max_recoveries = max_recoveries
        for name, value in (("poll_interval", poll_interval), ("sweep_interval", sweep_interval)):
            if not isinstance(value, int | float) or value <= 0:
                raise PlaitError(f"{name} must be a positive number of seconds, got {value!r}")
        self.poll_interval = float(poll_interval)
        self.sweep_interval = float(sweep_interval)
        self._push_live = False
        self.store: Store = open_store(self._artifacts_configured(url))
        self._portal = Portal()
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
        self._registry: dict[str, Workflow] = {}  # fingerprint → workflow
        self._latest: dict[str, Workflow] = {}  # name → last registered version
        self.work_ready = Broadcast()  # steps became ready: wake local workers
        self.runs_ended = Broadcast()  # runs ended: wake local result() waiters
        self.runs_cancelled = Broadcast()  # runs cancelled: workers stop their running steps
        self.timers_set = Broadcast()  # a deadline or an expiry was set: workers look again
        self.events_written = EventsWritten()  # events were committed: wake watch() iterators
        self._workers: set[Any] = set()  # workers running in this process, for stop_workers()
        self.workers_ended = Broadcast()  # a worker of this engine has stopped
        self.store.subscribe(
            ready=self.work_ready.fire,
            ended=self.runs_ended.fire,
            cancelled=self.runs_cancelled.fire,
            live=self._set_push_live,
        )

    def _set_push_live(self, live: bool) -> None:
        self._push_live = live

    @property
    def push_live(self) -> bool:
        """Does the store push notifications of other processes' work right now?"""
        return self._push_live

    @property
    def idle_interval(self) -> float:
        """How long an idle worker or waiter goes without looking at the store."""
        return self.sweep_interval if self._push_live else self.poll_interval

    # -- lifecycle ------------------------------------------------------------------------------

    async def _ready(self) -> Store:
        if not self._opened:
            if self._open_lock is None:
                self._open_lock = asyncio.Lock()
            async with self._open_lock:
                if not self._opened:
                    await self.store.open()
                    self._opened = True
        return self.store

    async def close_async(self) -> None:
        """Stop this engine's workers (gracefully: they finish or release their steps), then
        close the store. A worker still running would otherwise wait forever on a closed store."""
        while self._workers:
            seen = self.workers_ended.generation
            for worker in list(self._workers):
                worker.stop_threadsafe()
            await self.workers_ended.wait(1.0, since=seen)
        if self._opened:
            self._opened = False
            await self.store.close()

    def close(self) -> None:
        try:
            self._portal.call(self.close_async())
        finally:
            self._portal.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Engine:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_async()

    # -- definitions ----------------------------------------------------------------------------

    async def register_async(self, workflow: Workflow) -> WorkflowInfo:
        """Validate a workflow and record its version in the store (idempotent)."""
        if not isinstance(workflow, Workflow):
            raise PlaitError(f"expected a plait.Workflow, got {type(workflow).__name__}")
        plan = workflow.plan()  # raises DefinitionError
        if plan.fingerprint not in self._registry:
            store = await self._ready()
            stamped = WorkflowPlan(
                plan.name, plan.version, plan.fingerprint, plan.steps, time.time()
            )
            await store.save_workflow(stamped)
            self._registry[plan.fingerprint] = workflow
            self._latest[plan.name] = workflow
        return WorkflowInfo.from_plan(plan)

    register = blocking(register_async)

    async def workflows_async(self) -> list[WorkflowInfo]:
        """Every workflow version recorded in the store."""
        store = await self._ready()
        return [WorkflowInfo.from_plan(p) for p in await store.list_workflows()]

    workflows = blocking(workflows_async)

    def registered(self) -> list[Workflow]:
        """Workflows registered with this Engine object (the ones its workers can run)."""
        return list(self._registry.values())

    # -- starting -------------------------------------------------------------------------------

    async def start_async(
        self,
        workflow: Workflow | str,
        input: Any = None,
        *,
        run_id: str | None = None,
        deadline: float | timedelta | None = None,
        priority: int = 0,
    ) -> RunHandle:
        """Start a run. An existing `run_id` of the same workflow returns that run (idempotent).
        `deadline` (seconds or a timedelta from now): a run unfinished by then fails with
        `deadline_exceeded`, its unfinished steps cancelled. `priority` is added to each of its
        steps' own: within a queue, higher first."""
        handle, _ = await self._start_run(
            workflow, input, run_id=run_id, deadline=deadline, priority=priority
        )
        return handle

    start = blocking(start_async)

    async def _start_run(
        self,
        workflow: Workflow | str,
        input: Any,
        *,
        run_id: str | None,
        deadline: float | timedelta | None = None,
        priority: int = 0,
    ) -> tuple[RunHandle, bool]:
        """`start_async`, and whether this call created the run (False: its id was started
        before, by this process or another, such as a second scheduler of a tick)."""
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InputError(f"start: priority must be an integer, got {priority!r}")
        if run_id is not None and (not isinstance(run_id, str) or not RUN_ID_RE.match(run_id)):
            raise InputError(
                f"invalid run id {run_id!r}: use 1-200 letters, digits or any of _ . : @ -"
            )
        within = seconds("start", "deadline", deadline, error=InputError)
        plan, value = await self._plan_and_input(workflow, input)
        run_id = run_id or _new_run_id()
        try:
            input_json = _codec.dumps(value)
        except _codec.EncodeError as exc:
            raise InputError(f"run input of {plan.name!r} is not JSON: {exc}") from None
        now = time.time()
        run, steps, events = new_run(plan, run_id, input_json, now)
        flow_of_run(self._latest.get(plan.name), plan, steps, value, priority)
        if within is not None:
            run.deadline = now + within
        store = await self._ready()
        stored, created = await store.create_run(run, steps, events)
        if not created and stored.workflow != plan.name:
            raise RunConflict(
                f"run id {run_id!r} is already used by a run of workflow {stored.workflow!r}, "
                f"not {plan.name!r}; choose another run id"
            )
        if created:
            log.debug("run started", extra={"run_id": run_id, "workflow": plan.name})
            self.work_ready.fire()
            if run.deadline is not None or any(
                s.status is StepStatus.WAITING and s.available_at for s in steps
            ):
                self.timers_set.fire()
        return RunHandle(self, run_id), created

    async def _plan_and_input(
        self, workflow: Workflow | str, value: Any
    ) -> tuple[WorkflowPlan, Any]:
        if isinstance(workflow, Workflow):
            await self.register_async(workflow)
            return workflow.plan(), workflow.validate_input(value)
        if not isinstance(workflow, str):
            raise WorkflowNotFound(
                f"expected a plait.Workflow or a workflow name, got {workflow!r}"
            )
        local = self._latest.get(workflow)
        if local is not None:
            return local.plan(), local.validate_input(value)
        store = await self._ready()
        plan = await store.get_workflow(workflow)
        if plan is None:
            raise WorkflowNotFound(
                f"unknown workflow {workflow!r}: no such workflow is registered in {self.url} "
                "(register it with engine.register(wf) or start it with the Workflow object)"
            )
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise InputError(
                f"run input of {workflow!r} must be a JSON object, got {type(value).__name__}"
            )
        for step in plan.steps:
            for field, required in step.inputs:
                if required and field not in value:
                    raise InputError(
                        f"run input of {workflow!r} misses field {field!r}, required by step {step.name!r}"
                    )
        return plan, value

    # -- reading --------------------------------------------------------------------------------

    async def _run_row(self, run_id: str) -> RunRow:
        store = await self._ready()
        row = await store.get_run(run_id)
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r} in {self.url}")
        return row

    async def get_run_async(self, run_id: str) -> Run:
        return Run.from_row(await self._run_row(run_id))

    get_run = blocking(get_run_async)

    async def list_runs_async(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """Runs newest first, one page at a time."""
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InputError(f"limit must be an integer between 1 and 10000, got {limit!r}")
        if status is not None:
            try:
                status = RunStatus(status)
            except ValueError:
                allowed = ", ".join(s.value for s in RunStatus)
                raise InputError(f"unknown run status {status!r}; use one of: {allowed}") from None
        before = _parse_cursor(cursor)
        store = await self._ready()
        rows = await store.list_runs(
            workflow=workflow, status=status, limit=limit + 1, before=before
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = f"{rows[-1].created_at!r}|{rows[-1].id}" if more and rows else None
        return RunPage([Run.from_row(r) for r in rows], next_cursor)

    list_runs = blocking(list_runs_async)

    async def steps_async(self, run_id: str) -> list[Step]:
        """The run's steps in definition order."""
        await self._run_row(run_id)
        return [Step.from_row(r) for r in await self.store.get_steps(run_id)]

    steps = blocking(steps_async)

    async def events_async(
        self, run_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        """The run's event log after `after_seq`, in order."""
        if not isinstance(after_seq, int) or after_seq < 0:
            raise InputError(f"after_seq must be an integer >= 0, got {after_seq!r}")
        await self._run_row(run_id)
        return [Event.from_row(e) for e in await self.store.get_events(run_id, after_seq, limit)]

    events = blocking(events_async)

    async def inspect_async(self, run_id: str) -> Inspection:
        """Counts per status, per-step queue and run durations, and what each waiting step waits on."""
        row = await self._run_row(run_id)
        rows = await self.store.get_steps(run_id)
        now = time.time()
        seen = inspect_run(row, rows, now)
        if any(r.status is StepStatus.READY for r in rows):  # held by flow control?
            queues = {q.name: q for q in await self.store.list_queues()}
            seen.blockers.update(queue_blockers(rows, queues, now))
            live = await read_workers(self.store, now)  # can any live worker take them?
            registry_blockers(row, rows, live, now, seen.blockers)
        return seen

    inspect = blocking(inspect_async)

    async def wait_async(self, run_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait for a run to end; its output, or RunFailed / RunCancelled / TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            seen = self.runs_ended.generation
            row = await self._run_row(run_id)
            if row.status.terminal:
                return await self._result_of(row)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(
                    f"run {run_id!r} did not end within {timeout}s (it is {row.status.value})"
                )
            # woken at once by runs ending in this process (or, on a push store, in any);
            # polling covers other processes
            await self.runs_ended.wait(pause if left is None else min(pause, left), since=seen)
            pause = min(pause * 2, self.idle_interval)

    async def _result_of(self, row: RunRow) -> dict[str, Any]:
        if row.status is RunStatus.COMPLETED:
            output = _codec.loads(row.output)
            return output if isinstance(output, dict) else {}
        if row.status is RunStatus.CANCELLED:
            raise RunCancelled(row.id, row.error)
        failures = {
            s.name: StepError(s.error_code or "failed", s.error_message or s.skip_reason or "")
            for s in await self.store.get_steps(row.id)
            if s.status is StepStatus.FAILED
        }
        code = DEADLINE_EXCEEDED if (row.error or "").startswith(DEADLINE_EXCEEDED) else None
        raise RunFailed(row.id, failures, code=code, error=row.error)

    # -- serving --------------------------------------------------------------------------------

    async def run_worker_async(
        self,
        *,
        concurrency: int = 8,
        until: RunHandle | str | Iterable[RunHandle | str] | None = None,
        timeout: float | None = None,
        workflows: Sequence[Workflow] | None = None,
        grace: float = 10.0,
        handle_signals: bool = False,
        queues: Iterable[str] | None = None,
        starvation_after: float = 30.0,
        labels: Iterable[str] = (),
    ) -> None:
        """Serve registered workflows. With `until`, return once those runs have ended.
        `queues`: serve only steps of these queues (default: every queue). A ready step that
        has waited `starvation_after` seconds is claimed ahead of higher priorities. `labels`:
        this worker's, for steps with `target=`."""
        from ..worker.worker import Worker

        for wf in workflows or ():
            await self.register_async(wf)
        await self._ready()
        worker = Worker(
            self,
            list(workflows) if workflows else self.registered(),
            concurrency=concurrency,
            grace=grace,
            queues=queues,
            starvation_after=starvation_after,
            labels=labels,
        )
        await worker.run(until=_run_ids(until), timeout=timeout, handle_signals=handle_signals)

    def run_worker(
        self,
        *,
        concurrency: int = 8,
        until: RunHandle | str | Iterable[RunHandle | str] | None = None,
        timeout: float | None = None,
        workflows: Sequence[Workflow] | None = None,
        grace: float = 10.0,
        queues: Iterable[str] | None = None,
        starvation_after: float = 30.0,
        labels: Iterable[str] = (),
    ) -> None:
        """Blocking worker. SIGTERM or Ctrl-C stops it gracefully: no new claims, in-flight steps
        get `grace` seconds, the rest are released for other workers at once. `queues`,
        `starvation_after` and `labels` as for `run_worker_async`."""
        from ..worker.worker import run_blocking

        run_blocking(
            self,
            concurrency=concurrency,
            until=until,
            timeout=timeout,
            workflows=workflows,
            grace=grace,
            queues=queues,
            starvation_after=starvation_after,
            labels=labels,
        )

    def stop_workers(self) -> None:
        """Ask every worker of this Engine to stop gracefully (thread-safe; returns at once)."""
        for worker in list(self._workers):
            worker.stop_threadsafe()

    # -- notifications from workers in this process ---------------------------------------------

    def _committed(self, result: CommitResult) -> None:
        self.events_written.fire()
        if result.readied or result.slot_freed:  # freed: a slot that held back ready work
            self.work_ready.fire()
        if result.ended_runs:
            self.runs_ended.fire()
        if result.cancelled_runs:
            self.runs_cancelled.fire()
        if result.timers_changed:
            self.timers_set.fire()


def _new_run_id() -> str:
    # time-ordered, so ids sort roughly by start; random enough never to collide
    return f"{int(time.time() * 1000):012x}-{uuid.uuid4().hex[:12]}"


def _parse_cursor(cursor: str | None) -> tuple[float, str] | None:
    if cursor is None:
        return None
    try:
        created, run_id = cursor.split("|", 1)
        return float(created), run_id
    except (ValueError, AttributeError):
        raise InputError(
            f"invalid cursor {cursor!r}: pass the next_cursor of a previous page"
        ) from None


def _run_ids(until: RunHandle | str | Iterable[RunHandle | str] | None) -> set[str] | None:
    if until is None:
        return None
    if isinstance(until, RunHandle | str):
        until = [until]
    return {u.id if isinstance(u, RunHandle) else u for u in until}
