"""What the clock decides (DESIGN §3.3), on every store: delayed steps, approvals that expire,
and run deadlines, at store level with a controlled clock, and through the Engine."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest

import plait
from plait.core.cascade import new_run
from plait.core.rows import RunStatus, StepStatus, WorkflowPlan
from plait.stores import Store, open_store
from plait.testing.contract.conftest import Backend
from plait.testing.contract.helpers import (
    NOW,
    claim,
    event_types,
    fail,
    ok,
    start,
    statuses,
    step_row,
)


def _handler(**kwargs: Any) -> None:
    return None


def delayed(delay: float = 5.0) -> WorkflowPlan:
    wf = plait.Workflow("delayed")
    wf.add_step("a", _handler)
    wf.add_step("b", _handler, ["a"], delay=delay)
    wf.add_step("late_root", _handler, delay=dt.timedelta(seconds=2))
    return wf.plan()


def expiring(on_expiry: str = "reject") -> WorkflowPlan:
    wf = plait.Workflow("expiring")
    wf.add_step("ask", _handler, approval=plait.Approval(expires_after=10, on_expiry=on_expiry))
    wf.add_step("after", _handler, ["ask"])
    return wf.plan()


# -- delays --------------------------------------------------------------------------------------


async def test_a_delayed_step_is_claimable_only_after_its_delay(store: Store) -> None:
    plan = delayed()
    await start(store, plan, "r1")
    [a] = await claim(store, [plan])  # late_root waits 2 s
    assert a.step == "a"

    claims = await claim(store, [plan], now=NOW + 2)
    assert [c.step for c in claims] == ["late_root"]
    await store.complete([ok(c) for c in claims], NOW + 2)
    await store.complete([ok(a)], NOW + 3)

    b = await step_row(store, "r1", "b")
    assert (b.status, b.ready_at, b.available_at) == (StepStatus.READY, NOW + 3, NOW + 8)
    assert await claim(store, [plan], now=NOW + 7.9) == []
    assert await store.next_ready_at([plan.fingerprint]) == NOW + 8
    [got] = await claim(store, [plan], now=NOW + 8)
    assert got.step == "b"


async def test_a_retry_backoff_is_not_delayed_again(store: Store) -> None:
    plan = delayed(delay=100)
    await start(store, plan, "r1")
    [a] = await claim(store, [plan])
    await store.complete([ok(a)], NOW)
    [b] = [c for c in await claim(store, [plan], now=NOW + 100) if c.step == "b"]
    await store.complete([fail(b, retry_at=NOW + 101)], NOW + 100)

    assert (await step_row(store, "r1", "b")).available_at == NOW + 101


def test_a_delay_survives_a_restart(durable_backend: Backend, tmp_path: Any) -> None:
    """The wait is durable: a store opened afresh keeps the step's time, it does not restart it."""
    url = durable_backend.url(tmp_path)
    plan = delayed()

    async def first() -> None:
        store = open_store(url)
        await store.open()
        try:
            run, steps, events = new_run(plan, "r1", b"{}", NOW)
            await store.create_run(run, steps, events)
        finally:
            await store.close()

    async def after_restart() -> tuple[list[str], list[str]]:
        store = open_store(url)
        await store.open()
        try:
            early = [c.step for c in await claim(store, [plan], now=NOW + 1.9)]
            due = [c.step for c in await claim(store, [plan], now=NOW + 2)]
            return early, due
        finally:
            await store.close()

    asyncio.run(first())
    assert asyncio.run(after_restart()) == (["a"], ["late_root"])


# -- approvals that expire -----------------------------------------------------------------------


async def test_an_undecided_approval_is_rejected_on_expiry(store: Store) -> None:
    plan = expiring()
    await start(store, plan, "r1")
    ask = await step_row(store, "r1", "ask")
    assert (ask.status, ask.available_at) == (StepStatus.WAITING, NOW + 10)
    assert await store.next_timer_at() == NOW + 10

    early = await store.fire_timers(NOW + 9.9, 100)

    assert early.ended_runs == [] and (await statuses(store, "r1"))["ask"] is StepStatus.WAITING
    result = await store.fire_timers(NOW + 10, 100)
    assert result.ended_runs == ["r1"]
    ask = await step_row(store, "r1", "ask")
    assert (ask.status, ask.error_code) == (StepStatus.FAILED, "rejected")
    assert ask.error_message == "no decision within 10.0s: rejected on expiry"
    assert (await statuses(store, "r1"))["after"] is StepStatus.SKIPPED
    events = await store.get_events("r1", 0, None)
    [rejected] = [e for e in events if e.type == "step_rejected"]
    assert rejected.payload == {"step": "ask", "by": "plait", "reason": "expired"}
    assert await store.next_timer_at() is None
    assert (await store.fire_timers(NOW + 20, 100)).ended_runs == []  # nothing twice


async def test_an_approval_can_be_approved_on_expiry(store: Store) -> None:
    plan = expiring(on_expiry="approve")
    await start(store, plan, "r1")

    result = await store.fire_timers(NOW + 10, 100)

    assert result.readied == 1
    [got] = await claim(store, [plan], now=NOW + 10)
    assert got.step == "ask"
    assert "step_approved" in await event_types(store, "r1")


# -- deadlines -----------------------------------------------------------------------------------


async def test_a_run_past_its_deadline_fails_and_cancels_what_is_unfinished(store: Store) -> None:
    plan = delayed()
    row, steps, events = new_run(plan, "r1", b"{}", NOW)
    row.deadline = NOW + 30
    await store.create_run(row, steps, events)
    [a] = await claim(store, [plan])
    assert await store.next_timer_at() == NOW + 30
    assert (await store.fire_timers(NOW + 29, 100)).ended_runs == []

    result = await store.fire_timers(NOW + 30, 100)

    assert result.ended_runs == ["r1"] and result.cancelled_runs == ["r1"]
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.FAILED
    assert run.error == "deadline_exceeded: the run did not finish by its deadline"
    assert await statuses(store, "r1") == {
        "a": StepStatus.RUNNING,  # interrupted: its worker learns it at its next heartbeat
        "b": StepStatus.CANCELLED,
        "late_root": StepStatus.CANCELLED,
    }
    lost = await store.heartbeat([_held(a)], 30.0, NOW + 31)
    assert [h.step for h in lost] == ["a"]
    # what the interrupted step reports is recorded and schedules nothing, a retry included
    await store.complete([fail(a, code="cancelled", retry_at=NOW + 32)], NOW + 31)
    assert (await statuses(store, "r1"))["a"] is StepStatus.CANCELLED
    run = await store.get_run("r1")
    assert run is not None and (run.status, run.unfinished) == (RunStatus.FAILED, 0)
    failed = [e for e in await store.get_events("r1", 0, None) if e.type == "run_failed"]
    assert [e.payload["code"] for e in failed] == ["deadline_exceeded"]
    assert await store.next_timer_at() is None


def _held(c: Any) -> Any:
    from plait.core.rows import Lease

    return Lease(c.run_id, c.step, c.token)


async def test_a_run_that_finished_in_time_is_left_alone(store: Store) -> None:
    wf = plait.Workflow("quick")
    wf.add_step("only", _handler)
    plan = wf.plan()
    row, steps, events = new_run(plan, "r1", b"{}", NOW)
    row.deadline = NOW + 5
    await store.create_run(row, steps, events)
    [c] = await claim(store, [plan])
    await store.complete([ok(c)], NOW + 1)

    assert await store.next_timer_at() is None
    assert (await store.fire_timers(NOW + 6, 100)).ended_runs == []
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED


# -- the engine ----------------------------------------------------------------------------------


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def test_a_deadline_interrupts_a_running_step_and_fails_the_run(store_url: str) -> None:
    # a 30 s lease: heartbeats come every 10 s, so only the deadline can end this in time
    with plait.Engine(store_url, lease=30.0) as engine:
        _deadline_interrupts(engine)


def _deadline_interrupts(engine: plait.Engine) -> None:
    wf = plait.Workflow("slow")

    @wf.step
    async def forever() -> None:
        await asyncio.Event().wait()  # never set: only the deadline ends this

    @wf.step
    def after(forever: None) -> str:
        return "never"

    started = time.monotonic()
    handle = engine.start(wf, deadline=dt.timedelta(seconds=0.5))
    assert handle.get().deadline is not None

    engine.run_worker(until=handle, timeout=30)

    assert time.monotonic() - started < 5  # the deadline ended it, not a heartbeat
    with pytest.raises(plait.RunFailed, match=r"\[deadline_exceeded\]") as info:
        handle.result(timeout=5)
    assert info.value.code == "deadline_exceeded"
    steps = {s.name: s.status for s in engine.steps(handle.id)}
    assert steps == {"forever": "cancelled", "after": "cancelled"}


def test_an_approval_expires_while_a_worker_serves(engine: plait.Engine) -> None:
    wf = plait.Workflow("expires")

    @wf.step(approval=plait.Approval(expires_after=0.3))
    def publish() -> str:
        return "published"

    handle = engine.start(wf)
    engine.run_worker(until=handle, timeout=30)

    with pytest.raises(plait.RunFailed, match=r"publish: \[rejected\] no decision within 0.3s"):
        handle.result(timeout=5)


def test_a_delay_through_the_engine(engine: plait.Engine) -> None:
    wf = plait.Workflow("later")

    @wf.step(delay=0.3)
    def remind() -> float:
        return time.time()

    handle = engine.start(wf)
    engine.run_worker(until=handle, timeout=30)

    [step] = engine.steps(handle.id)
    assert step.ready_at is not None and step.started_at is not None
    assert (step.started_at - step.ready_at).total_seconds() >= 0.3


@pytest.mark.parametrize("deadline", [0, -1, "5", True, float("inf")])
def test_a_bad_deadline_is_refused(engine: plait.Engine, deadline: Any) -> None:
    wf = plait.Workflow("dl")
    wf.add_step("x", _handler)
    with pytest.raises(plait.InputError, match="start: deadline must be a positive number of"):
        engine.start(wf, deadline=deadline)
    assert len(engine.list_runs()) == 0
