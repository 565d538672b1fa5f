"""Moving runs in flight to a new graph (issue 17, item 2), on every store: steps added downstream
of unfinished work run, steps not started are dropped or take their new dependencies and options,
steps done keep their outputs; what does not fit (a running step removed or changed) is refused
with its reason and changes nothing; dry_run changes nothing; and moves race running workers
safely (fenced: a step claimed meanwhile makes a move decide again, never corrupt the run)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest

import plait
from plait.core.rows import RunStatus
from plait.testing.contract.helpers import wait_until


def fetch(n: int) -> int:
    return n + 1


def total(fetch: int) -> int:
    return fetch * 2


def label(total: int) -> str:
    return f"{total} EUR"


def review(total: int) -> str:
    return f"reviewed {total}"


def shop(version: str, *, gate: bool = True) -> plait.Workflow:
    """fetch → total (an approval gate, so runs stay in flight)."""
    wf = plait.Workflow("graphs", version=version)
    wf.add_step("fetch", fetch)
    wf.add_step("total", total, approval=gate)
    return wf


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def waiting(engine: plait.Engine, wf: plait.Workflow, run_id: str) -> None:
    """Run a worker of `wf` until the run's approval waits, then stop it."""
    worker = threading.Thread(target=lambda: engine.run_worker(workflows=[wf], timeout=60))
    worker.start()
    try:
        wait_until(lambda: run_id in {w.run_id for w in engine.list_waiting()}, "the approval")
    finally:
        engine.stop_workers()
        worker.join(timeout=30)
    assert not worker.is_alive()


def statuses(engine: plait.Engine, run_id: str) -> dict[str, str]:
    return {s.name: s.status.value for s in engine.steps(run_id)}


def test_a_step_added_after_unfinished_work_runs_and_done_steps_keep_their_outputs(
    engine: plait.Engine,
) -> None:
    v1 = shop("1")
    v2 = shop("2")
    v2.add_step("label", label)
    handle = engine.start(v1, {"n": 1}, run_id="r1")
    waiting(engine, v1, "r1")
    before = engine.events("r1")

    [dry] = engine.upgrade("r1", to=v2, dry_run=True)
    assert (dry.status, dry.added, dry.dropped, dry.changed, dry.reason) == (
        "would upgrade", ("label",), (), (), None,
    )  # fmt: skip
    assert statuses(engine, "r1") == {"fetch": "done", "total": "waiting"}
    assert engine.events("r1") == before  # dry_run changed nothing

    [done] = engine.upgrade("r1", to=v2, by="ops")
    assert (done.status, done.added) == ("upgraded", ("label",))
    assert statuses(engine, "r1") == {"fetch": "done", "total": "waiting", "label": "pending"}
    [event] = [e for e in engine.events("r1") if e.type == "run_upgraded"]
    assert (event.payload["added"], event.payload["dropped"]) == (["label"], [])
    engine.approve("r1", "total")
    engine.run_worker(workflows=[v2], until=handle, timeout=30)
    assert handle.result(timeout=10) == {"label": "4 EUR"}  # the new sink
    assert {s.name: s.attempts for s in engine.steps("r1")} == {
        "fetch": 1, "total": 1, "label": 1,
    }  # fmt: skip


def test_steps_not_started_are_dropped_or_take_their_new_dependencies_and_options(
    engine: plait.Engine,
) -> None:
    v1 = shop("1")
    v1.add_step("label", label)
    handle = engine.start(v1, {"n": 1}, run_id="r1")
    waiting(engine, v1, "r1")
    # total loses its gate; label is dropped, review added after total
    v2 = plait.Workflow("graphs", version="2")
    v2.add_step("fetch", fetch)
    v2.add_step("total", total)
    v2.add_step("review", review)

    [done] = engine.upgrade("r1", to=v2)

    assert (done.status, done.added, done.dropped, done.changed) == (
        "upgraded", ("review",), ("label",), ("total",),
    )  # fmt: skip
    assert statuses(engine, "r1") == {"fetch": "done", "total": "ready", "review": "pending"}
    engine.run_worker(workflows=[v2], until=handle, timeout=30)  # no approval needed now
    assert handle.result(timeout=10) == {"review": "reviewed 4"}


def test_a_changed_step_waits_for_its_new_dependencies(engine: plait.Engine) -> None:
    v1 = shop("1")
    v1.add_step("label", label)
    handle = engine.start(v1, {"n": 1}, run_id="r1")
    waiting(engine, v1, "r1")
    v2 = shop("2")  # label waits for review too, added after total
    v2.add_step("review", review)
    v2.add_step("label", label, after=["review"])

    [done] = engine.upgrade("r1", to=v2)

    assert (done.status, done.added, done.changed) == ("upgraded", ("review",), ("label",))
    assert statuses(engine, "r1") == {
        "fetch": "done", "total": "waiting", "label": "pending", "review": "pending",
    }  # fmt: skip
    engine.approve("r1", "total")
    engine.run_worker(workflows=[v2], until=handle, timeout=30)
    assert handle.result(timeout=10) == {"label": "4 EUR"}
    seq = {(e.type, e.step): e.seq for e in engine.events("r1")}
    assert seq[("step_completed", "review")] < seq[("step_started", "label")]


def test_dropping_the_last_unfinished_steps_completes_the_run(engine: plait.Engine) -> None:
    v1 = shop("1")
    engine.start(v1, {"n": 1}, run_id="r1")
    waiting(engine, v1, "r1")
    v2 = plait.Workflow("graphs", version="2")
    v2.add_step("fetch", fetch)

    [done] = engine.upgrade("r1", to=v2)

    assert (done.status, done.dropped) == ("upgraded", ("total",))
    run = engine.get_run("r1")
    assert (run.status, run.output) == (RunStatus.COMPLETED, {"fetch": 2})
    assert statuses(engine, "r1") == {"fetch": "done"}
    assert engine.list_waiting() == []


def test_labels_select_the_runs_of_a_workflow_to_move(engine: plait.Engine) -> None:
    v1 = shop("1")
    engine.start(v1, {"n": 1}, run_id="gold", labels={"tier": "gold"})
    engine.start(v1, {"n": 2}, run_id="plain")
    v2 = shop("2")
    v2.add_step("label", label)

    reports = engine.upgrade(workflow="graphs", to=v2, labels={"tier": "gold"})

    assert [(r.run_id, r.status) for r in reports] == [("gold", "upgraded")]
    assert engine.get_run("plain").fingerprint == v1.fingerprint
    with pytest.raises(plait.InputError) as caught:
        engine.upgrade("plain", to=v2, labels={"tier": "gold"})
    assert str(caught.value) == (
        "upgrade takes labels with workflow=NAME (to select runs), not a run id"
    )
    with pytest.raises(plait.InputError, match="upgrade: invalid label key 'a b'"):
        engine.upgrade(workflow="graphs", to=v2, labels={"a b": "1"})
    assert engine.get_run("plain").fingerprint == v1.fingerprint


def test_a_running_step_removed_or_changed_is_refused_and_nothing_changes(
    engine: plait.Engine,
) -> None:
    release = threading.Event()

    def slow(n: int) -> int:
        assert release.wait(30)
        return n

    def make(version: str, *, priority: int = 0, keep: bool = True) -> plait.Workflow:
        wf = plait.Workflow("graphs", version=version)
        if keep:
            wf.add_step("slow", slow, priority=priority)
        wf.add_step("after", lambda: "ok")
        return wf

    v1 = make("1")
    handle = engine.start(v1, {"n": 1}, run_id="r1")
    worker = threading.Thread(
        target=lambda: engine.run_worker(workflows=[v1], until=handle, timeout=60)
    )
    worker.start()
    try:
        wait_until(lambda: statuses(engine, "r1").get("slow") == "running", "slow to run")
        removed, changed = make("2", keep=False), make("3", priority=5)
        [gone] = engine.upgrade("r1", to=removed)
        assert (gone.status, gone.reason) == (
            "refused",
            f"step 'slow' is running (attempt 1) and version 2 ({removed.fingerprint}) removes it",
        )
        [other] = engine.upgrade("r1", to=changed, dry_run=True)
        assert (other.status, other.reason) == (
            "refused",
            "step 'slow' is running (attempt 1) and version 3 changes its options (priority)",
        )
        assert engine.upgrade("r1", to=changed)[0].status == "refused"
        assert engine.get_run("r1").fingerprint == v1.fingerprint
        assert not any(e.type == "run_upgraded" for e in engine.events("r1"))
    finally:
        release.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert handle.result(timeout=10) == {"slow": 1, "after": "ok"}


def test_moves_that_add_steps_race_running_workers_safely(engine: plait.Engine) -> None:
    """Runs of a chain go through a worker serving both versions while every run in flight is
    moved to a version that adds a step after the last one: a run moved gains it, a run not
    moved (it ended, or its last step had begun) is refused with a reason saying why; each
    step runs once per run, and every run completes with the output of its graph."""
    calls: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()

    def counted(name: str, n: int) -> None:
        with lock:
            calls[(name, n)] += 1

    def one(n: int) -> int:
        counted("one", n)
        return n

    def two(one: int, n: int) -> int:
        counted("two", n)
        return one + 1

    def three(two: int, n: int) -> int:
        counted("three", n)
        return two * 10

    def four(three: int, n: int) -> int:
        counted("four", n)
        return three + 1

    def make(version: str, *, longer: bool) -> plait.Workflow:
        wf = plait.Workflow("race", version=version)
        wf.add_step("one", one)
        wf.add_step("two", two)
        wf.add_step("three", three)
        if longer:
            wf.add_step("four", four)
        return wf

    v1, v2 = make("1", longer=False), make("2", longer=True)
    handles = [engine.start(v1, {"n": i}, run_id=f"race-{i}") for i in range(30)]
    worker = threading.Thread(
        target=lambda: engine.run_worker(workflows=[v1, v2], until=handles, timeout=120)
    )
    worker.start()
    try:
        reports = engine.upgrade(workflow="race", to=v2)
    finally:
        worker.join(timeout=120)
    assert not worker.is_alive()
    reasons = (
        "only runs in flight move",
        "adds step 'four' after steps that have all ended",
        "step 'three' is running (attempt 1) and version 2 changes its dependencies",
        "changed while it was being moved",
    )
    for i, report in enumerate(sorted(reports, key=lambda r: int(r.run_id.split("-")[1]))):
        run = engine.get_run(report.run_id)
        assert run.status is RunStatus.COMPLETED, run
        if report.status == "upgraded":
            assert (run.fingerprint, run.output) == (v2.fingerprint, {"four": (i + 1) * 10 + 1})
            assert calls[("four", i)] == 1
        else:
            assert report.status == "refused", report
            assert any(r in (report.reason or "") for r in reasons), report.reason
            assert (run.fingerprint, run.output) == (v1.fingerprint, {"three": (i + 1) * 10})
            assert calls[("four", i)] == 0
        assert [calls[(name, i)] for name in ("one", "two", "three")] == [1, 1, 1]
    assert len(reports) <= 30
