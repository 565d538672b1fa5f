"""A virtual clock, and `TestEngine`: an Engine whose time the test controls.

    engine = plait.testing.TestEngine()          # memory://, a VirtualClock skipping on its own
    run = engine.start(wf, {"order": 7})          # a step with delay=timedelta(days=7)
    engine.run_worker(until=run)                  # returns in milliseconds
    assert engine.clock.elapsed >= 7 * 86400

Everything under the Engine reads and waits on its clock (`plait._clock`): the times written to
the store (leases and their expiry, a delayed step's or a retry's due time, an approval's
expiry, a run's deadline, a rate limit's tokens, a schedule's ticks) and the waits for them. The
virtual clock stands still until it is moved:

- `clock.advance(hours=2)` moves it by hand: whatever falls due on the way acts as it would
  have (the workers' waits for it end);
- with `auto=True` (the default) it also skips by itself, to the next moment something is due,
  whenever nothing else is going on: every worker of the engine waits for a wake-up or for the
  time, with no step in flight and no claim under way, and that has not changed for a few
  real milliseconds. It skips only to what is due (a delayed step, a retry, a token, a timer,
  a tick), never to a mere chore such as a heartbeat: a step whose worker died holds its lease
  until the test moves the clock past it (`advance(seconds=engine.lease)`).

What stays on real time: a step's `timeout` (its handler really runs), the `timeout=` of
`result()` and `run_worker()`, and the polls that look for other processes' work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .._clock import Clock
from .._errors import ConfigError, PlaitError
from .._portal import Broadcast, wait_any
from ..engine.engine import Engine

SETTLE = 0.002  # real seconds between two looks of the skipper
SETTLE_LOOKS = 3  # looks in a row that must find everything waiting, unchanged, before a skip


class _Sleeper:
    """One wait for the time `deadline`: `alarm` fires when the clock reaches it."""

    __slots__ = ("alarm", "deadline", "rang", "upkeep")

    def __init__(self, deadline: float, upkeep: bool, alarm: Broadcast) -> None:
        self.deadline = deadline
        self.upkeep = upkeep
        self.alarm = alarm
        self.rang = False


class VirtualClock(Clock):
    """A clock that stands still until moved (see the module docstring). `start`: its time at
    first (epoch seconds or an aware datetime; default now). `auto`: skip by itself to the next
    moment something is due while nothing else goes on (see `TestEngine`)."""

    def __init__(self, start: float | datetime | None = None, *, auto: bool = True) -> None:
        if isinstance(start, datetime):
            if start.tzinfo is None:
                raise ConfigError(f"VirtualClock(start=...) needs an aware datetime, got {start!r}")
            start = start.timestamp()
        elif start is None:
            start = time.time()
        elif isinstance(start, bool) or not isinstance(start, int | float):
            raise ConfigError(
                f"VirtualClock(start=...) takes epoch seconds or a datetime, got {start!r}"
            )
        self._now = self._began = float(start)
        self.auto = auto
        self._lock = threading.Lock()
        self._sleepers: set[_Sleeper] = set()
        self._changes = 0  # sleepers come and go: the skipper waits until they stop
        self._busy: dict[int, Callable[[], bool]] = {}  # engines using the clock: are they busy?
        self._skipper: threading.Thread | None = None
        self._stop = threading.Event()

    # -- reading --------------------------------------------------------------------------------

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the clock was made."""
        return self._now - self._began

    def now(self) -> datetime:
        """The virtual time as an aware datetime (UTC)."""
        return datetime.fromtimestamp(self._now, UTC)

    # -- moving ---------------------------------------------------------------------------------

    def advance(
        self,
        seconds: float | timedelta = 0.0,
        *,
        minutes: float = 0.0,
        hours: float = 0.0,
        days: float = 0.0,
        weeks: float = 0.0,
    ) -> float:
        """Move the clock forward (seconds, a timedelta, or the named units, added up); what
        falls due on the way acts. The new time (epoch seconds)."""
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        parts = {"seconds": seconds, "minutes": minutes, "hours": hours, "days": days}
        parts["weeks"] = weeks
        for name, value in parts.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise PlaitError(
                    f"advance: {name} must be a number >= 0 (a clock does not go back), "
                    f"got {value!r}"
                )
        delta = timedelta(
            seconds=seconds, minutes=minutes, hours=hours, days=days, weeks=weeks
        ).total_seconds()
        self._move_to(self._now + delta)
        return self._now

    def _move_to(self, when: float) -> None:
        with self._lock:
            if when > self._now:
                self._now = when
            ringing = [s for s in self._sleepers if not s.rang and s.deadline <= self._now]
            for sleeper in ringing:
                sleeper.rang = True
        for sleeper in sorted(ringing, key=lambda s: s.deadline):
            sleeper.alarm.fire()

    # -- waiting --------------------------------------------------------------------------------

    async def wait_any(
        self,
        broadcasts: Sequence[tuple[Broadcast, int | None]],
        timeout: float | None,
        *,
        upkeep: float | None = None,
        poll: float | None = None,
    ) -> bool:
        if timeout is None and upkeep is None:
            return await wait_any(broadcasts, poll)
        alarm = Broadcast()
        mine: list[_Sleeper] = []
        with self._lock:
            for seconds, chore in ((timeout, False), (upkeep, True)):
                if seconds is not None:
                    mine.append(_Sleeper(self._now + max(seconds, 0.0), chore, alarm))
            due_now = any(s.deadline <= self._now for s in mine)
            if not due_now:
                self._sleepers.update(mine)
                self._changes += 1
        if due_now:
            return await wait_any(broadcasts, 0)  # fired already, or not
        self._start_skipper()
        try:
            woken = await wait_any([*broadcasts, (alarm, 0)], poll)
            return woken and not any(s.rang for s in mine)
        finally:
            with self._lock:
                self._sleepers.difference_update(mine)
                self._changes += 1

    # -- skipping -------------------------------------------------------------------------------

    def attach(self, key: int, busy: Callable[[], bool]) -> None:
        """An engine uses this clock: `busy()` tells whether it does anything but wait."""
        with self._lock:
            self._busy[key] = busy

    def detach(self, key: int) -> None:
        with self._lock:
            self._busy.pop(key, None)
            last = not self._busy
        if last:
            self.close()

    def close(self) -> None:
        """Stop skipping by itself (a thread does it); `advance` still works."""
        self._stop.set()
        skipper, self._skipper = self._skipper, None
        if skipper is not None and skipper is not threading.current_thread():
            skipper.join(timeout=5)

    def _start_skipper(self) -> None:
        if self._skipper is not None or not self.auto:
            return
        with self._lock:
            if self._skipper is not None:
                return
            self._stop.clear()
            self._skipper = threading.Thread(
                target=self._skip_loop, name="plait-virtual-clock", daemon=True
            )
            self._skipper.start()

    def _skip_loop(self) -> None:
        last: tuple[int, float] | None = None
        looks = 0
        while not self._stop.wait(SETTLE):
            with self._lock:
                state = (self._changes, self._now)
                due = [s.deadline for s in self._sleepers if not s.upkeep and not s.rang]
                busy = list(self._busy.values())
            if not self.auto or not due or any(b() for b in busy):
                last, looks = None, 0
                continue
            if state != last:
                last, looks = state, 0
                continue
            looks += 1
            if looks >= SETTLE_LOOKS:
                self._move_to(min(due))
                last, looks = None, 0


class TestEngine(Engine):
    """An Engine on the memory store (default) or a SQLite file whose clock the test controls:
    `engine.clock` is a `VirtualClock` (see the module docstring). `auto_skip=False`: the clock
    moves only by `engine.clock.advance(...)`. Other options are the Engine's."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(
        self,
        url: str = "memory://",
        *,
        clock: VirtualClock | None = None,
        auto_skip: bool = True,
        **options: Any,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("memory://", "sqlite://")):
            raise ConfigError(
                f"TestEngine runs on the memory store or a SQLite file ('memory://' or "
                f"'sqlite:///path'), got {url!r}: a server's store shares its time with other "
                "processes, which a test's clock cannot move"
            )
        if clock is not None and not isinstance(clock, VirtualClock):
            raise ConfigError(f"TestEngine(clock=...) takes a VirtualClock, got {clock!r}")
        self.clock = clock if clock is not None else VirtualClock(auto=auto_skip)
        super().__init__(url, clock=self.clock, **options)
        rt = self._rt
        self.clock.attach(id(self), lambda: any(w.busy() for w in list(rt.workers)))

    @property
    def lease(self) -> float:
        """Seconds a claimed step is held (what `advance` must pass for a dead worker's)."""
        return self._rt.lease

    async def close_async(self) -> None:
        try:
            await super().close_async()
        finally:
            self.clock.detach(id(self))
