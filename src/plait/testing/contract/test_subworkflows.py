"""Sub-workflows (`ctx.call`, `ctx.call_async`) on every store: a step starts a child run
linked to it, waits for it without a worker, and gets its output or its error; cancelling the
caller cancels the child. First through the Store protocol (the wait and the wake-up are the
store's transactions), then through the Engine with real handlers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import plait
from plait.core import actions
from plait.core.cascade import new_run
from plait.core.rows import Outcome, RunStatus, StepStatus
from plait.stores import Store
from plait.testing.contract.helpers import NOW, claim_one, event_types, ok, plan_of, start, step_row

# -- the store ---------------------------------------------------------------------------------


async def _start_child(store: Store, parent: str, step: str, child_id: str) -> Any:
    plan = plan_of("child", ("work", [], {}))
    row, steps, events = new_run(plan, child_id, b"{}", NOW)
    row.parent_run, row.called_by = parent, step
    await store.create_run(row, steps, events)
    return plan


async def test_a_calling_step_waits_and_the_child_s_end_makes_it_ready(store: Store) -> None:
    parent = plan_of("parent", ("go", [], {}), ("after", ["go"], {}))
    await start(store, parent, "p")
    c = await claim_one(store, parent, "go")
    child = await _start_child(store, "p", "go", "p.go.0.1")

    result = await store.complete([Outcome("p", "go", c.token, call="p.go.0.1")], NOW + 1)

    assert result.accepted == [True]
    waiting = await step_row(store, "p", "go")
    assert waiting.status is StepStatus.WAITING and waiting.lease_token is None
    assert waiting.attempt == 0  # a call is no failure: the attempt is given back
    # the child runs; the transaction that ends it makes the caller ready
    work = await claim_one(store, child, "work", NOW + 2)
    ended = await store.complete([ok(work, 7)], NOW + 3)
    assert ended.ended_runs == ["p.go.0.1"]
    again = await step_row(store, "p", "go")
    assert again.status is StepStatus.READY and again.gather is None
    assert (await event_types(store, "p"))[-2:] == ["step_calling", "step_call_returned"]
    child_run = await store.get_run("p.go.0.1")
    assert child_run is not None and (child_run.parent_run, child_run.called_by) == ("p", "go")


async def test_a_child_that_ended_before_its_caller_waits_leaves_it_ready(store: Store) -> None:
    parent = plan_of("parent", ("go", [], {}))
    await start(store, parent, "p")
    c = await claim_one(store, parent, "go")
    child = await _start_child(store, "p", "go", "p.go.0.1")
    work = await claim_one(store, child, "work")
    await store.complete([ok(work, 7)], NOW + 1)  # the caller is still running: nothing to wake

    await store.complete([Outcome("p", "go", c.token, call="p.go.0.1")], NOW + 2)

    assert (await step_row(store, "p", "go")).status is StepStatus.READY


async def test_cancelling_the_caller_cancels_the_child_in_the_same_transaction(
    store: Store,
) -> None:
    parent = plan_of("parent", ("go", [], {}))
    await start(store, parent, "p")
    c = await claim_one(store, parent, "go")
    await _start_child(store, "p", "go", "p.go.0.1")
    await store.complete([Outcome("p", "go", c.token, call="p.go.0.1")], NOW + 1)

    result = await store.apply(
        lambda txn: actions.cancel(txn, "p", reason="stop", by="tester"), NOW + 2
    )

    assert sorted(result.ended_runs) == ["p", "p.go.0.1"]
    child_run = await store.get_run("p.go.0.1")
    assert child_run is not None and child_run.status is RunStatus.CANCELLED
    assert child_run.error == "the run that called it, 'p', ended: stop"
    assert (await step_row(store, "p.go.0.1", "work")).status is StepStatus.CANCELLED


# -- the engine ----------------------------------------------------------------------------------


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def _child(name: str = "child", on_run: Callable[[], object] | None = None) -> plait.Workflow:
    wf = plait.Workflow(name)

    @wf.step()
    def double(x: int) -> int:
        if on_run is not None:
            on_run()
        if x < 0:
            raise plait.Permanent(f"negative: {x}", code="negative")
        return x * 2

    return wf


def _step(engine: plait.Engine, run_id: str, name: str) -> plait.Step:
    return next(s for s in engine.inspect(run_id).steps if s.name == name)


def _wait_for(what: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_steps_call_workflows_and_get_their_output_on_one_worker_slot(
    engine: plait.Engine,
) -> None:
    child = _child()
    parent = plait.Workflow("parent")

    @parent.step()
    def twice(ctx: plait.StepContext, n: int) -> int:
        first = ctx.call(child, {"x": n})
        return ctx.call(child, {"x": first["double"]})["double"]  # type: ignore[no-any-return]

    @parent.step()
    async def once(ctx: plait.StepContext, n: int) -> int:
        return (await ctx.call_async(child, {"x": n + 1}))["double"]  # type: ignore[no-any-return]

    handle = engine.start(parent, {"n": 3}, run_id="p")
    # one slot: a caller that held it while it waited would never see its child run
    engine.run_worker(until=handle, timeout=30, concurrency=1)

    assert handle.result(timeout=5) == {"twice": 12, "once": 8}
    for child_id, caller in [
        ("p.twice.0.1", "twice"),
        ("p.twice.0.2", "twice"),
        ("p.once.0.1", "once"),
    ]:
        run = engine.get_run(child_id)
        assert run.status is plait.RunStatus.COMPLETED and run.workflow == "child"
        assert (run.parent_run, run.called_by, run.forked_from) == ("p", caller, None)
    called = [e.payload["child"] for e in engine.events("p") if e.type == "step_calling"]
    assert sorted(called) == ["p.once.0.1", "p.twice.0.1", "p.twice.0.2"]
    step = next(s for s in engine.inspect("p").steps if s.name == "twice")
    assert step.attempts == 1 and step.calling is None  # the calls' passes gave theirs back


def test_a_waiting_caller_shows_its_child_and_is_no_approval(engine: plait.Engine) -> None:
    release = threading.Event()
    child = _child(on_run=lambda: release.wait(20))
    parent = plait.Workflow("parent")

    @parent.step(approval=True)
    def go(ctx: plait.StepContext) -> int:
        return ctx.call(child, {"x": 2})["double"]  # type: ignore[no-any-return]

    handle = engine.start(parent, {}, run_id="p")
    engine.approve("p", "go")
    worker = threading.Thread(target=lambda: engine.run_worker(until=handle, timeout=30))
    worker.start()
    try:
        _wait_for(lambda: engine.inspect("p").steps[0].calling == "p.go.0.1")
        inspection = engine.inspect("p")
        step = inspection.steps[0]
        assert step.status is plait.StepStatus.WAITING and step.gate is None
        assert inspection.blockers["go"] == ["waiting for the sub-workflow run it called, p.go.0.1"]
        assert engine.list_waiting(run_id="p") == []
        with pytest.raises(plait.RunStateError) as refused:
            engine.approve("p", "go")
        assert "waiting for the run it called, 'p.go.0.1'" in str(refused.value)
    finally:
        release.set()
        worker.join(30)
    assert handle.result(timeout=5) == {"go": 4}


def test_a_failed_child_fails_the_call_with_its_error(engine: plait.Engine) -> None:
    child = _child()
    parent = plait.Workflow("parent")
    caught: list[plait.ChildFailed] = []

    @parent.step()
    def go(ctx: plait.StepContext) -> int:
        return ctx.call(child, {"x": -1})["double"]  # type: ignore[no-any-return]

    @parent.step()
    def handled(ctx: plait.StepContext) -> str:
        try:
            ctx.call(child, {"x": -2})
        except plait.ChildFailed as exc:
            caught.append(exc)
            return exc.code
        return "no error"

    handle = engine.start(parent, {}, run_id="p")
    engine.run_worker(until=handle, timeout=30)

    with pytest.raises(plait.RunFailed) as failed:
        handle.result(timeout=5)
    error = failed.value.failures["go"]
    assert error.code == "negative"
    assert error.message == (
        "sub-workflow run 'p.go.0.1' failed: step 'double' failed: negative: -1"
    )
    assert _step(engine, "p", "handled").output == "negative"
    assert caught[0].run_id == "p.handled.0.1" and caught[0].status == "failed"
    assert _step(engine, "p", "go").attempts == 1  # ChildFailed is not retried


def test_a_child_input_that_does_not_fit_fails_the_calling_step(engine: plait.Engine) -> None:
    child = _child()
    parent = plait.Workflow("parent")

    @parent.step()
    def go(ctx: plait.StepContext) -> Any:
        return ctx.call(child, {"y": 1})

    handle = engine.start(parent, {}, run_id="p")
    engine.run_worker(until=handle, timeout=30)

    with pytest.raises(plait.RunFailed) as failed:
        handle.result(timeout=5)
    error = failed.value.failures["go"]
    assert error.code == "InputError"
    assert "misses field 'x'" in error.message and "'double'" in error.message
    with pytest.raises(plait.RunNotFound):
        engine.get_run("p.go.0.1")


def test_a_retried_caller_finds_its_child_and_starts_no_second_one(engine: plait.Engine) -> None:
    runs: list[int] = []
    child = _child(on_run=lambda: runs.append(1))
    parent = plait.Workflow("parent", retry=plait.Retry(attempts=3, delay=0.01))

    @parent.step()
    def go(ctx: plait.StepContext) -> int:
        doubled = ctx.call(child, {"x": 5})["double"]
        if ctx.attempt < 2:
            raise plait.Retryable("after the call")
        return doubled  # type: ignore[no-any-return]

    handle = engine.start(parent, {}, run_id="p")
    engine.run_worker(until=handle, timeout=30)

    assert handle.result(timeout=5) == {"go": 10}
    assert len(runs) == 1
    assert [r.id for r in engine.list_runs(workflow="child").runs] == ["p.go.0.1"]


def test_cancelling_the_caller_cancels_the_running_child(engine: plait.Engine) -> None:
    started = threading.Event()
    child = plait.Workflow("child")

    @child.step()
    def slow(ctx: plait.StepContext) -> None:
        started.set()
        while not ctx.cancelled:
            time.sleep(0.01)
        ctx.check_cancelled()

    parent = plait.Workflow("parent")

    @parent.step()
    def go(ctx: plait.StepContext) -> Any:
        return ctx.call(child)

    engine.start(parent, {}, run_id="p")
    worker = threading.Thread(target=lambda: engine.run_worker(timeout=30))
    worker.start()
    try:
        assert started.wait(20)
        _wait_for(lambda: engine.inspect("p").steps[0].calling == "p.go.0.1")
        engine.cancel("p", reason="enough")
        _wait_for(lambda: _step(engine, "p.go.0.1", "slow").status.terminal)
    finally:
        engine.stop_workers()
        worker.join(30)
    child_run = engine.get_run("p.go.0.1")
    assert child_run.status is plait.RunStatus.CANCELLED
    assert child_run.error == "the run that called it, 'p', ended: enough"
    assert _step(engine, "p.go.0.1", "slow").status is plait.StepStatus.CANCELLED
    assert _step(engine, "p", "go").status is plait.StepStatus.CANCELLED


def test_ctx_call_refuses_what_is_no_workflow_and_blocking_in_async_handlers(
    engine: plait.Engine,
) -> None:
    child = _child()
    parent = plait.Workflow("parent")

    @parent.step()
    def bad(ctx: plait.StepContext) -> Any:
        return ctx.call("child", {"x": 1})  # type: ignore[arg-type]

    @parent.step()
    async def blocking(ctx: plait.StepContext) -> Any:
        return ctx.call(child, {"x": 1})

    handle = engine.start(parent, {}, run_id="p")
    engine.run_worker(until=handle, timeout=30)

    with pytest.raises(plait.RunFailed) as failed:
        handle.result(timeout=5)
    assert failed.value.failures["bad"] == plait.StepError(
        "TypeError", "ctx.call: expected a plait.Workflow to call, got str"
    )
    assert failed.value.failures["blocking"] == plait.StepError(
        "RuntimeError", "ctx.call blocks: in an async handler, use `await ctx.call_async(...)`"
    )


def test_a_step_context_outside_a_worker_cannot_call() -> None:
    ctx = plait.StepContext(run_id="r", step="s", workflow="w", attempt=1, run_input={})
    with pytest.raises(RuntimeError, match="only a step run by a worker can"):
        ctx.call(_child())


def test_a_replayed_caller_reads_its_recorded_child_and_starts_none(engine: plait.Engine) -> None:
    child = _child()
    parent = plait.Workflow("parent")
    inputs = [4]

    @parent.step()
    def go(ctx: plait.StepContext) -> int:
        return sum(ctx.call(child, {"x": x})["double"] for x in inputs)

    handle = engine.start(parent, {}, run_id="p")
    engine.run_worker(until=handle, timeout=30)

    replayed = engine.replay("p", "go")
    assert (replayed.status, replayed.output, replayed.diff) == ("done", 8, [])
    inputs.append(5)  # the code now makes a second call, which the run never made
    replayed = engine.replay("p", "go")
    assert replayed.status == "failed" and replayed.error is not None
    assert replayed.error.message == (
        "replay starts no run: step 'go' of run 'p' never called workflow 'child' as run 'p.go.0.2'"
    )
    assert [r.id for r in engine.list_runs(workflow="child").runs] == ["p.go.0.1"]


def test_a_child_id_taken_by_another_run_fails_the_call(engine: plait.Engine) -> None:
    child = _child()
    engine.start(child, {"x": 1}, run_id="p.go.0.1")  # not started by the step
    parent = plait.Workflow("parent")

    @parent.step()
    def go(ctx: plait.StepContext) -> Any:
        return ctx.call(child, {"x": 1})

    handle = engine.start(parent, {}, run_id="p")
    engine.run_worker(until=handle, timeout=30)

    with pytest.raises(plait.RunFailed) as failed:
        handle.result(timeout=5)
    assert failed.value.failures["go"] == plait.StepError(
        "RunConflict", "run id 'p.go.0.1' is taken by a run that step 'go' of run 'p' did not call"
    )
