"""Replay and diff through the Engine, on every store: replay runs the current code of a step with
the inputs a run recorded and writes nothing; diff compares two runs step by step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plait
from plait.testing.contract.conftest import Backend


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def shop(version: str = "1", factor: int = 1, broken: bool = False) -> plait.Workflow:
    """fetch(n) → total(fetch) → label(total); `factor` and `broken` change total's code."""
    wf = plait.Workflow("shop", version=version)

    def fetch(n: int) -> dict[str, Any]:
        return {"items": [{"price": 2}] * n}

    def total(fetch: dict[str, Any]) -> dict[str, Any]:
        if broken:
            raise plait.Permanent("price service down", code="down")
        return {"total": factor * sum(i["price"] for i in fetch["items"]), "currency": "EUR"}

    def label(total: dict[str, Any]) -> str:
        return f"{total['total']} {total['currency']}"

    wf.add_step("fetch", fetch)
    wf.add_step("total", total)
    wf.add_step("label", label)
    return wf


def finished(engine: plait.Engine, wf: plait.Workflow, data: Any, run_id: str) -> str:
    handle = engine.start(wf, data, run_id=run_id)
    engine.run_worker(until=handle, timeout=30)
    assert engine.get_run(run_id).status.terminal
    return run_id


def snapshot(engine: plait.Engine, run_id: str) -> tuple[Any, ...]:
    return (
        engine.get_run(run_id),
        [(s.name, s.status, s.output, s.attempts) for s in engine.steps(run_id)],
        len(engine.events(run_id)),
    )


# -- replay ---------------------------------------------------------------------------------------


def test_replay_runs_the_current_code_with_the_recorded_inputs(engine: plait.Engine) -> None:
    run_id = finished(engine, shop(), {"n": 3}, "r1")
    before = snapshot(engine, run_id)
    engine.register(shop(version="2", factor=10))  # the fix, registered in this process

    replay = engine.replay(run_id, "total")

    assert (replay.version, replay.status, replay.error) == ("2", "done", None)
    assert replay.recorded == {"total": 6, "currency": "EUR"}
    assert replay.output == {"total": 60, "currency": "EUR"}
    assert replay.changed
    assert replay.diff == [{"path": "/output/total", "op": "changed", "a": 6, "b": 60}]
    assert replay.recorded_fingerprint == engine.get_run(run_id).fingerprint != replay.fingerprint
    assert snapshot(engine, run_id) == before  # nothing written: steps, run and log unchanged


def test_replay_of_unchanged_code_reproduces_the_record(engine: plait.Engine) -> None:
    run_id = finished(engine, shop(), {"n": 1}, "r1")
    replay = engine.replay(run_id, "label")
    assert (replay.output, replay.recorded, replay.diff, replay.changed) == (
        "2 EUR",
        "2 EUR",
        [],
        False,
    )


def test_a_replayed_handler_that_raises_is_reported(engine: plait.Engine) -> None:
    run_id = finished(engine, shop(), {"n": 1}, "r1")
    before = snapshot(engine, run_id)
    engine.register(shop(version="2", broken=True))

    replay = engine.replay(run_id, "total")

    assert replay.status == "failed" and replay.output is None
    assert replay.error == plait.StepError("down", "price service down")
    assert replay.traceback is not None and "price service down" in replay.traceback
    assert {e["path"] for e in replay.diff} == {"/error", "/output", "/status"}
    assert snapshot(engine, run_id) == before


def test_replay_of_a_failed_step_after_the_fix(engine: plait.Engine) -> None:
    run_id = finished(engine, shop(broken=True), {"n": 2}, "r1")
    engine.register(shop(version="2"))

    replay = engine.replay(run_id, "total")

    assert replay.recorded_status is plait.StepStatus.FAILED
    assert replay.recorded_error == plait.StepError("down", "price service down")
    assert (replay.status, replay.output) == ("done", {"total": 4, "currency": "EUR"})
    assert {"path": "/status", "op": "changed", "a": "failed", "b": "done"} in replay.diff


def test_replay_refuses_what_it_cannot_replay(engine: plait.Engine) -> None:
    run_id = finished(engine, shop(), {"n": 1}, "r1")
    with pytest.raises(plait.RunNotFound, match="no run with id 'nope'"):
        engine.replay("nope", "total")
    with pytest.raises(
        plait.InputError,
        match=r"^cannot replay step 'zz': workflow 'shop' v1 \(\w+\) has no such step; "
        "its steps: fetch, total, label$",
    ):
        engine.replay(run_id, "zz")

    pending = engine.start(shop(), {"n": 1}, run_id="r2").id  # no worker: fetch never ran
    with pytest.raises(
        plait.RunStateError,
        match=r"^cannot replay step 'total' of run 'r2': its dependencies have not all ended: "
        r"'fetch' \(ready\)$",
    ):
        engine.replay(pending, "total")

    grown = plait.Workflow("shop", version="3")
    grown.add_step("fetch", lambda n: n)
    grown.add_step("rates", lambda: 1)
    grown.add_step("total", lambda fetch, rates: fetch * rates)
    grown.add_step("extra", lambda: 1)
    engine.register(grown)
    with pytest.raises(
        plait.InputError,
        match=r"^cannot replay step 'total' of run 'r1': its current code needs the output of "
        "'rates', which the run does not have$",
    ):
        engine.replay(run_id, "total")
    with pytest.raises(
        plait.InputError, match=r"^cannot replay step 'extra': run 'r1' has no such step$"
    ):
        engine.replay(run_id, "extra")
    with pytest.raises(plait.InputError, match="step must be a step name, got int"):
        engine.replay(run_id, 3)  # type: ignore[arg-type]  # not a str: refused


def test_replay_needs_the_code_registered_in_this_process(
    durable_backend: Backend, tmp_path: Path
) -> None:
    url = durable_backend.url(tmp_path)
    with plait.Engine(url) as first:
        finished(first, shop(), {"n": 1}, "r1")
    with plait.Engine(url) as other:  # a process that has not registered "shop"
        with pytest.raises(
            plait.WorkflowNotFound,
            match=r"^cannot replay run 'r1': no version of workflow 'shop' is registered in "
            r"this process; replay runs the code you have now, so register it first",
        ):
            other.replay("r1", "total")
        other.register(shop(version="2", factor=3))
        assert other.replay("r1", "total").output == {"total": 6, "currency": "EUR"}


def test_replay_with_code_given_registers_nothing(engine: plait.Engine) -> None:
    run_id = finished(engine, shop(), {"n": 2}, "r1")
    versions = engine.workflows()
    fix = shop(version="2", factor=2)

    replay = engine.replay(run_id, "total", workflow=fix)

    assert (replay.version, replay.output) == ("2", {"total": 8, "currency": "EUR"})
    assert engine.workflows() == versions  # the fix was not recorded in the store
    other = plait.Workflow("other")
    other.add_step("total", lambda: 1)
    with pytest.raises(
        plait.InputError,
        match=r"^cannot replay run 'r1' with workflow 'other': the run is of workflow 'shop'$",
    ):
        engine.replay(run_id, "total", workflow=other)
    with pytest.raises(plait.InputError, match=r"workflow must be a plait\.Workflow, got str"):
        engine.replay(run_id, "total", workflow="shop")  # type: ignore[arg-type]  # not a Workflow: refused


def test_replay_evaluates_the_current_condition(engine: plait.Engine) -> None:
    wf = plait.Workflow("cond")
    wf.add_step("a", lambda: 1)
    wf.add_step("b", lambda a: a + 1)
    run_id = finished(engine, wf, {}, "r1")
    wf2 = plait.Workflow("cond", version="2")
    wf2.add_step("a", lambda: 1)
    wf2.add_step("b", lambda a: a + 1, when=lambda a: a > 5)
    engine.register(wf2)

    replay = engine.replay(run_id, "b")

    assert (replay.status, replay.output) == ("skipped", None)
    assert {"path": "/status", "op": "changed", "a": "done", "b": "skipped"} in replay.diff


async def test_replay_async(store_url: str) -> None:
    async with plait.Engine(store_url) as eng:
        wf = shop()
        handle = await eng.start_async(wf, {"n": 2}, run_id="ra")
        await eng.run_worker_async(until=handle, timeout=30)
        replay = await eng.replay_async("ra", "label")
        assert replay.output == "4 EUR" and not replay.changed


# -- diff -----------------------------------------------------------------------------------------


def test_diff_compares_two_runs_step_by_step(engine: plait.Engine) -> None:
    a = finished(engine, shop(), {"n": 1}, "a")
    b = finished(engine, shop(), {"n": 2}, "b")
    c = finished(engine, shop(version="2", broken=True), {"n": 1}, "c")

    assert engine.diff(a, a) == {
        "fetch": {"status": "same", "diff": []},
        "total": {"status": "same", "diff": []},
        "label": {"status": "same", "diff": []},
    }
    ab = engine.diff(a, b)
    assert ab["fetch"] == {
        "status": "changed",
        "diff": [{"path": "/output/items/1", "op": "added", "b": {"price": 2}}],
    }
    assert ab["total"]["diff"] == [{"path": "/output/total", "op": "changed", "a": 2, "b": 4}]
    assert ab["label"]["diff"] == [{"path": "/output", "op": "changed", "a": "2 EUR", "b": "4 EUR"}]
    ac = engine.diff(a, c)
    assert ac["fetch"]["status"] == "same"
    assert ac["label"]["diff"][-1] == {
        "path": "/status",
        "op": "changed",
        "a": "done",
        "b": "skipped",
    }

    other = plait.Workflow("other")
    other.add_step("fetch", lambda n: {"items": [{"price": 2}] * n})
    other.add_step("ship", lambda fetch: "shipped")
    d = finished(engine, other, {"n": 1}, "d")
    assert {k: v["status"] for k, v in engine.diff(a, d).items()} == {
        "fetch": "same",
        "total": "only_a",
        "label": "only_a",
        "ship": "only_b",
    }
    assert engine.diff(a, d)["ship"]["diff"] is None


def test_diff_of_an_unknown_run(engine: plait.Engine) -> None:
    a = finished(engine, shop(), {"n": 1}, "a")
    with pytest.raises(plait.RunNotFound, match="no run with id 'nope'"):
        engine.diff(a, "nope")
    with pytest.raises(plait.RunNotFound, match="no run with id 'nope'"):
        engine.diff("nope", a)
    with pytest.raises(plait.InputError, match="run ids must be strings, got int"):
        engine.diff(a, 1)  # type: ignore[arg-type]  # not a str: refused
