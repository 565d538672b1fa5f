"""Resuming a failed or cancelled run on every store: through the Store protocol, and through
the Engine with real handlers (completed steps are not run again)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import plait
from plait.core import actions
from plait.core.rows import RunStatus, StepStatus
from plait.stores import Store
from plait.testing.contract.helpers import NOW, claim, fail, ok, plan_of, start, statuses


async def resume_failed(store: Store, run_id: str, now: float = NOW + 1) -> Any:
    return await store.apply(lambda txn: actions.resume_failed(txn, run_id, by="tester"), now)


# -- the store -----------------------------------------------------------------------------------


async def test_failed_steps_and_what_they_skipped_come_back(store: Store) -> None:
    plan = plan_of("r", ("a", [], {}), ("b", ["a"], {}), ("c", ["b"], {}), ("d", [], {}))
    await start(store, plan, "r1")
    claims = {c.step: c for c in await claim(store, [plan], limit=2)}
    await store.complete([ok(claims["a"], "A"), ok(claims["d"], "D")], NOW)
    [b] = await claim(store, [plan])
    await store.complete([fail(b)], NOW)
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.FAILED

    result = await resume_failed(store, "r1")

    assert result.refusal is None and result.readied == 1
    assert await statuses(store, "r1") == {
        "a": StepStatus.DONE, "b": StepStatus.READY, "c": StepStatus.PENDING,
        "d": StepStatus.DONE,
    }  # fmt: skip
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.RUNNING and run.error is None
    assert (run.unfinished, run.failures, run.finished_at) == (2, 0, None)
    [b] = await claim(store, [plan], now=NOW + 2)
    assert b.step == "b" and b.attempt == 1  # a fresh attempt budget
    await store.complete([ok(b, "B")], NOW + 2)
    [c] = await claim(store, [plan], now=NOW + 3)
    await store.complete([ok(c, "C")], NOW + 3)
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED
    events = [e.type for e in await store.get_events("r1", 0, None)]
    assert events.count("run_reopened") == 1 and events.count("step_reopened") == 2


async def test_refused_for_a_running_run(store: Store) -> None:
    plan = plan_of("r", ("a", [], {}))
    await start(store, plan, "r2")
    result = await resume_failed(store, "r2")
    assert result.refusal == (
        "run 'r2' is pending: only a failed or cancelled run can be resumed this way "
        "(it has not ended)"
    )
    assert await statuses(store, "r2") == {"a": StepStatus.READY}


# -- the engine ----------------------------------------------------------------------------------


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def test_a_failed_run_resumes_without_running_completed_steps_again(engine: plait.Engine) -> None:
    wf = plait.Workflow("resumable")
    calls: list[str] = []
    broken = {"charge": True}

    @wf.step
    def fetch() -> int:
        calls.append("fetch")
        return 7

    @wf.step
    def charge(fetch: int) -> int:
        calls.append("charge")
        if broken["charge"]:
            raise plait.Permanent("gateway down")
        return fetch * 2

    @wf.step
    def ship(charge: int) -> str:
        calls.append("ship")
        return f"shipped {charge}"

    handle = engine.start(wf, {})
    engine.run_worker(until=handle, timeout=60)
    with pytest.raises(plait.RunFailed):
        handle.result()

    broken["charge"] = False
    run = engine.resume_failed(handle.id, by="alice")
    assert run.status is plait.RunStatus.RUNNING and run.error is None
    engine.run_worker(until=handle, timeout=60)
    assert handle.result() == {"ship": "shipped 14"}
    assert calls == ["fetch", "charge", "charge", "ship"]
    reopened = [e for e in engine.events(handle.id) if e.type == "run_reopened"]
    assert [(e.payload["by"], e.payload["previous"]) for e in reopened] == [("alice", "failed")]


def test_refusals_name_the_run_and_its_state(engine: plait.Engine) -> None:
    wf = plait.Workflow("done-already")

    @wf.step
    def only() -> int:
        return 1

    handle = engine.start(wf, {})
    engine.run_worker(until=handle, timeout=60)
    with pytest.raises(plait.RunStateError) as err:
        engine.resume_failed(handle.id)
    assert str(err.value) == (
        f"run {handle.id!r} is completed: only a failed or cancelled run can be resumed this "
        "way (it has nothing to run again)"
    )
    with pytest.raises(plait.RunNotFound):
        engine.resume_failed("ghost")


def test_a_parent_joins_its_spawned_steps_again_and_only_the_failed_one_runs(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("resumable-fan-out")
    calls: list[int] = []
    broken = {3: True}

    @wf.task
    def square(n: int) -> int:
        calls.append(n)
        if broken.get(n):
            raise plait.Permanent(f"{n} is broken")
        return n * n

    @wf.step
    def fan(ctx: plait.StepContext) -> Any:
        return ctx.map(square, [1, 2, 3])

    @wf.step
    def total(fan: list[int]) -> int:
        return sum(fan)

    handle = engine.start(wf, {})
    engine.run_worker(until=handle, timeout=60)
    with pytest.raises(plait.RunFailed):
        handle.result()
    assert sorted(calls) == [1, 2, 3]

    broken.clear()
    engine.resume_failed(handle.id)
    engine.run_worker(until=handle, timeout=60)
    assert handle.result() == {"total": 14}
    assert sorted(calls) == [1, 2, 3, 3]  # the parent did not spawn again
