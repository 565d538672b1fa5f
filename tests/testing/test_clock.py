"""plait.testing.TestEngine and VirtualClock: every timed feature follows the virtual clock, so
runs that wait hours or weeks end in a moment of real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import plait
from plait._errors import ConfigError
from plait.testing import TestEngine, VirtualClock

HOUR, DAY = 3600.0, 86400.0
REAL_LIMIT = 20.0  # real seconds any of these runs may take on a loaded machine


async def until(condition: Callable[[], object], what: str) -> None:
    """Wait (real time, a deadline) for a condition of the test."""
    deadline = time.monotonic() + REAL_LIMIT
    while not await _holds(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def _holds(condition: Callable[[], object]) -> bool:
    value = condition()
    if asyncio.iscoroutine(value):
        value = await value
    return bool(value)


def week_long() -> plait.Workflow:
    wf = plait.Workflow("week", version="1")

    @wf.step(delay=timedelta(weeks=1))
    def wait() -> str:
        return "later"

    @wf.step()
    def done(wait: str) -> str:
        return wait + "!"

    return wf


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_a_run_that_sleeps_a_week_ends_at_once(store: str, tmp_path: Path) -> None:
    url = "memory://" if store == "memory" else f"sqlite:///{tmp_path / 'p.db'}"
    began = time.monotonic()
    with TestEngine(url) as engine:
        run = engine.start(week_long(), {})
        engine.run_worker(until=run, timeout=REAL_LIMIT)
        assert run.result(timeout=5) == {"done": "later!"}
        assert 7 * DAY <= engine.clock.elapsed < 7 * DAY + 60
        started = {s.name: s.started_at for s in engine.steps(run.id)}
    assert time.monotonic() - began < REAL_LIMIT
    # the step's record carries the virtual time at which it ran
    assert started["wait"] is not None
    assert started["wait"] >= datetime.fromtimestamp(engine.clock.time() - 60, UTC)


def test_retry_backoff_follows_the_clock() -> None:
    wf = plait.Workflow("flaky", version="1")
    tries: list[float] = []
    clock = VirtualClock()

    @wf.step(retry=plait.Retry(attempts=3, delay=HOUR, backoff=2.0, max_delay=DAY, jitter=0))
    def call() -> int:
        tries.append(clock.elapsed)
        if len(tries) < 3:
            raise RuntimeError("not yet")
        return len(tries)

    with TestEngine(clock=clock) as engine:
        run = engine.start(wf, {})
        engine.run_worker(until=run, timeout=REAL_LIMIT)
        assert run.result(timeout=5) == {"call": 3}
    # an hour, then two, between the attempts
    assert tries[1] - tries[0] == pytest.approx(HOUR, abs=60)
    assert tries[2] - tries[1] == pytest.approx(2 * HOUR, abs=60)


def test_an_approval_expires_on_the_clock() -> None:
    wf = plait.Workflow("gate", version="1")

    @wf.step(approval=plait.Approval(expires_after=timedelta(days=2), on_expiry="approve"))
    def review() -> str:
        return "shipped"

    with TestEngine() as engine:
        run = engine.start(wf, {})
        engine.run_worker(until=run, timeout=REAL_LIMIT)
        assert run.result(timeout=5) == {"review": "shipped"}
        assert 2 * DAY <= engine.clock.elapsed < 2 * DAY + 60


def test_a_run_deadline_passes_on_the_clock() -> None:
    with TestEngine() as engine:
        run = engine.start(week_long(), {}, deadline=timedelta(days=1))
        engine.run_worker(until=run, timeout=REAL_LIMIT)
        got = engine.get_run(run.id)
        assert got.status == "failed"
        assert got.error is not None and "deadline" in got.error
        assert DAY <= engine.clock.elapsed < DAY + 60  # not the week the step waits for


def test_a_rate_limit_refills_on_the_clock() -> None:
    wf = plait.Workflow("limited", version="1")
    at: dict[str, float] = {}
    clock = VirtualClock()

    def handler(name: str) -> Callable[[], str]:
        def call() -> str:
            at[name] = clock.elapsed
            return name

        call.__name__ = name
        return call

    for name in ("a", "b", "c"):
        wf.step(queue="slow")(handler(name))
    with TestEngine(clock=clock) as engine:
        engine.configure_queue("slow", rate=plait.Rate(1, per=HOUR, burst=1))
        run = engine.start(wf, {})
        engine.run_worker(until=run, timeout=REAL_LIMIT)
        assert run.get().status == "completed"
    # one start an hour: the last an hour after the second, two after the first
    assert sorted(at.values()) == pytest.approx([0.0, HOUR, 2 * HOUR], abs=60)


async def test_a_schedule_ticks_on_the_clock() -> None:
    wf = plait.Workflow("hourly", version="1")

    @wf.step()
    def tick() -> str:
        return "ok"

    start = datetime(2030, 1, 1, 0, 30, tzinfo=UTC)
    async with TestEngine(clock=VirtualClock(start)) as engine:
        await engine.schedule_async("every-hour", wf, cron="0 * * * *")
        worker = asyncio.create_task(engine.run_worker_async(workflows=[wf]))

        async def three_done() -> bool:
            runs = (await engine.list_runs_async()).runs
            return sum(r.status == "completed" for r in runs) >= 3

        try:
            await until(three_done, "three scheduled runs")
        finally:
            engine.stop_workers()
            await worker
        ids = sorted(r.id for r in (await engine.list_runs_async()).runs)
        assert ids[:3] == [
            "every-hour-20300101T010000Z",
            "every-hour-20300101T020000Z",
            "every-hour-20300101T030000Z",
        ]
        assert engine.clock.elapsed >= 2.5 * HOUR


async def test_a_dead_workers_lease_expires_when_the_clock_passes_it() -> None:
    wf = week_long()
    async with TestEngine(lease=60.0) as engine:
        await engine.register_async(wf)
        run = await engine.start_async(wf, {}, deadline=None)
        engine.clock.advance(weeks=1)  # `wait` is due
        # a worker claims `wait` and dies without a word: its lease holds the step
        claims = await engine.store.claim(
            worker_id="dead", fingerprints=[wf.fingerprint], limit=1, lease=engine.lease,
            now=engine.clock.time(),
        )  # fmt: skip
        assert [c.step for c in claims] == ["wait"]
        engine.clock.advance(seconds=engine.lease - 1)
        assert (await engine.get_run_async(run.id)).status == "running"
        engine.clock.advance(seconds=2)  # past the lease: a new worker recovers it at once
        await engine.run_worker_async(until=run, timeout=REAL_LIMIT)
        assert await run.result_async(timeout=5) == {"done": "later!"}
        expired = [e for e in await engine.events_async(run.id) if e.type == "step_lease_expired"]
        assert [(e.step, e.payload["worker"]) for e in expired] == [("wait", "dead")]


def test_advance_moves_the_clock_by_hand_and_refuses_going_back() -> None:
    clock = VirtualClock(datetime(2030, 1, 1, tzinfo=UTC), auto=False)
    assert clock.now() == datetime(2030, 1, 1, tzinfo=UTC)
    clock.advance(hours=2)
    clock.advance(timedelta(minutes=30), days=1)
    assert clock.elapsed == 26.5 * HOUR
    assert clock.monotonic() == clock.time()
    with pytest.raises(plait.PlaitError, match=r"advance: hours must be a number >= 0 \(a clock"):
        clock.advance(hours=-1)
    assert clock.elapsed == 26.5 * HOUR


async def test_without_auto_skip_the_clock_waits_for_the_test() -> None:
    async with TestEngine(auto_skip=False) as engine:
        run = await engine.start_async(week_long(), {})
        worker = asyncio.create_task(engine.run_worker_async(until=run, timeout=REAL_LIMIT))
        # the worker sleeps until the step is due: nothing moves the clock but the test
        await until(lambda: worker.done() or engine.clock._sleepers, "the worker to wait")
        assert engine.clock.elapsed == 0 and not worker.done()
        engine.clock.advance(days=7)
        await worker
        assert await run.result_async(timeout=5) == {"done": "later!"}
        assert engine.clock.elapsed == 7 * DAY


def test_test_engine_refuses_a_server_store_and_a_real_clock() -> None:
    with pytest.raises(ConfigError, match="TestEngine runs on the memory store or a SQLite file"):
        TestEngine("postgresql://localhost/x")
    with pytest.raises(ConfigError, match=r"TestEngine\(clock=...\) takes a VirtualClock"):
        TestEngine(clock=object())  # type: ignore[arg-type]  # the error under test
    with pytest.raises(ConfigError, match="needs an aware datetime"):
        VirtualClock(datetime(2030, 1, 1))
