"""delete_run on every store: a finished run's steps and events go, an unfinished one is refused
unless force=True (which cancels it first), and records its steps wrote stay."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def workflow() -> plait.Workflow:
    wf = plait.Workflow("deletable")

    @wf.step
    def a(ctx: plait.StepContext) -> int:
        ctx.record("kept", ctx.run_id, {"by": "a"})
        return 1

    @wf.step
    def b(a: int) -> int:
        return a + 1

    return wf


def test_a_finished_run_is_deleted_with_its_steps_and_events(engine: plait.Engine) -> None:
    wf = workflow()
    handle = engine.start(wf, {})
    other = engine.start(wf, {})
    engine.run_worker(until=[handle, other], timeout=30)
    assert handle.result() == {"b": 2}

    engine.delete_run(handle.id)

    with pytest.raises(plait.RunNotFound):
        engine.get_run(handle.id)
    with pytest.raises(plait.RunNotFound):
        engine.steps(handle.id)
    assert engine.records("kept").get(handle.id) == ({"by": "a"}, 1)  # records stay
    assert other.result() == {"b": 2}  # another run is untouched
    assert [s.name for s in engine.steps(other.id)] == ["a", "b"]
    with pytest.raises(plait.RunNotFound):
        engine.delete_run(handle.id)
    # the id may be used again
    again = engine.start(wf, {}, run_id=handle.id)
    engine.run_worker(until=again, timeout=30)
    assert again.result() == {"b": 2}


def test_events_of_a_deleted_run_are_gone(engine: plait.Engine) -> None:
    handle = engine.start(workflow(), {}, run_id="gone")
    engine.run_worker(until=handle, timeout=30)
    assert engine.events("gone")
    engine.delete_run("gone")
    engine.start(workflow(), {}, run_id="gone")  # a new run of that id starts a new log
    assert [e.seq for e in engine.events("gone")] == [1]


def test_an_unfinished_run_is_refused_unless_forced(engine: plait.Engine) -> None:
    wf = plait.Workflow("slow")
    started, release = threading.Event(), threading.Event()

    @wf.step
    def wait(ctx: plait.StepContext) -> None:
        started.set()
        release.wait(10)

    handle = engine.start(wf, {})
    with pytest.raises(plait.RunStateError) as caught:
        engine.delete_run(handle.id)
    assert str(caught.value) == (
        f"run {handle.id!r} is pending: delete_run deletes finished runs only. Cancel it first, "
        "or pass force=True (which cancels it, then deletes)."
    )
    assert engine.get_run(handle.id).status is plait.RunStatus.PENDING

    engine.delete_run(handle.id, force=True)
    with pytest.raises(plait.RunNotFound):
        engine.get_run(handle.id)
    release.set()


def test_deleting_a_missing_run_says_so(engine: plait.Engine) -> None:
    with pytest.raises(plait.RunNotFound, match="nope"):
        engine.delete_run("nope")
    with pytest.raises(plait.RunStateError, match="force must be True or False, got 'yes'"):
        engine.delete_run("nope", force="yes")  # type: ignore[arg-type]  # the error under test
