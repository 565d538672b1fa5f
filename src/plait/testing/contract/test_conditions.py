"""`when=` conditions (DESIGN §3.2), on every store: a false condition skips the step with reason
"condition", the skip cascades by the usual rule without failing the run, and a join takes
whichever branch ran through `defaults=`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def branching() -> plait.Workflow:
    wf = plait.Workflow("branching")

    @wf.step
    def order(total: int) -> dict[str, int]:
        return {"total": total}

    @wf.step(when=lambda order: order["total"] > 100)
    def review(order: dict[str, int]) -> str:
        return "manual review"

    @wf.step(when=lambda order, region: order["total"] <= 100 and region == "eu")
    def auto(order: dict[str, int]) -> str:
        return "auto"

    @wf.step(defaults={"review": None, "auto": None})
    def decide(review: str | None, auto: str | None) -> str:
        return review or auto or "nothing"

    @wf.step
    def notify_reviewer(review: str) -> str:  # cascades from review's skip
        return "notified"

    return wf


def test_the_branch_not_taken_is_skipped_and_the_run_completes(engine: plait.Engine) -> None:
    wf = branching()
    small = engine.start(wf, {"total": 50, "region": "eu"})
    big = engine.start(wf, {"total": 500, "region": "eu"})
    neither = engine.start(wf, {"total": 50, "region": "us"})
    engine.run_worker(until=[small, big, neither], timeout=30)

    assert small.result(timeout=5) == {"decide": "auto", "notify_reviewer": None}
    assert big.result(timeout=5) == {"decide": "manual review", "notify_reviewer": "notified"}
    assert neither.result(timeout=5) == {"decide": "nothing", "notify_reviewer": None}
    steps = {s.name: s for s in engine.steps(small.id)}
    assert steps["review"].status is plait.StepStatus.SKIPPED
    assert steps["review"].skip_reason == "condition"
    assert steps["notify_reviewer"].status is plait.StepStatus.SKIPPED
    assert steps["notify_reviewer"].skip_reason == "condition: dependency 'review' skipped"
    assert steps["auto"].status is plait.StepStatus.DONE
    skipped = [e for e in engine.events(small.id) if e.type == "step_skipped"]
    assert (skipped[0].step, skipped[0].payload["reason"]) == ("review", "condition")


def test_a_condition_that_raises_fails_the_step(engine: plait.Engine) -> None:
    wf = plait.Workflow("bad_condition")

    @wf.step(when=lambda flag: 1 / 0)
    def guarded() -> int:
        return 1

    handle = engine.start(wf, {"flag": True})
    engine.run_worker(until=handle, timeout=30)
    with pytest.raises(plait.RunFailed) as caught:
        handle.result(timeout=5)
    error = caught.value.failures["guarded"]
    assert error.code == "condition_error"
    assert "its when= condition raised ZeroDivisionError" in error.message


def test_a_condition_needs_its_input_fields_at_start(engine: plait.Engine) -> None:
    wf = branching()
    with pytest.raises(plait.InputError, match="misses field 'region', required by step 'auto'"):
        engine.start(wf, {"total": 5})
    assert engine.list_runs().runs == []
