"""Watching a run: its events as they are committed (`Engine.watch`), woken rather than polled.

Where a watcher's wake-ups come from:
- commits made by this process: `Engine._committed` fires `Engine.events_written`;
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
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .._errors import InputError, RunNotFound
from .._portal import Broadcast, wait_any
from .views import Event

if TYPE_CHECKING:
    from .._portal import Portal
    from ..core.rows import RunRow
    from ..stores import Store

FIRST_POLL = 0.01  # seconds: the first look at the store after an event, when nothing pushes
PAGE = 1000  # events read at a time: a long log is not loaded whole


@runtime_checkable
class PushesEvents(Protocol):
    """A store that tells which runs other processes appended events to (capability
    "push_events"). `events(None)` means: some runs, which is not known (a notification may
    have been missed)."""

    def subscribe_events(self, events: Callable[[Collection[str] | None], None]) -> None: ...


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


class Watch:
    """The events of one run as they are committed, ending after the run ends.

    Iterate it with `async for` on any event loop, or with a plain `for` (which blocks, the work
    being done on the engine's own loop like every blocking method). Each iteration starts again
    after `after_seq`."""

    __slots__ = ("_after_seq", "_engine", "_run_id")

    def __init__(self, engine: WatchMethods, run_id: str, after_seq: int) -> None:
        self._engine = engine
        self._run_id = run_id
        self._after_seq = after_seq

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._engine.watch_async(self._run_id, self._after_seq)

    def __iter__(self) -> Iterator[Event]:
        portal = self._engine._portal
        events = self._engine.watch_async(self._run_id, self._after_seq)
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


class WatchMethods:
    """`watch` and `watch_async`, for `Engine` (which provides the rest)."""

    if TYPE_CHECKING:
        _portal: Portal
        store: Store
        events_written: EventsWritten

        @property
        def push_live(self) -> bool: ...
        @property
        def idle_interval(self) -> float: ...
        async def _ready(self) -> Store: ...
        async def _run_row(self, run_id: str) -> RunRow: ...

    def watch(self, run_id: str, after_seq: int = 0) -> Watch:
        """The run's events after `after_seq` as they are committed, ending after the event that
        ends the run (or at once if it has ended and nothing follows `after_seq`); a run retried
        meanwhile goes on being watched. `async for event in engine.watch(id)` or, blocking,
        `for event in engine.watch(id)`. RunNotFound (when iteration starts) for an unknown run."""
        _check(run_id, after_seq)
        return Watch(self, run_id, after_seq)

    def watch_async(self, run_id: str, after_seq: int = 0) -> AsyncGenerator[Event, None]:
        """`watch` as a plain async iterator (an async generator: close it, or use
        `contextlib.aclosing`, if you leave it early)."""
        _check(run_id, after_seq)
        return self._watch(run_id, after_seq)

    async def _watch(self, run_id: str, seq: int) -> AsyncGenerator[Event, None]:
        store = await self._ready()
        pushes = self._subscribe_pushes(store, run_id)
        await self._run_row(run_id)  # RunNotFound, with the usual message
        pause = FIRST_POLL
        look_at_run = True  # its status changes only with an event: read it after new ones
        while True:
            seen = self.events_written.generation
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
            pause = min(FIRST_POLL if batch else pause * 2, self.idle_interval)
            wakers: list[tuple[Broadcast, int | None]] = [(self.events_written, seen)]
            if pushes is not None:
                wakers.append((pushes, seen_push))
            # while every append is pushed, looking at the store is only a safety net
            wait = self.idle_interval if pushes is not None and self.push_live else pause
            woken = await wait_any(wakers, wait)
            # a sweep looks at the run too: one deleted with its events would be waited on forever
            look_at_run = not woken and wait >= self.idle_interval

    def _subscribe_pushes(self, store: Store, run_id: str) -> Broadcast | None:
        """The broadcast the store fires for this run's events written elsewhere, or None."""
        if "push_events" not in store.capabilities or not isinstance(store, PushesEvents):
            return None
        store.subscribe_events(self.events_written.pushed)  # idempotent
        return self.events_written.for_run(run_id)


def _check(run_id: object, after_seq: object) -> None:
    if not isinstance(run_id, str):
        raise InputError(f"run_id must be a string, got {type(run_id).__name__}")
    if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
        raise InputError(f"after_seq must be an integer >= 0, got {after_seq!r}")
