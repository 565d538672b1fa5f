"""Waiting for one step (`engine.wait_step`, `RunHandle.step(name).result()`), on every store:
its output as soon as it is done, while the rest of the run goes on; StepFailed, StepSkipped or
StepCancelled with how it ended; woken by commits of this process and, on a store that pushes
(PostgreSQL), of others; bad arguments refused with a message."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plait
from plait.engine import step_wait
from plait.stores import open_store
from plait.testing.contract.conftest import Backend

DEADLINE = 20.0  # seconds any one wait may take before the test fails
SLOW = 10 * DEADLINE  # a poll interval no test can wait for: what arrives in time was woken for


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def workflow(gate: threading.Event) -> plait.Workflow:
    """first → held (waits for the gate); bad fails → after_bad is skipped; approve waits."""
    wf = plait.Workflow("wait_one_step")

    def held(first: int) -> int:
        if not gate.wait(DEADLINE):
            raise TimeoutError("the test never opened the gate")
        return first + 1

    def bad(n: int) -> int:
        raise plait.Permanent("no good", code="nope")

    wf.add_step("first", lambda n: n * 10)
    wf.add_step("held", held)
    wf.add_step("bad", bad)
    wf.add_step("after_bad", lambda bad: bad, optional=True)
    wf.add_step("approve", lambda first: first, approval=True)
    return wf


def serving(engine: plait.Engine, run: plait.RunHandle) -> threading.Thread:
    thread = threading.Thread(
        target=engine.run_worker, kwargs={"until": run, "timeout": DEADLINE}, daemon=True
    )
    thread.start()
    return thread


def test_a_step_s_output_and_how_others_ended_while_the_run_goes_on(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nothing looks at the store by itself within the deadline: every answer was woken for
    monkeypatch.setattr(step_wait, "FIRST_POLL", SLOW)
    gate = threading.Event()
    with plait.Engine(store_url, poll_interval=SLOW, sweep_interval=SLOW) as engine:
        run = engine.start(workflow(gate), {"n": 4})
        worker = serving(engine, run)
        try:
            assert engine.wait_step(run.id, "first", timeout=DEADLINE) == 40
            assert run.step("first").result(timeout=DEADLINE) == 40
            with pytest.raises(plait.StepFailed) as failed:
                run.step("bad").result(timeout=DEADLINE)
            assert str(failed.value) == f"step 'bad' of run {run.id!r} failed: [nope] no good"
            assert failed.value.error == plait.StepError("nope", "no good")
            assert (failed.value.run_id, failed.value.step) == (run.id, "bad")
            with pytest.raises(plait.StepSkipped) as skipped:
                engine.wait_step(run.id, "after_bad", timeout=DEADLINE)
            assert skipped.value.reason is not None and "bad" in skipped.value.reason
            assert str(skipped.value) == (
                f"step 'after_bad' of run {run.id!r} was skipped: {skipped.value.reason}"
            )
            assert engine.get_run(run.id).status is plait.RunStatus.RUNNING  # held is held
            with pytest.raises(TimeoutError) as late:
                engine.wait_step(run.id, "held", timeout=0)
            assert str(late.value) == (
                f"step 'held' of run {run.id!r} did not end within 0s (it is running)"
            )
            gate.set()
            assert run.step("held").result(timeout=DEADLINE) == 41
            engine.cancel(run.id, "enough")
            with pytest.raises(plait.StepCancelled) as cancelled:
                engine.wait_step(run.id, "approve", timeout=DEADLINE)
            assert str(cancelled.value) == f"step 'approve' of run {run.id!r} was cancelled: enough"
            assert cancelled.value.reason == "enough" and cancelled.value.error is None
        finally:
            gate.set()
            worker.join(DEADLINE)


async def test_wait_step_async_on_a_user_loop(store_url: str) -> None:
    import asyncio

    wf = plait.Workflow("wait_async")
    wf.add_step("a", lambda n: {"n": n})
    wf.add_step("b", lambda a: a["n"] + 1)
    async with plait.Engine(store_url) as engine:
        run = await engine.start_async(wf, {"n": 2})
        worker = asyncio.create_task(engine.run_worker_async(until=run, timeout=DEADLINE))
        assert await run.step("b").result_async(timeout=DEADLINE) == 3
        assert await engine.wait_step_async(run.id, "a", timeout=DEADLINE) == {"n": 2}
        await worker


def test_bad_arguments_are_clear_errors(engine: plait.Engine) -> None:
    gate = threading.Event()
    run = engine.start(workflow(gate), {"n": 1})
    with pytest.raises(plait.RunNotFound, match=r"^no run with id 'ghost' in "):
        engine.wait_step("ghost", "first", timeout=1)
    with pytest.raises(plait.InputError) as unknown:
        engine.wait_step(run.id, "nothing", timeout=1)
    assert str(unknown.value) == (
        f"wait_step: run {run.id!r} has no step 'nothing' "
        "(its steps: first, held, bad, after_bad, approve)"
    )
    with pytest.raises(plait.InputError, match=r"^wait_step: run_id must be a string, got int$"):
        engine.wait_step(42, "first")  # type: ignore[arg-type]  # the error tested
    with pytest.raises(
        plait.InputError, match=r"^wait_step: step must be a step name \(a string\), got None$"
    ):
        run.step(None)  # type: ignore[arg-type]  # the error tested
    with pytest.raises(plait.InputError, match=r"timeout must be None \(no limit\) or a finite"):
        engine.wait_step(run.id, "first", timeout=-1)
    with pytest.raises(TimeoutError, match=r"did not end within 0s \(it is ready\)$"):
        engine.wait_step(run.id, "first", timeout=0)
    # nothing was written by any of these
    assert [e.type for e in engine.events(run.id)] == ["run_started"]


def test_another_process_s_commits_reach_the_waiter(
    durable_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second Engine on the same store stands for another process: its commits do not fire
    this one's wake-ups, so the waiter sees them by the store's push, or else by its poll."""
    url = durable_backend.url(tmp_path)
    pushed = "push_events" in open_store(url).capabilities
    options: dict[str, Any] = {}
    if pushed:
        monkeypatch.setattr(step_wait, "FIRST_POLL", SLOW)
        options = {"poll_interval": SLOW, "sweep_interval": SLOW}
    gate = threading.Event()
    wf = workflow(gate)
    with plait.Engine(url, **options) as waiter, plait.Engine(url, lease=5.0) as other:
        run = other.start(wf, {"n": 5})
        if pushed:
            deadline = time.monotonic() + DEADLINE
            waiter.get_run(run.id)  # opens the store, whose listener then goes live
            while not waiter._rt.push_live:
                assert time.monotonic() < deadline, "the store's notifications never came"
                time.sleep(0.01)  # polling interval of a deadline-bounded condition wait
        worker = serving(other, run)
        try:
            gate.set()
            assert waiter.wait_step(run.id, "held", timeout=DEADLINE) == 51
        finally:
            gate.set()
            other.cancel(run.id)
            worker.join(DEADLINE)
