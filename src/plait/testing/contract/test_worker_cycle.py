"""The worker's cycle on every store: claims carry their steps' inputs, a completion claims the
next steps in its own transaction (`complete_and_claim`), and steps that never started are
handed back without counting as a recovery."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Collection, Iterator
from typing import Any

import orjson
import pytest

import plait
from plait.core.rows import Claim, Lease, Outcome, StepStatus
from plait.stores import Store
from plait.worker.worker import Worker

from .helpers import LEASE, NOW, claim_one, ok, plan_of, start, statuses, step_row


def _deps(claim: Claim) -> Collection[str]:
    return {"b": ["a"], "c": ["a"], "d": ["b", "c"]}.get(claim.step, [])


async def _claim(store: Store, fingerprint: str, limit: int = 10, **kw: Any) -> Any:
    return await store.claim(
        worker_id="w1", fingerprints=[fingerprint], limit=limit, lease=LEASE, now=NOW, **kw
    )


def _kwargs(fingerprint: str, limit: int = 10) -> dict[str, Any]:
    return {"worker_id": "w1", "fingerprints": [fingerprint], "limit": limit, "lease": LEASE}


async def test_a_claim_asked_for_inputs_carries_them(store: Store) -> None:
    plan = plan_of("inputs", ("a", [], {}), ("b", ["a"], {}))
    await start(store, plan, "r1", data=b'{"k": 1}')
    bare = await _claim(store, plan.fingerprint)
    assert [c.step for c in bare] == ["a"] and bare.inputs is None
    await store.complete([ok(bare[0], {"v": 2})], NOW)

    claims = await _claim(store, plan.fingerprint, inputs=_deps)

    assert [c.step for c in claims] == ["b"]
    assert claims.inputs is not None and set(claims.inputs) == {"r1"}
    got = claims.inputs["r1"]
    assert got.run_input == b'{"k": 1}'
    assert got == (await store.step_inputs({"r1": ["a"]}))["r1"]
    status, output = got.dependencies["a"]
    assert status is StepStatus.DONE and orjson.loads(output or b"") == {"v": 2}
    nothing = await _claim(store, plan.fingerprint, inputs=_deps)
    assert list(nothing) == [] and nothing.inputs == {}


async def test_complete_and_claim_takes_the_steps_its_completions_made_ready(
    store: Store,
) -> None:
    plan = plan_of("fan", ("a", [], {}), ("b", ["a"], {}), ("c", ["a"], {}), ("d", ["b", "c"], {}))
    await start(store, plan, "r1", data=b'{"k": 1}')
    a = await claim_one(store, plan, "a")

    result, claims = await store.complete_and_claim(
        [ok(a, "A")], NOW + 1, **_kwargs(plan.fingerprint, limit=1), inputs=_deps
    )

    # one of the two dependents is taken: only the other still wakes workers
    assert result.accepted == [True] and result.readied == 1
    assert len(claims) == 1 and claims[0].step in ("b", "c")
    assert claims.inputs is not None
    assert claims.inputs["r1"].run_input == b'{"k": 1}'
    assert claims.inputs["r1"].dependencies == {"a": (StepStatus.DONE, b'"A"')}
    first = claims[0]
    assert (await step_row(store, "r1", first.step)).status is StepStatus.RUNNING

    result, more = await store.complete_and_claim(
        [ok(first, 1)], NOW + 2, **_kwargs(plan.fingerprint), inputs=_deps
    )
    assert result.accepted == [True] and result.readied == 0  # it took the other one
    assert [c.step for c in more] == [({"b", "c"} - {first.step}).pop()]
    result, last = await store.complete_and_claim(
        [ok(more[0], 2)], NOW + 3, **_kwargs(plan.fingerprint), inputs=_deps
    )
    assert [c.step for c in last] == ["d"] and result.readied == 0
    assert last.inputs is not None
    assert set(last.inputs["r1"].dependencies) == {"b", "c"}
    result, after = await store.complete_and_claim(
        [ok(last[0], "D")], NOW + 4, **_kwargs(plan.fingerprint), inputs=_deps
    )
    assert result.ended_runs == ["r1"] and list(after) == [] and after.inputs == {}
    run = await store.get_run("r1")
    assert run is not None and run.status is plait.RunStatus.COMPLETED


async def test_complete_and_claim_is_fenced_and_still_claims(store: Store) -> None:
    plan = plan_of("fenced", ("a", [], {"priority": 1}), ("x", [], {}))
    await start(store, plan, "r1")
    (a,) = await _claim(store, plan.fingerprint, limit=1)
    assert a.step == "a"
    forged = Outcome("r1", "a", "not-the-token", output=b"1")

    result, claims = await store.complete_and_claim([forged], NOW + 1, **_kwargs(plan.fingerprint))

    assert result.accepted == [False]
    assert [c.step for c in claims] == ["x"] and claims.inputs is None
    assert (await step_row(store, "r1", "a")).status is StepStatus.RUNNING
    assert (await store.complete([ok(a)], NOW + 2)).accepted == [True]


async def test_a_step_that_never_started_is_handed_back_without_a_recovery(store: Store) -> None:
    plan = plan_of("unstarted", ("a", [], {}))
    await start(store, plan, "r1")
    a = await claim_one(store, plan, "a")

    result = await store.release([Lease("r1", "a", a.token)], NOW + 1, None)

    assert result.readied == 1
    row = await step_row(store, "r1", "a")
    assert row.status is StepStatus.READY and row.recoveries == 0 and row.attempt == 0
    assert await statuses(store, "r1") == {"a": StepStatus.READY}


# -- the worker ---------------------------------------------------------------------------------


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url) as engine:
        yield engine


def _count(store: Any, names: tuple[str, ...]) -> dict[str, int]:
    """Count the calls of these store methods (wrapping them on the instance)."""
    counts = dict.fromkeys(names, 0)
    for name in names:
        original = getattr(store, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            counts[_name] += 1
            return _original(*args, **kw)

        setattr(store, name, counted)
    return counts


def test_a_hand_off_to_a_dependent_is_one_store_transaction(engine: plait.Engine) -> None:
    wf = plait.Workflow("handoff_chain")
    length = 6
    wf.add_step("s0", lambda: 0)
    for i in range(1, length):
        wf.add_step(f"s{i}", lambda **given: max(given.values()) + 1, deps=[f"s{i - 1}"])
    run = engine.start(wf)
    names = ("complete", "complete_and_claim", "step_inputs")
    counts = _count(engine.store, names)
    took: list[int] = []
    claim = engine.store.claim

    async def counted_claim(**kw: Any) -> Any:
        claims = await claim(**kw)
        if claims:
            took.append(len(claims))
        return claims

    engine.store.claim = counted_claim  # type: ignore[method-assign]

    engine.run_worker(until=run, timeout=30)

    assert run.result() == {f"s{length - 1}": length - 1}
    # the first step is claimed by the claim loop; each completion claims the next step, with
    # its input, in its own transaction: no other read, no claim of its own
    assert counts["step_inputs"] == 0 and counts["complete"] == 0
    assert counts["complete_and_claim"] == length
    assert took == [1]  # (an idle worker's looks may claim nothing, on a store without push)


def test_a_stopping_worker_hands_back_the_steps_it_holds_but_never_started(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("held")
    gate = threading.Event()
    started = threading.Event()

    def slow() -> None:
        started.set()
        gate.wait(10)

    for i in range(6):
        wf.add_step(f"p{i}", slow)
    run = engine.start(wf)
    calls: list[tuple[int, int | None]] = []
    original = engine.store.release

    async def recorded(leases: Any, now: float, max_recoveries: int | None) -> Any:
        calls.append((len(leases), max_recoveries))
        return await original(leases, now, max_recoveries)

    engine.store.release = recorded  # type: ignore[method-assign]
    worker = threading.Thread(target=engine.run_worker, kwargs={"concurrency": 1, "grace": 5})
    worker.start()
    try:
        assert started.wait(10)
        (held,) = list(engine._rt.workers)
        assert isinstance(held, Worker) and held._loop is not None

        def hold_more() -> None:  # as the worker does for short steps (`_HeldLimit`)
            held._held.value = 4
            held._slot_freed.set()

        held._loop.call_soon_threadsafe(hold_more)
        deadline = time.monotonic() + 10
        while len(held._inflight) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(held._inflight) == 4  # one step running, three waiting for the slot
        engine.stop_workers()
        time.sleep(0.2)
    finally:
        gate.set()
        worker.join(10)
    assert not worker.is_alive()
    assert calls == [(3, None)]  # handed back at once, not counted; the running one finished
    rows = asyncio.run(engine.store.get_steps(run.id))
    assert sum(s.status is StepStatus.DONE for s in rows) == 1
    ready = [s for s in rows if s.status is StepStatus.READY]
    assert len(ready) == 5 and all(s.recoveries == 0 for s in ready)
