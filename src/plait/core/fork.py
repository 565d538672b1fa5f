"""Forks (DESIGN §3.3): a new run that reuses what its parent recorded upstream of a step. Pure.

    fork = plan_fork(plan, parent_steps, parent_plan, from_step, parent_id)   # what is reused
    run, steps, events = fork_run(plan, parent, fork, run_id=…, input_json=…, …)
    store.create_run(run, steps, events)

A fork runs on `plan` (the newest version of the workflow). It re-runs `from_step` and everything
downstream of it, and reuses the recorded output of every other step, not only of the direct
dependencies of `from_step`, with two exceptions that run again instead: a step that did not end
`done` in the parent (or that the parent does not have), and a step downstream of one that runs
again, so that a reused output was always computed from reused outputs.

Reused steps are `done` from the start and say which run computed their output (`reused_from`:
the parent, or the run the parent itself reused it from). The rest is a new run in which the
reused steps are already complete: each step waits only for its dependencies that run again, and
one whose dependencies are all reused starts the way a new run's first steps do. Its counters are
those of a new run after the reused steps completed (tests/unit/core/test_fork.py checks this on
random graphs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import _codec
from .._errors import InputError
from . import session
from .cascade import new_run
from .rows import EventRow, RunRow, StateChange, StepRow, StepStatus, WorkflowPlan
from .spawn import spawner_of


@dataclass(frozen=True, slots=True)
class ForkPlan:
    """What a fork reuses and what it runs again (both in the order of the workflow's steps)."""

    parent_id: str
    from_step: str
    reused: dict[str, StepRow]  # step → the parent's record of it
    rerun: dict[str, str]  # step → why it runs again


def downstream(plan: WorkflowPlan, name: str) -> set[str]:
    """`name` and every step that depends on it, directly or not (whatever the kind of edge)."""
    dependents: dict[str, list[str]] = {s.name: [] for s in plan.steps}
    for s in plan.steps:
        for dep, _kind in s.dependencies:
            dependents.setdefault(dep, []).append(s.name)
    found, todo = {name}, [name]
    while todo:
        for target in dependents.get(todo.pop(), ()):
            if target not in found:
                found.add(target)
                todo.append(target)
    return found


def topological(plan: WorkflowPlan) -> list[str]:
    """The plan's steps, each after its dependencies (a plan has no cycle: it was checked)."""
    left = {s.name: len(s.dependencies) for s in plan.steps}
    dependents: dict[str, list[str]] = {s.name: [] for s in plan.steps}
    for s in plan.steps:
        for dep, _kind in s.dependencies:
            dependents[dep].append(s.name)
    order = [name for name, n in left.items() if n == 0]
    for name in order:  # grows while it is walked
        for target in dependents[name]:
            left[target] -= 1
            if left[target] == 0:
                order.append(target)
    return order


def plan_fork(
    plan: WorkflowPlan,
    parent_id: str,
    parent_steps: Sequence[StepRow],
    parent_plan: WorkflowPlan | None,
    from_step: str,
) -> ForkPlan:
    """Decide what a fork of the parent from `from_step`, on `plan`, reuses.

    Raises InputError if `plan` has no step `from_step`, or lacks a step whose output the
    fork would reuse: a step that ended `done` in the parent and is not downstream of
    `from_step` in the parent's own version (`parent_plan`; its steps, not steps added while
    the run ran)."""
    names = {s.name for s in plan.steps}
    spawned = {s.name: s for s in parent_steps if s.task is not None}
    if from_step in spawned:
        root = from_step
        while root in spawned:  # up to the workflow step that spawned it, maybe through others
            root = spawner_of(spawned[root]) or ""
        raise InputError(
            f"cannot fork run {parent_id!r} from step {from_step!r}: it was spawned while the "
            f"run ran, and a fork runs the workflow's own steps; fork from {root!r}, the "
            "workflow step that spawned it"
        )
    # steps spawned while the parent ran are not reused: a reused parent's output stands for them
    parent_steps = [s for s in parent_steps if s.task is None]
    if from_step not in names:
        raise InputError(
            f"cannot fork run {parent_id!r} from step {from_step!r}: workflow {plan.name!r} "
            f"v{plan.version} ({plan.fingerprint}) has no such step; its steps: "
            f"{', '.join(s.name for s in plan.steps)}"
        )
    recorded = {s.name: s for s in parent_steps}
    if parent_plan is not None:
        before = [s.name for s in parent_plan.steps]
        rerun_before = downstream(parent_plan, from_step) if from_step in before else set()
    else:  # the parent's version is not in the store: its step records stand for it
        before = list(recorded)
        rerun_before = _downstream_of_rows(parent_steps, from_step)
    lost = [
        name
        for name in before
        if name not in names
        and name not in rerun_before
        and name in recorded
        and recorded[name].status is StepStatus.DONE
    ]
    if lost:
        raise InputError(
            f"cannot fork run {parent_id!r} from step {from_step!r} on workflow {plan.name!r} "
            f"v{plan.version} ({plan.fingerprint}): the fork would reuse the output of "
            f"{_quoted(lost)}, which this version no longer has; fork from a step "
            f"{'they depend' if len(lost) > 1 else 'it depends'} on so that "
            f"{'they are' if len(lost) > 1 else 'it is'} not reused, or run a version that has "
            f"{'them' if len(lost) > 1 else 'it'}"
        )
    again = downstream(plan, from_step)
    deps = {s.name: [d for d, _kind in s.dependencies] for s in plan.steps}
    reused: dict[str, StepRow] = {}
    rerun: dict[str, str] = {}
    for name in topological(plan):
        row = recorded.get(name)
        if name == from_step:
            rerun[name] = "the fork starts from it"
        elif name in again:
            rerun[name] = f"it is downstream of {from_step!r}"
        elif row is None:
            rerun[name] = f"run {parent_id!r} does not have it"
        elif row.status is not StepStatus.DONE:
            rerun[name] = f"it is {row.status.value} in run {parent_id!r}"
        elif any(d not in reused for d in deps[name]):
            first = next(d for d in deps[name] if d not in reused)
            rerun[name] = f"it depends on {first!r}, which runs again"
        else:
            reused[name] = row
    order = {s.name: i for i, s in enumerate(plan.steps)}
    return ForkPlan(
        parent_id,
        from_step,
        dict(sorted(reused.items(), key=lambda kv: order[kv[0]])),
        dict(sorted(rerun.items(), key=lambda kv: order[kv[0]])),
    )


def _downstream_of_rows(rows: Sequence[StepRow], name: str) -> set[str]:
    edges = {r.name: [e.target for e in r.dependents] for r in rows}
    found, todo = {name}, [name]
    while todo:
        for target in edges.get(todo.pop(), ()):
            if target not in found:
                found.add(target)
                todo.append(target)
    return found if name in edges else set()


def check_overrides(fork: ForkPlan, names: Sequence[str]) -> None:
    """Overrides replace outputs of reused steps only: InputError naming any other step."""
    for name in names:
        if name in fork.reused:
            continue
        why = fork.rerun.get(name, "the workflow has no such step")
        reusable = _quoted(list(fork.reused)) if fork.reused else "none"
        raise InputError(
            f"cannot override step {name!r}: the fork of run {fork.parent_id!r} from "
            f"{fork.from_step!r} does not reuse it ({why}); overrides replace the output of "
            f"reused steps: {reusable}"
        )


def fork_run(
    plan: WorkflowPlan,
    parent: RunRow,
    fork: ForkPlan,
    *,
    run_id: str,
    input_json: bytes,
    overrides: Mapping[str, bytes],
    by: str,
    now: float,
    state: bytes | None = None,
) -> tuple[RunRow, list[StepRow], list[EventRow]]:
    """The rows of the fork, like `new_run`'s: reused steps `done`, the rest waiting only for the
    steps that run again. Events: run_started, run_forked (who, from what), one step_reused per
    reused step. `overrides` (step → JSON) must name reused steps (see `check_overrides`)."""
    check_overrides(fork, list(overrides))
    reused = fork.reused
    # The steps that run again, as a new run of a workflow in which they do not wait for the
    # reused steps: new_run makes those with nothing left to wait for start as first steps do
    # (ready, delayed, or waiting at their gate). Reused steps lose their gates there, so that
    # none of them is said to wait; their rows get their options back below.
    slim = dataclasses.replace(
        plan,
        steps=tuple(
            dataclasses.replace(
                s,
                dependencies=tuple((d, k) for d, k in s.dependencies if d not in reused),
                defaults=tuple(d for d in s.defaults if d not in reused),
                options=None if s.name in reused else s.options,
            )
            for s in plan.steps
        ),
    )
    run, steps, events = new_run(slim, run_id, input_json, now)
    whole_run, whole_steps, _ = new_run(plan, run_id, input_json, now)
    for step, whole in zip(steps, whole_steps, strict=True):
        step.dependents = whole.dependents  # the full graph, for inspection and operator actions
        step.options = whole.options
        source = reused.get(step.name)
        if source is None:
            continue
        step.status = StepStatus.DONE
        step.unmet = 0
        step.output = overrides.get(step.name, source.output)
        step.input = source.input  # what its handler received, in the run that computed it
        step.reused_from = source.reused_from or parent.id
        step.available_at = step.ready_at = None
        step.finished_at = now
    run.sinks = whole_run.sinks
    run.unfinished = len(steps) - len(reused)
    run.parent_run = parent.id
    run.forked_from = fork.from_step
    run.state = state
    run.name, run.labels, run.metadata = parent.name, parent.labels, parent.metadata  # its kin

    def emit(type_: str, step: str | None, **payload: object) -> None:
        if step is not None:
            payload["step"] = step
        events.append(EventRow(run_id, run.next_seq, type_, step, payload, now))
        run.next_seq += 1

    emit(
        "run_forked",
        None,
        parent_run=parent.id,
        from_step=fork.from_step,
        by=by,
        reused=len(reused),
        overridden=sorted(overrides),
        input_changed=input_json != parent.input,
        **({} if state is None else {"state": session.decode(state)}),
    )
    for step in steps:
        if step.name in reused:
            emit(
                "step_reused",
                step.name,
                from_run=step.reused_from,
                overridden=step.name in overrides,
            )
    return run, steps, events


def state_at_fork(events: Iterable[EventRow], fork: ForkPlan) -> bytes | None:
    """The session state a fork starts from: the state the parent started from (its own
    `run_forked` event's, if it is a fork itself) with the changes of the steps the fork reuses
    applied in the order they were committed; the changes of the steps that run again are not."""
    doc: dict[str, Any] = {}
    changes: list[StateChange] = []
    for event in sorted(events, key=lambda e: e.seq):
        inherited = event.payload.get("state")
        if event.type == "run_forked" and isinstance(inherited, dict):
            doc = {str(k): v for k, v in inherited.items()}
        elif event.type == session.CHANGED and event.step in fork.reused:
            op, key = event.payload.get("op"), event.payload.get("key")
            if op in ("set", "append") and isinstance(key, str):
                changes.append(StateChange(op, key, _codec.dumps(event.payload.get("value"))))
    for change in changes:  # committed changes apply as they did (a conflict failed its step)
        try:
            session.apply(doc, (change,), "")
        except session.SessionConflict:  # only over an inherited state that since changed
            continue
    return _codec.dumps(doc) if doc else None


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)
