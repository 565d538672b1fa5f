"""Deploys (issue 17, item 1), on every store: a version is the graph, not the code. Workers running
fixed code serve the runs in flight of the same graph, each attempt records the digest of the code
that ran it (on the step and in its `step_started` event); `code_changes="pin"` keeps a run to its
code; runs started with the pinned fingerprint (before migration 12) are served still."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import plait
from plait.stores import Store
from plait.testing.contract.helpers import NOW, claim, start, wait_until


def fetch(n: int) -> int:
    return n + 1


def total_v1(fetch: int) -> int:
    return fetch * 2


def total_v2(fetch: int) -> int:  # the fix deployed while runs wait
    return fetch * 200


def shop(total: object = total_v1, code_changes: str = "deploy") -> plait.Workflow:
    """fetch → total, where total waits for an approval (so a run stays in flight)."""
    wf = plait.Workflow("deploys", version="1", code_changes=code_changes)
    wf.add_step("fetch", fetch)
    wf.add_step("total", total, approval=True)  # type: ignore[arg-type]  # a handler
    return wf


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def serve_until_waiting(engine: plait.Engine, wf: plait.Workflow, handle: plait.RunHandle) -> None:
    """Run a worker of `wf` until the run's approval waits, then stop it."""
    worker = threading.Thread(
        target=lambda: engine.run_worker(workflows=[wf], until=handle, timeout=60)
    )
    worker.start()
    try:
        wait_until(
            lambda: any(w.run_id == handle.id for w in engine.list_waiting()), "the approval"
        )
    finally:
        engine.stop_workers()
        worker.join(timeout=30)
    assert not worker.is_alive()


def started_codes(engine: plait.Engine, run_id: str) -> dict[str, list[str | None]]:
    codes: dict[str, list[str | None]] = {}
    for e in engine.events(run_id):
        if e.type == "step_started":
            assert e.step is not None
            codes.setdefault(e.step, []).append(e.payload.get("code"))
    return codes


def test_fixed_code_reaches_a_run_in_flight_and_each_attempt_names_its_code(
    engine: plait.Engine,
) -> None:
    old, new = shop(total_v1), shop(total_v2)
    assert old.fingerprint == new.fingerprint  # the same graph: the same version
    assert old.code_of("total") != new.code_of("total")
    assert old.code_of("fetch") == new.code_of("fetch")
    handle = engine.start(old, {"n": 1})
    serve_until_waiting(engine, old, handle)
    fetched = {s.name: s for s in engine.steps(handle.id)}["fetch"]
    assert fetched.code == old.code_of("fetch")
    engine.approve(handle.id, "total")
    # a worker of the new code (another deploy) takes the rest
    engine.run_worker(workflows=[new], until=handle, timeout=30)
    assert handle.result(timeout=10) == {"total": 400}
    steps = {s.name: s for s in engine.steps(handle.id)}
    assert steps["total"].code == new.code_of("total")
    assert steps["fetch"].code == old.code_of("fetch")
    assert started_codes(engine, handle.id) == {
        "fetch": [old.code_of("fetch")],
        "total": [new.code_of("total")],
    }
    info = engine.inspect(handle.id)
    assert {s.name: s.code for s in info.steps} == {
        "fetch": old.code_of("fetch"),
        "total": new.code_of("total"),
    }


async def test_pinned_workflows_are_served_only_by_their_own_code(store: Store) -> None:
    old, new = shop(total_v1, "pin"), shop(total_v2, "pin")
    assert old.fingerprint != new.fingerprint  # the code is part of a pinned version
    await store.save_workflow(old.plan())
    await start(store, old.plan(), "pinned")
    assert await claim(store, [new.plan()]) == []  # the new code does not serve the run
    [c] = await claim(store, [old.plan()])
    assert (c.run_id, c.step) == ("pinned", "fetch")


async def test_a_claim_records_the_code_it_is_given(store: Store) -> None:
    wf = shop()
    plan = wf.plan()
    assert plan.code_changes == "deploy"
    assert {s.name: s.code for s in plan.steps} == {
        "fetch": wf.code_of("fetch"),
        "total": wf.code_of("total"),
    }
    await store.save_workflow(plan)
    saved = await store.get_workflow("deploys", plan.fingerprint)
    assert saved is not None and saved.code_changes == "deploy"
    assert [s.code for s in saved.steps] == [s.code for s in plan.steps]
    await start(store, plan, "r1")
    seen: list[tuple[str, str, str | None]] = []

    def code(fingerprint: str, step: str, task: str | None) -> str:
        seen.append((fingerprint, step, task))
        return "c0ffee"

    claims = await store.claim(
        worker_id="w1", fingerprints=[plan.fingerprint], limit=5, lease=30.0, now=NOW, code=code
    )
    assert [c.step for c in claims] == ["fetch"]
    assert seen == [(plan.fingerprint, "fetch", None)]
    [row] = [s for s in await store.get_steps("r1") if s.name == "fetch"]
    assert row.code == "c0ffee"
    started = [e for e in await store.get_events("r1", 0, None) if e.type == "step_started"]
    assert [e.payload.get("code") for e in started] == ["c0ffee"]


def test_runs_started_before_code_was_recorded_apart_are_served_by_the_same_code(
    engine: plait.Engine,
) -> None:
    """A run started before migration 12 carries the fingerprint with the code (the pinned
    one): a worker of the same code, in code_changes="deploy", serves it; other code does not."""
    legacy = shop(total_v1, "pin")
    now = shop(total_v1)  # the same code, deployed with this version of plait
    assert legacy.fingerprint == now.pinned_fingerprint
    assert legacy.fingerprint in now.fingerprints
    assert legacy.fingerprint not in shop(total_v2).fingerprints
    handle = engine.start(legacy, {"n": 2})
    serve_until_waiting(engine, now, handle)
    engine.approve(handle.id, "total")
    engine.run_worker(workflows=[now], until=handle, timeout=30)
    assert handle.result(timeout=10) == {"total": 6}


def test_a_worker_registers_every_fingerprint_it_serves_so_none_looks_unserved(
    engine: plait.Engine,
) -> None:
    """A worker of code_changes="deploy" serves the pinned fingerprint of its code too (runs
    started before migration 12): it registers both, so `workflows()`, `topology()` and
    `inspect()` do not say that no live worker serves such a run."""
    legacy = shop(total_v1, "pin")
    now = shop(total_v1)
    handle = engine.start(legacy, {"n": 2})
    worker = threading.Thread(target=lambda: engine.run_worker(workflows=[now], timeout=60))
    worker.start()
    try:
        wait_until(
            lambda: (
                bool(engine.workers()) and any(w.run_id == handle.id for w in engine.list_waiting())
            ),
            "the worker and the approval",
        )
        [info] = engine.workers()
        assert {w.fingerprint for w in info.workflows} == {now.fingerprint, legacy.fingerprint}
        served = {i.fingerprint: i.workers for i in engine.workflows()}
        assert served[legacy.fingerprint] == (info.id,)
        topology = engine.topology("deploys", fingerprint=legacy.fingerprint)
        assert [w.id for w in topology.workers] == [info.id]
        assert topology.steps["total"].blocker is None
    finally:
        engine.stop_workers()
        worker.join(timeout=30)
    assert not worker.is_alive()
