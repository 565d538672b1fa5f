"""Forks, pure (`plait.core.fork`): what a fork reuses, the rows it starts with, its refusals; and a
property on random graphs: a fork's counters are those of a new run after the reused steps
completed, and it runs to completion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait._errors import InputError
from plait.core.cascade import new_run
from plait.core.fork import check_overrides, fork_run, plan_fork
from plait.core.rows import (
    EdgeKind,
    Gate,
    Outcome,
    RunRow,
    RunStatus,
    StepOptions,
    StepPlan,
    StepRow,
    StepStatus,
    WorkflowPlan,
)
from plait.core.transitions import claim, complete
from plait.core.txn import Need, Txn, drive

NOW = 1_000.0


def plan_of(*steps: tuple[str, Sequence[str]], version: str = "1") -> WorkflowPlan:
    return WorkflowPlan(
        "wf",
        version,
        f"fp{version}",
        tuple(StepPlan(name, tuple((d, EdgeKind.DATA) for d in deps)) for name, deps in steps),
    )


def parent_of(
    plan: WorkflowPlan, statuses: dict[str, StepStatus] | None = None, run_id: str = "p"
) -> tuple[RunRow, list[StepRow]]:
    """A parent run of `plan` whose steps ended as given (done unless said), output = name."""
    run, steps, _ = new_run(plan, run_id, b'{"n":1}', NOW - 100)
    for step in steps:
        step.status = (statuses or {}).get(step.name, StepStatus.DONE)
        step.output = orjson.dumps(step.name) if step.status is StepStatus.DONE else None
    run.status = RunStatus.COMPLETED
    return run, steps


def fork_of(
    plan: WorkflowPlan,
    parent: RunRow,
    parent_steps: list[StepRow],
    from_step: str,
    overrides: dict[str, bytes] | None = None,
    parent_plan: WorkflowPlan | None = None,
) -> tuple[RunRow, dict[str, StepRow], list[Any]]:
    fork = plan_fork(plan, parent.id, parent_steps, parent_plan or plan, from_step)
    run, steps, events = fork_run(
        plan,
        parent,
        fork,
        run_id="f",
        input_json=parent.input,
        overrides=overrides or {},
        by="alice",
        now=NOW,
    )
    return run, {s.name: s for s in steps}, events


# child edges are spawned only; a catch edge skips its step unless the upstream failed (the
# fork model has every step succeed: tests/unit/core/test_catch.py covers catches)
STATIC_KINDS = [k for k in EdgeKind if k not in (EdgeKind.CHILD, EdgeKind.CATCH)]
CHAIN = plan_of(("a", []), ("b", ["a"]), ("c", ["b"]), ("d", ["c"]))


def test_a_fork_reuses_every_step_upstream_and_reruns_the_rest() -> None:
    parent, rows = parent_of(CHAIN)

    run, steps, events = fork_of(CHAIN, parent, rows, "c")

    assert {n: s.status for n, s in steps.items()} == {
        "a": StepStatus.DONE,
        "b": StepStatus.DONE,
        "c": StepStatus.READY,
        "d": StepStatus.PENDING,
    }
    assert [steps[n].unmet for n in "abcd"] == [0, 0, 0, 1]
    assert steps["a"].output == b'"a"' and steps["b"].reused_from == "p"
    assert steps["c"].reused_from is None and steps["c"].available_at == NOW
    assert (run.parent_run, run.forked_from, run.unfinished, run.status) == (
        "p",
        "c",
        2,
        RunStatus.PENDING,
    )
    assert run.sinks == ("d",) and run.input == parent.input
    assert steps["b"].dependents == new_run(CHAIN, "x", b"{}", NOW)[1][1].dependents
    assert [(e.seq, e.type, e.step) for e in events] == [
        (1, "run_started", None),
        (2, "run_forked", None),
        (3, "step_reused", "a"),
        (4, "step_reused", "b"),
    ]
    assert run.next_seq == 5
    assert events[1].payload == {
        "parent_run": "p",
        "from_step": "c",
        "by": "alice",
        "reused": 2,
        "overridden": [],
        "input_changed": False,
    }
    assert events[2].payload == {"step": "a", "from_run": "p", "overridden": False}


def test_side_branches_are_reused_too_not_only_direct_dependencies() -> None:
    plan = plan_of(("a", []), ("b", ["a"]), ("c", ["b"]), ("x", ["a"]), ("y", []))
    parent, rows = parent_of(plan)

    _, steps, _ = fork_of(plan, parent, rows, "c")

    assert {n for n, s in steps.items() if s.status is StepStatus.DONE} == {"a", "b", "x", "y"}


def test_a_step_not_done_in_the_parent_runs_again_with_what_follows_it() -> None:
    plan = plan_of(("a", []), ("b", ["a"]), ("b2", ["b"]), ("c", ["a"]), ("e", []))
    parent, rows = parent_of(plan, {"b": StepStatus.FAILED, "b2": StepStatus.SKIPPED})

    run, steps, _ = fork_of(plan, parent, rows, "c")

    assert {n: s.status for n, s in steps.items()} == {
        "a": StepStatus.DONE,
        "b": StepStatus.READY,
        "b2": StepStatus.PENDING,
        "c": StepStatus.READY,
        "e": StepStatus.DONE,
    }
    assert run.unfinished == 3
    fork = plan_fork(plan, "p", rows, plan, "c")
    assert fork.rerun == {
        "b": "it is failed in run 'p'",
        "b2": "it is skipped in run 'p'",
        "c": "the fork starts from it",
    }


def test_a_fork_of_a_fork_says_where_reused_outputs_came_from() -> None:
    parent, rows = parent_of(CHAIN)
    first, steps, _ = fork_of(CHAIN, parent, rows, "c")
    for s in steps.values():  # the first fork completed
        s.status, s.output = StepStatus.DONE, s.output or b'"new"'

    _, again, _ = fork_of(CHAIN, first, list(steps.values()), "d")

    assert [again[n].reused_from for n in "abcd"] == ["p", "p", "f", None]


def test_overrides_replace_reused_outputs_only() -> None:
    parent, rows = parent_of(CHAIN)
    _, steps, events = fork_of(CHAIN, parent, rows, "c", overrides={"a": b'{"fixed":1}'})
    assert steps["a"].output == b'{"fixed":1}' and steps["b"].output == b'"b"'
    assert events[1].payload["overridden"] == ["a"]
    assert events[2].payload == {"step": "a", "from_run": "p", "overridden": True}

    fork = plan_fork(CHAIN, "p", rows, CHAIN, "c")
    with pytest.raises(InputError) as caught:
        check_overrides(fork, ["d"])
    assert str(caught.value) == (
        "cannot override step 'd': the fork of run 'p' from 'c' does not reuse it "
        "(it is downstream of 'c'); overrides replace the output of reused steps: 'a', 'b'"
    )
    with pytest.raises(InputError, match=r"override step 'zz'.*\(the workflow has no such step\)"):
        check_overrides(fork, ["zz"])
    with pytest.raises(InputError, match=r"^cannot override step 'a': .* reused steps: none$"):
        check_overrides(plan_fork(CHAIN, "p", rows, CHAIN, "a"), ["a"])


def test_a_step_missing_from_the_workflow_cannot_be_forked_from() -> None:
    _, rows = parent_of(CHAIN)
    with pytest.raises(InputError) as caught:
        plan_fork(CHAIN, "p", rows, CHAIN, "nope")
    assert str(caught.value) == (
        "cannot fork run 'p' from step 'nope': workflow 'wf' v1 (fp1) has no such step; "
        "its steps: a, b, c, d"
    )


def test_the_newest_version_must_have_the_steps_a_fork_reuses() -> None:
    _, rows = parent_of(CHAIN)
    v2 = plan_of(("a2", []), ("c", ["a2"]), ("d", ["c"]), version="2")  # a and b are gone

    with pytest.raises(InputError) as caught:
        plan_fork(v2, "p", rows, CHAIN, "c")
    assert str(caught.value) == (
        "cannot fork run 'p' from step 'c' on workflow 'wf' v2 (fp2): the fork would reuse the "
        "output of 'a', 'b', which this version no longer has; fork from a step they depend "
        "on so that they are not reused, or run a version that has them"
    )
    # steps downstream of from_step in the parent's version are not reused: their loss is fine
    v3 = plan_of(("a", []), ("b", ["a"]), ("c", ["b"]), version="3")
    assert list(plan_fork(v3, "p", rows, CHAIN, "c").reused) == ["a", "b"]
    # without the parent's version, its step records tell the same
    assert list(plan_fork(v3, "p", rows, None, "c").reused) == ["a", "b"]
    with pytest.raises(InputError, match="would reuse the output of 'b', which"):
        plan_fork(plan_of(("a", []), ("c", ["a"])), "p", rows, None, "c")


def test_a_new_version_runs_its_new_steps_and_reuses_the_rest() -> None:
    parent, rows = parent_of(CHAIN)
    v2 = plan_of(("a", []), ("n", []), ("b", ["a", "n"]), ("c", ["b"]), version="2")

    run, steps, _ = fork_of(v2, parent, rows, "c", parent_plan=CHAIN)

    assert run.fingerprint == "fp2" and run.version == "2"
    # n is new: it runs, and b, which now depends on it, runs again after it
    assert {n: s.status for n, s in steps.items()} == {
        "a": StepStatus.DONE,
        "n": StepStatus.READY,
        "b": StepStatus.PENDING,
        "c": StepStatus.PENDING,
    }
    assert (steps["b"].unmet, steps["c"].unmet) == (1, 1)


def test_steps_that_run_again_start_as_first_steps_do_gates_and_delays_included() -> None:
    gate = StepOptions(gate=Gate.APPROVAL)
    plan = WorkflowPlan(
        "wf",
        "1",
        "fp1",
        (
            StepPlan("a", ()),
            StepPlan("ok", (("a", EdgeKind.DATA),), options=gate),  # approved in the parent
            StepPlan("b", (("ok", EdgeKind.DATA),)),
            StepPlan("again", (("b", EdgeKind.DATA),), options=gate),
            StepPlan("later", (("b", EdgeKind.DATA),), options=StepOptions(delay=5.0)),
        ),
    )
    parent, rows = parent_of(plan)

    run, steps, events = fork_of(plan, parent, rows, "again")

    assert steps["ok"].status is StepStatus.DONE and steps["ok"].options == gate
    assert steps["again"].status is StepStatus.WAITING and steps["again"].options == gate
    assert [(e.seq, e.type, e.step) for e in events] == [
        (1, "run_started", None),
        (2, "step_waiting", "again"),  # the reused gate "ok" is not said to wait
        (3, "run_forked", None),
        (4, "step_reused", "a"),
        (5, "step_reused", "ok"),
        (6, "step_reused", "b"),
        (7, "step_reused", "later"),
    ]
    assert run.next_seq == 8 and run.unfinished == 1
    _, delayed, from_later = fork_of(plan, parent, rows, "later")
    assert from_later[-1].step == "again"  # reused: it was approved in the parent
    assert delayed["later"].status is StepStatus.READY
    assert delayed["later"].available_at == NOW + 5.0


# -- property: a fork is a new run after its reused steps completed --------------------------------


@st.composite
def graphs(draw: st.DrawFn) -> tuple[WorkflowPlan, dict[str, StepStatus], str]:
    n = draw(st.integers(1, 9))
    names = [f"s{i}" for i in range(n)]
    steps = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        kinds = [draw(st.sampled_from(STATIC_KINDS)) for _ in deps]
        defaults = tuple(d for d, k in zip(deps, kinds, strict=True) if k is not EdgeKind.AFTER_ANY)
        absorbed = draw(st.lists(st.sampled_from(defaults), unique=True)) if defaults else []
        steps.append(StepPlan(name, tuple(zip(deps, kinds, strict=True)), tuple(sorted(absorbed))))
    order = draw(st.permutations(steps))  # definition order need not be topological
    plan = WorkflowPlan("wf", "1", "fp1", tuple(order))
    statuses = {
        name: draw(st.sampled_from([StepStatus.DONE] * 3 + [StepStatus.FAILED, StepStatus.SKIPPED]))
        for name in names
    }
    return plan, statuses, draw(st.sampled_from(names))


def _ancestors(plan: WorkflowPlan, name: str) -> set[str]:
    deps = {s.name: [d for d, _ in s.dependencies] for s in plan.steps}
    found: set[str] = set()
    todo = list(deps[name])
    while todo:
        d = todo.pop()
        if d not in found:
            found.add(d)
            todo.extend(deps[d])
    return found


class Rows:
    """Rows kept in dicts, loaded into transactions as they ask (copies not needed here)."""

    def __init__(self, run: RunRow, steps: list[StepRow]) -> None:
        self.run = run
        self.steps = {s.name: s for s in steps}

    def load(self, txn: Txn, need: Need) -> None:
        txn.add_run(need.run_id, self.run)
        names = self.steps if need.all_steps else need.steps
        for name in names:
            txn.add_step(need.run_id, name, self.steps.get(name))

    def finish(self, name: str, output: bytes, now: float) -> None:
        txn = Txn(now)
        drive(claim(txn, self.run.id, name, token="t", worker_id="w", lease=30), self.load, txn)
        assert [c.step for c in txn.claims] == [name], f"{name} was not claimable"
        txn = Txn(now)
        drive(complete(txn, Outcome(self.run.id, name, "t", output=output)), self.load, txn)
        assert txn.result.accepted == [True]


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_a_fork_is_a_new_run_whose_reused_steps_completed(
    case: tuple[WorkflowPlan, dict[str, StepStatus], str],
) -> None:
    plan, statuses, from_step = case
    parent, rows = parent_of(plan, statuses)

    fork = plan_fork(plan, "p", rows, plan, from_step)
    run, steps, _ = fork_of(plan, parent, rows, from_step)

    # reused: neither from_step nor downstream of it, and done in the parent with every ancestor
    again = {from_step} | {s.name for s in plan.steps if from_step in _ancestors(plan, s.name)}
    expected = {
        s.name
        for s in plan.steps
        if all(
            x not in again and statuses[x] is StepStatus.DONE
            for x in {s.name} | _ancestors(plan, s.name)
        )
    }
    assert set(fork.reused) == expected
    assert set(fork.reused) | set(fork.rerun) == {s.name for s in plan.steps}

    # the reference: a new run in which the reused steps completed, in an order a worker could
    ref_run, ref_steps, _ = new_run(plan, "f", parent.input, NOW)
    ref = Rows(ref_run, ref_steps)
    done: set[str] = set()
    while len(done) < len(expected):
        name = next(
            n for n in sorted(expected - done) if _ancestors(plan, n) <= done
        )  # all its dependencies completed
        ref.finish(name, orjson.dumps(name), NOW)
        done.add(name)

    def state(s: StepRow) -> tuple[Any, ...]:
        return (s.status, s.unmet, s.skip_reason, s.dependents, s.output)

    assert {n: state(s) for n, s in steps.items()} == {n: state(s) for n, s in ref.steps.items()}
    assert (run.unfinished, run.failures, run.sinks) == (
        ref_run.unfinished,
        ref_run.failures,
        ref_run.sinks,
    )
    for name, s in steps.items():
        assert (s.reused_from == "p") == (name in expected)

    # and the fork runs to completion: every step that runs again is claimed and completes
    live = Rows(run, list(steps.values()))
    while not run.status.terminal:
        ready = [s.name for s in live.steps.values() if s.status is StepStatus.READY]
        assert ready, "the fork is stuck"
        live.finish(ready[0], b"1", NOW + 1)
    assert run.status is RunStatus.COMPLETED and run.unfinished == 0
    assert all(s.status is StepStatus.DONE for s in live.steps.values())
