"""Spawned steps through the Engine with real handlers, on every store: @wf.task, ctx.spawn and
ctx.map in sync and async handlers, fan-in by returning handles, nesting, what a failed attempt
spawns (nothing), and every misuse a clear error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def run(engine: plait.Engine, wf: plait.Workflow, data: dict[str, Any] | None = None) -> Any:
    handle = engine.start(wf, data or {})
    engine.run_worker(until=handle, timeout=60, concurrency=8)
    return handle


def statuses(engine: plait.Engine, run_id: str) -> dict[str, plait.StepStatus]:
    return {s.name: s.status for s in engine.steps(run_id)}


def test_map_fans_out_and_returning_the_handles_gathers_in_order(engine: plait.Engine) -> None:
    wf = plait.Workflow("squares")

    @wf.task
    def square(x: int) -> int:
        return x * x

    @wf.task()
    async def cube(ctx: plait.StepContext, x: int) -> int:
        await asyncio.sleep(0)
        offset: int = ctx.input["offset"]
        return x * x * x + offset

    @wf.step
    def squares(ctx: plait.StepContext, n: int) -> list[plait.Handle]:
        return ctx.map(square, range(n))

    @wf.step
    async def cubes(ctx: plait.StepContext, n: int) -> list[plait.Handle]:
        return ctx.map(cube, list(range(n))[::-1])

    @wf.step
    def total(squares: list[int], cubes: list[int]) -> dict[str, Any]:
        return {"squares": squares, "cubes": cubes}

    handle = run(engine, wf, {"n": 12, "offset": 1000})

    assert handle.result() == {
        "total": {
            "squares": [i * i for i in range(12)],
            "cubes": [i**3 + 1000 for i in range(12)][::-1],
        }
    }
    steps = {s.name: s for s in engine.steps(handle.id)}
    assert len(steps) == 3 + 24
    kid = steps["squares/square-3"]
    assert (kid.task, kid.parent, kid.output, kid.status) == (
        "square",
        "squares",
        9,
        plait.StepStatus.DONE,
    )
    assert steps["cubes/cube-0"].output == 11**3 + 1000  # the first item is the last number


def test_spawn_names_and_orders_children_and_the_parent_keeps_its_own_output(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("ordered")
    seen: list[str] = []
    lock = threading.Lock()

    @wf.task(name="record")
    def note(ctx: plait.StepContext, what: str) -> str:
        with lock:
            seen.append(what)
        return what.upper()

    @wf.step
    def plan(ctx: plait.StepContext) -> str:
        first = ctx.spawn(note, name="first", input="a")
        second = ctx.spawn("record", input="b", after=[first])
        ctx.spawn(note, input="c", after=[first, second])
        return "planned"

    @wf.step
    def after(plan: str) -> str:
        return plan

    handle = run(engine, wf)

    assert handle.result() == {"after": "planned"}
    assert seen == ["a", "b", "c"]
    assert statuses(engine, handle.id) == {
        "plan": plait.StepStatus.DONE,
        "after": plait.StepStatus.DONE,
        "plan/first": plait.StepStatus.DONE,
        "plan/record-0": plait.StepStatus.DONE,
        "plan/record-1": plait.StepStatus.DONE,
    }
    # the parent ended after its children
    steps = {s.name: s for s in engine.steps(handle.id)}
    assert steps["plan"].finished_at is not None and steps["plan/record-1"].finished_at is not None
    assert steps["plan"].finished_at >= steps["plan/record-1"].finished_at


def test_nested_spawning_gathers_level_by_level(engine: plait.Engine) -> None:
    wf = plait.Workflow("nested")

    @wf.task
    def leaf(x: int) -> int:
        return x + 1

    @wf.task
    def branch(ctx: plait.StepContext, n: int) -> list[plait.Handle]:
        return ctx.map(leaf, [n * 10 + i for i in range(n)])

    @wf.step
    def root(ctx: plait.StepContext) -> list[plait.Handle]:
        return [ctx.spawn(branch, input=n) for n in (1, 2, 3)]

    handle = run(engine, wf)

    assert handle.result() == {"root": [[11], [21, 22], [31, 32, 33]]}
    names = set(statuses(engine, handle.id))
    assert {"root/branch-2", "root/branch-2/leaf-2"} <= names and len(names) == 1 + 3 + 6


def test_a_failed_attempt_spawns_nothing_and_the_retry_spawns_once(engine: plait.Engine) -> None:
    wf = plait.Workflow("flaky_parent")
    calls: list[int] = []

    @wf.task
    def child(x: int) -> int:
        calls.append(x)
        return x

    @wf.step(retry=plait.Retry(attempts=3, delay=0.01))
    def parent(ctx: plait.StepContext) -> list[plait.Handle]:
        handles = ctx.map(child, [1, 2, 3])
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt} fails after spawning")
        return handles

    handle = run(engine, wf)

    assert handle.result() == {"parent": [1, 2, 3]}
    assert sorted(calls) == [1, 2, 3]  # each child ran once: failed attempts added nothing
    assert len(engine.steps(handle.id)) == 4
    spawned = [e for e in engine.events(handle.id) if e.type == "steps_spawned"]
    assert len(spawned) == 1 and spawned[0].payload["count"] == 3


def test_a_failed_child_fails_the_parent_and_retrying_it_completes_the_run(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("child_fails")
    broken = {"yes": True}

    @wf.task
    def work(x: int) -> int:
        if x == 2 and broken["yes"]:
            raise ValueError("two is broken")
        return x

    @wf.step
    def fan(ctx: plait.StepContext) -> list[plait.Handle]:
        return ctx.map(work, [1, 2, 3])

    handle = run(engine, wf)
    with pytest.raises(plait.RunFailed) as failed:
        handle.result()
    assert failed.value.failures["fan"].code == "child_failed"
    assert failed.value.failures["fan"].message == (
        "spawned step 'fan/work-1' failed: two is broken"
    )

    broken["yes"] = False
    engine.retry(handle.id, "fan", by="ops")  # retries the failed child, not the parent
    engine.run_worker(until=handle, timeout=60)

    assert handle.result() == {"fan": [1, 2, 3]}


def test_an_optional_child_may_fail(engine: plait.Engine) -> None:
    wf = plait.Workflow("optional_child")

    @wf.task(optional=True)
    def maybe(x: int) -> int:
        if x == 1:
            raise ValueError("no")
        return x

    @wf.step
    def fan(ctx: plait.StepContext) -> list[plait.Handle]:
        return ctx.map(maybe, [0, 1, 2])

    assert run(engine, wf).result() == {"fan": [0, None, 2]}


def test_not_before_delays_a_spawned_step(engine: plait.Engine) -> None:
    wf = plait.Workflow("later")
    at: dict[str, datetime] = {}

    @wf.task
    def later() -> str:
        at["ran"] = datetime.now(UTC)
        return "late"

    @wf.step
    def plan(ctx: plait.StepContext) -> plait.Handle:
        at["asked"] = datetime.now(UTC) + timedelta(seconds=0.5)
        return ctx.spawn(later, not_before=at["asked"])

    handle = run(engine, wf)

    assert handle.result() == {"plan": "late"}
    assert at["ran"] >= at["asked"]


def _fails_with(engine: plait.Engine, wf: plait.Workflow, step: str) -> tuple[str, plait.StepError]:
    handle = engine.start(wf)
    engine.run_worker(until=handle, timeout=30)
    with pytest.raises(plait.RunFailed) as failed:
        handle.result()
    return handle.id, failed.value.failures[step]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            lambda ctx, t: ctx.spawn(len, input=[1]),
            "step 'bad' spawned 'len', which is not a task of workflow 'misuse': "
            "decorate it with @wf.task",
        ),
        (
            lambda ctx, t: [ctx.spawn(t, name="x", input=1), ctx.spawn(t, name="x", input=2)],
            "ctx.spawn('one') in step 'bad': this step already spawned a step named 'x'",
        ),
        (
            lambda ctx, t: ctx.spawn(t, name="a/b", input=1),
            "ctx.spawn('one') in step 'bad': invalid name 'a/b': use 1-128 ASCII letters, digits, "
            "'_', '-' or '.', starting with a letter or '_'",
        ),
        (
            lambda ctx, t: ctx.spawn(t, input=object()),
            "ctx.spawn('one') in step 'bad': input is not JSON",
        ),
        (
            lambda ctx, t: ctx.spawn(t),
            "ctx.spawn('one') in step 'bad': the task takes an input ('x'): pass input=",
        ),
        (
            lambda ctx, t: ctx.spawn(t, input=1, after=["nope"]),
            "ctx.spawn('one') in step 'bad': after= takes handles of steps this step spawned, "
            "got 'nope'",
        ),
        (
            lambda ctx, t: ctx.map(t, "abc"),
            "ctx.map in step 'bad': items must be a list or other iterable of inputs, got str",
        ),
        (
            lambda ctx, t: [ctx.spawn(t, input=1), 5],
            "step 'bad' returned a list mixing handles and other values",
        ),
        (
            lambda ctx, t: ctx.spawn(t, input=1, not_before=5),
            "ctx.spawn('one') in step 'bad': not_before must be a datetime, got 5",
        ),
        (
            lambda ctx, t: [ctx.spawn(t, input=1), plait.Goto("bad")][1],
            "step 'bad' spawned steps and returned a Goto: do one or the other",
        ),
        (
            lambda ctx, t: ctx.spawn(t, input=1, optional="no"),
            "ctx.spawn('one') in step 'bad': optional must be True or False, got 'no'",
        ),
        (
            lambda ctx, t: ctx.spawn(t, input=1, colocate=1),
            "ctx.spawn('one') in step 'bad': colocate must be True or False, got 1",
        ),
    ],
    ids=[
        "unregistered",
        "duplicate-name",
        "bad-name",
        "not-json",
        "missing-input",
        "foreign-after",
        "map-str",
        "mixed-return",
        "not-before",
        "goto",
        "optional-not-bool",
        "colocate-not-bool",
    ],
)
def test_a_misused_spawn_fails_the_step_permanently_saying_why(
    engine: plait.Engine, body: Any, message: str
) -> None:
    wf = plait.Workflow("misuse", retry=plait.Retry(attempts=3, delay=0.01))

    @wf.task(name="one")
    def one(x: int) -> int:
        return x

    @wf.step
    def bad(ctx: plait.StepContext) -> Any:
        return body(ctx, one)

    run_id, error = _fails_with(engine, wf, "bad")

    assert error.code in ("invalid_spawn", "invalid_goto")
    assert message in error.message
    [step] = engine.steps(run_id)  # nothing was spawned
    assert step.attempts == 1  # not retried: the same code would fail the same way


def test_a_child_with_input_that_does_not_fit_its_annotation_fails_as_invalid_input(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("typed_task")

    @wf.task
    def typed(x: int) -> int:
        return x

    @wf.step
    def fan(ctx: plait.StepContext) -> plait.Handle:
        return ctx.spawn(typed, input="not a number")

    _, error = _fails_with(engine, wf, "fan")
    assert error.code == "child_failed"
    assert "spawned step 'fan/typed-0' failed: step 'fan/typed-0'" in error.message
    assert "valid integer" in error.message


def test_a_cancelled_run_stops_its_spawned_steps(engine: plait.Engine) -> None:
    wf = plait.Workflow("cancel_fan")
    started = threading.Event()

    @wf.task
    async def slow(x: int) -> int:
        started.set()
        await asyncio.sleep(30)
        return x

    @wf.step
    def fan(ctx: plait.StepContext) -> list[plait.Handle]:
        return ctx.map(slow, [1, 2])

    handle = engine.start(wf)
    serving = threading.Thread(target=lambda: engine.run_worker(until=handle, timeout=30))
    serving.start()
    assert started.wait(20)
    engine.cancel(handle.id, reason="enough")
    serving.join(timeout=20)
    assert not serving.is_alive()
    assert set(statuses(engine, handle.id).values()) == {plait.StepStatus.CANCELLED}


def _fanned_run(engine: plait.Engine) -> tuple[plait.Workflow, Any]:
    wf = plait.Workflow("forkable")

    @wf.task
    def double(x: int) -> int:
        return 2 * x

    @wf.task
    def pair(ctx: plait.StepContext, x: int) -> list[plait.Handle]:
        return [ctx.spawn(double, input=x), ctx.spawn(double, input=x + 1)]

    @wf.step
    def fan(ctx: plait.StepContext) -> list[plait.Handle]:
        return ctx.map(pair, [1, 10])

    @wf.step
    def report(fan: list[list[int]], label: str = "sum") -> str:
        return f"{label}={sum(map(sum, fan))}"

    engine.register(wf)
    return wf, run(engine, wf)


def test_a_fork_reuses_a_parent_without_its_spawned_steps_and_refuses_to_start_at_one(
    engine: plait.Engine,
) -> None:
    _, handle = _fanned_run(engine)
    assert handle.result() == {"report": "sum=48"}

    fork = engine.fork(handle.id, "report", input={"label": "total"})
    engine.run_worker(until=fork, timeout=30)

    assert fork.result() == {"report": "total=48"}
    forked = {s.name: s for s in engine.steps(fork.id)}
    assert set(forked) == {"fan", "report"}  # the reused parent stands for its children
    assert (forked["fan"].reused_from, forked["fan"].output) == (handle.id, [[2, 4], [20, 22]])

    for spawned, root in (("fan/pair-1", "fan"), ("fan/pair-1/double-0", "fan")):
        with pytest.raises(plait.InputError) as refused:
            engine.fork(handle.id, spawned)
        assert str(refused.value) == (
            f"cannot fork run {handle.id!r} from step {spawned!r}: it was spawned while the run "
            f"ran, and a fork runs the workflow's own steps; fork from {root!r}, the workflow "
            "step that spawned it"
        )


def test_replay_runs_a_spawned_step_with_its_recorded_input_and_lists_what_a_parent_spawns(
    engine: plait.Engine,
) -> None:
    wf, handle = _fanned_run(engine)

    child = engine.replay(handle.id, "fan/pair-1/double-1", workflow=wf)
    assert (child.status, child.output, child.diff) == ("done", 22, [])

    parent = engine.replay(handle.id, "fan/pair-1", workflow=wf)
    assert parent.spawned == ["fan/pair-1/double-0", "fan/pair-1/double-1"]
    assert parent.output == parent.spawned  # it would gather those
    assert len(engine.steps(handle.id)) == 2 + 2 + 4  # replay wrote nothing

    other = plait.Workflow("forkable")
    other.step(name="fan")(lambda: 1)
    with pytest.raises(plait.InputError, match="it runs task 'double', which workflow"):
        engine.replay(handle.id, "fan/pair-1/double-1", workflow=other)
