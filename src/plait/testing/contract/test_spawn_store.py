"""Spawned steps (DESIGN §3.3) through the Store protocol, on every store: what a step spawns is
added with its success, the parent joins its children, gathers their outputs, fails with them,
comes back with a retried child, and spawns nothing twice.

The Engine side (ctx.spawn / ctx.map in real handlers) is in test_spawn_engine.py."""

from __future__ import annotations

import orjson

from plait.core import actions
from plait.core.cascade import CHILD_FAILED
from plait.core.rows import Claim, Outcome, RunStatus, Spawn, StepStatus, WorkflowPlan
from plait.stores import Store
from plait.testing.contract.helpers import (
    NOW,
    claim,
    event_types,
    fail,
    ok,
    plan_of,
    start,
    statuses,
)


def spawning(c: Claim, *children: Spawn, value: object = None, gather: object = None) -> Outcome:
    """`c` succeeded, spawning `children`; returning `value`, or the handles named in `gather`."""
    return Outcome(
        c.run_id,
        c.step,
        c.token,
        output=None if gather is not None else orjson.dumps(value),
        spawned=children,
        gather=None if gather is None else orjson.dumps(gather),
    )


def child(name: str, n: int | None = None, **options: object) -> Spawn:
    payload = None if n is None else orjson.dumps(n)
    return Spawn(name=name, task="work", input=payload, **options)  # type: ignore[arg-type]


def fan() -> WorkflowPlan:
    """fan → total: fan spawns; total takes fan's output."""
    return plan_of("fan", ("fan", [], {}), ("total", ["fan"], {}))


async def _fanned(store: Store, *children: Spawn, gather: object = None) -> WorkflowPlan:
    plan = fan()
    await start(store, plan, "r1")
    [c] = await claim(store, [plan])
    result = await store.complete([spawning(c, *children, value="own", gather=gather)], NOW + 1)
    assert result.accepted == [True]
    return plan


async def _finish(store: Store, plan: WorkflowPlan, now: float, value: object = "x") -> list[str]:
    claims = await claim(store, [plan], now=now)
    await store.complete([ok(c, value if value != "x" else f"out:{c.step}") for c in claims], now)
    return [c.step for c in claims]


async def test_spawned_steps_are_added_with_the_success_and_the_parent_joins(store: Store) -> None:
    plan = await _fanned(store, child("fan/work-0", 1), child("fan/work-1", 2))

    assert await statuses(store, "r1") == {
        "fan": StepStatus.WAITING,
        "total": StepStatus.PENDING,
        "fan/work-0": StepStatus.READY,
        "fan/work-1": StepStatus.READY,
    }
    rows = {s.name: s for s in await store.get_steps("r1")}
    assert [s.name for s in await store.get_steps("r1")][-2:] == ["fan/work-0", "fan/work-1"]
    assert (rows["fan"].unmet, rows["fan"].joining) == (2, True)
    assert (rows["fan/work-1"].task, rows["fan/work-1"].input) == ("work", b"2")
    run = await store.get_run("r1")
    assert run is not None and (run.unfinished, run.next_idx) == (4, 4)
    spawned = [e for e in await store.get_events("r1", 0, None) if e.type == "steps_spawned"]
    assert [(e.step, e.payload["count"], e.payload["steps"]) for e in spawned] == [
        ("fan", 2, ["fan/work-0", "fan/work-1"])
    ]
    # a joining parent awaits no decision
    assert [s.name for s in await store.list_waiting(10)] == []

    claims = await claim(store, [plan], now=NOW + 2)
    assert {(c.step, c.task, c.input) for c in claims} == {
        ("fan/work-0", "work", b"1"),
        ("fan/work-1", "work", b"2"),
    }
    first = next(c for c in claims if c.step == "fan/work-0")
    await store.complete([ok(first, 10)], NOW + 3)
    assert (await statuses(store, "r1"))["fan"] is StepStatus.WAITING  # one still running

    second = next(c for c in claims if c.step == "fan/work-1")
    result = await store.complete([ok(second, 20)], NOW + 4)

    assert result.readied == 1  # total
    rows = {s.name: s for s in await store.get_steps("r1")}
    assert rows["fan"].status is StepStatus.DONE
    assert orjson.loads(rows["fan"].output or b"") == "own"  # what its handler returned
    assert rows["total"].status is StepStatus.READY
    await _finish(store, plan, NOW + 5, value=30)
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED
    assert orjson.loads(run.output or b"") == {"total": 30}


async def test_a_parent_that_returned_handles_outputs_their_outputs_in_order(store: Store) -> None:
    names = [f"fan/work-{i}" for i in range(5)]
    plan = await _fanned(store, *[child(n, i) for i, n in enumerate(names)], gather=names[::-1])
    claims = await claim(store, [plan], now=NOW + 2)
    await store.complete([ok(c, orjson.loads(c.input or b"") * 10) for c in claims], NOW + 3)

    rows = {s.name: s for s in await store.get_steps("r1")}
    assert rows["fan"].status is StepStatus.DONE
    assert orjson.loads(rows["fan"].output or b"") == [40, 30, 20, 10, 0]

    single = fan()  # one handle returned: the output is that child's output
    await start(store, single, "r2")
    [c] = [c for c in await claim(store, [single], now=NOW + 4) if c.run_id == "r2"]
    await store.complete([spawning(c, child("fan/one", 7), gather="fan/one")], NOW + 5)
    [kid] = [c for c in await claim(store, [single], now=NOW + 6) if c.run_id == "r2"]
    await store.complete([ok(kid, {"deep": [1]})], NOW + 6)
    row = next(s for s in await store.get_steps("r2") if s.name == "fan")
    assert orjson.loads(row.output or b"") == {"deep": [1]}


async def test_a_failed_child_fails_its_parent_and_the_run_after_the_others_end(
    store: Store,
) -> None:
    plan = await _fanned(store, child("fan/work-0", 0), child("fan/work-1", 1))
    claims = {c.step: c for c in await claim(store, [plan], now=NOW + 2)}
    await store.complete([fail(claims["fan/work-0"])], NOW + 3)

    # the parent waits for its other child, failed or not
    assert (await statuses(store, "r1"))["fan"] is StepStatus.WAITING
    result = await store.complete([ok(claims["fan/work-1"], 1)], NOW + 4)

    assert result.ended_runs == ["r1"]
    rows = {s.name: s for s in await store.get_steps("r1")}
    assert rows["fan"].status is StepStatus.FAILED
    assert rows["fan"].error_code == CHILD_FAILED
    assert rows["fan"].error_message == "spawned step 'fan/work-0' failed: fan/work-0 broke"
    assert rows["total"].status is StepStatus.SKIPPED
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.FAILED
    # the run fails through the parent (and the step it skipped), not through the child
    assert run.failures == 2
    assert run.error == ("step 'fan' failed: spawned step 'fan/work-0' failed: fan/work-0 broke")


async def test_an_optional_child_may_fail_and_gives_null(store: Store) -> None:
    plan = await _fanned(
        store,
        child("fan/work-0", 0, optional=True),
        child("fan/work-1", 1),
        gather=["fan/work-0", "fan/work-1"],
    )
    claims = {c.step: c for c in await claim(store, [plan], now=NOW + 2)}
    await store.complete([fail(claims["fan/work-0"]), ok(claims["fan/work-1"], 1)], NOW + 3)

    rows = {s.name: s for s in await store.get_steps("r1")}
    assert rows["fan"].status is StepStatus.DONE
    assert orjson.loads(rows["fan"].output or b"") == [None, 1]


async def test_retrying_a_failed_child_makes_its_parent_join_again(store: Store) -> None:
    plan = await _fanned(
        store, child("fan/work-0", 0), child("fan/work-1", 1), gather=["fan/work-0", "fan/work-1"]
    )
    claims = {c.step: c for c in await claim(store, [plan], now=NOW + 2)}
    await store.complete([fail(claims["fan/work-0"]), ok(claims["fan/work-1"], 1)], NOW + 3)
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.FAILED

    result = await store.apply(
        lambda txn: actions.retry(txn, "r1", "fan/work-0", by="ops"), NOW + 4
    )

    assert result.refusal is None
    assert await statuses(store, "r1") == {
        "fan": StepStatus.WAITING,
        "total": StepStatus.PENDING,
        "fan/work-0": StepStatus.READY,
        "fan/work-1": StepStatus.DONE,
    }
    rows = {s.name: s for s in await store.get_steps("r1")}
    assert (rows["fan"].unmet, rows["fan"].error_code) == (1, None)
    run = await store.get_run("r1")
    assert run is not None and (run.status, run.failures, run.error) == (RunStatus.RUNNING, 0, None)
    assert "step_reopened" in await event_types(store, "r1")

    assert await _finish(store, plan, NOW + 5, value=0) == ["fan/work-0"]
    assert await _finish(store, plan, NOW + 6, value=9) == ["total"]
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED
    fan_row = next(s for s in await store.get_steps("r1") if s.name == "fan")
    assert orjson.loads(fan_row.output or b"") == [0, 1]


async def test_retrying_a_parent_failed_by_children_retries_those_children(store: Store) -> None:
    plan = await _fanned(
        store, child("fan/work-0", 0), child("fan/work-1", 1), child("fan/work-2", 2)
    )
    claims = {c.step: c for c in await claim(store, [plan], now=NOW + 2)}
    await store.complete(
        [fail(claims["fan/work-0"]), ok(claims["fan/work-1"]), fail(claims["fan/work-2"])],
        NOW + 3,
    )

    result = await store.apply(lambda txn: actions.retry(txn, "r1", "fan", by="ops"), NOW + 4)

    assert result.refusal is None
    assert await statuses(store, "r1") == {
        "fan": StepStatus.WAITING,
        "total": StepStatus.PENDING,
        "fan/work-0": StepStatus.READY,
        "fan/work-1": StepStatus.DONE,
        "fan/work-2": StepStatus.READY,
    }
    assert next(s for s in await store.get_steps("r1") if s.name == "fan").unmet == 2
    # the parent's handler does not run again: nothing is spawned twice
    assert sorted(await _finish(store, plan, NOW + 5)) == ["fan/work-0", "fan/work-2"]
    assert await _finish(store, plan, NOW + 6) == ["total"]
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED


async def test_after_orders_spawned_steps(store: Store) -> None:
    plan = await _fanned(
        store,
        child("fan/a", 0),
        child("fan/b", 1, after=("fan/a",)),
        child("fan/c", 2, after=("fan/a", "fan/b")),
    )
    assert await _finish(store, plan, NOW + 2) == ["fan/a"]
    assert await _finish(store, plan, NOW + 3) == ["fan/b"]
    assert await _finish(store, plan, NOW + 4) == ["fan/c"]
    assert (await statuses(store, "r1"))["fan"] is StepStatus.DONE


async def test_a_failed_spawned_step_skips_the_ones_after_it(store: Store) -> None:
    plan = await _fanned(store, child("fan/a", 0), child("fan/b", 1, after=("fan/a",)))
    [a] = await claim(store, [plan], now=NOW + 2)
    await store.complete([fail(a)], NOW + 3)

    rows = {s.name: s for s in await store.get_steps("r1")}
    assert rows["fan/b"].status is StepStatus.SKIPPED
    assert rows["fan/b"].skip_reason == "dependency 'fan/a' failed"
    assert rows["fan"].status is StepStatus.FAILED
    assert rows["fan"].error_message == "spawned step 'fan/a' failed: fan/a broke"


async def test_not_before_delays_a_spawned_step_durably(store: Store) -> None:
    plan = await _fanned(store, child("fan/later", 0, not_before=NOW + 100), child("fan/now", 1))

    assert [c.step for c in await claim(store, [plan], now=NOW + 2)] == ["fan/now"]
    row = next(s for s in await store.get_steps("r1") if s.name == "fan/later")
    assert (row.status, row.available_at) == (StepStatus.READY, NOW + 100)
    assert await store.next_ready_at([plan.fingerprint]) == NOW + 100
    assert [c.step for c in await claim(store, [plan], now=NOW + 100)] == ["fan/later"]


async def test_a_failed_attempt_spawns_nothing_and_a_fenced_success_spawns_nothing(
    store: Store,
) -> None:
    plan = fan()
    await start(store, plan, "r1")
    [c] = await claim(store, [plan])
    lost = spawning(c, child("fan/work-0", 0))
    await store.complete([fail(c, retry_at=NOW)], NOW + 1)  # retried later
    assert sorted(await statuses(store, "r1")) == ["fan", "total"]

    result = await store.complete([lost], NOW + 1)  # a stale success with the old token

    assert result.accepted == [False]
    assert sorted(await statuses(store, "r1")) == ["fan", "total"]
    [again] = await claim(store, [plan], now=NOW + 2)
    await store.complete([spawning(again, child("fan/work-0", 0))], NOW + 3)
    await store.complete([spawning(again, child("fan/work-0", 0))], NOW + 3)  # a duplicate
    assert sorted(await statuses(store, "r1")) == ["fan", "fan/work-0", "total"]


async def test_cancel_ends_a_joining_parent_and_its_children(store: Store) -> None:
    plan = await _fanned(store, child("fan/work-0", 0), child("fan/work-1", 1))
    [running] = await claim(store, [plan], now=NOW + 2, limit=1)

    result = await store.apply(
        lambda txn: actions.cancel(txn, "r1", reason="stop", by="ops"), NOW + 3
    )

    assert result.refusal is None
    found = await statuses(store, "r1")
    assert found["fan"] is StepStatus.CANCELLED
    assert found[running.step] is StepStatus.RUNNING  # interrupted by its worker
    others = {"fan/work-0", "fan/work-1"} - {running.step}
    assert all(found[n] is StepStatus.CANCELLED for n in others)
    await store.complete([ok(running, 1)], NOW + 4)
    run = await store.get_run("r1")
    assert run is not None and (run.status, run.unfinished) == (RunStatus.CANCELLED, 0)


async def test_a_paused_run_dispatches_no_spawned_step(store: Store) -> None:
    plan = fan()
    await start(store, plan, "r1")
    [c] = await claim(store, [plan])
    await store.apply(lambda txn: actions.pause(txn, "r1", by="ops"), NOW)

    await store.complete([spawning(c, child("fan/work-0", 0))], NOW + 1)

    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.PAUSED
    assert await claim(store, [plan], now=NOW + 2) == []
    await store.apply(lambda txn: actions.resume(txn, "r1", by="ops"), NOW + 3)
    assert [c.step for c in await claim(store, [plan], now=NOW + 4)] == ["fan/work-0"]


async def test_nested_spawning_joins_level_by_level(store: Store) -> None:
    plan = await _fanned(store, child("fan/mid", 0), gather="fan/mid")
    [mid] = await claim(store, [plan], now=NOW + 2)
    assert mid.step == "fan/mid"
    leaves = [Spawn(f"fan/mid/leaf-{i}", "leaf", orjson.dumps(i)) for i in range(2)]
    await store.complete([spawning(mid, *leaves, gather=[s.name for s in leaves])], NOW + 3)
    assert (await statuses(store, "r1"))["fan/mid"] is StepStatus.WAITING

    claims = await claim(store, [plan], now=NOW + 4)
    await store.complete([ok(c, f"leaf{orjson.loads(c.input or b'')}") for c in claims], NOW + 5)

    rows = {s.name: s for s in await store.get_steps("r1")}
    assert orjson.loads(rows["fan/mid"].output or b"") == ["leaf0", "leaf1"]
    assert orjson.loads(rows["fan"].output or b"") == ["leaf0", "leaf1"]
    assert rows["total"].status is StepStatus.READY


async def test_a_loop_through_a_parent_spawns_afresh_and_abandons_the_old_pass(
    store: Store,
) -> None:
    plan = plan_of("looped", ("src", [], {}), ("fan", ["src"], {}), ("other", ["src"], {}))
    await start(store, plan, "r1")
    await _finish(store, plan, NOW)
    claims = {c.step: c for c in await claim(store, [plan], now=NOW + 1)}
    await store.complete([spawning(claims["fan"], child("fan/work-0", 0))], NOW + 2)

    # `other` loops back to `src` while `fan` still waits for its child
    result = await store.complete(
        [Outcome("r1", "other", claims["other"].token, goto="src", max_iterations=3)], NOW + 3
    )

    assert result.accepted == [True]
    found = await statuses(store, "r1")
    assert (found["fan"], found["fan/work-0"]) == (StepStatus.PENDING, StepStatus.CANCELLED)
    assert await _finish(store, plan, NOW + 4) == ["src"]
    claims = {c.step: c for c in await claim(store, [plan], now=NOW + 5)}
    assert claims["fan"].iteration == 1
    await store.complete([spawning(claims["fan"], child("fan#1/work-0", 5))], NOW + 6)
    await store.complete([ok(claims["other"])], NOW + 6)

    assert (await statuses(store, "r1"))["fan#1/work-0"] is StepStatus.READY
    fan_row = next(s for s in await store.get_steps("r1") if s.name == "fan")
    assert fan_row.unmet == 1  # this pass's child only
    assert await _finish(store, plan, NOW + 7) == ["fan#1/work-0"]
    run = await store.get_run("r1")
    assert run is not None and (run.status, run.unfinished) == (RunStatus.COMPLETED, 0)
