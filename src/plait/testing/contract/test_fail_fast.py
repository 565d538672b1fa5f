"""Fail-fast workflows on every store: the first failure that fails a run ends it at once, its
waiting steps cancelled and its running ones interrupted, as a cancel does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def fail_fast_workflow(name: str, *, fail_fast: bool, optional: bool = False) -> Any:
    wf = plait.Workflow(name, fail_fast=fail_fast)
    started = threading.Event()

    @wf.step(optional=optional)
    def broken() -> None:
        started.wait(10)  # fail once `slow` runs
        raise plait.Permanent("card declined")

    @wf.step
    def slow(ctx: plait.StepContext) -> str:
        started.set()
        deadline = time.monotonic() + (30 if fail_fast and not optional else 0.5)
        while time.monotonic() < deadline:
            ctx.check_cancelled()
            time.sleep(0.02)
        return "done"

    @wf.step
    def after_slow(slow: str) -> str:
        return slow

    return wf


def test_the_first_failure_ends_the_run_and_interrupts_the_rest(engine: plait.Engine) -> None:
    wf = fail_fast_workflow("ff", fail_fast=True)
    handle = engine.start(wf, {})
    began = time.monotonic()
    engine.run_worker(until=handle, timeout=60, concurrency=4)
    assert time.monotonic() - began < 15  # `slow` would have run 30 s

    with pytest.raises(plait.RunFailed):
        handle.result()
    run = engine.get_run(handle.id)
    assert run.status is plait.RunStatus.FAILED
    assert run.error == "step 'broken' failed: card declined"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the interrupted step's outcome is recorded after
        steps = {s.name: s.status for s in engine.steps(handle.id)}
        if steps["slow"] is not plait.StepStatus.RUNNING:
            break
        time.sleep(0.05)
    assert steps["broken"] is plait.StepStatus.FAILED
    assert steps["slow"] is plait.StepStatus.CANCELLED  # interrupted: its worker recorded it
    assert steps["after_slow"] is plait.StepStatus.CANCELLED
    ended = [e for e in engine.events(handle.id) if e.type == "run_failed"]
    assert len(ended) == 1
    assert ended[0].payload["code"] == "fail_fast"
    assert ended[0].payload["interrupting"] == ["slow"]
    cancelled = [e.step for e in engine.events(handle.id) if e.type == "step_cancelled"]
    assert "after_slow" in cancelled


def test_without_fail_fast_the_other_branch_finishes(engine: plait.Engine) -> None:
    wf = fail_fast_workflow("no-ff", fail_fast=False)
    handle = engine.start(wf, {})
    engine.run_worker(until=handle, timeout=60, concurrency=4)
    with pytest.raises(plait.RunFailed):
        handle.result()
    steps = {s.name: s.status for s in engine.steps(handle.id)}
    assert steps == {
        "broken": plait.StepStatus.FAILED,
        "slow": plait.StepStatus.DONE,
        "after_slow": plait.StepStatus.DONE,
    }


def test_an_optional_failure_does_not_end_a_fail_fast_run(engine: plait.Engine) -> None:
    wf = fail_fast_workflow("ff-optional", fail_fast=True, optional=True)
    handle = engine.start(wf, {})
    engine.run_worker(until=handle, timeout=60, concurrency=4)
    assert handle.result() == {"broken": None, "after_slow": "done"}
