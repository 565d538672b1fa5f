"""Sync methods derived from async ones: a private event loop in a daemon thread runs them.

The async methods are the implementation; `blocking(method_async)` makes the sync twin, so the
two can never drift apart. Calling a sync method from inside the portal's own loop would
deadlock, so it raises instead and names the async method to await.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

# Python runs signal handlers in the main thread only, when it wakes. A signal the kernel gives
# to another thread (the loop's, a handler's: any may take it) waits until the main thread's
# wait ends, which may be never: a worker deaf to SIGTERM, a Ctrl-C that does nothing. The main
# thread therefore waits in slices of this many seconds.
SIGNAL_SLICE = 0.2


def acquire(lock: Any) -> None:
    """`lock.acquire()`, in slices on the main thread (see SIGNAL_SLICE)."""
    if threading.current_thread() is not threading.main_thread():
        lock.acquire()
        return
    while not lock.acquire(timeout=SIGNAL_SLICE):
        pass


def result(future: Future[R]) -> R:
    """`future.result()`, waiting in slices on the main thread (see SIGNAL_SLICE)."""
    if threading.current_thread() is threading.main_thread():
        while not future.done():
            wait_futures([future], timeout=SIGNAL_SLICE)
    return future.result()


class Portal:
    def __init__(self, name: str = "plait-portal") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=serve, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, R]) -> Future[R]:
        try:
            loop = self._ensure()
            self._refuse_own_loop()
        except BaseException:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def _refuse_own_loop(self) -> None:
        """A blocking call made on the portal's own loop would wait for itself forever."""
        if self.running_here():
            raise RuntimeError(
                "a blocking plait method was called from plait's own loop; await the *_async twin"
            )

    def running_here(self) -> bool:
        """Is the caller running on this portal's loop?"""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def call(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run `coro` on the portal's loop and block until it returns (or raises).

        The lightest crossing there is: one callback scheduled on the loop, and a plain lock
        that the task's end releases (a concurrent Future, with its condition variable and
        its chaining, costs a third more per call)."""
        # Until the loop has taken it (`taken`), the coroutine is ours to close on any exception,
        # a Ctrl-C's KeyboardInterrupt too. Such an interrupt may land inside
        # call_soon_threadsafe after it queued `begin`: closing the coroutine then made the
        # loop start a closed one ("RuntimeError: cannot reuse already awaited coroutine",
        # logged on stderr as never retrieved). Whichever side takes it first owns it.
        taken = _thread.allocate_lock()
        try:
            loop = self._ensure()
            self._refuse_own_loop()
            ended = _thread.allocate_lock()
            ended.acquire()
            box: list[asyncio.Task[R]] = []

            def done(task: asyncio.Task[R]) -> None:
                box.append(task)
                ended.release()

            def begin() -> None:
                if taken.acquire(blocking=False):  # else the caller has left, and closed it
                    loop.create_task(coro).add_done_callback(done)

            loop.call_soon_threadsafe(begin)
        except BaseException:  # the loop is closed, called from the loop, interrupted
            if taken.acquire(blocking=False):  # the loop never took it
                coro.close()
            raise
        acquire(ended)
        return box[0].result()

    def call_soon(self, fn: Callable[[], Any]) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(fn)

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()


_driving = threading.local()


def run_to_end(coroutine: Coroutine[Any, Any, R]) -> R:
    """The result of a coroutine that never suspends (driven on the caller's thread, with no
    event loop: a store's `direct` calls)."""
    outer = getattr(_driving, "here", False)
    _driving.here = True
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: R = done.value
        return result
    finally:
        _driving.here = outer
    coroutine.close()
    raise RuntimeError("a direct store call waited for something: it needs an event loop")


def driven_directly() -> bool:
    """Whether the code asking runs inside `run_to_end`: it must not await anything but the
    store's calls, even when its thread has an event loop running (Playwright's sync API and
    Jupyter run one under blocking code)."""
    return bool(getattr(_driving, "here", False))


class HasPortal(Protocol):
    _portal: Portal


S = TypeVar("S", bound=HasPortal)


# Runs a coroutine to its end on the caller's thread, blocking (a store's `direct`).
Direct = Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]


def blocking(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
    *,
    direct: Callable[[S], Direct | None] | None = None,
) -> Callable[Concatenate[S, P], R]:
    """The blocking twin of an `..._async` method. `direct(self)`: where the coroutine may run
    on the caller's own thread instead of the portal's loop, when it gives one (a store's
    `direct` call, for a method whose awaits are all that store's calls)."""

    @functools.wraps(method)
    def twin(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if direct is not None and (here := direct(self)) is not None:
            result: R = here(lambda: method(self, *args, **kwargs))
            return result
        return self._portal.call(method(self, *args, **kwargs))

    twin.__name__ = method.__name__.removesuffix("_async")
    twin.__qualname__ = method.__qualname__.removesuffix("_async")
    return twin


class Broadcast:
    """Wake every waiter, whatever its event loop (waiters may live on the portal or a user loop).

    `generation` counts the fires: a waiter reads it before looking at the state it waits on and
    passes it as `since`, so a fire between its look and its wait is not lost."""

    def __init__(self) -> None:
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()
        self.generation = 0

    def fire(self) -> None:
        with self._lock:
            self.generation += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed; its waiter is gone
                loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout: float | None, since: int | None = None) -> bool:
        """True if woken (or fired since generation `since`), False on timeout."""
        return await wait_any([(self, since)], timeout)


async def wait_any(
    broadcasts: Sequence[tuple[Broadcast, int | None]], timeout: float | None
) -> bool:
    """Wait until one of the broadcasts fires (or has fired since the generation given with it);
    False on timeout."""
    entry = (asyncio.get_running_loop(), asyncio.Event())
    joined: list[Broadcast] = []
    try:
        for broadcast, since in broadcasts:
            with broadcast._lock:
                if since is not None and since != broadcast.generation:
                    return True
                broadcast._waiters.add(entry)
            joined.append(broadcast)
        async with asyncio.timeout(timeout):
            await entry[1].wait()
        return True
    except TimeoutError:
        return False
    finally:
        for broadcast in joined:
            with broadcast._lock:
                broadcast._waiters.discard(entry)
