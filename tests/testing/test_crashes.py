"""plait.testing.explore_crashes: a workflow's run crashed at each durable write, and each step
delivered twice; what breaks is named with the schedule that reproduces it."""

from __future__ import annotations

import uuid

import pytest

import plait
from plait import testing
from plait.testing import CrashesFound, SideEffects

EXPECTED_SCHEDULES = [
    "after:0",  # the claim of fetch
    "before:1",  # fetch's outcome (and the claim of charge)
    "after:1",
    "before:2",  # charge's outcome (and the claim of notify)
    "after:2",
    "before:3",  # notify's outcome
    "after:3",
    "twice:fetch",
    "twice:charge",
    "twice:notify",
]


def payment(effects: SideEffects, key_of: str) -> plait.Workflow:
    """fetch → charge → notify; charge calls the provider with a key made per run ("run") or
    per attempt ("attempt": a new one each time, the bug)."""
    wf = plait.Workflow("pay", version="1")

    @wf.step()
    def fetch(order: int) -> dict:
        raise RuntimeError("the real fetch is mocked in these tests")

    @wf.step()
    async def charge(ctx: plait.StepContext, fetch: dict) -> str:
        key = f"{ctx.run_id}:charge" if key_of == "run" else uuid.uuid4().hex
        effects.apply("charge", key)
        return f"charged {fetch['amount']}"

    @wf.step()
    def notify(charge: str) -> str:
        return charge + "!"

    return wf


def test_an_idempotent_workflow_survives_every_crash() -> None:
    effects = SideEffects()
    wf = payment(effects, key_of="run")
    explored = testing.explore_crashes(
        wf, {"order": 1}, mocks={"fetch": {"amount": 5}}, effects=effects
    )
    assert explored == EXPECTED_SCHEDULES
    assert effects.made() == {"charge": ["explored:charge"]}  # the last run's: once


def test_a_key_made_per_attempt_is_caught_with_its_schedule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    effects = SideEffects()
    wf = payment(effects, key_of="attempt")
    with pytest.raises(CrashesFound) as caught:
        testing.explore_crashes(wf, {"order": 1}, mocks={"fetch": {"amount": 5}}, effects=effects)
    # charge ran, its outcome was not recorded: it runs again, and charges again
    assert set(caught.value.failures) == {"before:2", "twice:charge"}
    message = str(caught.value)
    assert message.startswith(
        "explore_crashes: 2 of 10 crash schedules broke the run of workflow 'pay':\n"
        "  schedule before:2: worker crashed before write 2 (commit of the outcome of 'charge' "
        "(and a claim))\n"
        "    side effect 'charge' happened 2 times (keys "
    )
    assert "without crashes, 1: its key is not the same at each attempt" in message
    assert "  schedule twice:charge: step 'charge' delivered twice\n" in message
    assert message.endswith("run one again with explore_crashes(..., schedules=['before:2'])")
    assert capsys.readouterr().out == message + "\n"  # printed too
    # the printed schedule reproduces it, alone
    with pytest.raises(CrashesFound) as again:
        testing.explore_crashes(
            wf, {"order": 1}, mocks={"fetch": {"amount": 5}}, effects=effects,
            schedules=["before:2"],
        )  # fmt: skip
    assert list(again.value.failures) == ["before:2"]


def test_an_output_that_changes_when_run_again_is_caught() -> None:
    calls = SideEffects()  # cleared before each run: counts the calls of one run
    wf = plait.Workflow("count", version="1")

    @wf.step()
    def tally() -> int:
        calls.apply("call", uuid.uuid4().hex)
        return len(calls.made()["call"])  # 2 when it runs again: not the same answer

    with pytest.raises(CrashesFound) as caught:
        testing.explore_crashes(wf, {}, effects=calls)
    failures = caught.value.failures
    # it runs again when its outcome was lost (before:1), or when delivered twice; a crash
    # after its claim (after:0) or after its outcome's commit (after:1) runs it once
    assert set(failures) == {"before:1", "twice:tally"}
    assert failures["before:1"][:2] == [
        "the run ended completed with output {'tally': 2}; without crashes, completed with "
        "{'tally': 1}",
        "step 'tally' ended done with output 2; without crashes, done with 1",
    ]


def test_bad_arguments_are_refused_with_what_there_is() -> None:
    effects = SideEffects()
    wf = payment(effects, key_of="run")
    with pytest.raises(plait.InputError, match=r"schedules= names 'before:0', 'after:99', which"):
        testing.explore_crashes(
            wf, {"order": 1}, mocks={"fetch": {"amount": 5}}, schedules=["before:0", "after:99"]
        )
    with pytest.raises(plait.InputError, match=r"it has: after:0, before:1, after:1, before:2"):
        testing.explore_crashes(
            wf, {"order": 1}, mocks={"fetch": {"amount": 5}}, schedules=["twice:nope"]
        )
    with pytest.raises(plait.InputError, match=r"explore_crashes takes a plait\.Workflow, got 3"):
        testing.explore_crashes(3)  # type: ignore[arg-type]  # the error under test
    with pytest.raises(plait.InputError, match=r"effects= takes a plait.testing.SideEffects"):
        testing.explore_crashes(wf, effects={})  # type: ignore[arg-type]  # the error under test
    with pytest.raises(plait.InputError, match=r"mocks= names 'nope'"):
        testing.explore_crashes(wf, mocks={"nope": 1})
    with pytest.raises(plait.InputError, match=r"SideEffects\.apply takes a kind and a key"):
        effects.apply("charge", 7)  # type: ignore[arg-type]  # the error under test
    assert effects.apply("charge", "k") and not effects.apply("charge", "k")
