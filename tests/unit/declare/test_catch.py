"""catch:, finally: and a forward goto in workflow files, run on the memory store, and against
the same workflow written in Python (catches=, at_end=, plait.Goto): same statuses, outputs."""

from __future__ import annotations

from typing import Any

import pytest

import plait
from tests.unit.declare import actions

from .helpers import flow, run

FILE = """
inputs:
  amount: number
  cached: {type: boolean, default: false}
steps:
  check:
    action: test.echo
    with: {value: "${inputs.cached}"}
    goto: [{when: "${steps.check.output}", step: ship}]
  charge:
    action: test.charge_limited
    depends_on: check
    with: {amount: "${inputs.amount}"}
    catch: refund
  ship:
    action: test.echo
    with: {value: "${default(steps.charge.output.charged, 'cached')}"}
  refund:
    action: test.echo
    with: {value: "${error.step} ${error.code}: ${error.message}"}
catch:
  alert:
    action: test.echo
    with: {value: "alert: ${error.step}"}
finally:
  cleanup:
    action: test.echo
    with: {value: {ship: "${steps.ship.output}", alert: "${steps.alert.output}"}}
"""


def python_twin() -> plait.Workflow:
    wf = plait.Workflow("twin")

    @wf.step
    def check(cached: bool = False) -> Any:
        return plait.Goto("ship") if cached else cached

    @wf.step(after=["check"])
    def charge(amount: float) -> Any:
        return actions.charge_limited(amount)

    @wf.step
    def ship(charge: Any) -> Any:
        return "cached" if charge is None else charge["charged"]

    @wf.step(catches="charge")
    def refund(ctx: plait.StepContext) -> str:
        assert ctx.error is not None
        return f"{ctx.error.step} {ctx.error.code}: {ctx.error.message}"

    @wf.step(at_end="failed")
    def alert(ctx: plait.StepContext) -> str:
        assert ctx.error is not None
        return f"alert: {ctx.error.step}"

    @wf.step(at_end="always")
    def cleanup(ship: Any, alert: Any) -> dict[str, Any]:
        return {"ship": ship, "alert": alert}

    return wf


def ends(engine: plait.Engine, run_id: str) -> dict[str, tuple[str, Any]]:
    return {s.name: (s.status.value, s.output) for s in engine.steps(run_id)}


@pytest.mark.parametrize(
    ("run_input", "expected", "output"),
    [
        (
            {"amount": 5},
            {
                "check": ("done", False),
                "charge": ("done", {"charged": 5.0, "currency": "EUR"}),
                "ship": ("done", 5.0),
                "refund": ("skipped", None),
                "alert": ("skipped", None),
                "cleanup": ("done", {"ship": 5.0, "alert": None}),
            },
            {"ship": 5.0, "refund": None},
        ),
        (  # charge fails: refund catches it, ship is a branch not taken, the run completes
            {"amount": 500},
            {
                "check": ("done", False),
                "charge": ("failed", None),
                "ship": ("skipped", None),
                "refund": ("done", "charge declined: over the limit: 500.0"),
                "alert": ("skipped", None),
                "cleanup": ("done", {"ship": None, "alert": None}),
            },
            {"ship": None, "refund": "charge declined: over the limit: 500.0"},
        ),
        (  # check jumps to ship over charge
            {"amount": 5, "cached": True},
            {
                "check": ("done", None),
                "charge": ("skipped", None),
                "ship": ("done", "cached"),
                "refund": ("skipped", None),
                "alert": ("skipped", None),
                "cleanup": ("done", {"ship": "cached", "alert": None}),
            },
            {"ship": "cached", "refund": None},
        ),
    ],
)
def test_the_file_and_its_python_twin_end_alike(
    run_input: dict[str, Any], expected: dict[str, Any], output: dict[str, Any]
) -> None:
    for wf in (flow(FILE), python_twin()):
        engine, handle = run(wf, run_input)
        assert ends(engine, handle.id) == expected, wf.name
        assert handle.result(timeout=10) == output


def test_a_failing_run_runs_its_catch_steps_and_still_fails() -> None:
    uncaught = FILE.replace("    catch: refund\n", "").replace(
        "${error.step} ${error.code}: ${error.message}", "refund"
    )
    wf = flow(uncaught)
    engine, handle = run(wf, {"amount": 500})
    with pytest.raises(plait.RunFailed):
        handle.result(timeout=10)
    found = ends(engine, handle.id)
    assert found["alert"] == ("done", "alert: charge")
    assert found["cleanup"] == ("done", {"ship": None, "alert": "alert: charge"})
