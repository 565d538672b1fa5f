"""The portal: blocking calls into the private loop that the sync API is derived from."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator

import pytest

from plait._portal import Portal


@pytest.fixture
def portal() -> Iterator[Portal]:
    opened = Portal(name="test-portal")
    yield opened
    opened.close()


def test_call_returns_what_the_coroutine_returns_on_the_portal_s_loop(portal: Portal) -> None:
    async def where() -> tuple[bool, str]:
        await asyncio.sleep(0)
        return portal.running_here(), threading.current_thread().name

    assert portal.call(where()) == (True, "test-portal")
    assert not portal.running_here()


def test_call_raises_what_the_coroutine_raises(portal: Portal) -> None:
    class Boom(Exception):
        pass

    async def fails() -> None:
        raise Boom("inside")

    with pytest.raises(Boom, match=r"^inside$"):
        portal.call(fails())


@pytest.mark.parametrize("how", ["call", "submit"])
def test_a_blocking_call_from_the_portal_s_own_loop_is_refused(portal: Portal, how: str) -> None:
    async def nested() -> int:
        return 1

    async def outer() -> None:
        coro = nested()
        with pytest.raises(RuntimeError) as caught:
            getattr(portal, how)(coro)
        assert str(caught.value) == (
            "a blocking plait method was called from plait's own loop; await the *_async twin"
        )
        assert coro.cr_frame is None  # closed, never left unawaited

    portal.call(outer())


def test_many_threads_call_at_once(portal: Portal) -> None:
    async def double(n: int) -> int:
        await asyncio.sleep(0)
        return 2 * n

    results: dict[int, int] = {}

    def caller(base: int) -> None:
        for n in range(base, base + 200):
            results[n] = portal.call(double(n))

    threads = [threading.Thread(target=caller, args=(k * 1000,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {n: 2 * n for k in range(8) for n in range(k * 1000, k * 1000 + 200)}


def test_a_signal_given_to_the_loop_thread_is_handled_while_the_main_thread_waits(
    portal: Portal,
) -> None:
    """Python runs signal handlers on the main thread when it wakes: a signal the kernel gives
    to another thread used to wait until a blocking call returned (SIGTERM ignored by a worker,
    Ctrl-C doing nothing). The main thread waits in slices, so the handler runs meanwhile."""
    assert threading.current_thread() is threading.main_thread()
    handled = threading.Event()
    previous = signal.signal(signal.SIGUSR1, lambda *_: handled.set())

    async def signalled() -> bool:
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)  # to the loop's thread only
        return await asyncio.to_thread(handled.wait, 10)

    try:
        assert portal.call(signalled()) is True
    finally:
        signal.signal(signal.SIGUSR1, previous)
