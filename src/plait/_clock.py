"""The clock plait reads and waits on: real time, unless a test gives its own.

One `Clock` per Runtime is shared by everything under an Engine that acts on the time: the
times written to the store (a claim's lease and its rate limits' tokens, a delayed step's or a
retry's `available_at`, an approval's expiry, a run's deadline, a schedule's ticks) and the
waits that end when one of those is due (an idle worker's wait for its next delayed step, the
lease keeper's beats and timers, the registry's and the scheduler's beats). A store reads it
too where it stamps a time itself (`Store.clock`). `plait.testing.VirtualClock` replaces it in
tests, so that a run that sleeps a week ends in milliseconds.

What stays on real time whatever the clock: a step's `timeout` (a handler's real run time), the
`timeout=` of `result()` and `run_worker()`, the pauses of an outage, and the polls that look
for other processes' work (a safety net, which a virtual clock must not be dragged along by).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ._portal import Broadcast, wait_any


class Clock:
    """Real time (see the module docstring). A subclass changes all four methods together."""

    def time(self) -> float:
        """Seconds since the epoch, as written to the store."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds of this clock for intervals (they never go backwards)."""
        return time.monotonic()

    async def wait_any(
        self,
        broadcasts: Sequence[tuple[Broadcast, int | None]],
        timeout: float | None,
        *,
        upkeep: float | None = None,
        poll: float | None = None,
    ) -> bool:
        """`_portal.wait_any` for at most `timeout` seconds of this clock (something is due
        then: a delayed step, a timer, a tick), `upkeep` seconds of this clock (a periodic chore:
        a heartbeat), and `poll` real seconds (a look for other processes' work); None: no such
        limit. False when one elapsed. A virtual clock skips ahead to the next `timeout`, and
        lets the chores due on the way run."""
        limits = [t for t in (timeout, upkeep, poll) if t is not None]
        return await wait_any(broadcasts, min(limits) if limits else None)


REAL = Clock()
