"""Flow control without polling, on every store: a claim held back by limits says so and when a
token comes; a completion that frees a limited slot says so (and wakes workers); held workers
sleep until one of those instead of polling; rate limits are charged only for what is claimed;
a run's priority reaches the steps it spawns (see plait/_queues.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import plait
from plait.core.rows import Outcome
from plait.stores import Store


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    # polls so rare that only a wake-up (or a token's time) can explain a prompt claim
    with plait.Engine(store_url, lease=5.0, poll_interval=30.0, sweep_interval=30.0) as eng:
        yield eng


def pair(queue: str, work: float = 0.0) -> plait.Workflow:
    """Two independent steps in `queue`, each working `work` seconds."""
    wf = plait.Workflow(f"pair-{queue}")

    @wf.step(queue=queue)
    def first() -> str:
        time.sleep(work)
        return "first"

    @wf.step(queue=queue)
    def second() -> str:
        time.sleep(work)
        return "second"

    return wf


async def claim(engine: plait.Engine, wf: plait.Workflow, now: float, limit: int = 10) -> Any:
    return await engine.store.claim(
        worker_id="w", fingerprints=[wf.fingerprint], limit=limit, lease=30.0, now=now
    )


async def test_a_claim_held_by_a_rate_limit_says_when_the_next_token_comes(
    engine: plait.Engine,
) -> None:
    wf = pair("rated")
    await engine.configure_queue_async("rated", rate=plait.Rate(1, per=10.0, burst=1))
    await engine.start_async(wf, run_id="r")
    now = time.time()
    assert len(await claim(engine, wf, now)) == 1
    held = await claim(engine, wf, now + 1)
    assert list(held) == [] and held.limited
    assert held.next_token_at == pytest.approx(now + 10, abs=1e-3)
    assert len(await claim(engine, wf, held.next_token_at)) == 1


async def test_a_claim_held_by_a_full_queue_or_key_waits_for_a_slot(engine: plait.Engine) -> None:
    wf = pair("solo")
    await engine.configure_queue_async("solo", concurrency=1, rate=plait.Rate(1, per=0.001))
    await engine.start_async(wf, run_id="s")
    now = time.time()
    assert len(await claim(engine, wf, now)) == 1
    held = await claim(engine, wf, now + 1)  # full (tokens there or not): a slot must free
    assert list(held) == [] and held.limited and held.next_token_at is None

    keyed = plait.Workflow("keyed-pair")

    @keyed.step(concurrency_key=lambda customer: customer, key_limit=1)
    def one(customer: str) -> int:
        return 1

    @keyed.step(concurrency_key=lambda customer: customer, key_limit=1)
    def two(customer: str) -> int:
        return 2

    await engine.start_async(keyed, {"customer": "ann"}, run_id="k")
    now = time.time()
    assert len(await claim(engine, keyed, now)) == 1
    held = await claim(engine, keyed, now)
    assert list(held) == [] and held.limited and held.next_token_at is None


async def test_a_claim_that_finds_nothing_is_not_held(engine: plait.Engine) -> None:
    wf = pair("solo")
    await engine.configure_queue_async("solo", concurrency=1)
    await engine.start_async(wf, run_id="s")
    now = time.time()
    assert len(await claim(engine, wf, now, limit=2)) == 1
    await engine.configure_queue_async("solo", concurrency=None)
    assert len(await claim(engine, wf, now)) == 1
    nothing = await claim(engine, wf, now)
    assert list(nothing) == [] and not nothing.limited and nothing.next_token_at is None


async def test_ending_a_step_of_a_queue_or_key_with_slots_frees_one(engine: plait.Engine) -> None:
    store: Store = engine.store
    limited, free, rated = pair("solo"), pair("open"), pair("rated")
    await engine.configure_queue_async("solo", concurrency=2)
    await engine.configure_queue_async("rated", rate=plait.Rate(100))
    await engine.start_async(limited, run_id="l")
    await engine.start_async(free, run_id="f")
    await engine.start_async(rated, run_id="r")
    now = time.time()
    claims = {c.run_id: c for c in await claim(engine, free, now, limit=1)}
    claims.update({c.run_id: c for c in await claim(engine, rated, now, limit=1)})
    claims.update({c.run_id: c for c in await claim(engine, limited, now, limit=1)})
    done = {run_id: Outcome(run_id, c.step, c.token, output=b"1") for run_id, c in claims.items()}
    assert not (await store.complete([done["f"]], now)).slot_freed  # no limit on `open`
    assert not (await store.complete([done["r"]], now)).slot_freed  # a rate has no slots
    assert (await store.complete([done["l"]], now)).slot_freed

    keyed = plait.Workflow("keyed-one")

    @keyed.step(concurrency_key=lambda customer: customer, key_limit=3)
    def one(customer: str) -> int:
        return 1

    await engine.start_async(keyed, {"customer": "ann"}, run_id="k")
    [c] = await claim(engine, keyed, time.time())
    assert (await store.complete([Outcome("k", c.step, c.token, output=b"1")], now)).slot_freed
    # a fenced (duplicate) outcome frees nothing
    assert not (await store.complete([done["l"]], now)).slot_freed


async def test_next_ready_at_after_a_time_gives_the_next_delayed_step(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("delays")

    @wf.step
    def now_() -> int:
        return 0

    @wf.step(delay=50)
    def later() -> int:
        return 1

    before = time.time()
    await engine.start_async(wf, run_id="d")
    after = time.time()
    first = await engine.store.next_ready_at([wf.fingerprint])
    assert first is not None and before <= first <= after
    later_at = await engine.store.next_ready_at([wf.fingerprint], after=after)
    assert later_at is not None and before + 50 <= later_at <= after + 50
    assert await engine.store.next_ready_at([wf.fingerprint], after=after + 50) is None


async def count_claims(engine: plait.Engine) -> list[float]:
    """Record the time of every claim the engine's workers make (they call store.claim), once
    the store's notifications flow (if it has them): so that the wake-ups of the commits made
    before are delivered before the worker starts, and none arrives late to look like a poll."""
    if "push" in engine.store.capabilities:
        deadline = time.monotonic() + 10
        while not engine._rt.push_live:
            assert time.monotonic() < deadline, "the store's notifications did not come up"
            await asyncio.sleep(0.01)
    times: list[float] = []
    original = engine.store.claim

    async def claim(**kwargs: Any) -> Any:
        times.append(time.time())
        return await original(**kwargs)

    engine.store.claim = claim  # type: ignore[method-assign]  # instrumenting this one store
    return times


async def test_a_worker_held_by_a_full_queue_is_woken_when_the_slot_frees(
    engine: plait.Engine,
) -> None:
    wf = pair("solo", work=2.0)
    await engine.configure_queue_async("solo", concurrency=1)
    run = await engine.start_async(wf, run_id="solo")
    times = await count_claims(engine)
    await engine.run_worker_async(concurrency=2, until=run, timeout=30)
    steps = sorted(await engine.store.get_steps("solo"), key=lambda s: s.started_at or 0)
    first, second = steps
    assert first.finished_at is not None and second.started_at is not None
    assert second.started_at >= first.finished_at  # the queue's limit held
    # woken by the completion, not by a poll (every 30 s) ...
    assert second.started_at - first.finished_at < 10
    # ... and not polling meanwhile: held for two seconds, it claimed not again after the
    # first moments (when wake-ups of its own earlier commits may still arrive)
    assert first.started_at is not None
    assert any(first.started_at < t < first.started_at + 0.5 for t in times)  # found it held
    during = [t for t in times if first.started_at + 0.5 < t < first.finished_at]
    assert len(during) <= 3, during  # polling at 0.25 s would make about 6


async def test_a_worker_held_by_a_rate_limit_sleeps_until_the_next_token(
    engine: plait.Engine,
) -> None:
    wf = pair("rated")
    await engine.configure_queue_async("rated", rate=plait.Rate(1, per=2.0, burst=1))
    run = await engine.start_async(wf, run_id="rated")
    times = await count_claims(engine)
    await engine.run_worker_async(concurrency=2, until=run, timeout=30)
    steps = sorted(await engine.store.get_steps("rated"), key=lambda s: s.started_at or 0)
    first, second = (s.started_at for s in steps)
    assert first is not None and second is not None
    assert second - first >= 2.0 - 1e-3  # the rate held
    assert second - first < 10  # woken at the token, not by a poll (every 30 s)
    assert any(first < t < first + 0.5 for t in times)  # it found the work held
    during = [t for t in times if first + 0.5 < t < second]
    assert len(during) <= 3, during  # polling at 0.25 s would make about 6


async def test_raising_a_limit_wakes_held_workers(engine: plait.Engine) -> None:
    wf = pair("rated")
    await engine.configure_queue_async("rated", rate=plait.Rate(1, per=3600.0, burst=1))
    run = await engine.start_async(wf, run_id="raised")
    worker = engine.run_worker_async(concurrency=2, until=run, timeout=30)
    task = asyncio.ensure_future(worker)
    deadline = time.monotonic() + 20
    while sum(s.status.value == "done" for s in await engine.store.get_steps("raised")) < 1:
        assert time.monotonic() < deadline, "the first step never ran"
        await asyncio.sleep(0.02)
    started = time.time()
    await engine.configure_queue_async("rated", rate=plait.Rate(100, per=1.0))
    await task
    steps = await engine.store.get_steps("raised")
    last = max(s.started_at or 0 for s in steps)
    assert last - started < 10  # not the hour's token, nor a 30 s poll


async def test_spawned_steps_get_the_run_priority(engine: plait.Engine) -> None:
    wf = plait.Workflow("boosted")

    @wf.task(priority=2)
    def leaf(n: int) -> int:
        return n

    @wf.task
    def branch(ctx: plait.StepContext, n: int) -> list[plait.Handle]:
        return [ctx.spawn(leaf, input=n), ctx.spawn(leaf, input=n, priority=-1)]

    @wf.step(priority=1)
    def root(ctx: plait.StepContext) -> list[plait.Handle]:
        return [ctx.spawn(branch, input=1), ctx.spawn(leaf, input=2)]

    run = await engine.start_async(wf, run_id="boosted", priority=10)
    plain = await engine.start_async(wf, run_id="plain")
    await engine.run_worker_async(until=[run, plain], timeout=30, workflows=[wf])
    for run_id, boost in (("boosted", 10), ("plain", 0)):
        rows = {s.name: s.priority for s in await engine.store.get_steps(run_id)}
        assert rows == {
            "root": 1 + boost,
            "root/branch-0": 0 + boost,
            "root/leaf-0": 2 + boost,
            "root/branch-0/leaf-0": 2 + boost,
            "root/branch-0/leaf-1": -1 + boost,
        }, run_id
