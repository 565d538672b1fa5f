"""Cancelling a run (DESIGN §3.3), on every store: through the Store protocol, in races with
workers, and through the Engine with real handlers being interrupted."""

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
from plait.testing.contract.helpers import NOW, chain, claim, fail, ok, plan_of, start, statuses


async def cancel(
    store: Store, run_id: str, now: float = NOW + 1, reason: str | None = "stop"
) -> Any:
    return await store.apply(
        lambda txn: actions.cancel(txn, run_id, reason=reason, by="tester"), now
    )


# -- the store -----------------------------------------------------------------------------------


async def test_cancel_ends_waiting_steps_and_leaves_running_ones_to_their_worker(
    store: Store,
) -> None:
    plan = plan_of("c", ("a", [], {}), ("b", [], {}), ("c", ["a"], {}))
    await start(store, plan, "r1")
    claims = {c.step: c for c in await claim(store, [plan], limit=1)}
    assert list(claims) == ["a"]

    result = await cancel(store, "r1")

    assert result.refusal is None and result.ended_runs == ["r1"]
    assert result.cancelled_runs == ["r1"]
    assert await statuses(store, "r1") == {
        "a": StepStatus.RUNNING,
        "b": StepStatus.CANCELLED,
        "c": StepStatus.CANCELLED,
    }
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.CANCELLED and run.error == "stop"
    events = await store.get_events("r1", 0, None)
    last = events[-1]
    assert last.type == "run_cancelled"
    assert last.payload == {"by": "tester", "reason": "stop", "interrupting": ["a"]}
    assert [e.step for e in events if e.type == "step_cancelled"] == ["b", "c"]
    # nothing of a cancelled run is claimed; its running step is told to stop
    assert await claim(store, [plan]) == []
    held = Lease("r1", "a", claims["a"].token)
    assert await store.heartbeat([held], 30, NOW + 2) == [held]


async def test_what_an_interrupted_step_reports_is_recorded_and_schedules_nothing(
    store: Store,
) -> None:
    plan = plan_of("c", ("a", [], {}), ("b", [], {}), ("c", ["a"], {}), ("d", ["b"], {}))
    await start(store, plan, "r1")
    claims = {c.step: c for c in await claim(store, [plan])}
    await cancel(store, "r1")

    result = await store.complete(
        [ok(claims["a"], 1), fail(claims["b"], "cancelled", retry_at=NOW + 5)], NOW + 2
    )

    assert result.accepted == [True, True] and result.readied == 0 and result.ended_runs == []
    assert await statuses(store, "r1") == {
        "a": StepStatus.DONE,  # it finished anyway: recorded
        "b": StepStatus.CANCELLED,  # interrupted: ends cancelled, never retried
        "c": StepStatus.CANCELLED,
        "d": StepStatus.CANCELLED,
    }
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.CANCELLED and run.output is None


async def test_a_dead_workers_step_of_a_cancelled_run_ends_cancelled(store: Store) -> None:
    plan = plan_of("c", ("a", [], {}), ("b", [], {}))
    await start(store, plan, "r1")
    claims = {c.step: c for c in await claim(store, [plan], lease=5)}
    await cancel(store, "r1")

    await store.recover_expired(NOW + 10, max_recoveries=10, limit=10)  # a's worker died
    await store.release([Lease("r1", "b", claims["b"].token)], NOW + 10, 10)  # b's worker stopped

    assert await statuses(store, "r1") == {"a": StepStatus.CANCELLED, "b": StepStatus.CANCELLED}
    assert await claim(store, [plan], now=NOW + 20) == []


async def test_cancel_is_idempotent_and_refuses_runs_that_ended(store: Store) -> None:
    plan = chain("c", 1)
    await start(store, plan, "pending")
    await start(store, plan, "done")
    [c] = [c for c in await claim(store, [plan]) if c.run_id == "done"]
    await store.complete([ok(c)], NOW + 1)

    first = await cancel(store, "pending")
    again = await cancel(store, "pending")
    refused = await cancel(store, "done")
    missing = await cancel(store, "nope")

    assert first.refusal is None and again.refusal is None and again.ended_runs == []
    types = [e.type for e in await store.get_events("pending", 0, None)]
    assert types.count("run_cancelled") == 1
    assert refused.refusal == (
        "run 'done' is completed: it cannot be cancelled "
        "(cancel is allowed while a run is pending, running, pausing, paused)"
    )
    assert missing.refusal == "run 'nope' does not exist"
    done = await store.get_run("done")
    assert done is not None and done.status is RunStatus.COMPLETED


def test_cancel_racing_claims_orders_every_claim_before_it(store: Store) -> None:
    """Workers claim and complete while the run is cancelled: the end state is one a serial
    order can give. Every step started before the cancel; none after; none is left waiting."""
    plan = plan_of("race", *[(f"t{i}", [], {}) for i in range(600)])
    first_done = threading.Event()
    cancelled = threading.Event()
    errors: list[BaseException] = []

    async def worker(name: str) -> None:
        while got := await claim(store, [plan], now=time.time(), limit=1, worker=name):
            await asyncio.sleep(0.001)  # the handler's work: the cancel lands mid-run
            await store.complete([ok(c) for c in got], time.time())
            first_done.set()
            if cancelled.is_set():
                break

    async def canceller() -> None:
        assert await asyncio.to_thread(first_done.wait, 30)
        result = await cancel(store, "r1", now=time.time())
        cancelled.set()
        assert result.refusal is None, result.refusal

    def in_thread(coro: Any) -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            errors.append(exc)

    asyncio.run(start(store, plan, "r1", now=time.time()))
    threads = [threading.Thread(target=in_thread, args=(worker(f"w{i}"),)) for i in range(3)]
    threads.append(threading.Thread(target=in_thread, args=(canceller(),)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and not any(t.is_alive() for t in threads)

    events = asyncio.run(store.get_events("r1", 0, None))
    cancel_seq = next(e.seq for e in events if e.type == "run_cancelled")
    started = [e for e in events if e.type == "step_started"]
    assert started and all(e.seq < cancel_seq for e in started)
    ends = asyncio.run(statuses(store, "r1"))
    assert set(ends.values()) <= {StepStatus.DONE, StepStatus.CANCELLED}
    assert {n for n, st in ends.items() if st is StepStatus.DONE} == {e.step for e in started}
    assert StepStatus.CANCELLED in ends.values()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


# -- the engine ----------------------------------------------------------------------------------


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def _serve(engine: plait.Engine, handle: plait.RunHandle) -> threading.Thread:
    thread = threading.Thread(target=lambda: engine.run_worker(until=handle, timeout=30))
    thread.start()
    return thread


def test_cancel_interrupts_an_async_step_and_ends_the_run(engine: plait.Engine) -> None:
    wf = plait.Workflow("cancel_async")
    started = threading.Event()
    finished: list[str] = []

    @wf.step
    async def slow() -> None:
        started.set()
        await asyncio.sleep(30)
        finished.append("slow")

    @wf.step
    def later(slow: None) -> None:
        finished.append("later")

    handle = engine.start(wf)
    serving = _serve(engine, handle)
    assert started.wait(10)
    t0 = time.monotonic()
    run = engine.cancel(handle.id, reason="changed my mind", by="ops")
    serving.join(timeout=20)
    assert not serving.is_alive() and time.monotonic() - t0 < 10
    assert run.status is plait.RunStatus.CANCELLED
    with pytest.raises(plait.RunCancelled, match="was cancelled: changed my mind"):
        handle.result(timeout=5)
    assert {s.name: s.status for s in engine.steps(handle.id)} == {
        "slow": plait.StepStatus.CANCELLED,
        "later": plait.StepStatus.CANCELLED,
    }
    assert finished == []
    cancelled = [e for e in engine.events(handle.id) if e.type == "run_cancelled"]
    assert [e.payload["by"] for e in cancelled] == ["ops"]
    [slow_step] = [s for s in engine.steps(handle.id) if s.name == "slow"]
    assert slow_step.error is not None  # the worker says which of its reasons it was
    assert slow_step.error.message == (
        "step 'slow' was interrupted: its run ended (cancelled, or past its deadline)"
    )


def test_a_sync_step_sees_ctx_cancelled(engine: plait.Engine) -> None:
    wf = plait.Workflow("cancel_sync")
    started = threading.Event()
    saw: list[bool] = []

    @wf.step
    def loop(ctx: plait.StepContext) -> None:
        started.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if ctx.cancelled:
                saw.append(True)
            ctx.check_cancelled()  # raises StepCancelled once the run is cancelled
            time.sleep(0.005)

    handle = engine.start(wf)
    serving = _serve(engine, handle)
    assert started.wait(10)
    engine.cancel(handle.id)
    serving.join(timeout=20)
    assert not serving.is_alive()
    assert saw == [True]
    [step] = engine.steps(handle.id)
    assert step.status is plait.StepStatus.CANCELLED
    assert engine.get_run(handle.id).status is plait.RunStatus.CANCELLED


def test_cancel_errors_name_the_problem(engine: plait.Engine) -> None:
    wf = plait.Workflow("cancel_errors")

    @wf.step
    def only() -> int:
        return 1

    handle = engine.start(wf)
    engine.run_worker(until=handle, timeout=30)
    with pytest.raises(plait.RunStateError) as caught:
        engine.cancel(handle.id)
    assert str(caught.value) == (
        f"run {handle.id!r} is completed: it cannot be cancelled "
        "(cancel is allowed while a run is pending, running, pausing, paused)"
    )
    assert engine.get_run(handle.id).status is plait.RunStatus.COMPLETED
    with pytest.raises(plait.RunNotFound, match="nope"):
        engine.cancel("nope")
    with pytest.raises(plait.InputError, match="reason must be a string"):
        engine.cancel(handle.id, reason=3)  # type: ignore[arg-type]

    pending = engine.start(wf)  # never served: cancelled at once, twice is fine
    assert engine.cancel(pending.id).status is plait.RunStatus.CANCELLED
    assert engine.cancel(pending.id).status is plait.RunStatus.CANCELLED
    types = [e.type for e in engine.events(pending.id)]
    assert types.count("run_cancelled") == 1 and types.count("step_cancelled") == 1


def test_who_acts_must_be_a_name(engine: plait.Engine) -> None:
    wf = plait.Workflow("who")

    @wf.step
    def only() -> int:
        return 1

    handle = engine.start(wf)
    for bad in ("", "   ", 42, "x" * 201):
        with pytest.raises(plait.InputError, match="by must be a non-empty string"):
            engine.cancel(handle.id, by=bad)  # type: ignore[arg-type]
        with pytest.raises(plait.InputError, match="by must be a non-empty string"):
            engine.pause(handle.id, by=bad)  # type: ignore[arg-type]
    assert engine.get_run(handle.id).status is plait.RunStatus.PENDING  # nothing changed
    run = engine.cancel(handle.id)
    [event] = [e for e in engine.events(run.id) if e.type == "run_cancelled"]
    assert "@" in event.payload["by"]  # user@host of this process by default
