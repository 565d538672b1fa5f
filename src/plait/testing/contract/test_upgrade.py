"""Moving runs in flight to a new version (issue 17, item 2), on every store: what fits moves, what
does not is refused with its reason per run, dry_run changes nothing, bad input is refused at
once, and a move races safely against running workers."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator

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


def audit() -> str:
    return "ok"


def shop(
    version: str = "1",
    *,
    retry: int = 1,
    labelled: bool = False,
    gate: bool = True,
    total_after: tuple[str, ...] = (),
) -> plait.Workflow:
    """fetch → total (an approval gate, so runs stay in flight) [→ label]."""
    wf = plait.Workflow("upgrades", version=version, retry=plait.Retry(attempts=retry))
    wf.add_step("fetch", fetch)
    wf.add_step("total", total, approval=gate, after=list(total_after))
    if labelled:
        wf.add_step("label", label)
    return wf


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def waiting(engine: plait.Engine, wf: plait.Workflow, *run_ids: str) -> None:
    """Run a worker of `wf` until every run's approval waits, then stop it."""
    worker = threading.Thread(target=lambda: engine.run_worker(workflows=[wf], timeout=60))
    worker.start()
    try:
        wait_until(
            lambda: {w.run_id for w in engine.list_waiting()} >= set(run_ids), "the approvals"
        )
    finally:
        engine.stop_workers()
        worker.join(timeout=30)
    assert not worker.is_alive()


def test_a_run_in_flight_moves_to_a_new_version_and_its_workers_finish_it(
    engine: plait.Engine,
) -> None:
    v1, v2 = shop("1"), shop("2", retry=3)
    handle = engine.start(v1, {"n": 1}, run_id="r1")
    waiting(engine, v1, "r1")
    [dry] = engine.upgrade("r1", to=v2, dry_run=True)
    assert (dry.status, dry.reason, dry.to_fingerprint) == ("would upgrade", None, v2.fingerprint)
    assert engine.get_run("r1").fingerprint == v1.fingerprint  # dry_run changed nothing
    assert not any(e.type == "run_upgraded" for e in engine.events("r1"))

    [done] = engine.upgrade("r1", to=v2, by="ops")
    assert (done.status, done.from_fingerprint, done.to_fingerprint) == (
        "upgraded", v1.fingerprint, v2.fingerprint,
    )  # fmt: skip
    run = engine.get_run("r1")
    assert (run.fingerprint, run.version) == (v2.fingerprint, "2")
    [event] = [e for e in engine.events("r1") if e.type == "run_upgraded"]
    assert event.payload["from_fingerprint"] == v1.fingerprint
    assert (event.payload["version"], event.payload["by"]) == ("2", "ops")
    assert engine.upgrade("r1", to=v2)[0].status == "unchanged"
    engine.approve("r1", "total")
    engine.run_worker(workflows=[v2], until=handle, timeout=30)  # only v2 serves it now
    assert handle.result(timeout=10) == {"total": 4}
    assert {s.name: s.attempts for s in engine.steps("r1")} == {"fetch": 1, "total": 1}


def test_runs_that_do_not_fit_are_refused_each_with_its_reason(engine: plait.Engine) -> None:
    v1 = shop("1")
    for run_id in ("a", "b"):
        engine.start(v1, {"n": 1}, run_id=run_id)
    waiting(engine, v1, "a", "b")
    engine.cancel("b")
    # audit is added after fetch, which has ended: not downstream of unfinished work
    late = plait.Workflow("upgrades", version="3")
    late.add_step("fetch", fetch)
    late.add_step("total", total, approval=True)
    late.add_step("audit", audit, after=["fetch"])
    [refused] = engine.upgrade("a", to=late)
    assert refused.status == "refused"
    assert refused.reason == (
        "version 3 adds step 'audit' after steps that have all ended (fetch): fork the run to "
        "run it"
    )
    # a done step removed
    gone = plait.Workflow("upgrades", version="4")
    gone.add_step("total", lambda: 1, approval=True)
    assert engine.upgrade("a", to=gone)[0].reason == (
        f"step 'fetch' is done (attempt 1) and version 4 ({gone.fingerprint}) removes it"
    )
    # a done step whose dependencies changed
    moved = plait.Workflow("upgrades", version="5")
    moved.add_step("zero", lambda: 0)
    moved.add_step("fetch", fetch, after=["zero"])
    moved.add_step("total", total, approval=True)
    assert engine.upgrade("a", to=moved)[0].reason == (
        "step 'fetch' is done and its dependencies changed (none -> zero (after))"
    )
    # a run that fits by gaining a step (label added after total, which has not run)
    grown = shop("6", labelled=True)
    [would] = engine.upgrade("a", to=grown, dry_run=True)
    assert (would.status, would.added, would.reason) == ("would upgrade", ("label",), None)
    assert "label" not in {s.name for s in engine.steps("a")}  # dry_run changed nothing
    [moved_up] = engine.upgrade("a", to=grown)
    assert (moved_up.status, moved_up.added) == ("upgraded", ("label",))
    assert {s.name: s.status.value for s in engine.steps("a")}["label"] == "pending"
    # an ended run, by workflow=: every run in flight only
    reports = engine.upgrade(workflow="upgrades", to=shop("7", retry=2))
    assert [(r.run_id, r.status) for r in reports] == [("a", "upgraded")]
    assert engine.upgrade("b", to=shop("7", retry=2))[0].reason == (
        "run 'b' is cancelled: only runs in flight move"
    )
    assert engine.get_run("a").version == "7" and engine.get_run("b").version == "1"


def test_bad_upgrades_are_refused_at_once_and_change_nothing(engine: plait.Engine) -> None:
    v1 = shop("1")
    engine.start(v1, {"n": 1}, run_id="r1")
    other = plait.Workflow("other", version="2")
    other.add_step("fetch", fetch)
    cases: list[tuple[Callable[[], object], type[Exception], str]] = [
        (
            lambda: engine.upgrade("r1", to=other),
            plait.InputError,
            "cannot upgrade run 'r1' of workflow 'upgrades' to the graph of workflow 'other'",
        ),
        (
            lambda: engine.upgrade(workflow="upgrades", to=other),
            plait.InputError,
            "cannot upgrade runs of workflow 'upgrades' to the graph of workflow 'other'",
        ),
        (
            lambda: engine.upgrade("r1", workflow="upgrades", to=v1),
            plait.InputError,
            "upgrade takes a run id or workflow=NAME (every run in flight), not both",
        ),
        (
            lambda: engine.upgrade(to=v1),
            plait.InputError,
            "upgrade takes a run id or workflow=NAME (every run in flight), not both",
        ),
        (
            lambda: engine.upgrade("r1", to="upgrades"),  # type: ignore[arg-type]
            plait.InputError,
            "to must be a plait.Workflow, got str",
        ),
        (lambda: engine.upgrade("nope", to=v1), plait.RunNotFound, "no run with id 'nope'"),
        (
            lambda: engine.upgrade(workflow="other", to=other),
            plait.WorkflowNotFound,
            "no workflow 'other' is registered in this store",
        ),
        (
            lambda: engine.upgrade("r1", to=shop("1", labelled=True)),
            plait.DefinitionError,
            "workflow 'upgrades' version '1' is already registered with another graph",
        ),
    ]
    for call, error, message in cases:
        with pytest.raises(error) as caught:
            call()
        assert message in str(caught.value)
    assert engine.get_run("r1").fingerprint == v1.fingerprint
    assert [i.fingerprint for i in engine.workflows()] == [v1.fingerprint]


def test_upgrades_race_running_workers_safely(engine: plait.Engine) -> None:
    """Runs of a three-step chain go through a worker serving both versions while every run in
    flight is moved: each step runs once, every run completes, and a move is refused only for a
    run that ended first."""
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def make(version: str) -> plait.Workflow:
        wf = plait.Workflow("race", version=version, retry=plait.Retry(attempts=int(version)))

        def one(n: int) -> int:
            with lock:
                calls["one"] += 1
            return n

        def two(one: int) -> int:
            with lock:
                calls["two"] += 1
            return one + 1

        def three(two: int) -> int:
            with lock:
                calls["three"] += 1
            return two * 10

        wf.add_step("one", one)
        wf.add_step("two", two)
        wf.add_step("three", three)
        return wf

    v1, v2 = make("1"), make("2")
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
    assert [h.result(timeout=10) for h in handles] == [{"three": (i + 1) * 10} for i in range(30)]
    assert calls == {"one": 30, "two": 30, "three": 30}  # no step ran twice
    for report in reports:
        run = engine.get_run(report.run_id)
        if report.status == "upgraded":
            assert run.fingerprint == v2.fingerprint
        else:
            assert report.status == "refused", report
            assert report.reason is not None and "only runs in flight move" in report.reason
            assert run.fingerprint == v1.fingerprint
    assert all(engine.get_run(h.id).status is RunStatus.COMPLETED for h in handles)
