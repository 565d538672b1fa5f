"""Loops (DESIGN §3.3), on every store: a step returning plait.Goto runs its target and what
follows again, counts the passes, keeps each pass's outputs in the log, and stops at
max_iterations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

import plait
from plait.core.cascade import new_run
from plait.core.rows import Claim, Outcome, RunStatus, StepStatus, WorkflowPlan
from plait.stores import Store
from plait.testing.contract.helpers import NOW, claim, ok, statuses, step_row


def _handler(**kwargs: Any) -> None:
    return None


def looping() -> WorkflowPlan:
    """setup → fetch → check → report: check may loop back to fetch."""
    wf = plait.Workflow("looping")
    wf.add_step("setup", _handler)
    wf.add_step("fetch", _handler, ["setup"])
    wf.add_step("check", _handler, ["fetch"])
    wf.add_step("report", _handler, ["check"])
    return wf.plan()


def goto(c: Claim, target: str, limit: int = 3) -> Outcome:
    return Outcome(c.run_id, c.step, c.token, goto=target, max_iterations=limit)


async def _begin(store: Store) -> WorkflowPlan:
    plan = looping()
    run, steps, events = new_run(plan, "r1", b"{}", NOW)
    await store.create_run(run, steps, events)
    for name in ("setup", "fetch"):
        [c] = await claim(store, [plan])
        assert c.step == name
        await store.complete([ok(c, f"{name}-0")], NOW)
    return plan


async def test_goto_runs_the_target_and_what_follows_again(store: Store) -> None:
    plan = await _begin(store)
    [check] = await claim(store, [plan])

    result = await store.complete([goto(check, "fetch")], NOW + 1)

    assert result.accepted == [True] and result.readied == 1
    assert await statuses(store, "r1") == {
        "setup": StepStatus.DONE,
        "fetch": StepStatus.READY,
        "check": StepStatus.PENDING,
        "report": StepStatus.PENDING,
    }
    fetch = await step_row(store, "r1", "fetch")
    assert (fetch.iteration, fetch.output, fetch.attempt) == (1, None, 0)
    assert (await step_row(store, "r1", "setup")).iteration == 0  # upstream: not re-run
    run = await store.get_run("r1")
    assert run is not None and (run.status, run.unfinished) == (RunStatus.RUNNING, 3)
    [again] = await claim(store, [plan], now=NOW + 1)
    assert (again.step, again.iteration) == ("fetch", 1)
    await store.complete([ok(again, "fetch-1")], NOW + 2)
    [check] = await claim(store, [plan], now=NOW + 2)
    await store.complete([ok(check, "fine")], NOW + 3)
    [report] = await claim(store, [plan], now=NOW + 3)
    await store.complete([ok(report, "report")], NOW + 4)
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED
    events = await store.get_events("r1", 0, None)
    resets = [
        (e.step, e.payload["iteration"], e.payload["output"])
        for e in events
        if e.type == "step_reset"
    ]
    assert resets == [("fetch", 0, "fetch-0"), ("check", 0, None), ("report", 0, None)]
    [looped] = [e for e in events if e.type == "step_looped"]
    assert looped.payload == {"step": "check", "goto": "fetch", "iteration": 1}


async def test_a_goto_past_max_iterations_fails_the_step(store: Store) -> None:
    plan = await _begin(store)
    for n in range(2):  # passes 1 and 2 of fetch … then a third Goto would be pass 4 > 3
        [check] = await claim(store, [plan], now=NOW + n)
        await store.complete([goto(check, "fetch", limit=3)], NOW + n)
        [fetch] = await claim(store, [plan], now=NOW + n)
        await store.complete([ok(fetch, f"fetch-{n + 1}")], NOW + n)
    [check] = await claim(store, [plan], now=NOW + 5)

    await store.complete([goto(check, "fetch", limit=3)], NOW + 5)

    check_row = await step_row(store, "r1", "check")
    assert (check_row.status, check_row.error_code) == (StepStatus.FAILED, "max_iterations")
    assert check_row.error_message == (
        "step 'check' returned Goto('fetch') after 3 passes (max_iterations=3)"
    )
    assert (await step_row(store, "r1", "fetch")).output == orjson.dumps("fetch-2")
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.FAILED
    assert (await statuses(store, "r1"))["report"] is StepStatus.SKIPPED


async def test_a_goto_to_an_unknown_step_fails(store: Store) -> None:
    plan = await _begin(store)
    [check] = await claim(store, [plan])

    await store.complete([goto(check, "nowhere")], NOW + 1)

    row = await step_row(store, "r1", "check")
    assert (row.status, row.error_code) == (StepStatus.FAILED, "invalid_goto")
    assert row.error_message == (
        "step 'check' returned Goto('nowhere'): 'nowhere' is not a step of this workflow"
    )


async def test_a_goto_downstream_jumps_over_the_steps_between(store: Store) -> None:
    """fetch → check → report: a Goto("report") from fetch skips check, and report is ready."""
    plan = looping()
    run, steps, events = new_run(plan, "r1", b"{}", NOW)
    await store.create_run(run, steps, events)
    [setup] = await claim(store, [plan])
    await store.complete([ok(setup, "setup-0")], NOW)
    [fetch] = await claim(store, [plan])

    result = await store.complete([goto(fetch, "report")], NOW + 1)

    assert result.readied == 1
    assert await statuses(store, "r1") == {
        "setup": StepStatus.DONE,
        "fetch": StepStatus.DONE,
        "check": StepStatus.SKIPPED,
        "report": StepStatus.READY,
    }
    check = await step_row(store, "r1", "check")
    assert check.skip_reason == "condition: jumped over by a goto to 'report'"
    [report] = await claim(store, [plan], now=NOW + 1)
    await store.complete([ok(report, "report")], NOW + 2)
    done = await store.get_run("r1")
    assert done is not None and done.status is RunStatus.COMPLETED
    jumped = [e.payload for e in await store.get_events("r1", 0, None) if e.type == "step_jumped"]
    assert jumped == [{"step": "fetch", "goto": "report", "over": ["check"]}]


# -- the engine ----------------------------------------------------------------------------------


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def test_a_polling_loop_through_the_engine(engine: plait.Engine) -> None:
    wf = plait.Workflow("poll")

    @wf.step
    def fetch(ctx: plait.StepContext) -> int:
        return ctx.iteration * 10

    @wf.step
    def check(fetch: int, ctx: plait.StepContext) -> Any:
        if fetch < 20:
            return plait.Goto("fetch", max_iterations=5)
        return {"value": fetch, "passes": ctx.iteration + 1}

    handle = engine.start(wf)
    engine.run_worker(until=handle, timeout=30)

    assert handle.result(timeout=5) == {"check": {"value": 20, "passes": 3}}
    outputs = [
        (e.step, e.payload["output"]) for e in engine.events(handle.id) if e.type == "step_reset"
    ]
    assert outputs == [("fetch", 0), ("check", None), ("fetch", 10), ("check", None)]
    replayed = engine.replay(handle.id, "check")  # sees the pass it recorded, not a first one
    assert replayed.status == "done" and replayed.diff == []


def test_goto_with_a_bad_limit_fails_the_step(engine: plait.Engine) -> None:
    wf = plait.Workflow("bad_goto")

    @wf.step
    def spin() -> Any:
        return plait.Goto("spin", max_iterations=0)

    handle = engine.start(wf)
    engine.run_worker(until=handle, timeout=30)

    with pytest.raises(
        plait.RunFailed, match=r"Goto max_iterations must be an integer >= 1, got 0"
    ):
        handle.result(timeout=5)
