"""Approval gates and signals (DESIGN §3.3), on every store: steps that wait in `waiting` for a
decision or a payload from outside, the refusals that change nothing, and the races with cancel."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

import plait
from plait.core import actions, gates
from plait.core.rows import CommitResult, Gate, RunStatus, StepStatus, WorkflowPlan
from plait.stores import Store
from plait.testing.contract.helpers import (
    NOW,
    claim,
    event_types,
    ok,
    start,
    statuses,
    step_row,
    wait_for,
)


def _handler(**kwargs: Any) -> None:
    return None


def gated() -> WorkflowPlan:
    """a → b (approval) → c; d has a default for b, so it runs whatever b does."""
    wf = plait.Workflow("gated")
    wf.add_step("a", _handler)
    wf.add_step("b", _handler, ["a"], approval=True)
    wf.add_step("c", _handler, ["b"])
    wf.add_step("d", _handler, ["b"], defaults={"b": None})
    return wf.plan()


def signalled() -> WorkflowPlan:
    """payment is a signal reached after `order`; `ship` takes its payload."""
    wf = plait.Workflow("signalled")
    wf.add_step("order", _handler)
    wf.signal("payment", after=["order"])
    wf.add_step("ship", _handler, ["payment"])
    return wf.plan()


async def approve(store: Store, run_id: str, step: str, now: float = NOW + 5) -> CommitResult:
    def action(txn: Any) -> Any:
        return gates.approve(txn, run_id, step, by="alice", note="looks fine")

    return await store.apply(action, now)


async def reject(store: Store, run_id: str, step: str, now: float = NOW + 5) -> CommitResult:
    def action(txn: Any) -> Any:
        return gates.reject(txn, run_id, step, by="bob", reason="too expensive")

    return await store.apply(action, now)


async def signal(
    store: Store, run_id: str, step: str, payload: Any, now: float = NOW + 5
) -> CommitResult:
    data = orjson.dumps(payload)
    return await store.apply(lambda txn: gates.signal(txn, run_id, step, data, by="bank"), now)


async def finish(store: Store, plan: WorkflowPlan, run_id: str, *steps: str, now: float) -> None:
    """Claim and complete exactly these steps (nothing else may be claimable)."""
    got = await claim(store, [plan], now=now)
    assert sorted(c.step for c in got) == sorted(steps)
    await store.complete([ok(c, c.step) for c in got], now)


# -- approvals -----------------------------------------------------------------------------------


async def test_an_approval_waits_then_runs_once_approved(store: Store) -> None:
    plan = gated()
    await start(store, plan, "r1")
    await finish(store, plan, "r1", "a", now=NOW + 1)

    assert (await statuses(store, "r1"))["b"] is StepStatus.WAITING
    assert await claim(store, [plan], now=NOW + 2) == []
    [waiting] = await store.list_waiting(10)
    assert (waiting.run_id, waiting.name, waiting.ready_at) == ("r1", "b", NOW + 1)
    assert waiting.options is not None and waiting.options.gate is Gate.APPROVAL

    result = await approve(store, "r1", "b")

    assert result.refusal is None and result.readied == 1
    assert await store.list_waiting(10) == []
    await finish(store, plan, "r1", "b", now=NOW + 6)
    await finish(store, plan, "r1", "c", "d", now=NOW + 7)
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED
    events = await store.get_events("r1", 0, None)
    approved = [e for e in events if e.type == "step_approved"]
    assert [(e.step, e.payload["by"], e.payload["note"]) for e in approved] == [
        ("b", "alice", "looks fine")
    ]
    assert [e.step for e in events if e.type == "step_waiting"] == ["b"]


async def test_a_rejected_approval_fails_and_cascades(store: Store) -> None:
    plan = gated()
    await start(store, plan, "r1")
    await finish(store, plan, "r1", "a", now=NOW + 1)

    result = await reject(store, "r1", "b")

    assert result.refusal is None
    b = await step_row(store, "r1", "b")
    assert (b.status, b.error_code, b.error_message) == (
        StepStatus.FAILED,
        "rejected",
        "too expensive",
    )
    assert (await statuses(store, "r1"))["c"] is StepStatus.SKIPPED
    await finish(store, plan, "r1", "d", now=NOW + 6)  # its default absorbs the rejection
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.FAILED
    assert run.error == "step 'b' failed: too expensive"
    assert "step_rejected" in await event_types(store, "r1")


async def test_retrying_a_rejected_approval_asks_again(store: Store) -> None:
    plan = gated()
    await start(store, plan, "r1")
    await finish(store, plan, "r1", "a", now=NOW + 1)
    await reject(store, "r1", "b")

    def retry(txn: Any) -> Any:
        return actions.retry(txn, "r1", "b", by="ops")

    result = await store.apply(retry, NOW + 7)

    assert result.refusal is None
    assert (await statuses(store, "r1"))["b"] is StepStatus.WAITING
    assert [c.step for c in await claim(store, [plan], now=NOW + 8)] == ["d"]  # not b
    assert (await approve(store, "r1", "b", NOW + 9)).refusal is None


async def test_decisions_that_do_not_fit_are_refused_and_change_nothing(store: Store) -> None:
    plan = gated()
    await start(store, plan, "r1")
    before = await event_types(store, "r1")

    refusals = [
        (await approve(store, "r1", "b")).refusal,  # not reached yet
        (await approve(store, "r1", "a")).refusal,  # not a gate
        (await approve(store, "r1", "zz")).refusal,
        (await approve(store, "nope", "b")).refusal,
        (await reject(store, "r1", "b")).refusal,
        (await signal(store, "r1", "b", 1)).refusal,
    ]

    assert refusals == [
        "step 'b' of run 'r1' is pending: only a waiting step can be approved",
        "step 'a' of workflow 'gated' is not an approval gate (declare it with "
        "@wf.step(approval=...))",
        "run 'r1' has no step 'zz'",
        "run 'nope' does not exist",
        "step 'b' of run 'r1' is pending: only a waiting step can be rejected",
        "step 'b' of workflow 'gated' is not a signal (declare it with wf.signal('b'))",
    ]
    assert await event_types(store, "r1") == before
    assert (await statuses(store, "r1"))["b"] is StepStatus.PENDING
    await finish(store, plan, "r1", "a", now=NOW + 1)
    assert (await approve(store, "r1", "b")).refusal is None
    second = await approve(store, "r1", "b")
    assert second.refusal == "step 'b' of run 'r1' is ready: only a waiting step can be approved"


async def test_an_approval_in_a_paused_run_waits_for_resume(store: Store) -> None:
    plan = gated()
    await start(store, plan, "r1")
    await finish(store, plan, "r1", "a", now=NOW + 1)
    await store.apply(lambda txn: actions.pause(txn, "r1", by="ops"), NOW + 2)

    assert (await approve(store, "r1", "b")).refusal is None

    assert await claim(store, [plan], now=NOW + 6) == []
    await store.apply(lambda txn: actions.resume(txn, "r1", by="ops"), NOW + 7)
    await finish(store, plan, "r1", "b", now=NOW + 8)


def test_approve_racing_cancel_ends_as_one_of_the_serial_orders(store: Store) -> None:
    plan = gated()
    asyncio.run(start(store, plan, "r1"))
    asyncio.run(finish(store, plan, "r1", "a", now=NOW + 1))
    results: dict[str, CommitResult] = {}
    go = threading.Barrier(2)

    def act(name: str) -> None:
        go.wait()
        if name == "approve":
            results[name] = asyncio.run(approve(store, "r1", "b"))
        else:
            cancel = actions.cancel
            results[name] = asyncio.run(
                store.apply(lambda txn: cancel(txn, "r1", reason=None, by="ops"), NOW + 5)
            )

    threads = [threading.Thread(target=act, args=(n,)) for n in ("approve", "cancel")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert results["cancel"].refusal is None
    # approve first: b went ready, then the cancel ended it; cancel first: approve was refused
    refused = results["approve"].refusal
    assert refused in (
        None,
        "step 'b' of run 'r1' is cancelled (the run is cancelled): only a waiting step can be "
        "approved",
    )
    assert (asyncio.run(statuses(store, "r1")))["b"] is StepStatus.CANCELLED
    types = asyncio.run(event_types(store, "r1"))
    assert types.count("step_approved") == (1 if refused is None else 0)
    assert types.count("run_cancelled") == 1
    assert asyncio.run(claim(store, [plan], now=NOW + 9)) == []


# -- signals -------------------------------------------------------------------------------------


async def test_a_signal_sent_early_is_kept_until_the_step_is_reached(store: Store) -> None:
    plan = signalled()
    await start(store, plan, "r1")

    result = await signal(store, "r1", "payment", {"paid": 42})

    assert result.refusal is None and result.accepted == [True]
    assert (await statuses(store, "r1"))["payment"] is StepStatus.PENDING
    await finish(store, plan, "r1", "order", now=NOW + 6)
    payment = await step_row(store, "r1", "payment")
    assert payment.status is StepStatus.DONE and payment.output == b'{"paid":42}'
    await finish(store, plan, "r1", "ship", now=NOW + 7)
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED
    types = await event_types(store, "r1")
    assert "signal_kept" in types and "step_waiting" not in types


async def test_a_waiting_signal_is_done_with_the_first_delivery_only(store: Store) -> None:
    plan = signalled()
    await start(store, plan, "r1")
    await finish(store, plan, "r1", "order", now=NOW + 1)
    assert (await statuses(store, "r1"))["payment"] is StepStatus.WAITING
    [waiting] = await store.list_waiting(10)
    assert waiting.options is not None and waiting.options.gate is Gate.SIGNAL

    first = await signal(store, "r1", "payment", "first")
    second = await signal(store, "r1", "payment", "second")

    assert (first.accepted, first.readied, second.accepted) == ([True], 1, [False])
    assert second.refusal is None
    payment = await step_row(store, "r1", "payment")
    assert payment.output == b'"first"'
    events = await store.get_events("r1", 0, None)
    [ignored] = [e for e in events if e.type == "signal_ignored"]
    assert ignored.payload["reason"] == "a signal was already delivered"
    assert ignored.payload["by"] == "bank"


async def test_a_second_early_signal_is_ignored(store: Store) -> None:
    plan = signalled()
    await start(store, plan, "r1")
    await signal(store, "r1", "payment", 1)

    again = await signal(store, "r1", "payment", 2)

    assert again.accepted == [False]
    await finish(store, plan, "r1", "order", now=NOW + 6)
    assert (await step_row(store, "r1", "payment")).output == b"1"


async def test_a_signal_to_a_cancelled_run_is_ignored(store: Store) -> None:
    plan = signalled()
    await start(store, plan, "r1")
    await store.apply(lambda txn: actions.cancel(txn, "r1", reason=None, by="ops"), NOW + 1)

    result = await signal(store, "r1", "payment", 1)

    assert result.refusal is None and result.accepted == [False]
    events = await store.get_events("r1", 0, None)
    assert events[-1].type == "signal_ignored"
    assert events[-1].payload["reason"] == "the step is cancelled"


# -- the engine ----------------------------------------------------------------------------------


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def _serve(engine: plait.Engine, handle: plait.RunHandle) -> threading.Thread:
    worker = threading.Thread(target=lambda: engine.run_worker(until=handle, timeout=60))
    worker.start()
    return worker


def _waiting(engine: plait.Engine, run_id: str) -> list[plait.Waiting]:
    return wait_for(
        lambda: [w for w in engine.list_waiting() if w.run_id == run_id],
        bool,
        f"a waiting step in run {run_id}",
        lambda: str(engine.inspect(run_id).blockers),
        timeout=30,
    )


def test_an_approval_through_the_engine(engine: plait.Engine) -> None:
    wf = plait.Workflow("expense")

    @wf.step
    def submit(amount: int) -> int:
        return amount

    @wf.step(approval=True)
    def pay(submit: int) -> str:
        return f"paid {submit}"

    handle = engine.start(wf, {"amount": 120})
    worker = _serve(engine, handle)
    [waiting] = _waiting(engine, handle.id)
    assert (waiting.workflow, waiting.step, waiting.gate, waiting.expires_at) == (
        "expense",
        "pay",
        "approval",
        None,
    )
    blockers = engine.inspect(handle.id).blockers
    assert blockers["pay"] == ["waiting for approval (engine.approve)"]

    step = engine.approve(handle.id, "pay", by="carol", note="ok")

    assert step.status in ("ready", "running", "done")  # the worker may be quick
    worker.join(timeout=60)
    assert handle.result(timeout=5) == {"pay": "paid 120"}
    with pytest.raises(
        plait.RunStateError,
        match=r"is done \(the run is completed\): only a waiting step can be approved",
    ):
        engine.approve(handle.id, "pay")
    with pytest.raises(plait.RunStateError, match="'submit' of workflow 'expense' is not an appr"):
        engine.reject(handle.id, "submit")
    with pytest.raises(plait.RunNotFound, match="no run with id 'nope'"):
        engine.approve("nope", "pay")
    with pytest.raises(plait.InputError, match="note must be a string"):
        engine.approve(handle.id, "pay", note=42)  # type: ignore[arg-type]


def test_a_rejection_through_the_engine_fails_the_run(engine: plait.Engine) -> None:
    wf = plait.Workflow("deploy")

    @wf.step(approval=plait.Approval())
    def release() -> str:
        return "released"

    handle = engine.start(wf)
    engine.reject(handle.id, "release", reason="freeze week", by="dave")
    engine.run_worker(until=handle, timeout=30)

    with pytest.raises(plait.RunFailed, match=r"release: \[rejected\] freeze week"):
        handle.result(timeout=5)


def test_a_signal_through_the_engine(engine: plait.Engine) -> None:
    wf = plait.Workflow("checkout")

    @wf.step
    def order() -> str:
        return "o-1"

    wf.signal("payment", after=["order"])

    @wf.step
    def ship(order: str, payment: dict[str, int]) -> str:
        return f"{order} shipped for {payment['amount']}"

    handle = engine.start(wf)
    worker = _serve(engine, handle)
    [waiting] = _waiting(engine, handle.id)
    assert (waiting.step, waiting.gate) == ("payment", "signal")

    assert engine.signal(handle.id, "payment", {"amount": 30}, by="psp") is True
    assert engine.signal(handle.id, "payment", {"amount": 31}) is False

    worker.join(timeout=60)
    assert handle.result(timeout=5) == {"ship": "o-1 shipped for 30"}
    with pytest.raises(plait.RunStateError, match="'ship' of workflow 'checkout' is not a signal"):
        engine.signal(handle.id, "ship", 1)
    with pytest.raises(plait.InputError, match="signal payload for 'payment' is not JSON"):
        engine.signal(handle.id, "payment", object())
