"""Workflow versions (issue 17, item 3), on every store: `engine.workflows()` per version (when
registered, code digests, runs in flight, live workers serving it), `diff_versions`, a second
graph under a registered name and version refused (or warned), and the version a fork uses."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import plait
from plait.core.rows import StepStatus
from plait.testing.contract.conftest import Backend
from plait.testing.contract.helpers import wait_until


def fetch(n: int) -> int:
    return n + 1


def total_v1(fetch: int) -> int:
    return fetch * 2


def total_v2(fetch: int) -> int:
    return fetch * 200


def audit(fetch: int) -> str:
    return "ok"


def shop(
    version: str = "1",
    total: Callable[[int], int] = total_v1,
    *,
    audited: bool = False,
    priority: int = 0,
) -> plait.Workflow:
    wf = plait.Workflow("versions", version=version)
    wf.add_step("fetch", fetch)
    wf.add_step("total", total, priority=priority)
    if audited:
        wf.add_step("audit", audit)
    return wf


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def test_workflows_list_each_version_with_its_code_runs_in_flight_and_workers(
    engine: plait.Engine,
) -> None:
    v1, v2 = shop("1"), shop("2", audited=True)
    engine.register(v1)
    engine.start(v2, {"n": 1}, run_id="in-flight-1")
    engine.start(v2, {"n": 2}, run_id="in-flight-2")
    [i1, i2] = engine.workflows()
    assert (i1.version, i1.fingerprint, i1.runs_in_flight, i1.workers) == (
        "1",
        v1.fingerprint,
        0,
        (),
    )
    assert i1.code == {"fetch": v1.code_of("fetch"), "total": v1.code_of("total")}
    assert i1.code_changes == "deploy"
    assert (i2.version, i2.runs_in_flight) == ("2", 2)
    assert i2.registered_at >= i1.registered_at
    # a live worker serving v2 is named with it (and not with v1)
    gate = threading.Event()

    def held() -> None:
        gate.wait(30)

    blocked = plait.Workflow("blocked", version="1")
    blocked.add_step("held", held)
    handle = engine.start(blocked, {}, run_id="blocked-1")
    worker = threading.Thread(
        target=lambda: engine.run_worker(workflows=[v2, blocked], until=handle, timeout=60)
    )
    worker.start()
    try:
        wait_until(
            lambda: any(i.workers for i in engine.workflows() if i.fingerprint == v2.fingerprint),
            "the worker to register",
        )
        infos = {i.fingerprint: i for i in engine.workflows()}
        assert infos[v1.fingerprint].workers == ()
        assert len(infos[v2.fingerprint].workers) == 1
    finally:
        gate.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    wait_until(lambda: engine.get_run("in-flight-1").status.terminal, "the runs to end")
    infos = {i.fingerprint: i for i in engine.workflows()}
    assert infos[v2.fingerprint].runs_in_flight == 0


def test_a_second_graph_under_a_registered_name_and_version_is_refused(
    engine: plait.Engine,
) -> None:
    engine.register(shop("1"))
    with pytest.raises(plait.DefinitionError) as caught:
        engine.register(shop("1", audited=True))
    message = str(caught.value)
    assert "workflow 'versions' version '1' is already registered with another graph" in message
    assert "steps added: 'audit'" in message
    assert "new version string" in message
    with pytest.raises(plait.DefinitionError, match=r"options of 'total' changed \(priority\)"):
        engine.start(shop("1", priority=5), {"n": 1})
    assert [i.version for i in engine.workflows()] == ["1"]  # nothing written
    assert engine.list_runs().runs == []
    # the same graph with other code is a deploy, not a conflict
    engine.register(shop("1", total_v2))
    pinned = plait.Workflow("versions", version="1", code_changes="pin")
    pinned.add_step("fetch", fetch)
    pinned.add_step("total", total_v2)
    engine.register(pinned)
    assert len(engine.workflows()) == 2  # the pinned one is a fingerprint of its own


def test_version_conflicts_warn_registers_the_second_graph(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with plait.Engine(store_url, version_conflicts="warn") as eng:
        eng.register(shop("1"))
        with caplog.at_level(logging.WARNING, logger="plait"):
            eng.register(shop("1", audited=True))
        assert "already registered with another graph" in caplog.text
        assert "registered anyway (version_conflicts='warn')" in caplog.text
        assert len(eng.workflows()) == 2


def test_version_conflicts_must_be_refuse_or_warn(store_url: str) -> None:
    with pytest.raises(
        plait.PlaitError, match="version_conflicts must be 'refuse' or 'warn', got 'no'"
    ):
        plait.Engine(store_url, version_conflicts="no")


def test_diff_versions_names_steps_edges_options_and_code(engine: plait.Engine) -> None:
    a, b = shop("1"), shop("2", total_v2, audited=True, priority=3)
    engine.register(a)
    engine.register(b)
    found = engine.diff_versions("versions", "1", "2")
    assert found.graph and not found.same
    assert found.added == ["audit"] and found.removed == []
    assert found.options == {"total": ["priority"]}
    assert found.code == {"total": {"a": a.code_of("total"), "b": b.code_of("total")}}
    assert engine.diff_versions("versions", a.fingerprint, b.fingerprint).added == ["audit"]
    same = engine.diff_versions("versions", "1", "1")
    assert same.same and same.as_dict()["steps_added"] == []
    with pytest.raises(
        plait.InputError, match="workflow 'versions' has no version '9'; its versions: 1 "
    ):
        engine.diff_versions("versions", "1", "9")
    with pytest.raises(plait.WorkflowNotFound, match="no workflow 'nope' is registered"):
        engine.diff_versions("nope", "1", "2")
    with pytest.raises(plait.InputError, match="version b must be a string, got int"):
        engine.diff_versions("versions", "1", 2)  # type: ignore[arg-type]


# Forks across processes: two Engines on one store (the memory store is one per Engine).


def test_a_fork_uses_the_run_s_own_version_while_it_is_served(
    durable_backend: Backend, tmp_path: Path
) -> None:
    url = durable_backend.url(tmp_path)
    with plait.Engine(url) as first:
        v1 = shop("1")
        parent = first.start(v1, {"n": 1}, run_id="parent")
        first.run_worker(until=parent, timeout=30)
        with plait.Engine(url) as other:  # another process registers v2 later
            other.register(shop("2", audited=True))
        fork = first.fork("parent", "total")  # v1 is served here (this Engine has it)
        assert first.get_run(fork.id).fingerprint == v1.fingerprint


def test_a_fork_uses_the_newest_served_version_or_the_fingerprint_given(
    durable_backend: Backend, tmp_path: Path
) -> None:
    url = durable_backend.url(tmp_path)
    v1, v2, v3 = shop("1"), shop("2", audited=True), shop("3", priority=1)
    with plait.Engine(url) as first:
        parent = first.start(v1, {"n": 1}, run_id="parent")
        first.run_worker(until=parent, timeout=30)
        first.register(v3)  # the newest registered, which no one will serve
    with plait.Engine(url) as later:  # a new process: v1 and v3 served by no one, v2 here
        later.register(v2)
        served = later.fork("parent", "total", new_run_id="fork-served")
        assert later.get_run(served.id).fingerprint == v2.fingerprint
        steps = {s.name: s.status for s in later.steps("fork-served")}
        assert steps["fetch"] is StepStatus.DONE and steps["audit"] is StepStatus.READY
        chosen = later.fork("parent", "total", new_run_id="fork-v1", fingerprint=v1.fingerprint)
        assert later.get_run(chosen.id).fingerprint == v1.fingerprint
        with pytest.raises(
            plait.WorkflowNotFound,
            match="workflow 'versions' has no version of fingerprint 'f00'; its versions: 1 ",
        ):
            later.fork("parent", "total", fingerprint="f00")
        assert [
            r.id for r in later.list_runs(workflow="versions").runs if r.id.startswith("fork")
        ] == ["fork-v1", "fork-served"]
    with plait.Engine(url) as nobody:  # none is served: the last registered (v2), as before
        fork = nobody.fork("parent", "total", new_run_id="fork-newest")
        assert nobody.get_run(fork.id).fingerprint == v2.fingerprint
