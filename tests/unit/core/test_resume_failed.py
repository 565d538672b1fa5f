"""Resuming a failed or cancelled run (`actions.resume_failed`): pure, on the smallest store.
Failed and cancelled steps, and the steps skipped because of them, come back; completed ones
keep their outputs; the run runs again and can then complete."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from plait.core import actions
from plait.core.rows import EdgeKind, RunStatus, StepPlan, StepStatus
from plait.core.txn import Need, Txn
from tests.unit.core import test_transitions

RUN = test_transitions.RUN


class Rows(test_transitions.Rows):
    """The smallest store, loading every step of the run when asked (operator actions do)."""

    def load(self, txn: Txn, need: Need) -> None:
        if need.all_steps:
            for name, row in self.steps.items():
                txn.add_step(need.run_id, name, dataclasses.replace(row))
            need = Need(need.run_id)
        super().load(txn, need)

    def act(self, action: Callable[..., object], **options: object) -> Txn:
        return self.do(0.0, lambda t: action(t, RUN, by="op", **options))  # type: ignore[arg-type]

    def status(self) -> dict[str, StepStatus]:
        return {n: s.status for n, s in self.steps.items()}


def plan(name: str, *deps: str, kind: EdgeKind = EdgeKind.DATA, optional: bool = False) -> StepPlan:
    return StepPlan(name, tuple((d, kind) for d in deps), optional=optional)


def test_failed_and_skipped_steps_come_back_and_done_ones_keep_their_outputs() -> None:
    rows = Rows(plan("a"), plan("b", "a"), plan("c", "b"), plan("d"))
    rows.complete("a", rows.claim("a"), output=b'"A"')
    rows.complete("d", rows.claim("d"), output=b'"D"')
    rows.complete("b", rows.claim("b"), error_code="Boom", error_message="boom")
    assert rows.run.status is RunStatus.FAILED
    assert rows.status()["c"] is StepStatus.SKIPPED

    txn = rows.act(actions.resume_failed)

    assert txn.result.refusal is None and txn.result.readied == 1
    assert rows.run.status is RunStatus.RUNNING and rows.run.error is None
    assert rows.run.failures == 0 and rows.run.unfinished == 2 and rows.run.finished_at is None
    assert rows.status() == {
        "a": StepStatus.DONE, "b": StepStatus.READY, "c": StepStatus.PENDING, "d": StepStatus.DONE,
    }  # fmt: skip
    assert rows.steps["a"].output == b'"A"' and rows.steps["b"].attempt == 0
    assert rows.steps["b"].error_code is None and rows.steps["c"].skip_reason is None
    kinds = [(e.type, e.step, e.payload.get("previous")) for e in txn.events]
    assert kinds[:3] == [
        ("run_reopened", None, "failed"), ("step_reopened", "b", "failed"),
        ("step_reopened", "c", "skipped"),
    ]  # fmt: skip

    rows.complete("b", rows.claim("b"), output=b'"B"')
    rows.complete("c", rows.claim("c"), output=b'"C"')
    assert rows.run.status is RunStatus.COMPLETED
    assert rows.run.output == b'{"c":"C","d":"D"}'


def test_a_cancelled_run_comes_back_with_its_cancelled_steps() -> None:
    rows = Rows(plan("a"), plan("b", "a"), plan("c"))
    rows.complete("a", rows.claim("a"), output=b"1")
    rows.act(actions.cancel, reason="oops")
    assert rows.run.status is RunStatus.CANCELLED
    rows.act(actions.resume_failed)
    assert rows.run.status is RunStatus.RUNNING
    assert rows.status() == {"a": StepStatus.DONE, "b": StepStatus.READY, "c": StepStatus.READY}


def test_a_step_skipped_by_a_condition_stays_skipped() -> None:
    rows = Rows(plan("a"), plan("b", "a"), plan("c"))
    rows.complete("a", rows.claim("a"), skipped=True)
    rows.complete("c", rows.claim("c"), error_code="Boom", error_message="boom")
    assert rows.run.status is RunStatus.FAILED
    rows.act(actions.resume_failed)
    assert rows.status() == {
        "a": StepStatus.SKIPPED, "b": StepStatus.SKIPPED, "c": StepStatus.READY,
    }  # fmt: skip


def test_refusals_say_why() -> None:
    rows = Rows(plan("a"), plan("b"))
    txn = rows.act(actions.resume_failed)
    assert txn.result.refusal == (
        f"run {RUN!r} is pending: only a failed or cancelled run can be resumed this way "
        "(it has not ended)"
    )
    token = rows.claim("a")
    rows.act(actions.cancel, reason=None)
    txn = rows.act(actions.resume_failed)
    assert txn.result.refusal == (
        f"run {RUN!r} still has running steps (a), interrupted when it ended: resume it once "
        "their workers have reported them (or their leases expired)"
    )
    rows.complete("a", token, error_code="cancelled", error_message="stop")
    assert rows.act(actions.resume_failed).result.refusal is None
    rows.complete("a", rows.claim("a"), output=b"1")
    rows.complete("b", rows.claim("b"), output=b"2")
    assert rows.run.status is RunStatus.COMPLETED
    txn = rows.act(actions.resume_failed)
    assert txn.result.refusal == (
        f"run {RUN!r} is completed: only a failed or cancelled run can be resumed this way "
        "(it has nothing to run again)"
    )
    unknown = Rows(plan("a"))
    txn = unknown.do(1.0, lambda t: actions.resume_failed(t, "nope", by="op"))
    assert txn.result.refusal == "run 'nope' does not exist"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 7), max_size=3), min_size=2, max_size=8),
    st.lists(st.booleans(), min_size=8, max_size=8),
    st.booleans(),
)
def test_a_resumed_run_completes_once_its_steps_succeed(
    deps: list[list[int]], fails: list[bool], optional_first: bool
) -> None:
    """Any DAG, any failures: after resume_failed, succeeding every step completes the run, and
    the steps that were done keep their outputs and are not run again."""
    steps = [
        plan(f"s{i}", *sorted({f"s{d}" for d in ds if d < i}), optional=optional_first and i == 0)
        for i, ds in enumerate(deps)
    ]
    rows = Rows(*steps)

    def drain(fail: Callable[[str], bool]) -> None:
        while ready := [n for n, s in rows.steps.items() if s.status is StepStatus.READY]:
            name = ready[0]
            if fail(name):
                rows.complete(name, rows.claim(name), error_code="Boom", error_message="boom")
            else:
                rows.complete(name, rows.claim(name), output=f'"{name}"'.encode())

    drain(lambda name: fails[int(name[1:])])
    done_before = {n: s.output for n, s in rows.steps.items() if s.status is StepStatus.DONE}
    if rows.run.status is RunStatus.COMPLETED:
        return
    assert rows.run.status is RunStatus.FAILED
    assert rows.act(actions.resume_failed).result.refusal is None
    drain(lambda name: False)
    assert rows.run.status is RunStatus.COMPLETED
    assert rows.run.failures == 0 and rows.run.unfinished == 0
    for name, output in done_before.items():
        assert rows.steps[name].output == output and rows.steps[name].attempt == 1
