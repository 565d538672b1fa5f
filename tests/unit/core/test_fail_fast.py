"""Fail-fast in the state machine (`cascade.settle`): the first failure that fails the run ends
it, cancelling what waits and interrupting what runs; optional steps and spawned steps do not."""

from __future__ import annotations

import dataclasses

from plait.core.cascade import FAIL_FAST
from plait.core.rows import EdgeKind, RunStatus, StepOptions, StepPlan, StepStatus
from plait.core.txn import Need, Txn
from tests.unit.core import test_transitions

FAST = StepOptions(fail_fast=True)


class Rows(test_transitions.Rows):
    """The smallest store, loading every step of the run when asked (ending a run does)."""

    def load(self, txn: Txn, need: Need) -> None:
        if need.all_steps:
            need = Need(need.run_id, tuple(self.steps))
            for name in need.steps:
                txn.add_step(need.run_id, name, dataclasses.replace(self.steps[name]))
        super().load(txn, need)


def plan(name: str, *deps: str, optional: bool = False) -> StepPlan:
    return StepPlan(name, tuple((d, EdgeKind.DATA) for d in deps), optional=optional, options=FAST)


def test_a_failure_ends_the_run_at_once() -> None:
    rows = Rows(plan("a"), plan("b"), plan("c", "b"), plan("d"))
    ta, _tb = rows.claim("a"), rows.claim("b")
    txn = rows.complete("a", ta, error_code="Boom", error_message="boom")
    assert rows.run.status is RunStatus.FAILED
    assert rows.run.error == "step 'a' failed: boom"
    assert {n: s.status for n, s in rows.steps.items()} == {
        "a": StepStatus.FAILED,
        "b": StepStatus.RUNNING,  # interrupted: its worker reports
        "c": StepStatus.CANCELLED,
        "d": StepStatus.CANCELLED,
    }
    assert txn.result.cancelled_runs == ["r"] and txn.result.ended_runs == ["r"]
    last = rows.events[-1]
    assert (last.type, last.payload["code"], last.payload["interrupting"]) == (
        "run_failed", FAIL_FAST, ["b"],
    )  # fmt: skip


def test_the_interrupted_step_then_ends_cancelled_and_changes_nothing_more() -> None:
    rows = Rows(plan("a"), plan("b"))
    ta, tb = rows.claim("a"), rows.claim("b")
    rows.complete("a", ta, error_code="Boom", error_message="boom")
    rows.complete("b", tb, error_code="cancelled", error_message="asked to stop")
    assert rows.steps["b"].status is StepStatus.CANCELLED
    assert rows.run.status is RunStatus.FAILED and rows.run.unfinished == 0
    assert rows.types().count("run_failed") == 1


def test_a_retried_attempt_does_not_end_the_run() -> None:
    rows = Rows(plan("a"), plan("b"))
    ta = rows.claim("a")
    rows.complete("a", ta, error_code="Boom", error_message="boom", retry_at=5.0)
    assert rows.run.status is RunStatus.RUNNING
    assert rows.steps["b"].status is StepStatus.READY


def test_an_optional_failure_does_not_end_the_run() -> None:
    rows = Rows(plan("a", optional=True), plan("b"))
    ta = rows.claim("a")
    rows.complete("a", ta, error_code="Boom", error_message="boom")
    assert rows.run.status is RunStatus.RUNNING
    assert rows.steps["b"].status is StepStatus.READY


def test_without_the_option_the_run_goes_on() -> None:
    rows = Rows(StepPlan("a", ()), StepPlan("b", ()))
    ta = rows.claim("a")
    rows.complete("a", ta, error_code="Boom", error_message="boom")
    assert rows.run.status is RunStatus.RUNNING
