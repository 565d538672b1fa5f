"""Moving a run in flight to another version of its workflow (issue 17, item 2). Pure.

`fit` decides whether a run fits a new plan, from the run's rows and the plan it was started on:
- a run that has ended does not move;
- a step that has started (an attempt, or a terminal state) must stay, with the same
  dependencies: the new version may not remove it nor change what it depends on;
- a step that has not started may be dropped by the new version, or have its dependencies or
  options changed (they apply since it has not run);
- a step the new version adds must come downstream of work not yet finished (one of its
  dependencies unfinished, or added too): a step after everything it needs has ended is a fork.
Spawned steps (`ctx.spawn`) stay as they are. The move itself (`move`) is an operator action:
it decides again inside the store's transaction, with every row of the run loaded, so a worker
that claimed or finished a step meanwhile makes it refuse rather than write over it.

What the move writes today is the run's version (fingerprint and version string): a new
version whose graph keeps the run's steps as they are (other code, retries, timeouts, version
string). A run that fits only by adding, dropping or changing steps is refused saying so, and
`dry_run` reports what that change would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .rows import RunRow, StepPlan, StepRow, StepStatus, WorkflowPlan
from .txn import Transition, Txn, need_all, steps_of
from .versions import structure_differs

NOT_STARTED = (StepStatus.PENDING, StepStatus.READY, StepStatus.WAITING)
UPGRADED = "run_upgraded"  # the event of a run moved to another version


@dataclass(slots=True)
class Fit:
    """Whether a run fits a new version (`reason` says why not), and what moving it changes."""

    run_id: str
    reason: str | None = None
    added: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # not started: dependencies or options

    @property
    def fits(self) -> bool:
        return self.reason is None

    @property
    def restructures(self) -> bool:
        return bool(self.added or self.dropped or self.changed)


def started(step: StepRow) -> bool:
    return step.attempt > 0 or step.status not in NOT_STARTED


def _deps(step: StepPlan) -> str:
    return ", ".join(f"{d} ({k.value})" for d, k in step.dependencies) or "none"


def fit(run: RunRow, steps: Sequence[StepRow], old: WorkflowPlan | None, new: WorkflowPlan) -> Fit:
    out = Fit(run.id)
    if run.status.terminal:
        out.reason = f"run {run.id!r} is {run.status.value}: only runs in flight move"
        return out
    old_steps = {} if old is None else {s.name: s for s in old.steps}
    new_steps = {s.name: s for s in new.steps}
    rows = {s.name: s for s in steps if s.task is None}
    for name, row in rows.items():
        planned = new_steps.get(name)
        if planned is None:
            if started(row):
                out.reason = (
                    f"step {name!r} is {row.status.value} (attempt {row.attempt}) and version "
                    f"{new.version} ({new.fingerprint}) removes it"
                )
                return out
            out.dropped.append(name)
            continue
        before = old_steps.get(name)
        same_deps = before is not None and set(before.dependencies) == set(planned.dependencies)
        if started(row):
            if before is not None and not same_deps:
                out.reason = (
                    f"step {name!r} is {row.status.value} and its dependencies changed "
                    f"({_deps(before)} -> {_deps(planned)})"
                )
                return out
            continue
        if before is None or not same_deps or structure_differs(before, planned):
            out.changed.append(name)
    unfinished = {n for n, r in rows.items() if not r.status.terminal}
    added = [n for n in new_steps if n not in rows]
    for name in added:
        deps = {d for d, _ in new_steps[name].dependencies}
        if not deps & (unfinished | set(added)):
            out.reason = (
                f"version {new.version} adds step {name!r} after steps that have all ended "
                f"({', '.join(sorted(deps)) or 'none'}): fork the run to run it"
            )
            return out
    out.added = added
    return out


def move(
    txn: Txn, run_id: str, *, old: WorkflowPlan | None, new: WorkflowPlan, by: str
) -> Transition:
    """Move a run to version `new` if it fits now (decided again on the rows as committed),
    and only where its steps stay as they are (see the module docstring); else refuse."""
    yield from need_all(txn, run_id)
    run = txn.runs.get(run_id)
    if run is None:
        txn.result.refusal = f"run {run_id!r} does not exist"
        return
    if old is not None and run.fingerprint != old.fingerprint:
        txn.result.refusal = (
            f"run {run_id!r} moved to version {run.version} ({run.fingerprint}) meanwhile"
        )
        return
    decided = fit(run, steps_of(txn, run_id), old, new)
    if decided.reason is not None:
        txn.result.refusal = decided.reason
        return
    if decided.restructures:
        txn.result.refusal = unsupported(decided)
        return
    before, version = run.fingerprint, run.version
    run.fingerprint, run.version = new.fingerprint, new.version
    txn.moved_runs.add(run_id)
    txn.emit(run, UPGRADED, None, from_fingerprint=before, from_version=version,
             fingerprint=new.fingerprint, version=new.version, by=by)  # fmt: skip
    txn.result.readied += 1  # workers of the new version look for its ready steps


def unsupported(decided: Fit) -> str:
    parts = []
    for what, names in (
        ("add", decided.added),
        ("drop", decided.dropped),
        ("change", decided.changed),
    ):
        if names:
            parts.append(f"{what} {', '.join(repr(n) for n in names)}")
    return (
        f"it fits, but moving would {'; '.join(parts)}: moving a run whose steps change is not "
        "supported yet (only the version of a run whose steps stay as they are); fork it instead"
    )
