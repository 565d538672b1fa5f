"""The Engine: the facade users call to register workflows, start runs, read them, act on them
and serve them. This file is the whole public surface of an Engine, in one place.

Every method is async (`*_async`); its blocking twin is derived by `_portal.blocking`. Each
delegates to a function of the operation module that owns it (`runs`, `operator`, `history`,
`data`, `watch`, `queues`, `schedules`, `workers`), which takes the Engine's `Runtime`: the
store, settings and wake-ups it shares with its workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from .._clock import REAL, Clock
from .._errors import InputError, StoreError
from .._portal import Direct, blocking
from .._runtime import Observer, Runtime
from ..core.blobs import ARTIFACT_GRACE, DEFAULT_GRACE, BlobStats
from ..core.rate import Rate
from ..core.rows import RunStatus
from ..core.topology import Topology, WorkerInfo
from ..core.versions import PlanDiff
from ..data.artifacts import Artifact, ArtifactStorage
from ..data.records import Records
from ..data.states import States
from ..stores import DEFAULT_URL, Store
from ..workflow.definition import Workflow
from ..workflow.options import ApprovalPolicy
from . import (
    bulk,
    data,
    doctor,
    failures,
    history,
    operator,
    queues,
    runs,
    schedules,
    step_wait,
    traces,
    versions,
    waiting,
    watch,
    workers,
)
from .doctor import DoctorCheck
from .failures import MAX_RETRY
from .history import OnBreak
from .replay import Replay, RunReplay
from .schedules import Schedule
from .versions import Upgrade
from .views import (
    BulkResult,
    Event,
    FailedStepPage,
    FailureFilter,
    FailureRetry,
    Inspection,
    Queue,
    Run,
    RunFilter,
    RunPage,
    Step,
    Waiting,
    WorkflowInfo,
)
from .watch import Watch


async def _flatten(batches: AsyncGenerator[list[Run], None]) -> AsyncIterator[Run]:
    async with contextlib.aclosing(batches):  # closed with this one: its waiter goes
        async for batch in batches:
            for run in batch:
                yield run


class RunHandle:
    """A started run: its id, and a way to wait for its result. `created`: whether the call
    that made this handle created the run (False: a run of that id existed, and is this one)."""

    __slots__ = ("_engine", "created", "id")

    def __init__(self, engine: Engine, run_id: str, created: bool = True) -> None:
        self._engine = engine
        self.id = run_id
        self.created = created

    async def result_async(self, timeout: float | None = None) -> dict[str, Any]:
        """The run's output {sink step: output}; raises RunFailed, RunCancelled or TimeoutError.
        `timeout`: seconds to wait at most (0: look once), None: as long as it takes."""
        return await self._engine.wait_async(self.id, timeout=timeout)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        ended = waiting.wait_direct(self._engine._rt, self.id, timeout)  # one read, if it has
        if ended is not None:
            return ended
        return self._engine._portal.call(self.result_async(timeout))

    async def get_async(self) -> Run:
        return await self._engine.get_run_async(self.id)

    def get(self) -> Run:
        return self._engine.get_run(self.id)

    def step(self, name: str) -> StepHandle:
        """One step of this run, to wait for: `run.step("charge").result(timeout=30)`."""
        step_wait.check(self.id, name)
        return StepHandle(self._engine, self.id, name)

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"


class StepHandle:
    """One step of a started run (`RunHandle.step(name)`): a way to wait for its output."""

    __slots__ = ("_engine", "name", "run_id")

    def __init__(self, engine: Engine, run_id: str, name: str) -> None:
        self._engine = engine
        self.run_id = run_id
        self.name = name

    async def result_async(self, timeout: float | None = None) -> Any:
        """The step's output; StepFailed, StepSkipped, StepCancelled or TimeoutError (see
        `Engine.wait_step`)."""
        return await self._engine.wait_step_async(self.run_id, self.name, timeout=timeout)

    def result(self, timeout: float | None = None) -> Any:
        return self._engine._portal.call(self.result_async(timeout))

    def __repr__(self) -> str:
        return f"StepHandle({self.run_id!r}, {self.name!r})"


Until = RunHandle | str | Iterable[RunHandle | str] | None


def _direct(engine: Engine) -> Direct | None:
    """The store's direct call (`CallsDirect`), if it takes one now: see `blocking`."""
    store = engine._rt.direct_store()
    return None if store is None else store.direct


def _run_ids(until: Until) -> set[str] | None:
    if until is None:
        return None
    if isinstance(until, RunHandle | str):
        until = [until]
    runs = list(until) if isinstance(until, Iterable) else [until]
    for u in runs:
        if not isinstance(u, RunHandle | str):
            raise InputError(
                f"run_worker: until takes runs (RunHandle or run id) or a list of them, got {u!r}"
            )
    return {u.id if isinstance(u, RunHandle) else u for u in runs}


class Engine:
    """plait's entry point. `Engine("sqlite:///plait.db")` (default), `"memory://"`, …

    `lease`: seconds a claimed step is held before another worker may take it over (heartbeats
    renew it). `max_recoveries`: how many of a step's attempts may end without an outcome (its
    lease expired, or a stopping worker released it) before it fails with `lease_expired` or
    `abandoned`.
    `poll_interval`: how often idle workers and `result()` waiters look at the store for work
    done by other processes; on a store that pushes notifications (PostgreSQL) they are woken
    instead and look only every `sweep_interval`, a safety net for a missed notification. On
    SQLite a worker's look reads a change counter, and it claims only when another process has
    committed (or, as a safety net, every `sweep_interval`).
    `create=False`: use a store that exists, never create one: the first operation raises
    StoreError naming the missing SQLite file or PostgreSQL schema (the CLI's operator commands
    open their store so). `read_only=True` (the CLI's read commands): never write, not even a
    migration; any operation that writes raises StoreError. A SQLite file is opened with
    `mode=ro` (or `immutable=1`, a copy in a directory nobody may write), so a backup copy can
    be read.
    `clock`: what the engine and its workers read and wait on for the time: real time, unless
    a test gives a `plait.testing.VirtualClock` (`plait.testing.TestEngine` does).
    `store`: a store object instead of a URL (a third party's, say: docs/stores.md), checked at
    once (StoreError naming every operation of the protocol it lacks); the Engine opens and
    closes it. A third party's store may also be installed under a URL scheme (entry points
    `plait.stores`), which `url` then names.
    `error_limit`: bytes of a failed step's error message kept (default 4 KiB; at least 256);
    a longer one is cut, saying how many bytes were cut.
    `version_conflicts`: what registering a workflow does when its name and version are
    registered already with another graph (steps, edges, options): "refuse" (the default, a
    DefinitionError saying what differs) or "warn" (a warning, and it is registered).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        store: Store | None = None,
        lease: float = 30.0,
        max_recoveries: int = 10,
        poll_interval: float = 0.25,
        sweep_interval: float = 5.0,
        create: bool = True,
        read_only: bool = False,
        clock: Clock = REAL,
        error_limit: int = 4096,
        version_conflicts: str = "refuse",
    ) -> None:
        if store is not None and url is not None:
            raise StoreError("give the Engine a store URL or a store object (store=), not both")
        self._rt = Runtime(
            DEFAULT_URL if url is None else url,
            store=store,
            lease=lease,
            max_recoveries=max_recoveries,
            poll_interval=poll_interval,
            sweep_interval=sweep_interval,
            create=create,
            read_only=read_only,
            clock=clock,
            error_limit=error_limit,
            version_conflicts=version_conflicts,
        )
        self._portal = self._rt.portal

    @property
    def url(self) -> str:
        """The store URL this Engine was given."""
        return self._rt.url

    @property
    def store(self) -> Store:
        """The store (read-only: for store authors, tests and operators' tools)."""
        return self._rt.store

    @property
    def artifact_storage(self) -> ArtifactStorage:
        """Where this Engine's workers put the bytes of the artifacts steps save."""
        return self._rt.artifacts

    # -- lifecycle --------------------------------------------------------------------------------

    async def close_async(self) -> None:
        """Stop this engine's workers (gracefully: they finish or release their steps), then
        close the store, and the engine's own loop if this is not it (starts commit there)."""
        await self._rt.close()
        if not self._portal.running_here():
            self._portal.close()

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
        await self._rt.ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_async()

    # -- definitions ------------------------------------------------------------------------------

    async def register_async(self, workflow: Workflow) -> WorkflowInfo:
        """Validate a workflow and record its version in the store (idempotent)."""
        return await runs.register(self._rt, workflow)

    register = blocking(register_async)

    async def workflows_async(self) -> list[WorkflowInfo]:
        """Every workflow version recorded in the store, in registration order: when it was
        registered, its code digests, its runs in flight and the live workers serving it."""
        return await versions.workflows(self._rt)

    workflows = blocking(workflows_async)

    async def diff_versions_async(self, workflow: str, a: str, b: str) -> PlanDiff:
        """What changed from version `a` to version `b` of a workflow (each a version string
        or a fingerprint): steps added and removed, edges, options, code."""
        return await versions.diff(self._rt, workflow, a, b)

    diff_versions = blocking(diff_versions_async)

    def registered(self) -> list[Workflow]:
        """Workflows registered with this Engine object (the ones its workers can run)."""
        return self._rt.workflows.all()

    # -- runs -------------------------------------------------------------------------------------

    async def start_async(
        self,
        workflow: Workflow | str,
        input: Any = None,
        *,
        run_id: str | None = None,
        deadline: float | timedelta | None = None,
        priority: int = 0,
        trace_context: Mapping[str, str] | None = None,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        if_exists: str = "check",
        approval_policy: str | ApprovalPolicy | None = None,
    ) -> RunHandle:
        """Start a run. An existing `run_id` of the same workflow and the same input returns
        that run (idempotent; its handle's `created` is False); with a different input,
        RunConflict says so, unless `if_exists="return"`, which returns that run whatever its
        input. `name`: a human name for the run; `labels`: string keys to string values
        ({"customer": "42"}; at most 32, keys of 1-63 letters, digits or `_ . - /`, values of
        at most 200 characters), which `list_runs(labels=…)` filters by; `metadata`: a JSON
        object of at most 16 KiB kept with the run. InputError for any of them wrong, and
        nothing is written. `deadline` (seconds or a timedelta from now): a run unfinished by then fails with
        `deadline_exceeded`, its unfinished steps cancelled. `priority` is added to each of its
        steps' own: within a queue, higher first. `trace_context`: the caller's W3C trace
        context ({"traceparent": …}, as `opentelemetry.propagate.inject` fills it), kept with
        the run; its trace's run span links to it (`export_trace`). `approval_policy`: a mode
        ("auto", "ask", "deny") or a plait.ApprovalPolicy that replaces the workflow's own
        (if any) for this run: by step name (a workflow file's steps: by action) its steps
        run, wait for an approval, or fail (`action_blocked`, `action_denied`); the runs its
        steps call (`ctx.call`) and its forks keep it, and its `run_started` event records it."""
        who = runs.Identity.of("start", name, labels, metadata, if_exists)
        started, created = await runs.start(
            self._rt, workflow, input, run_id=run_id, deadline=deadline, priority=priority,
            trace_context=trace_context, who=who, approval_policy=approval_policy,
        )  # fmt: skip
        return RunHandle(self, started, created)

    # on the caller's thread where the store takes direct calls (SQLite, memory): a start is
    # then its commit and little more, without crossing to the loop and the store thread
    start = blocking(start_async, direct=_direct)

    async def start_many_async(
        self,
        workflow: Workflow | str,
        inputs: Iterable[Any],
        *,
        run_ids: Iterable[str] | None = None,
        deadline: float | timedelta | None = None,
        priority: int = 0,
        progress: Callable[[int], None] | None = None,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        if_exists: str = "check",
        approval_policy: str | ApprovalPolicy | None = None,
    ) -> list[RunHandle]:
        """Start a run for each input, many runs per transaction (one commit for up to a
        thousand runs); their handles, in order. Every input is validated before anything is
        written: InputError names the first bad one (`inputs[3]: …`). `run_ids`: one id per
        input (default: new ids); an id that exists as a run of the same workflow and input is
        that run, as for `start` (`if_exists` too); of another workflow or input, RunConflict
        names it, and the runs from its transaction on are not started (the message says which
        were). `deadline`, `priority`, `name`, `labels`, `metadata` and `approval_policy` as
        for `start`, for every run. `progress(n)` is called after each transaction with how many runs exist
        so far."""
        who = runs.Identity.of("start_many", name, labels, metadata, if_exists)
        started = await runs.start_many(
            self._rt,
            workflow,
            inputs,
            run_ids=run_ids,
            deadline=deadline,
            priority=priority,
            progress=progress,
            who=who,
            approval_policy=approval_policy,
        )
        return [RunHandle(self, run_id, created) for run_id, created in started]

    start_many = blocking(start_many_async)

    async def get_run_async(self, run_id: str, *, excerpt: int | None = None) -> Run:
        """The run. With `excerpt` (bytes), a payload whose JSON is longer is read only that far
        and given as a `bytes` of its first `excerpt` bytes of JSON, with the whole length as
        its `size`, instead of its value: what shows payloads cut (`plait runs show`) reads
        no more of a 100 MB output than it prints. So do `list_runs`, `steps` and `inspect`."""
        return await runs.get_run(self._rt, run_id, excerpt)

    get_run = blocking(get_run_async, direct=_direct)  # one read: on the caller's thread

    async def list_runs_async(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        created_from: datetime | float | None = None,
        created_to: datetime | float | None = None,
        text: str | None = None,
        excerpt: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> RunPage:
        """Runs newest first, one page at a time (at most 10,000 runs a page; pass the page's
        `next_cursor` back for the next). Filters: `workflow`, `status`, a creation time range
        [`created_from`, `created_to`) (datetimes, naive meaning UTC, or epoch seconds),
        `text`, found in the run id, its name or its error (case-insensitive), and `labels`:
        runs having every one of these labels. InputError for a bad status, limit, time,
        label or cursor. `excerpt`: as for `get_run`."""
        where = RunFilter(workflow, status, created_from, created_to, text, labels)
        return await runs.list_runs(self._rt, where, limit=limit, cursor=cursor, excerpt=excerpt)

    list_runs = blocking(list_runs_async)

    async def count_runs_async(self, filter: RunFilter | None = None) -> int:
        """How many runs `filter` (a plait.RunFilter; None: every run) matches."""
        return await runs.count_runs(self._rt, filter or RunFilter())

    count_runs = blocking(count_runs_async)

    def watch_runs(self, since: datetime | float | None = None) -> AsyncGenerator[Run, None]:
        """The run-list change feed: an async iterator of runs as their status changes
        (created, started, paused, resumed, ended, retried), each with `updated_at`, from
        `since` on (None: from now; a datetime or epoch seconds, such as the `updated_at` of a
        run delivered before, which is delivered again). It never ends: close it (or use
        `contextlib.aclosing`) when done. Woken by this process's commits and, on PostgreSQL,
        other processes' ended runs; otherwise it polls as `result()` does."""
        start = None if since is None else runs.epoch("since", since)
        return watch.watch_runs(self._rt, start)

    async def failures_async(
        self,
        *,
        workflow: str | None = None,
        step: str | None = None,
        code: str | None = None,
        since: datetime | float | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> FailedStepPage:
        """Failed steps across runs (a dead-letter view), the latest ended first, one page at a
        time: pass `next_cursor` back, with the same filters, for the next. Filters: of
        `workflow`'s runs, steps named `step`, failed with error `code`, ended at or after
        `since` (a datetime, naive: UTC, or epoch seconds), of runs with every one of `labels`.
        A cursor that is garbled, made for other filters or by another version of plait is an
        InputError saying which."""
        where = FailureFilter(workflow, step, code, since, labels)
        return await failures.failures(self._rt, where, limit, cursor)

    failures = blocking(failures_async)

    async def failed_steps_async(
        self, *, workflow: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> FailedStepPage:
        """`failures(workflow=...)`, under its older name."""
        return await failures.failures(self._rt, FailureFilter(workflow), limit, cursor)

    failed_steps = blocking(failed_steps_async)

    async def retry_failures_async(
        self,
        filter: FailureFilter,
        *,
        dry_run: bool = False,
        limit: int = MAX_RETRY,
        by: str | None = None,
    ) -> FailureRetry:
        """Retry the failed steps a `filter` (plait.FailureFilter; `FailureFilter()`: every
        one) matches, the newest `limit` of them (at most 1,000 per call: call again for the
        rest), each as `retry(run_id, step)` would, in its own transaction. `dry_run=True` only
        counts them (and their runs). A step the Engine refuses (its run was cancelled
        meanwhile, say) gets the message in `FailureRetry.items`; the others go on."""
        return await failures.retry_failures(self._rt, filter, dry_run, limit, by)

    retry_failures = blocking(retry_failures_async)

    async def steps_async(self, run_id: str, *, excerpt: int | None = None) -> list[Step]:
        """The run's steps in definition order (`excerpt`: as for `get_run`)."""
        return await runs.steps(self._rt, run_id, excerpt)

    steps = blocking(steps_async)

    async def events_async(
        self, run_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        """The run's event log after `after_seq`, in order."""
        return await runs.events(self._rt, run_id, after_seq, limit)

    events = blocking(events_async)

    async def inspect_async(self, run_id: str, *, excerpt: int | None = None) -> Inspection:
        """Counts per status, per-step queue and run durations, and what each waiting step
        waits on (`excerpt`: as for `get_run`)."""
        return await runs.inspect(self._rt, run_id, excerpt)

    inspect = blocking(inspect_async)

    async def wait_async(self, run_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait for a run to end; its output, or RunFailed / RunCancelled / TimeoutError."""
        return await waiting.wait(self._rt, run_id, timeout)

    async def wait_step_async(self, run_id: str, step: str, *, timeout: float | None = None) -> Any:
        """Wait for one step of a run to end, from any process: its output once it is done,
        or StepFailed (with its StepError), StepSkipped (with the reason) or StepCancelled.
        TimeoutError after `timeout` seconds (None: no limit; 0: look once); RunNotFound for
        an unknown run; InputError for a step the run does not have (a spawned step once it
        has been spawned). Woken like `result()`, not polled, where the store pushes."""
        return await step_wait.wait_step(self._rt, run_id, step, timeout)

    wait_step = blocking(wait_step_async)

    async def wait_all_async(
        self, runs: Iterable[RunHandle | str], *, timeout: float | None = None
    ) -> list[Run]:
        """Wait until every one of these runs (handles or ids) has ended, completed, failed
        or cancelled; their views (status, output, error), in the order given. Waiting costs
        a read per commit that ends some of them, not one per run. TimeoutError (naming some
        that have not ended) after `timeout` seconds; RunNotFound for an unknown id."""
        return await waiting.wait_all(self._rt, runs, timeout)

    wait_all = blocking(wait_all_async)

    def as_completed_async(
        self, runs: Iterable[RunHandle | str], *, timeout: float | None = None
    ) -> AsyncIterator[Run]:
        """`async for run in engine.as_completed_async(handles)`: each run's view as it ends
        (those that have ended first), each once. TimeoutError once `timeout` seconds have
        passed with some unfinished; RunNotFound for an unknown id (both raised by the
        iteration; a bad argument is an InputError at once)."""
        ids, limit = waiting.checked("as_completed", runs, timeout)
        return _flatten(waiting.as_completed(self._rt, ids, limit))

    def as_completed(
        self, runs: Iterable[RunHandle | str], *, timeout: float | None = None
    ) -> Iterator[Run]:
        """`for run in engine.as_completed(handles)`: each run's view as it ends, blocking
        (see `as_completed_async`)."""
        ids, limit = waiting.checked("as_completed", runs, timeout)
        return waiting.blocking_batches(self._rt, waiting.as_completed(self._rt, ids, limit))

    # -- serving ----------------------------------------------------------------------------------

    async def run_worker_async(
        self,
        *,
        concurrency: int = 16,
        until: Until = None,
        timeout: float | None = None,
        workflows: Sequence[Workflow] | None = None,
        grace: float = 10.0,
        handle_signals: bool = False,
        queues: Iterable[str] | None = None,
        starvation_after: float = 30.0,
        labels: Iterable[str] = (),
    ) -> None:
        """Serve registered workflows. With `until`, return once those runs have ended.
        `concurrency`: handlers running at once; the worker also holds claimed steps waiting
        for a handler (up to 256 in all) while its steps are short next to a commit, so that
        commits take many outcomes (`plait.worker.worker`).
        `queues`: serve only steps of these queues (default: every queue). A ready step that
        has waited `starvation_after` seconds is claimed ahead of higher priorities. `labels`:
        this worker's, for steps with `target=`."""
        await workers.serve(
            self._rt,
            until=_run_ids(until),
            timeout=timeout,
            workflows=workflows,
            handle_signals=handle_signals,
            concurrency=concurrency,
            grace=grace,
            queues=queues,
            starvation_after=starvation_after,
            labels=labels,
        )

    def run_worker(
        self,
        *,
        concurrency: int = 16,
        until: Until = None,
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
        workers.serve_blocking(
            self._rt,
            until=_run_ids(until),
            timeout=timeout,
            workflows=workflows,
            concurrency=concurrency,
            grace=grace,
            queues=queues,
            starvation_after=starvation_after,
            labels=labels,
        )

    def observe(self, observer: Observer | None) -> None:
        """Tell `observer` what this Engine's workers do: the steps each claim takes, each
        group commit of outcomes, the leases found expired (`plait._runtime.Observer`; e.g.
        `plait.server.metrics.WorkerMetrics`, what `plait worker --metrics-port` serves).
        None stops telling. Its methods run on the workers' loop and must return at once."""
        self._rt.observer = observer

    def stop_workers(self) -> None:
        """Ask every worker of this Engine to stop gracefully (thread-safe; returns at once)."""
        workers.stop_workers(self._rt)

    # -- operator actions -------------------------------------------------------------------------

    async def cancel_async(
        self, run_id: str, reason: str | None = None, *, by: str | None = None
    ) -> Run:
        """Cancel a run (terminal): its waiting steps end `cancelled` at once, its running steps
        are interrupted (async handlers are cancelled; sync ones see `ctx.cancelled`) and what
        they report schedules nothing. Cancelling a cancelled run changes nothing.
        Raises RunNotFound, or RunStateError for a run that has completed or failed."""
        return await operator.cancel(self._rt, run_id, reason, by)

    cancel = blocking(cancel_async)

    async def pause_async(self, run_id: str, *, by: str | None = None) -> Run:
        """Dispatch nothing new of this run; its steps in flight finish (retries included), then
        it is `paused`. Pausing a pausing or paused run changes nothing; RunStateError for a run
        that has ended."""
        return await operator.pause(self._rt, run_id, by)

    pause = blocking(pause_async)

    async def resume_async(self, run_id: str, *, by: str | None = None) -> Run:
        """Dispatch a paused (or pausing) run again, with what became ready meanwhile.
        Resuming a running run changes nothing; RunStateError for a run that has ended."""
        return await operator.resume(self._rt, run_id, by)

    resume = blocking(resume_async)

    async def retry_async(self, run_id: str, step: str, *, by: str | None = None) -> Run:
        """Run a failed step again with a fresh attempt budget; the dependents its failure
        skipped wait for it again, and the run runs again. RunStateError for a step that is not
        failed or a cancelled run (and an unknown step)."""
        return await operator.retry(self._rt, run_id, step, by)

    retry = blocking(retry_async)

    async def resume_failed_async(self, run_id: str, *, by: str | None = None) -> Run:
        """Run a failed or cancelled run again: its failed and cancelled steps, and the steps
        skipped because of them, go back to pending with a fresh attempt budget (ready as their
        dependencies allow); completed steps keep their outputs. RunStateError for a run that
        has not ended, has completed, or still has running steps; RunNotFound."""
        return await operator.resume_failed(self._rt, run_id, by)

    resume_failed = blocking(resume_failed_async)

    async def approve_async(
        self, run_id: str, step: str, *, by: str | None = None, note: str | None = None
    ) -> Step:
        """Let a waiting approval gate run: it becomes ready (after its delay, if any).
        RunStateError if the step is not waiting (already decided, not reached yet, or its run
        was cancelled) or is not an approval gate."""
        return await operator.approve(self._rt, run_id, step, by, note)

    approve = blocking(approve_async)

    async def reject_async(
        self, run_id: str, step: str, *, reason: str | None = None, by: str | None = None
    ) -> Step:
        """Fail a waiting approval gate with code `rejected`; its dependents are skipped as for
        any failure (unless they have defaults), and `retry` would ask for approval again."""
        return await operator.reject(self._rt, run_id, step, reason, by)

    reject = blocking(reject_async)

    async def signal_async(
        self, run_id: str, name: str, payload: Any = None, *, by: str | None = None
    ) -> bool:
        """Deliver `payload` (JSON) to the signal step `name` of a run: the step is done with it
        as soon as it is reached (at once if it is waiting). Returns True if this delivery
        counts, False if an earlier one already did (it is logged as ignored)."""
        return await operator.signal(self._rt, run_id, name, payload, by)

    signal = blocking(signal_async)

    async def annotate_async(
        self, run_id: str, type: str, payload: Any = None, *, by: str | None = None
    ) -> None:
        """Append an event to a run's log from outside (a note, a review, a deploy), whatever
        the run's status: `user.<type>` with `by` (default user@host) and `data` (the payload)
        in its payload; shown by `events` and `watch` as a step's `ctx.emit` is. `type`: 1-64
        letters, digits, '_', '-' or '.', from a letter; `payload`: any JSON value of at most
        64 KiB. InputError for either, RunNotFound for an unknown run: nothing is written."""
        await operator.annotate(self._rt, run_id, type, payload, by)

    annotate = blocking(annotate_async)

    async def bulk_async(
        self,
        action: str,
        *,
        run_ids: Collection[str] | None = None,
        filter: RunFilter | None = None,
        dry_run: bool = False,
        limit: int = bulk.MAX_BULK,
        by: str | None = None,
        reason: str | None = None,
    ) -> BulkResult:
        """One operator action on many runs: `action` is "cancel", "pause", "resume", "retry"
        (every failed step of a failed run) or "delete" (a finished run); the runs are
        `run_ids` (at most `limit`; every id must exist, else InputError and nothing is done)
        or those a `filter` (plait.RunFilter) matches, the newest `limit` of them (at most
        1,000 per call: call again for the rest). `dry_run=True` only counts: how many match,
        how many the action applies to, and how many it would skip, per status. Executed, each
        run gets its own transaction, as the single-run method would: a run whose status does
        not allow the action is skipped, and a run the Engine refuses gets its message
        (`BulkResult.items`). `by` and `reason` go to each run's log as for a single action."""
        return await bulk.bulk(
            self._rt,
            action,
            run_ids=run_ids,
            filter=filter,
            dry_run=dry_run,
            limit=limit,
            by=by,
            reason=reason,
        )

    bulk = blocking(bulk_async)

    async def list_waiting_async(
        self, *, limit: int = 100, run_id: str | None = None
    ) -> list[Waiting]:
        """Steps waiting for a decision or a signal, across runs (or of `run_id`), the longest
        waiting first. An approval of a workflow file's step says what it asks about
        (`Waiting.request`: the action and its arguments, expanded)."""
        return await operator.list_waiting(self._rt, limit, run_id)

    list_waiting = blocking(list_waiting_async)

    # -- history: fork, diff, replay --------------------------------------------------------------

    async def upgrade_async(
        self,
        run_id: str | None = None,
        *,
        workflow: str | None = None,
        to: Workflow,
        dry_run: bool = False,
        by: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Upgrade]:
        """Move a run in flight (or, with `workflow=NAME`, every run of it in flight) to the
        version `to` of its workflow, when it fits (`plait.core.upgrade`): steps done keep
        their outputs, steps added downstream of unfinished work are added (pending or ready as
        their dependencies say), steps removed before they ran are dropped, and steps not yet
        run take the new version's dependencies and options. A run that does not fit (a done
        step's dependencies changed, a running step removed or changed, a step added after
        work that has all ended, a run whose own version the store does not know) is refused
        with the reason, per run; `dry_run` reports what would happen to each run and changes
        nothing. With `workflow=`, `labels` moves only its runs having every one of them. A
        worker that claims or ends a step of a run while it moves makes the move
        decide again (fenced: it never writes over the worker's change). `to` is registered (a second graph under its
        name and version is refused, as by `register`). InputError (nothing changed) for a
        `to` of another workflow, both or neither of `run_id` and `workflow`."""
        return await versions.upgrade(
            self._rt, run_id, workflow, to, dry_run, operator.actor(by), labels
        )

    upgrade = blocking(upgrade_async)

    async def fork_async(
        self,
        run_id: str,
        from_step: str,
        input: Any = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        new_run_id: str | None = None,
        by: str | None = None,
        fingerprint: str | None = None,
    ) -> RunHandle:
        """Start a new run that reuses what run `run_id` recorded, re-running `from_step` and
        everything downstream of it.

        Every other step's recorded output is reused, not only those of the direct dependencies
        of `from_step`: such a step is `done` from the start, with `reused_from` naming the run
        that computed it. A step that did not end `done` in the parent cannot be reused and runs
        again, and so does everything downstream of it. The fork runs on the version of
        `fingerprint` if given; else on the run's own version while a live worker (or this
        Engine) serves it; else on the newest version served; else on the newest registered.

        `input`: the new run input, validated like `start`'s (None keeps the parent's input).
        `overrides`: {step: output} replacing the recorded output of reused steps.
        `new_run_id`: the fork's id (forking again with the same id, parent and step returns
        that fork). `by`: who forks, for the log (default user@host).

        Raises RunNotFound; InputError (nothing written) when `from_step` is not in the
        workflow, the newest version lacks a step whose output would be reused, an override
        names a step that is not reused or is not JSON, or the input does not fit; RunConflict
        when `new_run_id` is taken by another run."""
        fork_id = await history.fork(
            self._rt,
            run_id,
            from_step,
            input,
            overrides,
            new_run_id=new_run_id,
            by=by,
            fingerprint=fingerprint,
        )
        return RunHandle(self, fork_id)

    fork = blocking(fork_async)

    async def diff_async(self, run_a: str, run_b: str) -> dict[str, dict[str, Any]]:
        """Compare two runs step by step: {step: {"status": ..., "diff": ...}}.

        "status" is "same", "changed", "only_a" or "only_b". For "changed", "diff" lists where
        the step's records differ, as JSON Pointer entries over its status, output and error:
        {"path": "/output/items/0/price", "op": "changed", "a": 1, "b": 2}, or "op": "added"
        (only "b") / "removed" (only "a"). "diff" is [] for "same" and None for a step that only
        one run has. Raises RunNotFound."""
        return await history.diff(self._rt, run_a, run_b)

    diff = blocking(diff_async)

    async def replay_async(
        self, run_id: str, step: str, *, workflow: Workflow | None = None
    ) -> Replay:
        """Run the current code of one step in this process with the inputs the run recorded
        (its input, its dependencies' outputs), without writing anything to the store; return
        the new result next to the recorded one and their differences. The code is `workflow`
        if given (it is not registered: nothing is written), else the newest version of the
        run's workflow registered with this Engine (WorkflowNotFound if none).
        A handler that raises is reported in the result (`status` "failed", `error`).

        Raises RunNotFound; InputError for a step that the run or the current code lacks, or
        whose current code needs a step the run does not have; RunStateError while one of its
        dependencies has not ended."""
        return await history.replay(self._rt, run_id, step, workflow)

    replay = blocking(replay_async)

    async def replay_run_async(
        self,
        run_id: str,
        *,
        workflow: Workflow | None = None,
        from_step: str | None = None,
        break_at: str | None = None,
        on_break: OnBreak | None = None,
    ) -> RunReplay:
        """Replay a whole run: every step's current code (`workflow`, or the newest version
        registered in this process) on the input the run recorded for it, in dependency order
        (steps it spawned right after their parent), writing nothing. Each step comes back as
        "ok", "diverged" (with the structural diff), "failed", "reused" (upstream of
        `from_step`: not run, its recorded output stands) or "not_run" (with the reason: its
        dependencies gave it no input in the run, or the run never ran it). Before the step
        `break_at` runs, `on_break(step, {"run_input", "dependencies"})` is called (a debugger's
        hook; `plait replay --break-at` prints the process id or enters pdb). InputError for an
        unknown `from_step`/`break_at`, or a `break_at` the replay would not run;
        WorkflowNotFound with no code for the run's workflow; RunNotFound."""
        return await history.replay_run(self._rt, run_id, workflow, from_step, break_at, on_break)

    replay_run = blocking(replay_run_async)

    async def export_trace_async(self, run_id: str, exporter: Any) -> list[Any]:
        """Build the run's OpenTelemetry spans from its durable events (the `otel` extra) and
        hand them to `exporter` (an `opentelemetry.sdk.trace.export.SpanExporter`); returns
        them. The trace id is derived from the run id and each span's id from what it is (the
        run; a step's attempt), so exporting again gives the same spans, and the spans a
        handler made while it ran are their children. RunNotFound; InputError without the
        extra."""
        return await traces.export(self._rt, run_id, exporter)

    export_trace = blocking(export_trace_async)

    def export_traces(self, exporter: Any | None) -> None:
        """From now on, export the trace of each run that this Engine's commits end (its workers'
        and its operator actions') to `exporter` (a `SpanExporter`), in the background: the
        spans `export_trace` builds, the exporter called in a thread, a failure logged. Closing
        the Engine waits for the exports under way. None stops exporting. InputError without
        the otel extra."""
        self._rt.ended_runs = None if exporter is None else traces.TraceExport(self._rt, exporter)

    # -- watching ---------------------------------------------------------------------------------

    def watch(self, run_id: str, after_seq: int = 0) -> Watch:
        """The run's events after `after_seq` as they are committed, ending after the event that
        ends the run (or at once if it has ended and nothing follows `after_seq`); a run retried
        meanwhile goes on being watched. `async for event in engine.watch(id)` or, blocking,
        `for event in engine.watch(id)`. RunNotFound (when iteration starts) for an unknown run."""
        return Watch(self._rt, run_id, after_seq)

    def watch_async(self, run_id: str, after_seq: int = 0) -> AsyncGenerator[Event, None]:
        """`watch` as a plain async iterator (an async generator: close it, or use
        `contextlib.aclosing`, if you leave it early)."""
        watch.check(run_id, after_seq)
        return watch.watch(self._rt, run_id, after_seq)

    # -- data: records, artifacts, deleting runs, blobs -------------------------------------------

    def records(self, collection: str) -> Records:
        """The documents of a collection (created by its first write): get, put with
        `expected_revision`, delete, list by key prefix. InputError for an invalid name."""
        return data.records(self._rt, collection)

    def states(self, collection: str) -> States:
        """The workflow-state documents of a collection: create, get, transition,
        increment_iteration (up to max_iterations), complete, fail, delete, list by phase;
        every change compare-and-set on the document's revision. InputError for an invalid
        name."""
        return data.states(self._rt, collection)

    async def delete_run_async(self, run_id: str, *, force: bool = False) -> None:
        """Delete a finished run: its steps, event log and artifacts (records its steps wrote
        stay; runs forked from it keep what they reused). RunNotFound if there is no such run;
        RunStateError for an unfinished one, unless `force`, which cancels it first."""
        await data.delete_run(self._rt, run_id, force)

    delete_run = blocking(delete_run_async)

    async def blob_stats_async(self) -> BlobStats:
        """What the store's blob table holds: payloads longer than its `blob_threshold` (run
        inputs and outputs, step outputs, spawned inputs), each kept once, and the references
        to them. For operators and tests."""
        return await data.blob_stats(self._rt)

    blob_stats = blocking(blob_stats_async)

    async def get_blob_async(self, sha256: str) -> bytes:
        """The payload kept as the blob of this SHA-256 (a run's or step's input or output
        longer than the store's `blob_threshold`). InputError for a malformed hash,
        BlobNotFound for one the store lacks."""
        return await data.get_blob(self._rt, sha256)

    get_blob = blocking(get_blob_async)

    async def gc_async(self, *, grace: float = DEFAULT_GRACE) -> int:
        """Remove the blobs nobody refers to any more (their runs were deleted, their outputs
        rewritten by a retry or a loop) that are older than `grace` seconds; how many. The grace
        spares a blob stored for a row whose transaction has not committed yet. Also sweeps the
        artifact files nobody refers to, by the same grace (`gc_artifacts`, which counts them),
        and the tombstones of records deleted more than 30 days ago."""
        return await data.gc(self._rt, grace)

    gc = blocking(gc_async)

    async def artifacts_async(self, run_id: str) -> list[Artifact]:
        """The artifacts the run's steps saved in attempts that succeeded, oldest first.
        RunNotFound if there is no such run."""
        return await data.artifacts(self._rt, run_id)

    artifacts = blocking(artifacts_async)

    async def open_artifact_async(self, artifact_id: str) -> BinaryIO:
        """The artifact's bytes, as a binary file object (close it, or use `with`); its size and
        sha256 are checked first. ArtifactNotFound for an unknown id, or a file that is
        missing, truncated or altered (the message says which)."""
        return await data.open_artifact(self._rt, artifact_id)

    open_artifact = blocking(open_artifact_async)

    async def gc_artifacts_async(self, grace: float = ARTIFACT_GRACE) -> int:
        """Remove artifact files that no artifact references (a failed attempt's, a deleted
        run's, an interrupted copy's), last written more than `grace` seconds ago (default one
        day: a younger file may belong to an attempt still running). Returns how many."""
        return await data.gc_artifacts(self._rt, grace)

    gc_artifacts = blocking(gc_artifacts_async)

    # -- flow control: queues ---------------------------------------------------------------------

    async def configure_queue_async(
        self, name: str, *, concurrency: int | None = None, rate: Rate | None = None
    ) -> Queue:
        """Store the limits of queue `name` (steps choose it with `@wf.step(queue=name)`):
        `concurrency`, the most of its steps running at once across every worker; `rate`, a
        `plait.Rate` of starts. None lifts a limit. Takes effect at every worker's next claim;
        reconfiguring keeps the tokens the bucket holds (capped to the new burst)."""
        return await queues.configure_queue(self._rt, name, concurrency, rate)

    configure_queue = blocking(configure_queue_async)

    async def queues_async(self) -> list[Queue]:
        """The configured queues, by name."""
        return await queues.queues(self._rt)

    queues = blocking(queues_async)

    # -- schedules --------------------------------------------------------------------------------

    async def schedule_async(
        self,
        name: str,
        workflow: Workflow | str,
        *,
        cron: str,
        input: Any = None,
        timezone: str = "UTC",
        catch_up: str = "skip",
    ) -> Schedule:
        """Start `workflow` at each tick of `cron` (5 fields, or @daily…) in `timezone` (an IANA
        name), with `input`. A schedule of that name is replaced. Runs are started by a
        worker's scheduler (`plait worker`), with run ids `NAME-YYYYMMDDTHHMMSSZ` (the tick in
        UTC); a tick reached up to `MISFIRE_GRACE` (60) seconds late is still started. `catch_up`:
        what to do with ticks reached later than that, missed while no scheduler ran ("skip",
        or "run_once": one run for the latest). Ticks of a pause are not missed ticks: see
        `resume_schedule`."""
        return await schedules.schedule(
            self._rt, name, workflow, cron=cron, input=input, timezone=timezone, catch_up=catch_up
        )

    schedule = blocking(schedule_async)

    async def schedules_async(self) -> list[Schedule]:
        """Every schedule, by name."""
        return await schedules.schedules(self._rt)

    schedules = blocking(schedules_async)

    async def get_schedule_async(self, name: str) -> Schedule:
        """The schedule `name`; InputError if there is none."""
        return await schedules.get_schedule(self._rt, name)

    get_schedule = blocking(get_schedule_async)

    async def pause_schedule_async(self, name: str) -> Schedule:
        """Start no more runs of the schedule until it is resumed."""
        return await schedules.set_paused(self._rt, name, True)

    pause_schedule = blocking(pause_schedule_async)

    async def resume_schedule_async(self, name: str) -> Schedule:
        """Start runs again from the first tick after now: the ticks that fell while it was
        paused are never started, whatever its `catch_up` (that is for ticks missed while no
        scheduler ran, not for ticks the pause dropped)."""
        return await schedules.set_paused(self._rt, name, False)

    resume_schedule = blocking(resume_schedule_async)

    async def delete_schedule_async(self, name: str) -> bool:
        """Remove the schedule; False if there was none. Its runs stay."""
        return await schedules.delete_schedule(self._rt, name)

    delete_schedule = blocking(delete_schedule_async)

    # -- workers ----------------------------------------------------------------------------------

    async def workers_async(self, *, include_dead: bool = False) -> list[WorkerInfo]:
        """The live workers sharing this store, by id (any process, any host). With
        `include_dead`, also the workers that died (their registration expired without a
        graceful stop) and are not yet forgotten (an hour later)."""
        return await workers.workers(self._rt, include_dead)

    workers = blocking(workers_async)

    async def doctor_async(self) -> list[DoctorCheck]:
        """What to know about this store before trusting it with runs, one `DoctorCheck` per concern:
        it opens (`store`), what its settings promise about an acknowledged commit
        (`durability`: warn when a power failure may lose one), and whether unfinished runs
        have a live worker (`workers`). Never raises for a store that is away: that is a
        `fail` check."""
        return await doctor.doctor(self._rt)

    doctor = blocking(doctor_async)

    async def topology_async(
        self, workflow: Workflow | str, *, fingerprint: str | None = None
    ) -> Topology:
        """Which live workers can run which steps of a workflow version: for each step, the
        workers that serve its fingerprint, its queue and its target, or why none can.
        `workflow`: a Workflow (that version), or a name (its latest registered version, or the
        version of `fingerprint`)."""
        return await workers.topology_of(self._rt, workflow, fingerprint)

    topology = blocking(topology_async)
