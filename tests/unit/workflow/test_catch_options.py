"""`catches=` and `at_end=` as a workflow defines them: the edges and options they make, and
each mistake refused with a message naming the step and the problem."""

from __future__ import annotations

from typing import Any

import pytest

import plait
from plait.core.rows import AtEnd, EdgeKind


def base() -> plait.Workflow:
    wf = plait.Workflow("w")

    @wf.step
    def charge() -> int:
        return 1

    @wf.step
    def ship(charge: int) -> int:
        return charge

    return wf


def test_catches_is_a_catch_edge_and_at_end_waits_for_every_other_step() -> None:
    wf = base()

    @wf.step(catches="charge")
    def refund() -> None: ...

    @wf.step(at_end="failed")
    def alert() -> None: ...

    @wf.step(at_end="always")
    def cleanup(ship: Any) -> None: ...

    plan = {s.name: s for s in wf.plan().steps}
    assert plan["refund"].dependencies == (("charge", EdgeKind.CATCH),)
    assert dict(plan["alert"].dependencies) == {
        "charge": EdgeKind.AFTER_ANY,
        "ship": EdgeKind.AFTER_ANY,
        "refund": EdgeKind.AFTER_ANY,
    }
    assert dict(plan["cleanup"].dependencies) == {
        "charge": EdgeKind.AFTER_ANY,
        "refund": EdgeKind.AFTER_ANY,
        "alert": EdgeKind.AFTER_ANY,  # a finally step comes after the failing run's steps
        "ship": EdgeKind.DATA,
    }
    assert plan["cleanup"].defaults == ("ship",)  # it runs however `ship` ended
    assert plan["cleanup"].options is not None
    assert plan["cleanup"].options.at_end is AtEnd.ALWAYS
    assert wf["alert"].error_sources == ("charge", "ship", "refund")
    assert wf["refund"].error_sources == ("charge",)
    # the fingerprint changes with them
    assert base().fingerprint != wf.fingerprint


def define(**options: Any) -> plait.Workflow:
    wf = base()
    wf.step(name="handler", **options)(lambda: None)
    return wf


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"catches": "nope"}, "workflow 'w', step 'handler': catches names unknown step 'nope'"),
        ({"catches": 3}, "workflow 'w', step 'handler': catches must name one step, got 3"),
        (
            {"catches": "charge", "after": ["charge"]},
            "workflow 'w', step 'handler': catches 'charge', so it cannot also depend on it "
            "(it runs only if that step failed: there is no output to read)",
        ),
        (
            {"at_end": "sometimes"},
            "workflow 'w', step 'handler': at_end must be 'always' (a finally step) or 'failed' "
            "(a step that runs when the run fails), got 'sometimes'",
        ),
        (
            {"at_end": "always", "after": ["ship"]},
            "workflow 'w', step 'handler': a step at_end waits for every other step itself: "
            "drop after= and after_any=",
        ),
        (
            {"at_end": "always", "catches": "ship"},
            "workflow 'w', step 'handler': a step at_end cannot catch or be caught; "
            "it runs at the end anyway",
        ),
    ],
)
def test_mistakes_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(plait.DefinitionError) as info:
        define(**options).plan()
    assert str(info.value) == message


def test_a_step_caught_twice_and_a_step_catching_itself_are_refused() -> None:
    wf = define(catches="charge")
    wf.step(name="again", catches="charge")(lambda: None)
    with pytest.raises(plait.DefinitionError) as info:
        wf.plan()
    assert str(info.value) == (
        "workflow 'w', step 'again': step 'charge' is already caught by step 'handler'; "
        "a step has at most one catching step"
    )
    wf = base()
    wf.step(name="loop", catches="loop")(lambda: None)
    with pytest.raises(plait.DefinitionError) as info:
        wf.plan()
    assert str(info.value) == "workflow 'w', step 'loop': a step cannot catch its own failure"
