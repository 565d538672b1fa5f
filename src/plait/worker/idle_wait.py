"""How a worker that found nothing to claim waits before it claims again.

A claim is a write transaction (on SQLite, `BEGIN IMMEDIATE`: it takes the file's write lock),
so a worker with nothing to do should not make one unless something may have changed:

- a wake-up in this process (`Runtime.work_ready`: a commit here made steps ready or freed a
  limited slot; `runs_ended` for a worker awaiting runs) or pushed by the store (PostgreSQL's
  notifications) ends the wait at once;
- the time of the next delayed step, or of a rate limit's next token, ends it too;
- otherwise the worker looks at the store now and then: every `poll_interval` when held back by
  limits, and backing off from 2 ms to `poll_interval` when idle. On a store that counts changes
  (capability "change_counter": SQLite's `PRAGMA data_version`), a look is a cheap read of that
  counter, and the worker claims only if another connection committed since the counter was
  last read before a claim, or if `sweep_interval` passed without a claim (a safety net, as it
  is for missed notifications on PostgreSQL). Elsewhere a look is a claim.

The counter is read *before* the claim it allows, so a commit made between that read and the
claim is seen again at the next look: a change is never missed, at worst claimed for twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .._errors import StoreError
from .._portal import Broadcast
from .._runtime import Runtime
from ..stores.protocol import CountsChanges

FIRST_BACKOFF = 0.002  # seconds: an idle worker's first look after it found nothing


class IdleWait:
    """The waiting policy of one worker's claim loop (see the module docstring)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        store = rt.store
        self._counter: CountsChanges | None = None
        if "change_counter" in store.capabilities and isinstance(store, CountsChanges):
            self._counter = store
        self._backoff = FIRST_BACKOFF
        self._mark: int | None = None  # the counter as read before the last claim it allowed
        self._claimed_at = time.monotonic()

    def took_work(self) -> None:
        """A claim took steps: when the worker runs dry again, it starts looking quickly."""
        self._backoff = FIRST_BACKOFF
        self._claimed_at = time.monotonic()  # the sweep counts from the last claim

    async def wait(
        self,
        wakers: Sequence[tuple[Broadcast, int | None]],
        *,
        limited: bool,
        next_at: float | None,
    ) -> bool:
        """Wait until the next claim is worth making: True if a broadcast woke the worker.
        `limited`: the last claim found ready work held back by limits (a slot freed here wakes
        it, so it needs no fast look); `next_at`: when a delayed step or a token is due."""
        rt = self.rt
        while True:
            limit = rt.idle_interval
            wait = limit if rt.push_live or limited else min(self._backoff, limit)
            until_due = None if next_at is None else max(next_at - rt.clock.time(), 0.0)
            # the time something is due is the clock's (a test's may be virtual); a look at
            # the store is a real-time safety net
            woken = await rt.clock.wait_any(wakers, until_due, poll=wait)
            due = False
            if not woken and next_at is not None and until_due is not None:
                due = until_due <= wait or rt.clock.time() >= next_at
            self._backoff = FIRST_BACKOFF if woken else min(self._backoff * 2, limit)
            if woken or due or self._counter is None or rt.push_live:
                break
            swept = time.monotonic() - self._claimed_at >= rt.sweep_interval
            if await self._changed() or swept:
                break
            # nothing was committed elsewhere: that read replaced a claim
        self._claimed_at = time.monotonic()
        return woken

    async def _changed(self) -> bool:
        """Did another connection commit since the counter was last read? (Read it now.)"""
        assert self._counter is not None
        try:
            counter = await self._counter.change_counter()
        except StoreError:
            return True  # the claim meets the outage, and the worker reports it
        changed = counter != self._mark
        self._mark = counter
        return changed
