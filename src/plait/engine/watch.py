"""Watching a run: its events as they are committed (`Engine.watch`), woken rather than polled.

Where a watcher's wake-ups come from:
- commits made by this process: `Runtime.committed` fires `Runtime.events_written`;
- other processes' commits, on a store that pushes them (capability "push_events": PostgreSQL):
  the store's listener names the runs whose logs grew, and only their watchers wake; while the
  push is live a watcher looks at the store by itself only every `sweep_interval`;
- otherwise a poll that backs off from 10 ms to `poll_interval`, starting again at 10 ms after
  each event delivered: a step that has just ended is soon followed by the next one's start,
  which a worker claims without telling anyone in this process.

However it was woken, a watcher reads by seq after the last event it delivered, so it neither
misses nor repeats one. It ends once the run's status, read after delivering every event, is
terminal and no event came after: a run retried after it ended goes on being watched.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime

from .._errors import InputError, RunNotFound
from .._portal import Broadcast, wait_any
from .._runtime import Runtime
from ..stores import Store
from ..stores.protocol import PushesEvents
from .views import Event, Run

FIRST_POLL = 0.01  # seconds: the first look at the store after an event, when nothing pushes
PAGE = 1000  # events read at a time: a long log is not loaded whole


class Watch:
    """The events of one run as they are committed, ending after the run ends.

    Iterate it with `async for` on any event loop, or with a plain `for` (which blocks, the work
    being done on the engine's own loop like every blocking method). Each iteration starts again
    after `after_seq`."""

    __slots__ = ("_after_seq", "_rt", "_run_id")

    def __init__(self, rt: Runtime, run_id: str, after_seq: int) -> None:
        check(run_id, after_seq)
        self._rt = rt
        self._run_id = run_id
        self._after_seq = after_seq

    def __aiter__(self) -> AsyncIterator[Event]:
        return watch(self._rt, self._run_id, self._after_seq)

    def __iter__(self) -> Iterator[Event]:
        portal = self._rt.portal
        events = watch(self._rt, self._run_id, self._after_seq)
        pending: list[asyncio.Task[Event | None]] = []
        try:
            while (event := portal.call(_advance(events, pending))) is not None:
                yield event
        finally:
            # left early (break, Ctrl-C, an error): stop the read under way, close the watcher
            portal.call(_close(events, pending))

    def __repr__(self) -> str:
        return f"Watch({self._run_id!r}, after_seq={self._after_seq})"


async def _advance(
    events: AsyncGenerator[Event, None], pending: list[asyncio.Task[Event | None]]
) -> Event | None:
    task = asyncio.ensure_future(anext(events, None))
    pending[:] = [task]
    return await task


async def _close(
    events: AsyncGenerator[Event, None], pending: list[asyncio.Task[Event | None]]
) -> None:
    for task in pending:
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
    await events.aclose()


async def watch(rt: Runtime, run_id: str, seq: int) -> AsyncGenerator[Event, None]:
    """The run's events after `seq` as they are committed (see the module docstring)."""
    store = await rt.ready()
    pushes = event_pushes(rt, store, run_id)
    await rt.run_row(run_id)  # RunNotFound, with the usual message
    pause = FIRST_POLL
    look_at_run = True  # its status changes only with an event: read it after new ones
    while True:
        seen = rt.events_written.generation
        seen_push = pushes.generation if pushes is not None else None
        batch = await store.get_events(run_id, seq, PAGE)
        for row in batch:
            seq = row.seq
            yield Event.from_row(row)
        if len(batch) == PAGE:
            continue
        if batch or look_at_run:
            look_at_run = False
            run = await store.get_run(run_id)
            if run is None:
                raise RunNotFound(f"run {run_id!r} was deleted while it was watched")
            if run.status.terminal:
                # ended, and nothing after the events delivered: done; else deliver them
                # (a retry may have brought the run back) and look again
                if not await store.get_events(run_id, seq, 1):
                    return
                look_at_run = True
                continue
        pause = min(FIRST_POLL if batch else pause * 2, rt.idle_interval)
        wakers: list[tuple[Broadcast, int | None]] = [(rt.events_written, seen)]
        if pushes is not None:
            wakers.append((pushes, seen_push))
        # while every append is pushed, looking at the store is only a safety net
        wait = rt.idle_interval if pushes is not None and rt.push_live else pause
        woken = await wait_any(wakers, wait)
        # a sweep looks at the run too: one deleted with its events would be waited on forever
        look_at_run = not woken and wait >= rt.idle_interval


def event_pushes(rt: Runtime, store: Store, run_id: str) -> Broadcast | None:
    """The broadcast the store fires for this run's events written elsewhere, or None."""
    if "push_events" not in store.capabilities or not isinstance(store, PushesEvents):
        return None
    store.subscribe_events(rt.events_written.pushed)  # idempotent
    return rt.events_written.for_run(run_id)


def check(run_id: object, after_seq: object) -> None:
    if not isinstance(run_id, str):
        raise InputError(f"run_id must be a string, got {type(run_id).__name__}")
    if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
        raise InputError(f"after_seq must be an integer >= 0, got {after_seq!r}")


# -- the run-list change feed ---------------------------------------------------------------------

OVERLAP = 2.0  # seconds of changes read again at each look (see `watch_runs`)
COALESCE = 0.05  # seconds a woken feed lets further commits gather before it looks
CHANGES_PAGE = 500


async def watch_runs(rt: Runtime, since: float | None) -> AsyncGenerator[Run, None]:
    """Runs as their status changes (created, started, paused, ended, retried…), from `since`
    on (epoch seconds, the `updated_at` of a change delivered before, which is delivered again;
    None: from now on), each with `updated_at` set, in the order of their
    changes. Never ends by itself.

    The store remembers when each run's status last changed (`Store.list_run_changes`). A
    change is stamped with its writer's clock when its transaction runs, and may commit a
    little later, or come from a host whose clock lags: each look reads the last `OVERLAP`
    seconds again and delivers only what it has not delivered (a run, at that time), so such
    a change is still seen. Woken by this process's commits and the store's pushes of ended
    runs; otherwise it polls like a `result()` waiter."""
    if since is not None and (
        isinstance(since, bool) or not isinstance(since, int | float) or not math.isfinite(since)
    ):
        raise InputError(f"since must be epoch seconds, got {since!r}")
    store = await rt.ready()
    start = rt.clock.time() if since is None else float(since)
    delivered: dict[str, float] = {}  # run id → the change of it delivered last
    horizon = start  # the latest change seen
    pause = FIRST_POLL
    while True:
        seen = (rt.events_written.generation, rt.runs_ended.generation, rt.work_ready.generation)
        after: tuple[float, str] = (max(start, horizon - OVERLAP), "")
        fresh: list[tuple[float, str]] = []
        while True:
            batch = await store.list_run_changes(after, CHANGES_PAGE)
            fresh += [(at, r) for at, r in batch if delivered.get(r) != at]
            if len(batch) < CHANGES_PAGE:
                break
            after = batch[-1]
        if fresh:
            rows = {r.id: r for r in await store.get_runs({r for _, r in fresh})}
            for at, run_id in fresh:
                delivered[run_id] = at
                horizon = max(horizon, at)
                row = rows.get(run_id)
                if row is not None:
                    yield replace(Run.from_row(row), updated_at=datetime.fromtimestamp(at, UTC))
            # forget what the next look cannot read again
            floor = horizon - OVERLAP
            for run_id in [r for r, at in delivered.items() if at < floor]:
                del delivered[run_id]
        pause = min(FIRST_POLL if fresh else pause * 2, rt.idle_interval)
        woken = await wait_any(
            [
                (rt.events_written, seen[0]),
                (rt.runs_ended, seen[1]),
                (rt.work_ready, seen[2]),
            ],
            pause,
        )
        if woken:
            await asyncio.sleep(COALESCE)
