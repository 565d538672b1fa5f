"""Catching steps, steps at the end of a run, and forward gotos, on every store: a step that
`catches=` another runs only if it failed and reads its error (`ctx.error`, through the store's
step inputs); `at_end="always"` runs however the run went and is no sink; `at_end="failed"`
runs only when the run fails; a `Goto` to a step downstream jumps over the steps between."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def payment_workflow(name: str, *, declined: bool) -> plait.Workflow:
    wf = plait.Workflow(name)

    @wf.step
    def charge(amount: int) -> dict[str, Any]:
        if declined:
            raise plait.Permanent("card declined", code="declined")
        return {"charged": amount}

    @wf.step
    def ship(charge: dict[str, Any]) -> str:
        return "shipped"

    @wf.step(catches="charge")
    def refund(ctx: plait.StepContext) -> dict[str, Any]:
        assert ctx.error is not None
        return {"refunded": ctx.error.to_dict()}

    @wf.step(at_end="failed")
    def alert(ctx: plait.StepContext) -> Any:
        return None if ctx.error is None else ctx.error.to_dict()

    @wf.step(at_end="always")
    def cleanup(ship: str | None) -> dict[str, Any]:
        return {"ship": ship}

    return wf


def statuses(engine: plait.Engine, run_id: str) -> dict[str, str]:
    return {s.name: s.status.value for s in engine.steps(run_id)}


def test_a_caught_failure_runs_its_catcher_with_the_error_and_the_run_completes(
    engine: plait.Engine,
) -> None:
    wf = payment_workflow("catch-declined", declined=True)
    handle = engine.start(wf, {"amount": 5})
    engine.run_worker(until=handle, timeout=60)

    assert handle.result(timeout=10) == {
        "ship": None,  # skipped: a branch not taken
        "refund": {"refunded": {"step": "charge", "code": "declined", "message": "card declined"}},
    }
    assert statuses(engine, handle.id) == {
        "charge": "failed",
        "ship": "skipped",
        "refund": "done",
        "alert": "skipped",  # the run did not fail
        "cleanup": "done",
    }
    steps = {s.name: s for s in engine.steps(handle.id)}
    assert steps["ship"].skip_reason == "condition: dependency 'charge' failed"
    assert steps["alert"].skip_reason == "condition: the run did not fail"
    assert steps["cleanup"].output == {"ship": None}


def test_without_a_failure_the_catcher_is_skipped_and_the_finally_step_sees_the_outputs(
    engine: plait.Engine,
) -> None:
    wf = payment_workflow("catch-paid", declined=False)
    handle = engine.start(wf, {"amount": 5})
    engine.run_worker(until=handle, timeout=60)

    assert handle.result(timeout=10) == {"ship": "shipped", "refund": None}
    steps = {s.name: s for s in engine.steps(handle.id)}
    assert steps["refund"].status is plait.StepStatus.SKIPPED
    assert steps["refund"].skip_reason == "condition: step 'charge' did not fail (it ended done)"
    assert steps["cleanup"].output == {"ship": "shipped"}


def test_a_failing_run_runs_its_at_end_failed_steps_then_its_finally_steps(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("at-end-failed")

    @wf.step
    def load() -> None:
        raise plait.Permanent("disk full", code="io")

    @wf.step(at_end="failed")
    def alert(ctx: plait.StepContext) -> Any:
        assert ctx.error is not None
        return ctx.error.to_dict()

    @wf.step(at_end="always")
    def cleanup(alert: Any) -> Any:
        return {"after": alert}

    handle = engine.start(wf, {})
    engine.run_worker(until=handle, timeout=60)

    with pytest.raises(plait.RunFailed):
        handle.result(timeout=10)
    run = engine.get_run(handle.id)
    assert run.error == "step 'load' failed: disk full"  # the catch-all does not hide it
    steps = {s.name: s for s in engine.steps(handle.id)}
    assert steps["alert"].output == {"step": "load", "code": "io", "message": "disk full"}
    assert steps["cleanup"].output == {"after": steps["alert"].output}


def test_a_failing_catcher_fails_the_run(engine: plait.Engine) -> None:
    wf = plait.Workflow("catcher-fails")

    @wf.step
    def charge() -> None:
        raise plait.Permanent("declined")

    @wf.step(catches="charge")
    def refund() -> None:
        raise plait.Permanent("refund refused")

    handle = engine.start(wf, {})
    engine.run_worker(until=handle, timeout=60)

    with pytest.raises(plait.RunFailed):
        handle.result(timeout=10)
    assert engine.get_run(handle.id).error == "step 'refund' failed: refund refused"


def test_a_forward_goto_jumps_over_the_steps_between(engine: plait.Engine) -> None:
    wf = plait.Workflow("jump")

    @wf.step
    def check(cached: bool) -> Any:
        return plait.Goto("publish") if cached else "fresh"

    @wf.step
    def build(check: Any) -> str:
        return "built"

    @wf.step
    def lint(build: str) -> str:  # after a jumped-over step, not leading to the target
        return "linted"

    @wf.step
    def publish(build: str | None) -> dict[str, Any]:
        return {"build": build}

    @wf.step
    def notify(check: Any) -> str:  # another branch: unaffected
        return "notified"

    handle = engine.start(wf, {"cached": True})
    engine.run_worker(until=handle, timeout=60)

    assert handle.result(timeout=10) == {
        "lint": None,
        "publish": {"build": None},
        "notify": "notified",
    }
    steps = {s.name: s for s in engine.steps(handle.id)}
    assert steps["check"].status is plait.StepStatus.DONE
    assert steps["build"].skip_reason == "condition: jumped over by a goto to 'publish'"
    assert steps["lint"].skip_reason == "condition: dependency 'build' skipped"
    events = [e for e in engine.events(handle.id) if e.type == "step_jumped"]
    assert [e.payload for e in events] == [{"step": "check", "goto": "publish", "over": ["build"]}]

    again = engine.start(wf, {"cached": False})
    engine.run_worker(until=again, timeout=60)
    assert again.result(timeout=10)["publish"] == {"build": "built"}


def test_a_goto_to_a_parallel_branch_fails_the_step(engine: plait.Engine) -> None:
    wf = plait.Workflow("jump-sideways")

    @wf.step
    def a() -> Any:
        return plait.Goto("b")

    @wf.step
    def b() -> str:
        return "b"

    handle = engine.start(wf, {})
    engine.run_worker(until=handle, timeout=60)

    with pytest.raises(plait.RunFailed):
        handle.result(timeout=10)
    step = {s.name: s for s in engine.steps(handle.id)}["a"]
    assert step.error is not None
    assert step.error.code == "invalid_goto"
    assert step.error.message == (
        "step 'a' returned Goto('b'): 'b' is neither upstream nor downstream of it"
    )
