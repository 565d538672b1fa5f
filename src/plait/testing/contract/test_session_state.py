"""Session state on every store: `ctx.state` changes committed with a step's success only, read
by later steps and conditions, merged in commit order (set: the last wins; append: none lost),
told by one `state_changed` event per change, and copied by a fork as its reused steps made it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

import plait
from plait.core.rows import Outcome, StateChange, StepData
from plait.stores import Store
from plait.testing.contract.helpers import NOW, claim, fail, ok, plan_of, start


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def run(engine: plait.Engine, wf: plait.Workflow, data: dict[str, Any] | None = None) -> Any:
    handle = engine.start(wf, data or {})
    engine.run_worker(until=handle, timeout=60, concurrency=4)
    return handle


def changes(engine: plait.Engine, run_id: str) -> list[tuple[str | None, str, str, Any]]:
    return [
        (e.step, e.payload["op"], e.payload["key"], e.payload["value"])
        for e in engine.events(run_id)
        if e.type == "state_changed"
    ]


def test_later_steps_read_what_earlier_successes_committed(engine: plait.Engine) -> None:
    wf = plait.Workflow("session")

    @wf.step
    def first(ctx: plait.StepContext) -> None:
        assert ctx.state.get("count") is None
        ctx.state.set("count", 1)
        ctx.state.append("seen", "first")
        assert ctx.state.get("count") == 1  # an attempt reads its own changes
        assert ctx.state.to_dict() == {"count": 1, "seen": ["first"]}

    @wf.step(after=["first"])
    def second(ctx: plait.StepContext) -> dict[str, Any]:
        ctx.state.set("count", ctx.state.get("count") + 1)
        ctx.state.append("seen", "second")
        return ctx.state.to_dict()

    handle = run(engine, wf)

    assert handle.result() == {"second": {"count": 2, "seen": ["first", "second"]}}
    assert engine.get_run(handle.id).state == {"count": 2, "seen": ["first", "second"]}
    assert changes(engine, handle.id) == [
        ("first", "set", "count", 1),
        ("first", "append", "seen", "first"),
        ("second", "set", "count", 2),
        ("second", "append", "seen", "second"),
    ]


def test_a_failed_attempt_changes_nothing_and_its_retry_once(engine: plait.Engine) -> None:
    wf = plait.Workflow("flaky-state", retry=plait.Retry(attempts=3, delay=0.01))

    @wf.step
    def write(ctx: plait.StepContext) -> None:
        ctx.state.append("attempts", ctx.attempt)
        ctx.state.set(f"attempt-{ctx.attempt}", True)
        if ctx.attempt < 3:
            raise RuntimeError("not yet")

    handle = run(engine, wf)

    assert engine.get_run(handle.id).state == {"attempts": [3], "attempt-3": True}
    assert len(changes(engine, handle.id)) == 2


def test_a_step_that_fails_for_good_changes_nothing(engine: plait.Engine) -> None:
    wf = plait.Workflow("fails-state")

    @wf.step
    def boom(ctx: plait.StepContext) -> None:
        ctx.state.set("never", 1)
        raise plait.Permanent("no")

    handle = run(engine, wf)

    with pytest.raises(plait.RunFailed):
        handle.result()
    assert engine.get_run(handle.id).state == {}
    assert changes(engine, handle.id) == []


def test_parallel_appends_all_land_and_the_last_set_wins(engine: plait.Engine) -> None:
    wf = plait.Workflow("parallel-state")
    names = [f"p{i}" for i in range(8)]

    def make(i: int) -> Any:
        def part(ctx: plait.StepContext) -> None:
            time.sleep(0.01 * (i % 3))
            ctx.state.append("parts", i)
            ctx.state.set("last", i)

        return part

    for i, name in enumerate(names):
        wf.add_step(name, make(i))

    @wf.step(after=names)
    def total(ctx: plait.StepContext) -> list[int]:
        return sorted(ctx.state.get("parts"))

    handle = run(engine, wf)

    assert handle.result() == {"total": list(range(8))}
    state = engine.get_run(handle.id).state
    committed = [v for step, op, key, v in changes(engine, handle.id) if key == "parts"]
    assert state["parts"] == committed  # in commit order
    sets = [v for step, op, key, v in changes(engine, handle.id) if key == "last"]
    assert state["last"] == sets[-1]  # the last success to commit wins


def test_a_condition_reads_the_state(engine: plait.Engine) -> None:
    wf = plait.Workflow("state-condition")

    @wf.step
    def decide(ctx: plait.StepContext) -> None:
        ctx.state.set("go", False)

    def go(state: plait.SessionState) -> bool:
        return state.get("go") is True

    def stop(state: plait.SessionState) -> bool:
        return state.get("go") is False

    @wf.step(after=["decide"], when=go)
    def maybe() -> str:
        return "ran"

    @wf.step(after=["decide"], when=stop)
    def otherwise() -> str:
        return "ran"

    handle = run(engine, wf)
    steps = {s.name: s.status for s in engine.steps(handle.id)}
    assert steps["maybe"] is plait.StepStatus.SKIPPED
    assert steps["otherwise"] is plait.StepStatus.DONE


def test_a_fork_starts_from_the_state_its_reused_steps_made(engine: plait.Engine) -> None:
    wf = plait.Workflow("fork-state")

    @wf.step
    def a(ctx: plait.StepContext) -> None:
        ctx.state.append("trail", "a")
        ctx.state.set("a", True)

    @wf.step(after=["a"])
    def b(ctx: plait.StepContext) -> list[str]:
        ctx.state.append("trail", "b")
        return list(ctx.state.get("trail"))

    handle = run(engine, wf)
    assert handle.result() == {"b": ["a", "b"]}

    fork = engine.fork(handle.id, "b")
    assert engine.get_run(fork.id).state == {"trail": ["a"], "a": True}
    engine.run_worker(until=fork, timeout=60)
    assert fork.result() == {"b": ["a", "b"]}
    assert engine.get_run(fork.id).state == {"trail": ["a", "b"], "a": True}


# -- the store -----------------------------------------------------------------------------------


async def test_a_group_commit_applies_each_success_s_changes_in_order(store: Store) -> None:
    plan = plan_of("group-state", ("a", [], {}), ("b", [], {}), ("c", [], {}))
    await start(store, plan, "g1")
    claims = {c.step: c for c in await claim(store, [plan])}

    def with_changes(outcome: Outcome, *changes: tuple[str, str, Any]) -> Outcome:
        state = tuple(StateChange(op, key, orjson.dumps(v)) for op, key, v in changes)
        return dataclasses.replace(outcome, data=StepData(state=state))

    stale = dataclasses.replace(ok(claims["c"]), token="stale")
    result = await store.complete(
        [
            with_changes(ok(claims["b"]), ("append", "l", "b"), ("set", "k", "b")),
            with_changes(fail(claims["a"]), ("append", "l", "never")),
            with_changes(stale, ("set", "never", True)),
        ],
        NOW + 1,
    )
    assert result.accepted == [True, True, False]
    await store.complete([with_changes(ok(claims["c"]), ("append", "l", "c"))], NOW + 2)

    run = await store.get_run("g1")
    assert run is not None and orjson.loads(run.state or b"{}") == {"l": ["b", "c"], "k": "b"}
    inputs = await store.step_inputs({"g1": ()})
    assert inputs["g1"].state == run.state  # what a claimed step reads
    events = [e for e in await store.get_events("g1", 0, None) if e.type == "state_changed"]
    assert [(e.step, e.payload) for e in events] == [
        ("b", {"op": "append", "key": "l", "value": "b", "step": "b"}),
        ("b", {"op": "set", "key": "k", "value": "b", "step": "b"}),
        ("c", {"op": "append", "key": "l", "value": "c", "step": "c"}),
    ]
