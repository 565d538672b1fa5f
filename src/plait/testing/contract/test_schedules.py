"""Schedules on every store: stored, paused, resumed and deleted; bad cron, timezone, catch-up
or name refused when configured; the elected scheduler starts each due tick once with its
deterministic run id, another scheduler takes over when the lease expires, and missed ticks
follow the catch-up policy; the ticks of a pause are never started, however short the pause.
Scheduler passes are driven with chosen clock values. Two schedulers that both believe they are
elected start a tick once and say so once; a pass that outlives its lease stops starting ticks;
a resigned lease cannot be renewed by a stale holder; a tick whose run id is taken by another
workflow is skipped, not retried forever."""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import replace

import orjson
import pytest

import plait
from plait.core.cron import tick_id
from plait.engine.schedules import LEASES, SCHEDULER, Scheduler, _row


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def report() -> plait.Workflow:
    wf = plait.Workflow("report")

    @wf.step
    def build(region: str) -> str:
        return region

    return wf


async def run_ids(engine: plait.Engine) -> list[str]:
    return sorted(r.id for r in (await engine.list_runs_async()).runs)


def schedule_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the schedulers logged: a driver's own warning from a background thread (psycopg
    on a connection it closes) is not the scheduler's business."""
    return [r.getMessage() for r in caplog.records if r.name == "plait.engine.schedules"]


async def test_a_schedule_is_stored_paused_resumed_and_deleted(engine: plait.Engine) -> None:
    wf = report()
    s = await engine.schedule_async(
        "nightly", wf, cron="0 2 * * *", input={"region": "eu"}, timezone="Europe/Paris"
    )
    assert (s.name, s.workflow, s.cron, s.timezone, s.input, s.catch_up, s.paused) == (
        "nightly", "report", "0 2 * * *", "Europe/Paris", {"region": "eu"}, "skip", False,
    )  # fmt: skip
    [listed] = await engine.schedules_async()
    assert listed == s
    assert (await engine.pause_schedule_async("nightly")).paused is True
    assert (await engine.resume_schedule_async("nightly")).paused is False
    again = await engine.schedule_async("nightly", wf, cron="@hourly", input={"region": "us"})
    assert [(x.cron, x.input) for x in await engine.schedules_async()] == [
        (again.cron, {"region": "us"})
    ]
    assert await engine.delete_schedule_async("nightly") is True
    assert await engine.delete_schedule_async("nightly") is False
    assert await engine.schedules_async() == []


async def test_bad_schedules_are_refused_when_configured(engine: plait.Engine) -> None:
    wf = report()
    cases = [
        ({"cron": "61 * * * *"}, plait.PlaitError, "minute"),
        ({"cron": "* * * *"}, plait.PlaitError, "5 fields"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, plait.PlaitError, "unknown timezone"),
        ({"cron": "* * * * *", "catch_up": "all"}, plait.ConfigError, "catch_up must be"),
    ]
    for options, error, message in cases:
        with pytest.raises(error, match=message):
            await engine.schedule_async("s", wf, input={"region": "eu"}, **options)
    with pytest.raises(plait.ConfigError) as info:
        await engine.schedule_async("every night", wf, cron="@daily", input={"region": "eu"})
    assert str(info.value) == (
        "invalid schedule name 'every night': use 1-100 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit (no spaces)"
    )
    with pytest.raises(plait.InputError, match="region"):
        await engine.schedule_async("s", wf, cron="@daily", input={})
    with pytest.raises(plait.WorkflowNotFound, match="no workflow 'ghost' is registered"):
        await engine.schedule_async("s", "ghost", cron="@daily")
    assert await engine.schedules_async() == []


async def test_one_elected_scheduler_starts_each_tick_once(
    engine: plait.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    wf = report()
    await engine.register_async(wf)
    s = await engine.schedule_async("minutely", wf, cron="* * * * *", input={"region": "eu"})
    a, b = Scheduler(engine._rt, "a", ttl=10.0), Scheduler(engine._rt, "b", ttl=10.0)
    now = s.next_at + 1
    await a.beat(now)
    await b.beat(now)  # not elected: a holds the lease
    assert (a.elected, b.elected) == (True, False)
    assert await run_ids(engine) == [tick_id("minutely", s.next_at)]
    await a.beat(now)  # the tick is not started twice
    assert len(await run_ids(engine)) == 1
    # a is gone; once its lease has expired, b takes over and starts the next tick
    later = s.next_at + 60 + 11
    await b.beat(later)
    assert b.elected
    assert await run_ids(engine) == sorted(
        [tick_id("minutely", s.next_at), tick_id("minutely", s.next_at + 60)]
    )
    # two schedulers that both start one tick (a stale leader) still start one run, and only
    # the one that created it logs that it started it
    with caplog.at_level(logging.INFO, logger="plait.engine.schedules"):
        await a._start((await engine.schedules_async())[0], s.next_at + 60)
    assert len(await run_ids(engine)) == 2
    again = tick_id("minutely", s.next_at + 60)
    assert schedule_logs(caplog) == [f"schedule minutely: run {again} of the tick exists already"]


async def test_a_pass_that_outlives_its_lease_starts_no_more_ticks(
    engine: plait.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    wf = report()
    s = await engine.schedule_async("minutely", wf, cron="* * * * *", input={"region": "eu"})
    # the pass begins at 0 on its clock; before its first start the clock reads 11: the
    # process was descheduled longer than its 10 s lease, which another may hold by now
    clock = itertools.chain([0.0, 11.0], itertools.repeat(20.0)).__next__
    a = Scheduler(engine._rt, "a", ttl=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="plait.engine.schedules"):
        assert await a.beat(s.next_at + 1) == 0.0  # campaign again at once
    assert await run_ids(engine) == []
    assert schedule_logs(caplog) == ["scheduler a: pass outlived its 10s lease; stopping it"]
    await a.beat(s.next_at + 1)  # an undisturbed pass starts the tick
    assert await run_ids(engine) == [tick_id("minutely", s.next_at)]


async def test_a_stale_holder_cannot_renew_a_lease_taken_after_a_resignation(
    engine: plait.Engine,
) -> None:
    wf = report()
    s = await engine.schedule_async("minutely", wf, cron="* * * * *", input={"region": "eu"})
    now = s.next_at - 30  # no tick due: only the election matters here
    a, b, c = (Scheduler(engine._rt, name, ttl=10.0) for name in "abc")
    await c.beat(now)  # c is elected, then its process stalls past its lease
    await b.beat(now + 11)  # b takes the expired lease over...
    assert (b.elected, c.elected) == (True, True)  # (c does not know yet)
    await b.resign()  # ...and stops, handing the election on at once
    await a.beat(now + 12)
    assert a.elected
    await c.beat(now + 13)  # c wakes: its renewal must not match a's new lease
    assert (a.elected, c.elected) == (True, False)
    row = await engine.store.get_record(LEASES, SCHEDULER)
    assert row is not None and orjson.loads(row.doc)["holder"] == "a"


async def test_a_tick_whose_run_id_another_workflow_took_is_skipped(
    engine: plait.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    wf, other = report(), plait.Workflow("other")

    @other.step
    def noop() -> None:
        return None

    # yearly: both schedules' next tick is the same one
    s = await engine.schedule_async("m", wf, cron="0 0 1 1 *", input={"region": "eu"})
    await engine.schedule_async("n", wf, cron="0 0 1 1 *", input={"region": "us"})
    taken = tick_id("m", s.next_at)
    await engine.start_async(other, run_id=taken)
    with caplog.at_level(logging.ERROR, logger="plait.engine.schedules"):
        await Scheduler(engine._rt, "a").beat(s.next_at + 1)
    assert schedule_logs(caplog) == [
        f"schedule m: tick {taken} not started: run id {taken!r} is already used by a run of "
        "workflow 'other', not 'report'; choose another run id"
    ]
    # the pass went on: the other schedule's tick started, and both moved to the next year's
    assert await run_ids(engine) == sorted([taken, tick_id("n", s.next_at)])
    assert all(x.next_at > s.next_at + 1 for x in await engine.schedules_async())


@pytest.mark.parametrize(("catch_up", "started"), [("skip", [3600]), ("run_once", [3540, 3600])])
async def test_missed_ticks_follow_the_catch_up_policy(
    engine: plait.Engine, catch_up: str, started: list[int]
) -> None:
    wf = report()
    s = await engine.schedule_async(
        "m", wf, cron="* * * * *", input={"region": "eu"}, catch_up=catch_up
    )
    # nobody ran for an hour: 61 ticks are due, the last one 30 s ago (on time)
    await Scheduler(engine._rt, "a").beat(s.next_at + 3630)
    assert await run_ids(engine) == sorted(tick_id("m", s.next_at + d) for d in started)
    [after] = await engine.schedules_async()
    assert after.next_at == s.next_at + 3660


async def test_a_paused_schedule_starts_nothing(engine: plait.Engine) -> None:
    wf = report()
    s = await engine.schedule_async("p", wf, cron="* * * * *", input={"region": "eu"})
    await engine.pause_schedule_async("p")
    await Scheduler(engine._rt, "a").beat(s.next_at + 1)
    assert await run_ids(engine) == []


async def paused_through(engine: plait.Engine, name: str, minutes: int) -> float:
    """Pause minutely schedule `name`, as if `minutes` whole minutes ago, so that its next tick
    (the last minute boundary, `minutes` earlier) fell in the pause; then resume it. Returns the
    time just before the resume."""
    paused = await engine.pause_schedule_async(name)
    tick = math.floor(time.time() / 60) * 60 - 60 * minutes
    fell = replace(paused, next_at=float(tick))
    ok, _ = await engine.store.put_record(_row(fell, time.time()), paused.revision)
    assert ok
    before = time.time()
    resumed = await engine.resume_schedule_async(name)
    assert resumed.paused is False
    return before


@pytest.mark.parametrize("catch_up", ["skip", "run_once"])
@pytest.mark.parametrize("minutes", [0, 60], ids=["within-grace", "an-hour"])
async def test_a_tick_that_fell_in_a_pause_is_not_started_after_the_resume(
    engine: plait.Engine, catch_up: str, minutes: int
) -> None:
    wf = report()
    await engine.schedule_async(
        "p", wf, cron="* * * * *", input={"region": "eu"}, catch_up=catch_up
    )
    resumed_at = await paused_through(engine, "p", minutes)
    # a scheduler's pass right after the resume: the tick of the pause is not on time (within
    # MISFIRE_GRACE) and not missed (catch-up is for ticks nobody was there to start)
    await Scheduler(engine._rt, "a").beat(time.time())
    assert await run_ids(engine) == []
    [after] = await engine.schedules_async()
    assert after.next_at > resumed_at  # the first tick after the resume comes next...
    assert after.next_at - resumed_at <= 60
    await Scheduler(engine._rt, "a").beat(after.next_at + 1)  # ...and is started when it falls
    assert await run_ids(engine) == [tick_id("p", after.next_at)]


async def test_a_recreated_schedule_is_not_overwritten_by_a_stale_write(
    engine: plait.Engine,
) -> None:
    wf = report()
    old = await engine.schedule_async("nightly", wf, cron="@hourly", input={"region": "eu"})
    assert old.revision == 1
    # a scheduler's pass read `old`; meanwhile the schedule is deleted and made again
    assert await engine.delete_schedule_async("nightly") is True
    new = await engine.schedule_async("nightly", wf, cron="@daily", input={"region": "us"})
    assert new.revision > old.revision
    # the pass then writes its next tick as it does, expecting the revision it read
    stale = replace(old, next_at=old.next_at + 3600)
    written, revision = await engine.store.put_record(_row(stale, time.time()), old.revision)
    assert (written, revision) == (False, new.revision)
    assert await engine.get_schedule_async("nightly") == new
