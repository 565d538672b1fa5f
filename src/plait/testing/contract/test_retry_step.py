"""Retrying a failed step (DESIGN §3.3), on every store: the step, the dependents its failure
skipped, the run's counters and status, races between operators, and through the Engine."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import plait
from plait.core import actions
from plait.core.rows import RunStatus, StepStatus
from plait.stores import Store
from plait.testing.contract.helpers import NOW, claim, fail, ok, plan_of, start, statuses


async def retry(store: Store, run_id: str, step: str, now: float = NOW + 5) -> Any:
    return await store.apply(lambda txn: actions.retry(txn, run_id, step, by="tester"), now)


async def drain(store: Store, plan: Any, now: float) -> None:
    """Claim and complete successfully until nothing is claimable."""
    while got := await claim(store, [plan], now=now):
        await store.complete([ok(c, c.step) for c in got], now)


async def test_retry_brings_the_step_and_what_it_skipped_back(store: Store) -> None:
    plan = plan_of("r", ("a", [], {}), ("b", ["a"], {}), ("c", ["b"], {}), ("d", ["a"], {}))
    await start(store, plan, "r1")
    [a] = await claim(store, [plan])
    await store.complete([ok(a, "a")], NOW + 1)
    claims = {c.step: c for c in await claim(store, [plan], now=NOW + 1)}
    await store.complete([fail(claims["b"]), ok(claims["d"], "d")], NOW + 2)  # c is skipped
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.FAILED and run.failures == 2

    result = await retry(store, "r1", "b")

    assert result.refusal is None and result.readied == 1
    assert await statuses(store, "r1") == {
        "a": StepStatus.DONE,
        "b": StepStatus.READY,
        "c": StepStatus.PENDING,
        "d": StepStatus.DONE,
    }
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.RUNNING
    assert (run.failures, run.unfinished, run.error, run.finished_at) == (0, 2, None, None)
    [again] = await claim(store, [plan], now=NOW + 6)
    assert (again.step, again.attempt) == ("b", 1)  # a fresh attempt budget
    await store.complete([ok(again, "b")], NOW + 7)
    await drain(store, plan, NOW + 7)
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED
    assert run.output == b'{"c":"c","d":"d"}'
    types = [e.type for e in await store.get_events("r1", 0, None)]
    assert types.count("run_failed") == 1 and types.count("run_completed") == 1
    assert "step_retried" in types and "step_reopened" in types


async def test_a_dependent_doomed_by_another_failure_stays_skipped(store: Store) -> None:
    plan = plan_of("r", ("x", [], {}), ("y", [], {}), ("z", ["x", "y"], {}))
    await start(store, plan, "r1")
    claims = {c.step: c for c in await claim(store, [plan])}
    await store.complete([fail(claims["x"]), fail(claims["y"])], NOW + 1)

    await retry(store, "r1", "x")

    assert await statuses(store, "r1") == {
        "x": StepStatus.READY,
        "y": StepStatus.FAILED,
        "z": StepStatus.SKIPPED,
    }
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.RUNNING
    assert run.failures == 2 and run.unfinished == 1  # y, and z skipped for a failure
    assert run.error is not None and run.error.startswith("step 'y' failed")
    [x] = await claim(store, [plan], now=NOW + 6)
    await store.complete([ok(x)], NOW + 7)
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.FAILED  # y still fails it


async def test_a_dependent_waits_for_every_step_that_came_back(store: Store) -> None:
    """d takes b's failure with a default, but b comes back with a: d waits for both."""
    plan = plan_of(
        "r",
        ("a", [], {}),
        ("b", ["a"], {}),
        ("d", ["a", "b"], {"defaults": {"b": None}}),
    )
    await start(store, plan, "r1")
    [a] = await claim(store, [plan])
    await store.complete([fail(a)], NOW + 1)
    assert await statuses(store, "r1") == {
        "a": StepStatus.FAILED,
        "b": StepStatus.SKIPPED,
        "d": StepStatus.SKIPPED,
    }

    await retry(store, "r1", "a")
    assert await statuses(store, "r1") == {
        "a": StepStatus.READY,
        "b": StepStatus.PENDING,
        "d": StepStatus.PENDING,
    }
    [a] = await claim(store, [plan], now=NOW + 6)
    await store.complete([ok(a)], NOW + 7)
    assert [c.step for c in await claim(store, [plan], now=NOW + 7, limit=1)] == ["b"]
    assert await claim(store, [plan], now=NOW + 7) == []  # d waits for b


async def test_retry_refuses_what_is_not_a_failed_step(store: Store) -> None:
    plan = plan_of("r", ("a", [], {}), ("b", [], {}))
    await start(store, plan, "r1")
    claims = {c.step: c for c in await claim(store, [plan])}
    await store.complete([fail(claims["a"])], NOW + 1)

    assert (await retry(store, "r1", "b")).refusal == (
        "step 'b' of run 'r1' is running: only a failed step can be retried"
    )
    assert (await retry(store, "r1", "zz")).refusal == "run 'r1' has no step 'zz'"
    assert (await retry(store, "nope", "a")).refusal == "run 'nope' does not exist"
    await store.apply(lambda txn: actions.cancel(txn, "r1", reason=None, by="t"), NOW + 2)
    assert (await retry(store, "r1", "a")).refusal == (
        "run 'r1' is cancelled: its steps cannot be retried"
    )
    assert (await statuses(store, "r1"))["a"] is StepStatus.FAILED


def test_two_operators_retrying_at_once_retry_once(store: Store) -> None:
    plan = plan_of("r", ("a", [], {}))
    asyncio.run(start(store, plan, "r1"))
    [a] = asyncio.run(claim(store, [plan]))
    asyncio.run(store.complete([fail(a)], NOW + 1))
    results: list[Any] = []
    go = threading.Barrier(4)

    def operator() -> None:
        go.wait()
        results.append(asyncio.run(retry(store, "r1", "a")))

    threads = [threading.Thread(target=operator) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    refusals = sorted(str(r.refusal) for r in results)
    assert refusals[:1] == ["None"] and len(refusals) == 4
    assert all("is ready: only a failed step" in r for r in refusals[1:])
    types = [e.type for e in asyncio.run(store.get_events("r1", 0, None))]
    assert types.count("step_retried") == 1
    assert len(asyncio.run(claim(store, [plan], now=NOW + 6))) == 1


# -- the engine ----------------------------------------------------------------------------------


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def test_retry_after_a_fix_completes_the_run(engine: plait.Engine) -> None:
    wf = plait.Workflow("retry_engine")
    broken = [True]

    @wf.step
    def flaky() -> str:
        if broken[0]:
            raise plait.Permanent("upstream down", code="down")
        return "ok"

    @wf.step
    def after(flaky: str) -> str:
        return flaky + "!"

    handle = engine.start(wf)
    engine.run_worker(until=handle, timeout=30)
    with pytest.raises(plait.RunFailed):
        handle.result(timeout=5)
    broken[0] = False
    with pytest.raises(plait.RunStateError, match=r"'after' of run .* is skipped: only a failed"):
        engine.retry(handle.id, "after")

    assert engine.retry(handle.id, "flaky", by="ops").status is plait.RunStatus.RUNNING
    engine.run_worker(until=handle, timeout=30)
    assert handle.result(timeout=5) == {"after": "ok!"}
    with pytest.raises(plait.RunStateError, match="has no step 'nope'"):
        engine.retry(handle.id, "nope")
    with pytest.raises(plait.RunNotFound):
        engine.retry("nope", "flaky")
