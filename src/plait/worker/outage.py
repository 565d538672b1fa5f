"""How a worker rides out a store it cannot reach: backoff between tries, and clear logging (one
warning when the outage starts, a reminder every half minute, one line when it is over)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .._errors import StoreError

log = logging.getLogger(
    "plait.worker.worker"
)  # the worker's logger: its messages keep their source


class Outage:
    """Backoff and clear logging while the store cannot be reached: one warning when it starts,
    a reminder every half minute, one line when it is back."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.since: float | None = None
        self.delay = 0.0
        self._reminded = 0.0

    async def failed(self, what: str, exc: StoreError, stopping: asyncio.Event | None) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since, self.delay, self._reminded = now, 0.1, now
            log.warning("worker %s: %s failed, will retry: %s", self.worker_id, what, exc)
        elif now - self._reminded >= 30:
            self._reminded = now
            log.warning(
                "worker %s: store still unavailable after %.0fs (%s): %s",
                self.worker_id, now - self.since, what, exc,
            )  # fmt: skip
        delay, self.delay = self.delay, min(self.delay * 2, 5.0)
        if stopping is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stopping.wait()

    def recovered(self) -> None:
        if self.since is not None:
            log.warning(
                "worker %s: store reachable again after %.1fs",
                self.worker_id, time.monotonic() - self.since,
            )  # fmt: skip
            self.since = None
