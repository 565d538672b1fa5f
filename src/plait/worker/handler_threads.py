"""Threads for sync step handlers, handing results back to the event loop in batches.

A sync handler's clock starts when a thread starts it, not when it is queued for one. Python
cannot stop a thread: a handler that overstays its timeout (or whose step the worker stopped
waiting for) keeps its thread until it returns. Such a thread is *stuck*; the pool starts another
in its place, up to `extra` stuck threads beyond `size`, and says so in the log, once per stuck
handler, naming its step and run. Past that, `overflow` counts the stuck threads the pool has no
room for: the worker claims that many steps fewer, so that no step it claims waits for a thread.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

MIN_EXTRA = 4  # stuck threads a pool replaces, at least (else: its size)


class HandlerTimeout(TimeoutError):
    """A sync handler ran past its step's timeout (counted from when its thread started it)."""


class _Job:
    """One call of a sync handler. `started`/`finished`/`abandoned` are set under the pool's lock
    (`started` by the thread, `abandoned` by the loop); `stuck` and `timer` on the loop only."""

    __slots__ = (
        "abandoned", "finished", "fn", "future", "kwargs", "run_id", "started", "step", "stuck",
        "timer",
    )  # fmt: skip

    def __init__(
        self,
        fn: Any,
        kwargs: dict[str, Any],
        future: asyncio.Future[tuple[bool, Any]],
        run_id: str,
        step: str,
    ) -> None:
        self.fn: Any = fn
        self.kwargs: dict[str, Any] | None = kwargs
        self.future = future
        self.run_id = run_id
        self.step = step
        self.started: float | None = None  # time.monotonic() when a thread started the handler
        self.finished = False
        self.abandoned = False  # nobody waits for its result any more
        self.stuck = False  # abandoned while its handler ran: counted in HandlerThreads.stuck
        self.timer: asyncio.TimerHandle | None = None


class HandlerThreads:
    """Threads for sync handlers, handing results back to the loop in batches.

    Like `loop.run_in_executor` on a ThreadPoolExecutor, but without its per-call cost: one
    concurrent Future chained to one asyncio Future, and one loop wake-up (a self-pipe write) per
    call. Here a finished handler appends its result to a list and wakes the loop only if the
    list was empty, so the loop collects every result that arrived meanwhile in one go. No-op
    steps spent about a fifth of their CPU in that machinery (benchmarks/README.md).
    Threads start lazily, when no thread is idle, up to `size` plus one per stuck thread (at
    most `extra`, default max(size, MIN_EXTRA)); see the module docstring.
    """

    def __init__(self, size: int, extra: int | None = None) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_freed: Callable[[], None] | None = None  # called when a stuck thread returns
        self.stuck = 0  # threads whose handler nobody waits for any more
        self._size = size
        self._extra = max(size, MIN_EXTRA) if extra is None else extra
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # idle threads minus queued jobs no thread has taken (negative: jobs wait for a thread)
        self._spare = 0
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._finished: list[tuple[_Job, tuple[bool, Any]]] = []

    @property
    def overflow(self) -> int:
        """Stuck threads beyond the `extra` ones the pool replaces: steps the worker must not
        claim, as no thread would start them."""
        return max(0, self.stuck - self._extra)

    async def call(
        self, fn: Any, kwargs: dict[str, Any], timeout: float | None, run_id: str, step: str
    ) -> tuple[bool, Any]:
        """Call fn(**kwargs) in a thread: (True, its result) or (False, its exception). Raises
        HandlerTimeout once it has run `timeout` seconds; its thread is then stuck until it
        returns. A cancelled call leaves its handler running (stuck) or, if no thread has
        started it yet, never starts it."""
        loop = self.loop
        assert loop is not None
        job = _Job(fn, kwargs, loop.create_future(), run_id, step)
        with self._lock:
            self._jobs.put(job)
            self._spare -= 1
            self._grow()
        if timeout is not None:
            job.timer = loop.call_later(timeout, self._check_clock, job, timeout)
        try:
            return await job.future
        except asyncio.CancelledError:
            self._abandon(job, timed_out=None)
            raise
        finally:
            if job.timer is not None:
                job.timer.cancel()

    def shutdown(self) -> None:
        """Let the threads end once their current handler returns (nothing waits for them)."""
        for _ in self._threads:
            self._jobs.put(None)

    # -- in the loop ----------------------------------------------------------------------------

    def _grow(self) -> None:
        """Start a thread for a job that no idle thread will take, within the limit (under the
        lock)."""
        if self._spare < 0 and len(self._threads) < self._size + min(self.stuck, self._extra):
            thread = threading.Thread(
                target=self._serve,
                name=f"plait-step_{len(self._threads)}",
                # a handler still running when its stopped worker has released its step (it
                # ignored ctx.cancelled) must not keep the process from exiting
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
            self._spare += 1

    def _check_clock(self, job: _Job, timeout: float) -> None:
        """At the earliest possible deadline: time the handler out if it has run `timeout`
        seconds, else look again when it may have (a queued one's clock has not started)."""
        assert self.loop is not None
        if job.future.done() or job.finished:  # returned: its result is on its way
            return
        started = job.started
        left = timeout if started is None else started + timeout - time.monotonic()
        if left > 0:
            job.timer = self.loop.call_later(left, self._check_clock, job, timeout)
            return
        job.future.set_exception(HandlerTimeout(f"the handler ran past its timeout of {timeout}s"))
        self._abandon(job, timed_out=timeout)

    def _abandon(self, job: _Job, timed_out: float | None) -> None:
        """Nobody waits for this job's result any more: a handler it started is now stuck."""
        with self._lock:
            job.abandoned = True
            running = job.started is not None and not job.finished
            if running:
                job.stuck = True
                self.stuck += 1
                self._grow()
        if not running:
            return
        if timed_out is not None:
            log.warning(
                "step %r (run %r) timed out after %ss, but its sync handler still runs: its thread "
                "is stuck until it returns (handlers should check ctx.cancelled); %d thread(s) "
                "stuck",
                job.step,
                job.run_id,
                timed_out,
                self.stuck,
            )
        if self.stuck > self._extra:
            log.warning(
                "%d handler threads are stuck, more than the %d this worker replaces: it runs "
                "%d step(s) fewer at a time until they return",
                self.stuck,
                self._extra,
                self.overflow,
            )

    def _deliver(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
        freed = False
        for job, result in finished:
            if job.stuck:
                self.stuck -= 1
                freed = True
                assert job.started is not None
                log.info(
                    "the sync handler of step %r (run %r) returned after %.1fs: its thread is "
                    "free again; %d thread(s) stuck",
                    job.step,
                    job.run_id,
                    time.monotonic() - job.started,
                    self.stuck,
                )
            elif not job.future.done():  # not cancelled (timeout, stop) meanwhile
                job.future.set_result(result)
        if freed and self.on_freed is not None:
            self.on_freed()

    # -- in a thread ----------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                if job.abandoned:  # its step was given up before a thread started it
                    self._spare += 1
                    continue
                job.started = time.monotonic()
            fn, kwargs = job.fn, job.kwargs
            job.fn = job.kwargs = None
            result = _call_sync(fn, kwargs or {})
            del fn, kwargs
            with self._lock:
                job.finished = True
                self._finished.append((job, result))
                wake = len(self._finished) == 1
                self._spare += 1
            del job, result
            if wake:
                assert self.loop is not None
                try:
                    self.loop.call_soon_threadsafe(self._deliver)
                except RuntimeError:  # the loop is closed: nobody waits for the result
                    return


def _call_sync(fn: Any, kwargs: dict[str, Any]) -> tuple[bool, Any]:
    # No BaseException may cross into the event loop: KeyboardInterrupt or SystemExit raised by a
    # handler would otherwise stop the whole loop. Return it as a value instead.
    try:
        return True, fn(**kwargs)
    except BaseException as exc:
        return False, exc
