"""Moving a run to a new graph, pure (`plait.core.upgrade`): the property on random graphs and
random progress: a run that fits, once moved, has the rows of a new run of the new version in
which the same steps ended the same way (and the running one was claimed), and it completes as
that run does, with the same output; a run built not to fit is refused."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

from plait.core.cascade import new_run
from plait.core.rows import (
    EdgeKind,
    Outcome,
    RunRow,
    RunStatus,
    StepPlan,
    StepRow,
    StepStatus,
    WorkflowPlan,
)
from plait.core.transitions import claim, complete
from plait.core.txn import Need, Txn, drive
from plait.core.upgrade import fit, move

NOW = 1_000.0
KINDS = [EdgeKind.DATA, EdgeKind.AFTER, EdgeKind.AFTER_ANY]


class Rows:
    """A run's rows in dicts, which transactions change in place (inserts and drops applied)."""

    def __init__(self, run: RunRow, steps: list[StepRow]) -> None:
        self.run = run
        self.steps = {s.name: s for s in steps}

    def load(self, txn: Txn, need: Need) -> None:
        txn.add_run(need.run_id, self.run)
        for name in self.steps if need.all_steps else need.steps:
            txn.add_step(need.run_id, name, self.steps.get(name))

    def run_txn(self, transition_of: Any) -> Txn:
        txn = Txn(NOW)
        drive(transition_of(txn), self.load, txn)
        for _, name in txn.dropped_steps:
            del self.steps[name]
        for (_, name), step in txn.new_steps.items():
            self.steps[name] = step
        return txn

    def claim(self, name: str) -> None:
        txn = self.run_txn(
            lambda t: claim(t, self.run.id, name, token="t", worker_id="w", lease=30)
        )
        assert [c.step for c in txn.claims] == [name], f"{name} was not claimable"

    def complete(self, name: str) -> None:
        outcome = Outcome(self.run.id, name, "t", output=orjson.dumps(name))
        txn = self.run_txn(lambda t: complete(t, outcome))
        assert txn.result.accepted == [True]

    def finish(self, name: str) -> None:
        self.claim(name)
        self.complete(name)

    def to_end(self) -> None:
        while not self.run.status.terminal:
            running = [n for n, s in self.steps.items() if s.status is StepStatus.RUNNING]
            ready = [n for n, s in self.steps.items() if s.status is StepStatus.READY]
            assert running or ready, "the run is stuck"
            self.complete(running[0]) if running else self.finish(ready[0])


def plan(steps: list[StepPlan], version: str) -> WorkflowPlan:
    return WorkflowPlan("wf", version, f"fp{version}", tuple(steps))


@st.composite
def cases(draw: st.DrawFn) -> tuple[WorkflowPlan, list[str], str | None, WorkflowPlan, bool]:
    """An old plan; the steps done (in an order a worker could) and one running, maybe; a new
    plan; and whether it was built to fit."""
    n = draw(st.integers(1, 7))
    names = [f"s{i}" for i in range(n)]
    old_steps = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        old_steps.append(StepPlan(name, tuple((d, draw(st.sampled_from(KINDS))) for d in deps)))
    old = plan(old_steps, "1")
    deps_of = {s.name: {d for d, _ in s.dependencies} for s in old_steps}
    done: list[str] = []
    for _ in range(draw(st.integers(0, n))):
        ready = [x for x in names if x not in done and deps_of[x] <= set(done)]
        if not ready:
            break
        done.append(draw(st.sampled_from(ready)))
    ready = [x for x in names if x not in done and deps_of[x] <= set(done)]
    run_one = draw(st.sampled_from(ready)) if ready and draw(st.booleans()) else None
    started = set(done) | ({run_one} if run_one else set())
    fits = True
    new_steps: list[StepPlan] = []
    kept: list[str] = []
    for s in old_steps:
        if s.name not in started:
            if draw(st.integers(0, 3)) == 0:  # dropped
                continue
            if draw(st.booleans()):  # changed: other dependencies, or another priority
                deps = (
                    draw(st.lists(st.sampled_from(kept), unique=True, max_size=3)) if kept else []
                )
                s = StepPlan(
                    s.name,
                    tuple((d, draw(st.sampled_from(KINDS))) for d in deps),
                    priority=draw(st.integers(0, 2)),
                )
            elif any(d not in kept for d, _ in s.dependencies):  # one was dropped
                s = StepPlan(s.name, tuple((d, k) for d, k in s.dependencies if d in kept))
        elif draw(st.integers(0, 9)) == 0:  # a started step changed: does not fit
            fits = False
            s = StepPlan(s.name, (*s.dependencies, ("extra", EdgeKind.AFTER)))
        new_steps.append(s)
        kept.append(s.name)
    if not fits:
        new_steps.insert(0, StepPlan("extra", ()))
    unfinished = [x for x in kept if x not in done]
    for i in range(draw(st.integers(0, 3))):  # added, after something unfinished
        pool = unfinished + [f"n{j}" for j in range(i)]
        if not pool:
            break
        deps = draw(st.lists(st.sampled_from(pool), min_size=1, unique=True, max_size=2))
        deps += draw(st.lists(st.sampled_from([x for x in kept if x in done] or kept), max_size=1))
        deps = list(dict.fromkeys(deps))
        new_steps.append(StepPlan(f"n{i}", tuple((d, draw(st.sampled_from(KINDS))) for d in deps)))
    return old, done, run_one, plan(new_steps, "2"), fits


def _topological(plan: WorkflowPlan, names: set[str]) -> list[str]:
    deps = {s.name: {d for d, _ in s.dependencies} for s in plan.steps}
    order: list[str] = []
    while len(order) < len(names):
        order.append(next(n for n in sorted(names - set(order)) if deps[n] <= set(order)))
    return order


def _state(s: StepRow) -> tuple[Any, ...]:
    return (s.status, s.unmet, s.skip_reason, frozenset(s.dependents), s.output, s.priority)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_a_moved_run_is_a_new_run_of_the_new_version_on_the_same_outputs(
    case: tuple[WorkflowPlan, list[str], str | None, WorkflowPlan, bool],
) -> None:
    old, done, run_one, new, fits = case
    note(repr(case))
    assume(new.steps)  # a workflow has a step at least
    live = Rows(*new_run(old, "r", b"{}", NOW)[:2])
    for name in done:
        live.finish(name)
    if run_one is not None:
        live.claim(run_one)
    if live.run.status.terminal:  # every step done: no run in flight moves
        assert fit(live.run, list(live.steps.values()), old, new).reason == (
            "run 'r' is completed: only runs in flight move"
        )
        return

    found = fit(live.run, list(live.steps.values()), old, new)
    assert found.fits == fits, found.reason
    if not fits:
        assert found.reason is not None and "dependencies" in found.reason
        txn = live.run_txn(lambda t: move(t, "r", old=old, new=new, by="t"))
        assert txn.result.refusal == found.reason and not txn.events  # nothing changed
        assert live.run.fingerprint == old.fingerprint
        return
    assert set(found.added) == {s.name for s in new.steps} - {s.name for s in old.steps}
    txn = live.run_txn(lambda t: move(t, "r", old=old, new=new, by="t", expected=found))
    assert txn.result.refusal is None
    assert live.run.fingerprint == new.fingerprint

    ref = Rows(*new_run(new, "r", b"{}", NOW)[:2])
    for name in _topological(new, set(done)):
        ref.finish(name)
    if run_one is not None:
        ref.claim(run_one)
    assert {n: _state(s) for n, s in live.steps.items()} == {
        n: _state(s) for n, s in ref.steps.items()
    }
    assert (live.run.status, live.run.unfinished, live.run.failures, set(live.run.sinks)) == (
        ref.run.status, ref.run.unfinished, ref.run.failures, set(ref.run.sinks),
    )  # fmt: skip

    live.to_end()
    ref.to_end()
    assert live.run.status is ref.run.status is RunStatus.COMPLETED
    assert orjson.loads(live.run.output or b"") == orjson.loads(ref.run.output or b"")
    assert {n: s.status for n, s in live.steps.items()} == {
        n: s.status for n, s in ref.steps.items()
    }


def test_a_step_claimed_between_the_decision_and_the_move_makes_it_refuse() -> None:
    old = plan([StepPlan("a", ()), StepPlan("b", (("a", EdgeKind.DATA),))], "1")
    new = plan([StepPlan("a", ()), StepPlan("b", (("a", EdgeKind.DATA),), priority=5)], "2")
    live = Rows(*new_run(old, "r", b"{}", NOW)[:2])
    live.finish("a")
    found = fit(live.run, list(live.steps.values()), old, new)
    assert (found.reason, found.changed) == (None, ["b"])
    live.claim("b")  # a worker, meanwhile

    txn = live.run_txn(lambda t: move(t, "r", old=old, new=new, by="t", expected=found))

    assert txn.result.refusal == (
        "run 'r' changed while it was being moved: a worker claimed or ended a step"
    )
    assert not txn.events and not txn.reshaped and live.run.fingerprint == "fp1"
    assert live.steps["b"].priority == 0
    # decided again, it fits (b runs as it was: its priority no longer matters) or not
    again = fit(live.run, list(live.steps.values()), old, new)
    assert (
        again.reason == "step 'b' is running (attempt 1) and version 2 changes its options "
        "(priority)"
    )


def test_a_run_of_another_workflow_or_of_a_version_the_store_does_not_know_is_refused() -> None:
    old = plan([StepPlan("a", ())], "1")
    live = Rows(*new_run(old, "r", b"{}", NOW)[:2])
    other = WorkflowPlan("other", "2", "fp2", (StepPlan("a", ()),))
    assert fit(live.run, list(live.steps.values()), old, other).reason == (
        "run 'r' is of workflow 'wf', version 2 is of workflow 'other'"
    )
    assert fit(
        live.run, list(live.steps.values()), None, plan([StepPlan("a", ())], "2")
    ).reason == (
        "run 'r' is on version 1 (fp1), which this store does not know: nothing to compare the "
        "new version with"
    )
