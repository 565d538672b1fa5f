"""Events users add to a run's log, on every store: `ctx.emit` from a step, committed with its
attempt's success only, before its `step_completed`; `engine.annotate` from outside, on a run
of any status; both stored as `user.<type>` and delivered by `events` and `watch`; bad types,
payloads and runs refused with a message, nothing written."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import plait

DEADLINE = 20.0


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def emitter() -> plait.Workflow:
    wf = plait.Workflow("emits", retry=plait.Retry(attempts=2, delay=0.0, jitter=0.0))

    @wf.step()
    def work(ctx: plait.StepContext, n: int) -> int:
        ctx.emit("progress", {"done": 1, "of": 2, "attempt": ctx.attempt})
        if ctx.attempt == 1:
            raise plait.Retryable("not yet")  # its event is never committed
        ctx.emit("progress", {"done": 2, "of": 2})
        ctx.emit("model.loaded")  # no payload
        return n

    @wf.step()
    def after(work: int) -> int:
        return work

    return wf


def user(events: list[plait.Event]) -> list[tuple[str, str | None, dict[str, object]]]:
    return [(e.type, e.step, e.payload) for e in events if e.type.startswith("user.")]


def test_a_step_s_events_are_committed_with_its_success_only(engine: plait.Engine) -> None:
    run = engine.start(emitter(), {"n": 3})
    engine.run_worker(until=run, timeout=DEADLINE)
    assert run.result(timeout=DEADLINE) == {"after": 3}
    log = engine.events(run.id)
    assert user(log) == [
        ("user.progress", "work", {"step": "work", "attempt": 2,
                                   "data": {"done": 1, "of": 2, "attempt": 2}}),
        ("user.progress", "work", {"step": "work", "attempt": 2, "data": {"done": 2, "of": 2}}),
        ("user.model.loaded", "work", {"step": "work", "attempt": 2, "data": None}),
    ]  # fmt: skip
    types = [(e.type, e.step) for e in log]
    first = types.index(("user.progress", "work"))
    assert types.index(("step_completed", "work")) == first + 3  # right after its events
    assert [e.seq for e in log] == list(range(1, len(log) + 1))


def test_annotations_from_outside_on_a_running_and_an_ended_run(engine: plait.Engine) -> None:
    gate = threading.Event()
    wf = plait.Workflow("annotated")

    @wf.step()
    def held(n: int) -> int:
        if not gate.wait(DEADLINE):
            raise TimeoutError("the test never opened the gate")
        return n

    run = engine.start(wf, {"n": 1})
    worker = threading.Thread(
        target=engine.run_worker, kwargs={"until": run, "timeout": DEADLINE}, daemon=True
    )
    worker.start()
    watched: list[plait.Event] = []
    watcher = threading.Thread(target=lambda: watched.extend(engine.watch(run.id)), daemon=True)
    watcher.start()
    try:
        assert engine.annotate(run.id, "deploy", {"version": "1.2"}, by="ci") is None
    finally:
        gate.set()
        worker.join(DEADLINE)
    watcher.join(DEADLINE)
    assert not watcher.is_alive()
    engine.annotate(run.id, "reviewed", by="eve")  # an ended run takes notes too
    expected = [
        ("user.deploy", None, {"by": "ci", "data": {"version": "1.2"}}),
        ("user.reviewed", None, {"by": "eve", "data": None}),
    ]
    assert user(engine.events(run.id)) == expected
    assert user(watched) == expected[:1]  # the watch ended with the run
    assert user(list(engine.watch(run.id))) == expected
    assert engine.get_run(run.id).status is plait.RunStatus.COMPLETED  # unchanged by a note


def test_bad_annotations_are_refused_and_write_nothing(engine: plait.Engine) -> None:
    wf = plait.Workflow("quiet")
    wf.add_step("a", lambda n: n)
    run = engine.start(wf, {"n": 1})
    before = engine.events(run.id)
    rule = r"an event type is 1-64 letters, digits, '_', '-' or '\.', starting with a letter "
    for bad in ("", "1st", "has space", "x" * 65, "user/x", "[bold]"):
        with pytest.raises(plait.InputError, match=rf"^{rule}\(it is stored as 'user\.<type>'\)"):
            engine.annotate(run.id, bad)
    with pytest.raises(plait.InputError, match=rf"^{rule}.*got 5$"):
        engine.annotate(run.id, 5)  # type: ignore[arg-type]  # the error tested
    with pytest.raises(plait.InputError, match=r"^event 'note': payload is not JSON: "):
        engine.annotate(run.id, "note", {"x": object()})
    with pytest.raises(
        plait.InputError,
        match=r"^event 'note': payload is 70010 bytes of JSON, more than the 65536 an event may "
        r"hold \(keep large data in a record or an artifact\)$",
    ):
        engine.annotate(run.id, "note", "x" * 70_008)
    with pytest.raises(plait.InputError, match=r"^run_id must be a string, got int$"):
        engine.annotate(7, "note")  # type: ignore[arg-type]  # the error tested
    with pytest.raises(plait.InputError, match=r"^by must be a non-empty string"):
        engine.annotate(run.id, "note", by="")
    with pytest.raises(plait.RunNotFound, match=r"^no run with id 'ghost' in "):
        engine.annotate("ghost", "note")
    assert engine.events(run.id) == before


def test_a_bad_emit_fails_its_attempt_with_the_message(engine: plait.Engine) -> None:
    wf = plait.Workflow("bad_emit")

    @wf.step()
    def loud(ctx: plait.StepContext) -> None:
        ctx.emit("fine", 1)
        ctx.emit("not fine!", 2)

    run = engine.start(wf, {})
    engine.run_worker(until=run, timeout=DEADLINE)
    with pytest.raises(plait.RunFailed) as failed:
        run.result(timeout=DEADLINE)
    error = failed.value.failures["loud"]
    assert error.code == "InputError"
    assert (
        error.message.startswith("an event type is 1-64 letters") and "'not fine!'" in error.message
    )
    assert user(engine.events(run.id)) == []  # not even the good one: the attempt failed
