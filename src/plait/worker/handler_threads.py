"""Threads for sync step handlers, handing results back to the event loop in batches."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

_Result = asyncio.Future[tuple[bool, Any]]  # (True, return value) or (False, exception)
_Job = tuple[_Result, Any, dict[str, Any]]  # future, handler, arguments


class HandlerThreads:
    """Threads for sync handlers, handing results back to the loop in batches.

    Like `loop.run_in_executor` on a ThreadPoolExecutor, but without its per-call cost: one
    concurrent Future chained to one asyncio Future, and one loop wake-up (a self-pipe write) per
    call. Here a finished handler appends its result to a list and wakes the loop only if the
    list was empty, so the loop collects every result that arrived meanwhile in one go. No-op
    steps spent about a fifth of their CPU in that machinery (benchmarks/README.md).
    Threads start lazily, up to `size`, when no thread is idle.
    """

    def __init__(self, size: int) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._size = size
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._finished: list[tuple[_Result, tuple[bool, Any]]] = []

    def run(self, fn: Any, kwargs: dict[str, Any]) -> _Result:
        """Call fn(**kwargs) in a thread; the future gets (True, result) or (False, exception)."""
        assert self.loop is not None
        future: _Result = self.loop.create_future()
        self._jobs.put((future, fn, kwargs))
        if not self._idle.acquire(blocking=False) and len(self._threads) < self._size:
            # daemon: a handler still running when its stopped worker has released its step
            # (it ignored ctx.cancelled) must not keep the process from exiting
            thread = threading.Thread(
                target=self._serve, name=f"plait-step_{len(self._threads)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return future

    def shutdown(self) -> None:
        """Let the threads end once their current handler returns (nothing waits for them)."""
        for _ in self._threads:
            self._jobs.put(None)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, kwargs = job
            result = _call_sync(fn, kwargs)
            del job, fn, kwargs
            with self._lock:
                self._finished.append((future, result))
                wake = len(self._finished) == 1
            del future, result
            if wake:
                assert self.loop is not None
                try:
                    self.loop.call_soon_threadsafe(self._deliver)
                except RuntimeError:  # the loop is closed: nobody waits for the result
                    return
            self._idle.release()

    def _deliver(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
        for future, result in finished:
            if not future.done():  # not cancelled (timeout, stop) meanwhile
                future.set_result(result)


def _call_sync(fn: Any, kwargs: dict[str, Any]) -> tuple[bool, Any]:
    # No BaseException may cross into the event loop: KeyboardInterrupt or SystemExit raised by a
    # handler would otherwise stop the whole loop. Return it as a value instead.
    try:
        return True, fn(**kwargs)
    except BaseException as exc:
        return False, exc
