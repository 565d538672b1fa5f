"""What one Engine shares with its workers and operations: the store, the settings, the wake-ups
of this process, and the workflows registered here.

The Engine (`engine/engine.py`) is the facade users call; everything under it (workers, idle
waits, the scheduler, replay, the registry heartbeat, and the operations the facade delegates
to) takes a `Runtime`, never the Engine. A Runtime is one process's view: its broadcasts wake
waiters in this process, and the store's push notifications (PostgreSQL) fire the same
broadcasts for work done in other processes.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from typing import Any, Protocol

from ._clock import REAL, Clock
from ._codec import MESSAGE_LIMIT
from ._errors import (
    ConfigError,
    DefinitionError,
    PlaitError,
    RunConflict,
    RunNotFound,
    RunStateError,
)
from ._portal import Broadcast, Portal, acquire, driven_directly
from .core.rows import Claim, CommitResult, EventRow, Outcome, RunRow, StepRow, WorkflowPlan
from .core.txn import Action
from .core.versions import describe, diff_plans
from .data.artifacts import ArtifactStorage, split_url, storage_for
from .stores import Store, check_store, open_store
from .stores.protocol import CallsDirect, NewRun
from .workflow.definition import Workflow


class Observer(Protocol):
    """What a worker tells as it works, for metrics (`plait.server.metrics.WorkerMetrics`) or
    any other observer set on `Runtime.observer`. Each call is made on the worker's loop and
    must return at once. `worker` is the worker (its `workflows`, `concurrency`, in-flight
    steps); `claims` what one claim took; `outcomes` and `accepted` one group commit."""

    def claimed(self, worker: Any, claims: Sequence[Claim], now: float) -> None: ...

    def committed(
        self, worker: Any, outcomes: Sequence[Outcome], accepted: Sequence[bool], now: float
    ) -> None: ...

    def expired(self, worker: Any, count: int) -> None: ...


class EndedRuns(Protocol):
    """Told of the runs this process's commits ended (e.g. `engine.traces.TraceExport`), on the
    loop that committed; must return at once. `drain` is awaited when the Runtime closes."""

    def ended(self, run_ids: Collection[str]) -> None: ...

    async def drain(self) -> None: ...


class Stoppable(Protocol):
    """A worker running in this process, as the Runtime knows it: something to stop."""

    def stop_threadsafe(self) -> None: ...

    def busy(self) -> bool:
        """Is it doing anything but waiting for the time (steps in flight, a claim under way)?
        A virtual clock skips ahead only when no worker is."""
        ...


class EventsWritten(Broadcast):
    """Fired when this process commits events to any run. `for_run(id)` fires when the store
    pushes that events were appended to that run (by any process). Thread-safe: the store calls
    `pushed` from its own thread."""

    def __init__(self) -> None:
        super().__init__()
        self._runs: weakref.WeakValueDictionary[str, Broadcast] = weakref.WeakValueDictionary()
        self._runs_lock = threading.Lock()

    def for_run(self, run_id: str) -> Broadcast:
        """The broadcast of one run's pushes; held by its watchers, forgotten when none is left."""
        with self._runs_lock:
            broadcast = self._runs.get(run_id)
            if broadcast is None:
                broadcast = self._runs[run_id] = Broadcast()
            return broadcast

    def pushed(self, run_ids: Collection[str] | None) -> None:
        with self._runs_lock:
            if run_ids is None:
                woken = list(self._runs.values())
            else:
                woken = [b for r in run_ids if (b := self._runs.get(r)) is not None]
        for broadcast in woken:
            broadcast.fire()


class RunsEnded(Broadcast):
    """Fired when runs end: by this process's commits, which name them (`ended`), or by a
    store's push of another process's (`fire`, which does not). Its generation is what a
    worker awaiting runs watches.

    A waiter for some runs `watch`es them instead: its watch is woken when one of them ended
    in this process (and says which), or when some runs ended unnamed (a push: it must look at
    all it waits for). So a waiter for many runs wakes once per commit that ends some of them,
    and reads only those."""

    def __init__(self) -> None:
        super().__init__()
        self._by_run: dict[str, list[RunsWatch]] = {}
        self._watches: set[RunsWatch] = set()

    def ended(self, run_ids: Collection[str]) -> None:
        """This process committed the end of these runs."""
        woken: dict[RunsWatch, None] = {}
        with self._lock:
            for run_id in run_ids:
                for watch in self._by_run.get(run_id, ()):
                    watch.named.add(run_id)
                    woken[watch] = None
        for watch in woken:
            watch.fire()
        super().fire()

    def fire(self) -> None:
        """Runs ended, which ones is not known (another process's, pushed): every watch
        looks."""
        with self._lock:
            watches = list(self._watches)
            for watch in watches:
                watch.unknown = True
        for watch in watches:
            watch.fire()
        super().fire()

    @contextlib.contextmanager
    def watch(self, run_ids: Collection[str]) -> Iterator[RunsWatch]:
        """Watch these runs end, for as long as the `with` lasts."""
        watch = RunsWatch(self._lock)
        run_ids = list(run_ids)  # as they are now: the caller's collection may shrink
        with self._lock:
            self._watches.add(watch)
            for run_id in run_ids:
                self._by_run.setdefault(run_id, []).append(watch)
        try:
            yield watch
        finally:
            with self._lock:
                self._watches.discard(watch)
                for run_id in run_ids:
                    watchers = self._by_run.get(run_id)
                    if watchers is not None:
                        watchers.remove(watch)
                        if not watchers:
                            del self._by_run[run_id]


class RunsWatch(Broadcast):
    """What a waiter learns of the runs it watches (`RunsEnded.watch`), and its wake-up."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__()
        self._owner_lock = lock
        self.named: set[str] = set()  # runs of its own that ended in this process
        self.unknown = False  # some runs ended elsewhere: look at every one

    def take(self) -> tuple[set[str], bool]:
        """What was learnt since the last take: the runs named, and whether others may have
        ended too."""
        with self._owner_lock:
            named, unknown = self.named, self.unknown
            self.named, self.unknown = set(), False
        return named, unknown


class StartCommits:
    """Starts made at once share a transaction and its commit (group commit), as a worker's
    completions do. A start alone is committed at once; starts that arrive while a commit is
    under way wait for it to end and are committed together in the next. Each start returns
    once its own run is committed (or has an error of its own).

    The commits are made on the Runtime's portal loop, whatever loop a start comes from: a
    user's loop may end between two commits, the portal's lives as long as the Engine. A
    blocking start on a store it may call directly (`create_run_direct`) commits on its own
    thread when nobody is committing, with the starts that came meanwhile, and hands those that
    come during its commit to the portal."""

    # a transaction takes this many steps' worth of runs at most (and always one run)
    MAX_STEPS = 10_000

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._lock = threading.Lock()
        self._queue: list[_Start] = []
        self._committing = False
        self._task: asyncio.Task[None] | None = None

    async def create_run(
        self, run: RunRow, steps: Sequence[StepRow], events: Sequence[EventRow]
    ) -> tuple[RunRow, bool]:
        """`Store.create_run`, sharing a commit with the starts made meanwhile."""
        if driven_directly():  # on a blocking caller's thread, by the store's `direct`
            store = self._rt.direct_store()
            if store is None:
                raise RuntimeError("a direct start on a store that takes no direct calls")
            return self.create_run_direct(store, run, steps, events)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[RunRow, bool]] = loop.create_future()
        start = _Start((run, steps, events), loop, future)
        with self._lock:
            self._queue.append(start)
            lead, self._committing = not self._committing, True
        if lead:  # nobody is committing: we start the commits
            portal = self._rt.portal
            if portal.running_here():
                self._task = loop.create_task(self._commit_all())  # referenced while it runs
            else:
                portal.submit(self._commit_all())
        return await future

    def create_run_direct(
        self, store: CallsDirect, run: RunRow, steps: Sequence[StepRow], events: Sequence[EventRow]
    ) -> tuple[RunRow, bool]:
        """`create_run` for a thread free to block (no event loop): it commits itself when
        nobody is committing, else waits for the commit that takes its run."""
        start = _Start((run, steps, events), None, None)
        with self._lock:
            self._queue.append(start)
            lead, self._committing = not self._committing, True
        if lead:
            with self._lock:
                batch = self._take()
            try:
                store.direct(lambda: self._commit(batch))
            except BaseException as exc:  # an interrupt: nobody in the batch must hang
                for each in batch:
                    each.settle(None, exc)
                raise
            finally:  # the starts that came meanwhile are the portal's to commit
                with self._lock:
                    if self._queue:
                        self._rt.portal.submit(self._commit_all())
                    else:
                        self._committing = False
        return start.wait()

    async def _commit_all(self) -> None:
        """Commit what is queued, batch after batch, until nothing is."""
        while True:
            with self._lock:
                batch = self._take()
                if not batch:
                    self._committing = False
                    return
            try:
                await self._commit(batch)
            except BaseException as exc:  # the loop is going down: nobody must hang
                for start in batch:
                    start.settle(None, exc)
                if not isinstance(exc, Exception):
                    with self._lock:
                        for start in self._take(all_of_them=True):
                            start.settle(None, exc)
                        self._committing = False
                    raise

    def _take(self, all_of_them: bool = False) -> list[_Start]:
        """The next batch (under the lock): starts in arrival order, as many as fit."""
        batch: list[_Start] = []
        steps = 0
        while self._queue:
            start = self._queue[0]
            steps += len(start.new[1])
            if batch and steps > self.MAX_STEPS and not all_of_them:
                break
            self._queue.pop(0)
            if not start.abandoned():  # its caller gave up waiting: it never started
                batch.append(start)
        return batch

    async def _commit(self, batch: list[_Start]) -> None:
        store = await self._rt.ready()
        try:  # one run too: `create_runs` binds only the columns a new run has set
            results = await store.create_runs([start.new for start in batch])
        except RunConflict:
            # one of them names a run of another workflow: then each alone, to each its answer
            for start in batch:
                try:
                    start.settle(await store.create_run(*start.new), None)
                except Exception as exc:
                    start.settle(None, exc)
            return
        except Exception as exc:
            for start in batch:
                start.settle(None, exc)
            return
        for start, result in zip(batch, results, strict=True):
            start.settle(result, None)


class _Start:
    """A start waiting for its commit, on its caller's loop, or blocking its caller's thread
    (`loop` None: `wait`)."""

    __slots__ = ("future", "loop", "new", "outcome", "settled")

    def __init__(
        self,
        new: NewRun,
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[tuple[RunRow, bool]] | None,
    ) -> None:
        self.new = new
        self.loop = loop
        self.future = future
        self.outcome: tuple[tuple[RunRow, bool] | None, BaseException | None] | None = None
        self.settled: Any = None
        if future is None:
            self.settled = _thread.allocate_lock()
            self.settled.acquire()  # released by `settle`

    def abandoned(self) -> bool:
        return self.future is not None and self.future.done()  # cancelled: nobody settles it

    def wait(self) -> tuple[RunRow, bool]:
        """The blocking caller's result, once its commit has settled it."""
        acquire(self.settled)
        assert self.outcome is not None
        result, error = self.outcome
        if error is not None:
            raise error
        assert result is not None
        return result

    def settle(self, result: tuple[RunRow, bool] | None, error: BaseException | None) -> None:
        if self.loop is None or self.future is None:
            if self.outcome is None:
                self.outcome = (result, error)
                self.settled.release()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            _settle(self.future, result, error)
        else:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                self.loop.call_soon_threadsafe(_settle, self.future, result, error)


def _settle(
    future: asyncio.Future[tuple[RunRow, bool]],
    result: tuple[RunRow, bool] | None,
    error: BaseException | None,
) -> None:
    if future.done():
        return  # its caller gave up waiting
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)


log = logging.getLogger(__name__)
VERSION_CONFLICTS = ("refuse", "warn")  # a second graph under a registered name and version


class Workflows:
    """The workflows registered in this process: by fingerprint (what workers can run) and the
    latest version of each name (what a start, a fork or a replay by name uses)."""

    def __init__(self) -> None:
        self._by_fingerprint: dict[str, Workflow] = {}
        self._latest: dict[str, Workflow] = {}

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self._by_fingerprint

    def add(self, workflow: Workflow) -> None:
        self._by_fingerprint[workflow.fingerprint] = workflow
        self._latest[workflow.name] = workflow

    def latest(self, name: str) -> Workflow | None:
        return self._latest.get(name)

    def get(self, fingerprint: str) -> Workflow | None:
        return self._by_fingerprint.get(fingerprint)

    def all(self) -> list[Workflow]:
        return list(self._by_fingerprint.values())


# A worker renews its leases every lease/3, each renewal a write: below a second, renewals
# come faster than a busy store commits, and a worker that stalls for a moment (a GC pause, a
# slow fsync, a handler holding the GIL) loses its steps to others, which run them again and
# spend their max_recoveries. Above a day, a dead worker's steps wait a day for anyone else.
MIN_LEASE, MAX_LEASE = 1.0, 86_400.0


def check_lease(lease: object) -> float:
    if (
        isinstance(lease, bool)
        or not isinstance(lease, int | float)
        or not MIN_LEASE <= lease <= MAX_LEASE  # False for NaN
    ):
        raise ConfigError(
            f"lease must be a number of seconds >= {MIN_LEASE:g} and <= {MAX_LEASE:g} (a worker "
            f"renews its leases every lease/3), got {lease!r}"
        )
    return float(lease)


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise PlaitError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


MIN_ERROR_LIMIT = 256  # bytes: room for a sentence and the cut's marker


class Runtime:
    """What one Engine shares with its workers and operations (see the module docstring).

    `lease`: seconds a claimed step is held before another worker may take it over.
    `max_recoveries`: attempts of a step that may end without an outcome (lease expired, or
    released by a stopping worker) before it fails with `lease_expired` or `abandoned`.
    `poll_interval` / `sweep_interval`: how often waiters look at the store when nothing wakes
    them, without and with a live push from the store. `error_limit`: bytes of a step's error
    message kept (the rest is cut, saying how much). `clock`: what reads and waits on the time
    (`_clock`); real time unless a test gives a `plait.testing.VirtualClock`."""

    def __init__(
        self,
        url: str,
        *,
        lease: float,
        max_recoveries: int,
        poll_interval: float,
        sweep_interval: float,
        create: bool = True,
        read_only: bool = False,
        store: Store | None = None,
        error_limit: int = MESSAGE_LIMIT,
        version_conflicts: str = "refuse",
        clock: Clock = REAL,
    ) -> None:
        self.lease = check_lease(lease)
        if not isinstance(version_conflicts, str) or version_conflicts not in VERSION_CONFLICTS:
            raise PlaitError(
                f"version_conflicts must be 'refuse' or 'warn', got {version_conflicts!r}"
            )
        self.version_conflicts = version_conflicts
        if (
            isinstance(error_limit, bool)
            or not isinstance(error_limit, int)
            or error_limit < MIN_ERROR_LIMIT
        ):
            raise PlaitError(
                f"error_limit must be an integer >= {MIN_ERROR_LIMIT} (bytes), got {error_limit!r}"
            )
        self.error_limit = error_limit  # bytes of a step's error message kept
        if (
            isinstance(max_recoveries, bool)
            or not isinstance(max_recoveries, int)
            or max_recoveries < 0
        ):
            raise PlaitError(f"max_recoveries must be an integer >= 0, got {max_recoveries!r}")
        self.max_recoveries = max_recoveries
        self.poll_interval = _positive("poll_interval", poll_interval)
        self.sweep_interval = _positive("sweep_interval", sweep_interval)
        if store is not None:  # a store object (a third party's): its artifacts in its blobs
            self.store: Store = check_store(store)
            self.url = url = self.store.url
            self.artifacts: ArtifactStorage = storage_for(None, None)
        else:
            self.url = url
            store_url, option = split_url(
                url
            )  # the artifacts= option is the Runtime's, not the store's
            self.artifacts = storage_for(store_url, option)
            self.store = open_store(store_url, create=create, read_only=read_only)
        self.clock = clock
        with contextlib.suppress(AttributeError):  # a store object that does not take it
            self.store.clock = clock  # the times a store stamps itself
        self.portal = Portal()
        self.workflows = Workflows()
        self.work_ready = Broadcast()  # steps became ready, or a limited slot freed: wake workers
        self.runs_ended = RunsEnded()  # runs ended: wake result() waiters
        self.runs_cancelled = Broadcast()  # runs cancelled: workers stop their running steps
        self.timers_set = Broadcast()  # a deadline or an expiry was set: workers look again
        self.events_written = EventsWritten()  # events were committed: wake watchers
        self.workers: set[Stoppable] = set()  # workers running in this process
        self.workers_ended = Broadcast()  # one of them has stopped
        self.starts = StartCommits(self)  # starts share commits (group commit)
        self.observer: Observer | None = None  # told of claims, commits, expiries (metrics)
        self.ended_runs: EndedRuns | None = None  # told of the runs this process ended (traces)
        self._push_live = False
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
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

    # -- the store --------------------------------------------------------------------------------

    async def ready(self) -> Store:
        """The store, opened (connected, schema checked or created) on first use."""
        if not self._opened:
            if self._open_lock is None:
                self._open_lock = asyncio.Lock()
            async with self._open_lock:
                if not self._opened:
                    await self.store.open()
                    self._opened = True
        return self.store

    def direct_store(self) -> CallsDirect | None:
        """The store, if it is open and a blocking caller's thread may call it itself
        (`CallsDirect`); None: go through the portal's loop."""
        store = self.store
        if self._opened and "direct" in store.capabilities and isinstance(store, CallsDirect):
            return store
        return None

    async def close(self) -> None:
        """Stop this process's workers (gracefully: they finish or release their steps), then
        close the store. A worker still running would otherwise wait forever on a closed store."""
        while self.workers:
            seen = self.workers_ended.generation
            for worker in list(self.workers):
                worker.stop_threadsafe()
            await self.workers_ended.wait(1.0, since=seen)
        if self.ended_runs is not None:
            await self.ended_runs.drain()
        if self._opened:
            self._opened = False
            await self.store.close()

    async def run_row(self, run_id: str, excerpt: int | None = None) -> RunRow:
        """The run's row (its payloads cut to `excerpt` bytes, if given: `Store.get_run`);
        RunNotFound, with the one message every operation gives."""
        store = await self.ready()
        if excerpt is None:  # the call every store (and wrapper) has always taken
            row = await store.get_run(run_id)
        else:
            row = await store.get_run(run_id, excerpt=excerpt)
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r} in {self.url}")
        return row

    async def apply(self, action: Callable[..., Any], run_id: str, **options: Any) -> CommitResult:
        """Apply an operator action (a transition of `core.actions` or `core.gates`) to a run
        in one store transaction; its refusal is RunStateError. Wakes this process's waiters."""
        store = await self.ready()
        bound: Action = lambda txn: action(txn, run_id, **options)  # noqa: E731
        result = await store.apply(bound, self.clock.time())
        if result.refusal is not None:
            raise RunStateError(result.refusal)
        self.committed(result)
        return result

    def committed(self, result: CommitResult) -> None:
        """Wake what a commit made in this process concerns: workers, waiters, watchers."""
        self.events_written.fire()
        if result.readied or result.slot_freed:  # slot_freed: a slot that held back ready work
            self.work_ready.fire()
        if result.ended_runs:
            self.runs_ended.ended(result.ended_runs)
            if self.ended_runs is not None:
                self.ended_runs.ended(result.ended_runs)
        if result.cancelled_runs:
            self.runs_cancelled.fire()
        if result.timers_changed:
            self.timers_set.fire()

    # -- workflows --------------------------------------------------------------------------------

    async def register(self, workflow: Workflow) -> WorkflowPlan:
        """Validate a workflow and record its version in the store (idempotent); its plan."""
        if not isinstance(workflow, Workflow):
            raise PlaitError(f"expected a plait.Workflow, got {type(workflow).__name__}")
        plan = workflow.plan()  # raises DefinitionError
        if plan.fingerprint not in self.workflows:
            store = await self.ready()
            # known or not, without reading the plan back (100,000 steps' worth to decode)
            if not await store.workflow_known(plan.fingerprint):
                await self.check_version(store, plan)
            stamped = replace(plan, created_at=self.clock.time())
            await store.save_workflow(stamped)
            self.workflows.add(workflow)
        return plan

    async def check_version(self, store: Store, plan: WorkflowPlan) -> None:
        """A second graph under a name and version already registered is refused (a
        DefinitionError saying what differs), or logged with version_conflicts="warn". The same
        graph with other code (a deploy, or code_changes="pin") is no conflict."""
        for other in await store.list_workflows():
            if other.name != plan.name or other.version != plan.version:
                continue
            diff = diff_plans(other, plan)
            if not diff.graph:
                continue
            what = (
                f"workflow {plan.name!r} version {plan.version!r} is already registered with "
                f"another graph (fingerprint {other.fingerprint}; this one is "
                f"{plan.fingerprint}): {describe(diff)}"
            )
            if self.version_conflicts == "refuse":
                raise DefinitionError(
                    f"{what}. Give the changed graph a new version string, or open the Engine "
                    "with version_conflicts='warn' to register it anyway"
                )
            log.warning("%s; registered anyway (version_conflicts='warn')", what)
            return
