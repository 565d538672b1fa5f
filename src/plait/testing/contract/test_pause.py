"""Pausing and resuming a run (DESIGN §3.3), on every store: through the Store protocol, in a
race with workers, and through the Engine with real handlers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import plait
from plait.core import actions
from plait.core.rows import Lease, RunStatus, StepStatus
from plait.stores import Store
from plait.testing.contract.helpers import NOW, claim, fail, ok, plan_of, start, statuses


async def act(store: Store, action: Any, run_id: str, now: float = NOW + 1) -> Any:
    return await store.apply(lambda txn: action(txn, run_id, by="tester"), now)


async def run_status(store: Store, run_id: str) -> RunStatus:
    run = await store.get_run(run_id)
    assert run is not None
    return run.status


# -- the store -----------------------------------------------------------------------------------


async def test_pause_lets_steps_in_flight_finish_then_resume_dispatches_again(
    store: Store,
) -> None:
    plan = plan_of("p", ("a", [], {}), ("b", [], {}), ("c", ["a"], {}))
    await start(store, plan, "r1")
    [a] = await claim(store, [plan], limit=1)

    assert (await act(store, actions.pause, "r1")).refusal is None
    assert await run_status(store, "r1") is RunStatus.PAUSING
    assert await claim(store, [plan]) == []  # b is ready, but nothing new starts
    assert await store.next_ready_at([plan.fingerprint]) is None

    result = await store.complete([ok(a)], NOW + 2)  # a finishes: c becomes ready, run paused
    assert result.accepted == [True]
    assert await run_status(store, "r1") is RunStatus.PAUSED
    assert await statuses(store, "r1") == {
        "a": StepStatus.DONE,
        "b": StepStatus.READY,
        "c": StepStatus.READY,
    }
    assert await claim(store, [plan], now=NOW + 3) == []

    resumed = await act(store, actions.resume, "r1", NOW + 4)
    assert resumed.refusal is None and resumed.readied == 2
    assert await run_status(store, "r1") is RunStatus.RUNNING
    assert sorted(c.step for c in await claim(store, [plan], now=NOW + 5)) == ["b", "c"]
    types = [e.type for e in await store.get_events("r1", 0, None)]
    assert types.index("run_pausing") < types.index("run_paused") < types.index("run_resumed")


async def test_a_retry_in_flight_keeps_the_run_pausing_until_it_ends(store: Store) -> None:
    plan = plan_of("p", ("a", [], {}), ("b", [], {}))
    await start(store, plan, "r1")
    [a] = await claim(store, [plan], limit=1)
    await act(store, actions.pause, "r1")

    await store.complete([fail(a, retry_at=NOW + 10)], NOW + 2)
    assert await run_status(store, "r1") is RunStatus.PAUSING  # its retry is still to come
    assert await claim(store, [plan], now=NOW + 5) == []  # not yet due
    [again] = await claim(store, [plan], now=NOW + 10)  # the retry runs; b does not start
    assert again.step == "a" and again.attempt == 2
    await store.complete([ok(again)], NOW + 11)
    assert await run_status(store, "r1") is RunStatus.PAUSED
    assert (await statuses(store, "r1"))["b"] is StepStatus.READY


async def test_a_paused_run_with_nothing_in_flight_is_paused_at_once(store: Store) -> None:
    plan = plan_of("p", ("a", [], {}), ("b", [], {}))
    await start(store, plan, "r1")
    await act(store, actions.pause, "r1")
    assert await run_status(store, "r1") is RunStatus.PAUSED
    await act(store, actions.resume, "r1")
    assert await run_status(store, "r1") is RunStatus.PENDING  # it had not started
    assert len(await claim(store, [plan])) == 2


async def test_a_dead_workers_first_attempt_does_not_hold_the_pause(store: Store) -> None:
    plan = plan_of("p", ("a", [], {}), ("b", [], {}))
    await start(store, plan, "r1")
    claims = {c.step: c for c in await claim(store, [plan], lease=5)}
    await act(store, actions.pause, "r1")
    await store.release([Lease("r1", "b", claims["b"].token)], NOW + 2, 10)  # b's worker stopped
    assert await run_status(store, "r1") is RunStatus.PAUSING  # a still runs
    await store.recover_expired(NOW + 10, max_recoveries=10, limit=10)  # a's worker died
    assert await run_status(store, "r1") is RunStatus.PAUSED
    assert await claim(store, [plan], now=NOW + 11) == []
    await act(store, actions.resume, "r1", NOW + 12)
    assert sorted(c.step for c in await claim(store, [plan], now=NOW + 13)) == ["a", "b"]


async def test_pause_and_resume_refuse_ended_runs_and_repeat_harmlessly(store: Store) -> None:
    plan = plan_of("p", ("a", [], {}))
    await start(store, plan, "done")
    await start(store, plan, "live")
    [c] = [c for c in await claim(store, [plan]) if c.run_id == "done"]
    await store.complete([ok(c)], NOW + 1)

    assert (await act(store, actions.pause, "done")).refusal == (
        "run 'done' is completed: it cannot be paused "
        "(pause is allowed while a run is pending, running)"
    )
    assert (await act(store, actions.resume, "done")).refusal == (
        "run 'done' is completed: it cannot be resumed "
        "(resume is allowed while a run is pausing, paused)"
    )
    assert (await act(store, actions.pause, "nope")).refusal == "run 'nope' does not exist"
    assert (await act(store, actions.resume, "live")).refusal is None  # running: a no-op
    await act(store, actions.pause, "live")
    await act(store, actions.pause, "live")  # already paused: a no-op
    types = [e.type for e in await store.get_events("live", 0, None)]
    assert types.count("run_pausing") == 1 and "run_resumed" not in types  # live's a runs
    assert await run_status(store, "done") is RunStatus.COMPLETED


def test_pause_racing_completions_starts_nothing_after_it(store: Store) -> None:
    """Workers claim and complete while the run is paused: once the pause is committed no new
    step starts, the run ends up paused, and resuming lets it finish."""
    plan = plan_of("race", *[(f"t{i}", [], {}) for i in range(600)])
    first_done = threading.Event()
    errors: list[BaseException] = []

    async def worker(name: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if got := await claim(store, [plan], now=time.time(), limit=1, worker=name):
                await asyncio.sleep(0.001)  # the handler's work: the pause lands mid-run
                await store.complete([ok(c) for c in got], time.time())
                first_done.set()
                continue
            # nothing claimable: the run is paused, or the others hold what is ready (claims
            # pass over rows other transactions hold) and it is soon claimable again
            if await run_status(store, "r1") in (RunStatus.PAUSING, RunStatus.PAUSED):
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"{name}: the run was neither paused nor claimable for 30 s")

    async def pauser() -> None:
        assert await asyncio.to_thread(first_done.wait, 30)
        result = await act(store, actions.pause, "r1", time.time())
        assert result.refusal is None, result.refusal

    def in_thread(coro: Any) -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            errors.append(exc)

    asyncio.run(start(store, plan, "r1", now=time.time()))
    threads = [threading.Thread(target=in_thread, args=(pauser(),))]
    threads += [threading.Thread(target=in_thread, args=(worker(f"w{i}"),)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and not any(t.is_alive() for t in threads)

    events = asyncio.run(store.get_events("r1", 0, None))
    pause_seq = next(e.seq for e in events if e.type in ("run_pausing", "run_paused"))
    assert all(e.seq < pause_seq for e in events if e.type == "step_started")
    assert asyncio.run(run_status(store, "r1")) is RunStatus.PAUSED
    left = [n for n, s in asyncio.run(statuses(store, "r1")).items() if s is StepStatus.READY]
    assert left  # the pause came before the end

    asyncio.run(act(store, actions.resume, "r1", time.time()))
    while got := asyncio.run(claim(store, [plan], now=time.time(), limit=50)):
        asyncio.run(store.complete([ok(c) for c in got], time.time()))
    assert asyncio.run(run_status(store, "r1")) is RunStatus.COMPLETED


# -- the engine ----------------------------------------------------------------------------------


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def test_pause_waits_for_the_step_in_flight_and_resume_finishes_the_run(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("pause_engine")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    @wf.step
    def first() -> int:
        started.set()
        assert release.wait(30)
        ran.append("first")
        return 1

    @wf.step
    def second(first: int) -> int:
        ran.append("second")
        return first + 1

    handle = engine.start(wf)
    serving = threading.Thread(target=lambda: engine.run_worker(timeout=60, grace=1))
    serving.start()
    try:
        assert started.wait(10)
        assert engine.pause(handle.id, by="ops").status is plait.RunStatus.PAUSING
        release.set()
        deadline = time.monotonic() + 10
        while engine.get_run(handle.id).status is not plait.RunStatus.PAUSED:
            assert time.monotonic() < deadline, "the run did not become paused"
            time.sleep(0.01)
        assert ran == ["first"]
        steps = {s.name: s.status for s in engine.steps(handle.id)}
        assert steps == {"first": plait.StepStatus.DONE, "second": plait.StepStatus.READY}

        assert engine.resume(handle.id).status is plait.RunStatus.RUNNING
        assert handle.result(timeout=30) == {"second": 2}
        assert ran == ["first", "second"]
    finally:
        engine.stop_workers()
        serving.join(timeout=30)
    with pytest.raises(plait.RunStateError, match="is completed: it cannot be paused"):
        engine.pause(handle.id)
    with pytest.raises(plait.RunNotFound):
        engine.resume("nope")


def test_resume_racing_the_last_step_in_flight_leaves_the_run_running(store: Store) -> None:
    """Whichever commits first, the end state is one a serial order gives: the run is running
    and what became ready is claimable; it never stays paused after a resume."""
    plan = plan_of("p", ("a", [], {}), ("b", ["a"], {}))
    for r in range(6):
        asyncio.run(start(store, plan, f"r{r}"))
    held = {c.run_id: c for c in asyncio.run(claim(store, [plan]))}
    for r in range(6):
        asyncio.run(act(store, actions.pause, f"r{r}"))
    go = threading.Barrier(2)
    errors: list[BaseException] = []

    def completer() -> None:
        try:
            go.wait()
            for r in range(6):
                asyncio.run(store.complete([ok(held[f"r{r}"])], NOW + 2))
        except BaseException as exc:
            errors.append(exc)

    def resumer() -> None:
        try:
            go.wait()
            for r in range(6):
                asyncio.run(act(store, actions.resume, f"r{r}", NOW + 2))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=completer), threading.Thread(target=resumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    for r in range(6):
        assert asyncio.run(run_status(store, f"r{r}")) is RunStatus.RUNNING
        types = [e.type for e in asyncio.run(store.get_events(f"r{r}", 0, None))]
        ends = [t for t in types if t in ("run_pausing", "run_paused", "run_resumed")]
        assert ends in (
            ["run_pausing", "run_paused", "run_resumed"],
            ["run_pausing", "run_resumed"],
        )
    ready = asyncio.run(claim(store, [plan], now=NOW + 3))
    assert sorted(c.step for c in ready) == ["b"] * 6
