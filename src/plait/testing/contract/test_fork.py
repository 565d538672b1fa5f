"""Forking a run (DESIGN §3.3), on every store: what is reused, the counters the store keeps, the
version and input a fork runs with, overrides, forks of failed runs and of forks, and every
refusal, which writes nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plait
from plait.core.fork import fork_run, plan_fork
from plait.core.rows import RunStatus, StepStatus
from plait.stores import Store
from plait.testing.contract.conftest import Backend
from plait.testing.contract.helpers import NOW, claim, ok, plan_of, start


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


class Shop:
    """fetch(n) → price(fetch) → total(price) → label(total), plus audit(fetch) on the side;
    counts the calls of each handler. `factor` and `broken` change total's code."""

    def __init__(self, version: str = "1", factor: int = 1, broken: bool = False) -> None:
        self.calls: Counter[str] = Counter()
        wf = self.wf = plait.Workflow("shop", version=version)
        calls = self.calls

        def fetch(n: int) -> list[int]:
            calls["fetch"] += 1
            return [2] * n

        def price(fetch: list[int]) -> list[int]:
            calls["price"] += 1
            return [p * 10 for p in fetch]

        def total(price: list[int]) -> int:
            calls["total"] += 1
            if broken:
                raise plait.Permanent("tax service down", code="down")
            return factor * sum(price)

        def label(total: int) -> str:
            calls["label"] += 1
            return f"{total} EUR"

        def audit(fetch: list[int]) -> str:
            calls["audit"] += 1
            return "ok"

        wf.add_step("fetch", fetch)
        wf.add_step("price", price)
        wf.add_step("total", total)
        wf.add_step("label", label)
        wf.add_step("audit", audit)


def finish(engine: plait.Engine, handle: plait.RunHandle) -> None:
    engine.run_worker(until=handle, timeout=30)


def completed(engine: plait.Engine, shop: Shop, data: Any, run_id: str) -> str:
    handle = engine.start(shop.wf, data, run_id=run_id)
    finish(engine, handle)
    return run_id


async def step_rows(engine: plait.Engine, run_id: str) -> dict[str, Any]:
    return {s.name: s for s in await engine.store.get_steps(run_id)}


def raw_steps(engine: plait.Engine, run_id: str) -> dict[str, Any]:
    return engine._portal.call(step_rows(engine, run_id))


def raw_run(engine: plait.Engine, run_id: str) -> Any:
    return engine._portal.call(engine.store.get_run(run_id))


# -- what a fork reuses, and its counters ---------------------------------------------------------


def test_a_fork_reuses_every_upstream_step_and_runs_the_rest(engine: plait.Engine) -> None:
    shop = Shop()
    parent = completed(engine, shop, {"n": 2}, "p1")
    assert engine.get_run(parent).output == {"label": "40 EUR", "audit": "ok"}

    handle = engine.fork(parent, "total", new_run_id="f1", by="alice")

    steps = raw_steps(engine, "f1")
    assert {n: s.status for n, s in steps.items()} == {
        "fetch": StepStatus.DONE,
        "price": StepStatus.DONE,
        "total": StepStatus.READY,
        "label": StepStatus.PENDING,
        "audit": StepStatus.DONE,  # not upstream of total, not downstream either: reused
    }
    assert {n: s.reused_from for n, s in steps.items()} == {
        "fetch": "p1",
        "price": "p1",
        "total": None,
        "label": None,
        "audit": "p1",
    }
    assert (steps["total"].unmet, steps["label"].unmet) == (0, 1)
    run = raw_run(engine, "f1")
    assert (run.status, run.unfinished, run.failures) == (RunStatus.PENDING, 2, 0)
    assert (run.parent_run, run.forked_from, run.input) == ("p1", "total", b'{"n":2}')
    events = engine.events("f1")
    assert [(e.type, e.step) for e in events] == [
        ("run_started", None),
        ("run_forked", None),
        ("step_reused", "fetch"),
        ("step_reused", "price"),
        ("step_reused", "audit"),
    ]
    assert events[1].payload["by"] == "alice" and events[1].payload["parent_run"] == "p1"

    finish(engine, handle)

    assert handle.result(timeout=5) == {"label": "40 EUR", "audit": "ok"}
    assert shop.calls == Counter(fetch=1, price=1, total=2, label=2, audit=1)
    assert engine.get_run(parent).status is plait.RunStatus.COMPLETED  # the parent is untouched
    assert [e.type for e in engine.events("f1")][-1] == "run_completed"
    assert engine.diff(parent, "f1") == {
        name: {"status": "same", "diff": []}
        for name in ("fetch", "price", "total", "label", "audit")
    }


def test_a_fork_from_the_first_step_reuses_what_does_not_depend_on_it(
    engine: plait.Engine,
) -> None:
    shop = Shop()
    parent = completed(engine, shop, {"n": 1}, "p1")

    handle = engine.fork(parent, "price")
    finish(engine, handle)

    assert handle.result(timeout=5) == {"label": "20 EUR", "audit": "ok"}
    assert shop.calls == Counter(fetch=1, price=2, total=2, label=2, audit=1)


def test_overrides_replace_reused_outputs(engine: plait.Engine) -> None:
    shop = Shop()
    parent = completed(engine, shop, {"n": 2}, "p1")

    handle = engine.fork(parent, "total", overrides={"price": [1, 2, 3]})
    finish(engine, handle)

    assert handle.result(timeout=5)["label"] == "6 EUR"
    diff = engine.diff(parent, handle.id)
    assert diff["price"]["status"] == "changed" and diff["fetch"]["status"] == "same"
    forked = [e for e in engine.events(handle.id) if e.type == "run_forked"]
    assert forked[0].payload["overridden"] == ["price"]


def test_a_fork_runs_on_its_run_s_version_while_served_or_the_one_chosen(
    engine: plait.Engine,
) -> None:
    shop = Shop()
    parent = completed(engine, shop, {"n": 2}, "p1")
    fixed = Shop(version="2", factor=3)
    engine.register(fixed.wf)
    own = engine.fork(parent, "total")  # v1 is served here (this Engine registered it)
    assert engine.get_run(own.id).fingerprint == shop.wf.fingerprint

    handle = engine.fork(parent, "total", fingerprint=fixed.wf.fingerprint)
    finish(engine, handle)

    run = engine.get_run(handle.id)
    assert (run.version, run.fingerprint) == ("2", fixed.wf.fingerprint)
    assert handle.result(timeout=5)["label"] == "120 EUR"
    assert fixed.calls == Counter(total=1, label=1)


def test_a_new_input_reaches_the_steps_that_run_again(engine: plait.Engine) -> None:
    shop = Shop()
    parent = completed(engine, shop, {"n": 2}, "p1")

    handle = engine.fork(parent, "fetch", input={"n": 3})
    finish(engine, handle)

    assert engine.get_run(handle.id).input == {"n": 3}
    assert handle.result(timeout=5) == {"label": "60 EUR", "audit": "ok"}
    forked = [e for e in engine.events(handle.id) if e.type == "run_forked"]
    assert forked[0].payload["input_changed"] is True


def test_a_fork_of_a_failed_run_reruns_the_failed_step(engine: plait.Engine) -> None:
    broken = Shop(broken=True)
    handle = engine.start(broken.wf, {"n": 1}, run_id="p1")
    finish(engine, handle)
    with pytest.raises(plait.RunFailed):
        handle.result(timeout=5)
    fixed = Shop(version="2")
    engine.register(fixed.wf)

    # label was skipped: total, failed, runs again too (on the fixed version)
    fork = engine.fork("p1", "label", fingerprint=fixed.wf.fingerprint)
    steps = raw_steps(engine, fork.id)
    assert steps["total"].status is StepStatus.READY and steps["total"].reused_from is None
    assert steps["price"].status is StepStatus.DONE
    finish(engine, fork)

    assert fork.result(timeout=5) == {"label": "20 EUR", "audit": "ok"}
    assert fixed.calls == Counter(total=1, label=1)


def test_a_fork_of_a_fork_reuses_from_the_run_that_computed_each_output(
    engine: plait.Engine,
) -> None:
    shop = Shop()
    parent = completed(engine, shop, {"n": 1}, "p1")
    first = engine.fork(parent, "total", new_run_id="f1")
    finish(engine, first)

    second = engine.fork("f1", "label", new_run_id="f2")

    steps = raw_steps(engine, "f2")
    assert {n: s.reused_from for n, s in steps.items()} == {
        "fetch": "p1",
        "price": "p1",
        "total": "f1",
        "label": None,
        "audit": "p1",
    }
    assert raw_run(engine, "f2").parent_run == "f1"
    finish(engine, second)
    assert second.result(timeout=5)["label"] == "20 EUR"


def test_an_approval_reused_by_a_fork_is_not_asked_again(engine: plait.Engine) -> None:
    wf = plait.Workflow("release")

    @wf.step(approval=True)
    def review() -> str:
        return "reviewed"

    @wf.step
    def ship(review: str) -> str:
        return f"shipped, {review}"

    handle = engine.start(wf, run_id="p1")
    engine.approve("p1", "review", by="carol")
    finish(engine, handle)
    assert handle.result(timeout=5) == {"ship": "shipped, reviewed"}

    downstream = engine.fork("p1", "ship")  # review is reused: no approval needed
    assert raw_steps(engine, downstream.id)["review"].status is StepStatus.DONE
    finish(engine, downstream)
    assert downstream.result(timeout=5) == {"ship": "shipped, reviewed"}

    again = engine.fork("p1", "review")  # the gate itself runs again: it asks again
    assert raw_steps(engine, again.id)["review"].status is StepStatus.WAITING
    assert [e.type for e in engine.events(again.id)][:3] == [
        "run_started",
        "step_waiting",
        "run_forked",
    ]
    engine.approve(again.id, "review", by="dave")
    finish(engine, again)
    assert again.result(timeout=5) == {"ship": "shipped, reviewed"}


def test_forking_again_with_the_same_id_returns_that_fork(engine: plait.Engine) -> None:
    parent = completed(engine, Shop(), {"n": 1}, "p1")
    first = engine.fork(parent, "total", new_run_id="f1")
    again = engine.fork(parent, "total", new_run_id="f1")
    assert again.id == first.id == "f1"
    assert [e.type for e in engine.events("f1")].count("run_forked") == 1
    with pytest.raises(
        plait.RunConflict,
        match=r"^run id 'p1' is already used by another run; choose another new_run_id$",
    ):
        engine.fork(parent, "total", new_run_id="p1")
    with pytest.raises(plait.RunConflict, match="'f1' is already used by another run"):
        engine.fork(parent, "label", new_run_id="f1")


async def test_fork_async(store_url: str) -> None:
    async with plait.Engine(store_url) as eng:
        shop = Shop()
        handle = await eng.start_async(shop.wf, {"n": 1}, run_id="p1")
        await eng.run_worker_async(until=handle, timeout=30)
        fork = await eng.fork_async("p1", "label", new_run_id="f1")
        await eng.run_worker_async(until=fork, timeout=30)
        assert await fork.result_async(timeout=5) == {"label": "20 EUR", "audit": "ok"}


def test_a_process_without_the_code_forks_on_the_stores_newest_version(
    durable_backend: Backend, tmp_path: Path
) -> None:
    url = durable_backend.url(tmp_path)
    with plait.Engine(url) as first:
        completed(first, Shop(), {"n": 1}, "p1")
        first.register(Shop(version="2", factor=5).wf)
    with plait.Engine(url) as other:  # registered nothing: the store's newest version is used
        fork = other.fork("p1", "total", new_run_id="f1")
        assert other.get_run(fork.id).version == "2"
    with plait.Engine(url) as worker:
        served = Shop(version="2", factor=5)
        worker.register(served.wf)
        finish(worker, plait.RunHandle(worker, "f1"))
        assert worker.get_run("f1").output == {"label": "100 EUR", "audit": "ok"}


# -- refusals: clear, and nothing written ---------------------------------------------------------


def test_every_refusal_says_why_and_writes_nothing(engine: plait.Engine) -> None:
    parent = completed(engine, Shop(), {"n": 1}, "p1")
    before = (len(engine.list_runs().runs), len(engine.events(parent)))

    def refused(error: type[Exception], message: str, *args: Any, **kwargs: Any) -> None:
        with pytest.raises(error) as caught:
            engine.fork(*args, **kwargs)
        assert str(caught.value) == message

    refused(plait.RunNotFound, f"no run with id 'nope' in {engine.url}", "nope", "total")
    refused(
        plait.InputError,
        f"cannot fork run 'p1' from step 'nope': workflow 'shop' v1 ({Shop().wf.fingerprint}) "
        "has no such step; its steps: fetch, price, total, label, audit",
        parent,
        "nope",
    )
    refused(
        plait.InputError,
        "cannot override step 'label': the fork of run 'p1' from 'total' does not reuse it "
        "(it is downstream of 'total'); overrides replace the output of reused steps: "
        "'fetch', 'price', 'audit'",
        parent,
        "total",
        overrides={"label": "x"},
    )
    refused(
        plait.InputError,
        "override of step 'price' is not JSON: type object: not JSON serializable (give a JSON value, "
        "a dataclass or a pydantic model)",
        parent,
        "total",
        overrides={"price": object()},
    )
    refused(
        plait.InputError,
        "run input of 'shop' misses field 'n', required by step 'fetch'",
        parent,
        "total",
        input={"m": 1},
    )
    refused(
        plait.InputError,
        "run input field 'n' (step 'fetch') is invalid: Input should be a valid integer, "
        "unable to parse string as an integer",
        parent,
        "total",
        input={"n": "many"},
    )
    refused(
        plait.InputError,
        "by must be a non-empty string of at most 200 characters, got ''",
        parent,
        "total",
        by="",
    )
    refused(
        plait.InputError,
        "invalid run id 'a b': use 1-200 ASCII letters, digits or any of _ . : @ -",
        parent,
        "total",
        new_run_id="a b",
    )
    refused(plait.InputError, "from_step must be a step name, got int", parent, 3)
    refused(
        plait.InputError,
        "overrides must map step names to outputs, got list",
        parent,
        "total",
        overrides=["price"],
    )

    # the newest version no longer has steps the fork would reuse
    smaller = plait.Workflow("shop", version="2")
    smaller.add_step("fetch", lambda n: [n])
    smaller.add_step("total", lambda fetch: sum(fetch))
    engine.register(smaller)
    refused(
        plait.InputError,
        f"cannot fork run 'p1' from step 'total' on workflow 'shop' v2 ({smaller.fingerprint}): "
        "the fork would reuse the output of 'price', 'audit', which this version no longer "
        "has; fork from a step they depend on so that they are not reused, or run a version "
        "that has them",
        parent,
        "total",
        fingerprint=smaller.fingerprint,
    )
    # its input does not fit the newest version: say so, and how to give another
    needy = plait.Workflow("shop", version="3")
    needy.add_step("fetch", lambda n, region: [n])
    needy.add_step("price", lambda fetch: fetch)
    needy.add_step("audit", lambda fetch: "ok")
    needy.add_step("total", lambda price: sum(price))
    engine.register(needy)
    refused(
        plait.InputError,
        "cannot fork run 'p1' with its own input: run input of 'shop' misses field 'region', "
        "required by step 'fetch'; pass input=",
        parent,
        "total",
        fingerprint=needy.fingerprint,
    )
    refused(
        plait.WorkflowNotFound,
        "workflow 'shop' has no version of fingerprint 'f00'; its versions: "
        f"1 ({Shop().wf.fingerprint}), 2 ({smaller.fingerprint}), 3 ({needy.fingerprint})",
        parent,
        "total",
        fingerprint="f00",
    )

    assert (len(engine.list_runs().runs), len(engine.events(parent))) == before
    given = {"n": 1, "region": "eu"}
    assert engine.fork(parent, "total", input=given, fingerprint=needy.fingerprint).id


# -- the store keeps what a fork is made of --------------------------------------------------------


async def test_the_store_keeps_a_forks_links_and_counters(store: Store) -> None:
    plan = plan_of("s", ("a", [], {}), ("b", ["a"], {}), ("c", ["b"], {}), ("x", [], {}))
    await start(store, plan, "p1")
    while got := await claim(store, [plan]):
        await store.complete([ok(c, c.step) for c in got], NOW)
    parent = await store.get_run("p1")
    assert parent is not None and parent.status is RunStatus.COMPLETED
    fork = plan_fork(plan, "p1", await store.get_steps("p1"), plan, "b")
    rows = fork_run(
        plan, parent, fork, run_id="f1", input_json=b"{}", overrides={}, by="t", now=NOW + 1
    )

    created, fresh = await store.create_run(*rows)

    assert fresh and (created.parent_run, created.forked_from) == ("p1", "b")
    run = await store.get_run("f1")
    assert run is not None and (run.parent_run, run.forked_from, run.unfinished) == ("p1", "b", 2)
    steps = {s.name: s for s in await store.get_steps("f1")}
    assert {n: (s.status, s.unmet, s.reused_from) for n, s in steps.items()} == {
        "a": (StepStatus.DONE, 0, "p1"),
        "b": (StepStatus.READY, 0, None),
        "c": (StepStatus.PENDING, 1, None),
        "x": (StepStatus.DONE, 0, "p1"),
    }
    assert steps["a"].output == b'"a"'
    [b] = await claim(store, [plan], now=NOW + 2)  # only what runs again is claimable
    assert b.step == "b"
    await store.complete([ok(b, "B")], NOW + 3)
    [c] = await claim(store, [plan], now=NOW + 3)
    await store.complete([ok(c, "C")], NOW + 4)
    run = await store.get_run("f1")
    assert run is not None and run.status is RunStatus.COMPLETED
    assert run.output == b'{"c":"C","x":"x"}'
