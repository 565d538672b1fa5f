"""A Ctrl-C while a blocking `for event in engine.watch(...)` waits: the watch is closed and
nothing is left behind to complain on stderr (`plait runs watch` exits with one line).

The KeyboardInterrupt can land at any point of the portal's call for the next event, also
inside `call_soon_threadsafe` once it has queued the read, before the loop has started it:
then the close is queued behind it. The loop is held here while both are queued, and the
interrupt raised there, so that the interleaving that showed under load (30 Ctrl-Cs, 7 with
asyncio's "Task exception was never retrieved" on stderr) happens every time."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import plait
from plait.engine import watch


@pytest.fixture
def engine() -> Iterator[plait.Engine]:
    with plait.Engine("memory://") as eng:
        yield eng


def test_ctrl_c_before_the_read_starts_closes_the_watch_quietly(
    engine: plait.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = plait.Workflow("idle")

    @wf.step()
    def only(n: int) -> int:
        return n

    engine.start(wf, {"n": 1}, run_id="idle")  # no worker: it never ends
    events = iter(engine.watch("idle"))
    assert next(events).type == "run_started"

    loop = engine._rt.portal._ensure()
    held, release = threading.Event(), threading.Event()
    loop.call_soon_threadsafe(lambda: (held.set(), release.wait(30)))
    assert held.wait(30)
    queued: list[Callable[..., Any]] = []
    plain = loop.call_soon_threadsafe

    def queue(callback: Callable[..., Any], *args: Any) -> Any:
        queued.append(callback)
        handle = plain(callback, *args)
        if len(queued) == 1:  # Ctrl-C's handler runs here: the read is queued, not started
            raise KeyboardInterrupt
        if len(queued) == 2:  # the close is queued behind it: let the loop go
            release.set()
        return handle

    closed: list[list[asyncio.Task[Any]]] = []
    close = watch._close

    async def closing(events: Any, pending: list[asyncio.Task[Any]]) -> None:
        closed.append(pending)
        await close(events, pending)

    monkeypatch.setattr(watch, "_close", closing)
    unhandled: list[dict[str, Any]] = []  # what asyncio would log ("never retrieved")
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    started: list[asyncio.Task[Any]] = []
    create = loop.create_task

    def start(coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        started.append(create(coro, **kwargs))
        return started[-1]

    loop.create_task = start  # type: ignore[method-assign]  # watched, then restored
    loop.call_soon_threadsafe = queue  # type: ignore[method-assign]  # watched, then restored
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            with pytest.raises(KeyboardInterrupt):
                next(events)
            del events
            gc.collect()
    finally:
        del loop.call_soon_threadsafe
        del loop.create_task
        release.set()
    assert len(queued) == 2  # the read, then the close
    [pending] = closed
    assert pending and all(t.done() for t in pending)
    # the read left behind started and ended cancelled, or never started: nothing failed
    assert [e for t in pending if not t.cancelled() and (e := t.exception())] == []
    # the tasks the loop started meanwhile (the read, if it took it; the close) ended well
    assert all(t.done() for t in started)
    assert [repr(e) for t in started if not t.cancelled() and (e := t.exception())] == []
    assert [c["message"] for c in unhandled] == []
    assert [str(w.message) for w in warned] == []  # "coroutine ... never awaited": none
    assert engine.get_run("idle").status is plait.RunStatus.PENDING  # the engine goes on
    gc.collect()
    assert [c["message"] for c in unhandled] == []
