"""What one Engine shares with its workers and operations: the store, the settings, the wake-ups
of this process, and the workflows registered here.

The Engine (`engine/engine.py`) is the facade users call; everything under it (workers, idle
waits, the scheduler, replay, the registry heartbeat, and the operations the facade delegates
to) takes a `Runtime`, never the Engine. A Runtime is one process's view: its broadcasts wake
waiters in this process, and the store's push notifications (PostgreSQL) fire the same
broadcasts for work done in other processes.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from ._errors import ConfigError, PlaitError, RunNotFound, RunStateError
from ._portal import Broadcast, Portal
from .core.rows import Claim, CommitResult, Outcome, RunRow, WorkflowPlan
from .core.txn import Action
from .data.artifacts import ArtifactStorage, split_url, storage_for
from .stores import Store, open_store
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


class Stoppable(Protocol):
    """A worker running in this process, as the Runtime knows it: something to stop."""

    def stop_threadsafe(self) -> None: ...


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


class Runtime:
    """What one Engine shares with its workers and operations (see the module docstring).

    `lease`: seconds a claimed step is held before another worker may take it over.
    `max_recoveries`: attempts of a step that may end without an outcome (lease expired, or
    released by a stopping worker) before it fails with `lease_expired` or `abandoned`.
    `poll_interval` / `sweep_interval`: how often waiters look at the store when nothing wakes
    them, without and with a live push from the store."""

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
    ) -> None:
        self.lease = check_lease(lease)
        if (
            isinstance(max_recoveries, bool)
            or not isinstance(max_recoveries, int)
            or max_recoveries < 0
        ):
            raise PlaitError(f"max_recoveries must be an integer >= 0, got {max_recoveries!r}")
        self.max_recoveries = max_recoveries
        self.poll_interval = _positive("poll_interval", poll_interval)
        self.sweep_interval = _positive("sweep_interval", sweep_interval)
        self.url = url
        store_url, option = split_url(
            url
        )  # the artifacts= option is the Runtime's, not the store's
        self.artifacts: ArtifactStorage = storage_for(store_url, option)
        self.store: Store = open_store(store_url, create=create, read_only=read_only)
        self.portal = Portal()
        self.workflows = Workflows()
        self.work_ready = Broadcast()  # steps became ready, or a limited slot freed: wake workers
        self.runs_ended = Broadcast()  # runs ended: wake result() waiters
        self.runs_cancelled = Broadcast()  # runs cancelled: workers stop their running steps
        self.timers_set = Broadcast()  # a deadline or an expiry was set: workers look again
        self.events_written = EventsWritten()  # events were committed: wake watchers
        self.workers: set[Stoppable] = set()  # workers running in this process
        self.workers_ended = Broadcast()  # one of them has stopped
        self.observer: Observer | None = None  # told of claims, commits, expiries (metrics)
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

    async def close(self) -> None:
        """Stop this process's workers (gracefully: they finish or release their steps), then
        close the store. A worker still running would otherwise wait forever on a closed store."""
        while self.workers:
            seen = self.workers_ended.generation
            for worker in list(self.workers):
                worker.stop_threadsafe()
            await self.workers_ended.wait(1.0, since=seen)
        if self._opened:
            self._opened = False
            await self.store.close()

    async def run_row(self, run_id: str) -> RunRow:
        """The run's row; RunNotFound, with the one message every operation gives."""
        store = await self.ready()
        row = await store.get_run(run_id)
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r} in {self.url}")
        return row

    async def apply(self, action: Callable[..., Any], run_id: str, **options: Any) -> CommitResult:
        """Apply an operator action (a transition of `core.actions` or `core.gates`) to a run
        in one store transaction; its refusal is RunStateError. Wakes this process's waiters."""
        store = await self.ready()
        bound: Action = lambda txn: action(txn, run_id, **options)  # noqa: E731
        result = await store.apply(bound, time.time())
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
            self.runs_ended.fire()
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
            stamped = WorkflowPlan(
                plan.name, plan.version, plan.fingerprint, plan.steps, time.time()
            )
            await store.save_workflow(stamped)
            self.workflows.add(workflow)
        return plan
