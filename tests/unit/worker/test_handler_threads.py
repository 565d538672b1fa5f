"""HandlerThreads (worker/handler_threads.py): a sync handler's clock starts when a thread starts
it; a handler past its timeout keeps its thread (stuck), which the pool replaces up to `extra`;
past that, `overflow` tells the worker to claim fewer steps. (The worker process end to end:
tests/integration/test_wedged_worker.py.)"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from plait.worker.handler_threads import HandlerThreads, HandlerTimeout

DEADLINE = 10.0  # any single wait


def run(main: Callable[[HandlerThreads], Coroutine[Any, Any, None]], size: int, **kw: Any) -> None:
    threads = HandlerThreads(size, **kw)

    async def go() -> None:
        threads.loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(DEADLINE * 2):
                await main(threads)
        finally:
            threads.shutdown()

    asyncio.run(go())


def blocker(gate: threading.Event, started: threading.Event | None = None) -> Callable[[], str]:
    def handler() -> str:
        if started is not None:
            started.set()
        assert gate.wait(DEADLINE)
        return "released"

    return handler


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE):
        while not condition():  # noqa: ASYNC110  # threads change it: there is no Event to await
            await asyncio.sleep(0.005)


def test_the_clock_starts_when_a_thread_starts_the_handler() -> None:
    async def main(threads: HandlerThreads) -> None:
        gate, started = threading.Event(), threading.Event()
        first = asyncio.create_task(threads.call(blocker(gate, started), {}, None, "r", "first"))
        await until(started.is_set)
        # queued behind `first` (one thread, none to replace): longer than its timeout
        second = asyncio.create_task(threads.call(lambda: "ran", {}, 0.2, "r", "second"))
        await asyncio.sleep(0.5)  # the queued handler's timeout passes while it waits
        assert not second.done()
        gate.set()
        assert await first == (True, "released")
        assert await second == (True, "ran")

    run(main, 1, extra=0)


def test_a_handler_past_its_timeout_is_stuck_and_its_thread_replaced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="plait.worker.handler_threads")
    freed: list[int] = []

    async def main(threads: HandlerThreads) -> None:
        threads.on_freed = lambda: freed.append(threads.stuck)
        gate = threading.Event()
        with pytest.raises(HandlerTimeout):
            await threads.call(blocker(gate), {}, 0.1, "run-1", "slow")
        assert threads.stuck == 1 and threads.overflow == 0
        # the next handler gets a thread at once, and its whole timeout
        assert await threads.call(lambda: "ran", {}, 1.0, "run-1", "next") == (True, "ran")
        gate.set()  # the stuck handler returns: its thread is free again
        await until(lambda: threads.stuck == 0)

    run(main, 1)
    assert freed == [0]
    stuck = [r.getMessage() for r in caplog.records if "stuck until it returns" in r.getMessage()]
    assert stuck == [
        "step 'slow' (run 'run-1') timed out after 0.1s, but its sync handler still runs: its "
        "thread is stuck until it returns (handlers should check ctx.cancelled); 1 thread(s) stuck"
    ]
    assert any("step 'slow' (run 'run-1') returned" in r.getMessage() for r in caplog.records)


def test_stuck_threads_beyond_extra_are_overflow() -> None:
    async def main(threads: HandlerThreads) -> None:
        gate = threading.Event()
        for name in ("a", "b"):
            with pytest.raises(HandlerTimeout):
                await threads.call(blocker(gate), {}, 0.05, "r", name)
        # one replaced (extra=1), one not: the worker claims one step fewer (here: none), as a
        # step would wait for a thread
        assert threads.stuck == 2 and threads.overflow == 1
        waiting = asyncio.create_task(threads.call(lambda: 1, {}, 0.05, "r", "c"))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # no thread for it, and its clock has not started
        gate.set()
        assert await waiting == (True, 1)
        await until(lambda: threads.stuck == 0)
        assert threads.overflow == 0

    run(main, 1, extra=1)


def test_a_call_cancelled_before_its_handler_started_never_starts_it() -> None:
    ran: list[str] = []

    async def main(threads: HandlerThreads) -> None:
        gate, started = threading.Event(), threading.Event()
        first = asyncio.create_task(threads.call(blocker(gate, started), {}, None, "r", "first"))
        await until(started.is_set)
        queued = asyncio.create_task(threads.call(lambda: ran.append("x"), {}, None, "r", "q"))
        await asyncio.sleep(0)  # queued for the only thread
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        gate.set()
        await first
        # the same thread takes the jobs in order: once this one ran, the cancelled one was seen
        assert await threads.call(lambda: "after", {}, None, "r", "after") == (True, "after")
        assert threads.stuck == 0

    run(main, 1, extra=0)
    assert ran == []


def test_base_exceptions_of_a_sync_handler_come_back_as_values() -> None:
    def raises(exc: BaseException) -> Callable[[], None]:
        def handler() -> None:
            raise exc

        return handler

    async def main(threads: HandlerThreads) -> None:
        for exc in (
            KeyboardInterrupt(),
            SystemExit(3),
            GeneratorExit(),
            asyncio.CancelledError(),
            BaseException("odd"),
        ):
            ok, result = await threads.call(raises(exc), {}, None, "r", "s")
            assert not ok and result is exc
        assert await threads.call(lambda: "alive", {}, None, "r", "s") == (True, "alive")

    run(main, 1)
