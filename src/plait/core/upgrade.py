"""Moving a run in flight to another version of its workflow (issue 17, item 2). Pure.

`fit` decides whether a run fits a new plan, from the run's rows and the plan it was started on:
- a run that has ended does not move;
- a step that has started and ended must stay, with the same dependencies: the new version may
  not remove it nor change what it depends on (its output was made from those);
- a step running now (claimed under a lease, or joining the steps it spawned) must stay as it is:
  neither removed nor changed (dependencies or options);
- a step that has not started may be dropped by the new version, or have its dependencies or
  options changed (they apply since it has not run);
- a step the new version adds must come downstream of work not yet finished (one of its
  dependencies unfinished, or added too): a step after everything it needs has ended is a fork.
Spawned steps (`ctx.spawn`) stay as they are.

`move` is the operator action that applies it, in one store transaction with every row of the run
loaded: it decides again on the rows as committed, so a worker that claimed or finished a step
meanwhile makes it refuse (`MOVED_MEANWHILE`: the caller decides again and retries) rather than
write over it. Then: dropped steps are deleted, steps added or changed are (re)made as a new
run of the new version would have them given the steps that ended (pending on what has not
ended, ready or skipped if everything they need has), the edges of every step are the new
version's, and the run's sinks too. The invariant (tests/unit/core/test_upgrade.py): the run's
rows after the move are those of a new run of the new version in which the steps that ended
had ended the same way, so its completion is that of a new run on the same outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from .cascade import doom, end_if_done, reached, settle
from .rows import (
    Edge,
    EdgeKind,
    RunRow,
    StepOptions,
    StepPlan,
    StepRow,
    StepStatus,
    WorkflowPlan,
)
from .txn import Transition, Txn, need_all, steps_of
from .versions import structure_differs

NOT_STARTED = (StepStatus.PENDING, StepStatus.READY, StepStatus.WAITING)
UPGRADED = "run_upgraded"  # the event of a run moved to another version
# the refusal of a move whose run changed between the decision and the transaction (a worker
# claimed or finished a step): `engine.versions.upgrade` decides again and retries
MOVED_MEANWHILE = "changed while it was being moved"

Deps = frozenset[tuple[str, EdgeKind, bool]]  # (dependency, kind, absorbed by a default)


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

    def same_move(self, other: Fit) -> bool:
        return (self.reason, self.added, self.dropped, self.changed) == (
            other.reason, other.added, other.dropped, other.changed,
        )  # fmt: skip


def started(step: StepRow) -> bool:
    """Has the step run (or is it running, or has it a payload: an early signal)?"""
    return (
        step.attempt > 0
        or step.iteration > 0
        or step.started_at is not None
        or step.output is not None
        or step.status not in NOT_STARTED
    )


def running(step: StepRow) -> bool:
    """Claimed under a lease, or a parent waiting for the steps it spawned."""
    return step.status is StepStatus.RUNNING or step.joining


def _plan_deps(step: StepPlan) -> Deps:
    return frozenset((d, k, d in step.defaults) for d, k in step.dependencies)


def _row_deps(rows: Mapping[str, StepRow]) -> dict[str, Deps]:
    """Each static step's dependencies as the run's rows have them (their `dependents` edges)."""
    found: dict[str, set[tuple[str, EdgeKind, bool]]] = {name: set() for name in rows}
    for name, row in rows.items():
        for edge in row.dependents:
            if edge.target in found and edge.kind is not EdgeKind.CHILD:
                found[edge.target].add((name, edge.kind, edge.absorbs))
    return {name: frozenset(deps) for name, deps in found.items()}


def _describe(deps: Deps) -> str:
    return ", ".join(f"{d} ({k.value})" for d, k, _ in sorted(deps)) or "none"


def fit(run: RunRow, steps: Sequence[StepRow], old: WorkflowPlan | None, new: WorkflowPlan) -> Fit:
    out = Fit(run.id)
    if run.status.terminal:
        out.reason = f"run {run.id!r} is {run.status.value}: only runs in flight move"
        return out
    if run.workflow != new.name:
        out.reason = (
            f"run {run.id!r} is of workflow {run.workflow!r}, version {new.version} is of "
            f"workflow {new.name!r}"
        )
        return out
    if old is None:
        out.reason = (
            f"run {run.id!r} is on version {run.version} ({run.fingerprint}), which this store "
            "does not know: nothing to compare the new version with"
        )
        return out
    old_steps = {s.name: s for s in old.steps}
    new_steps = {s.name: s for s in new.steps}
    rows = {s.name: s for s in steps if s.task is None}
    deps_now = _row_deps(rows)
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
        same_deps = deps_now[name] == _plan_deps(planned)
        options = [] if before is None else structure_differs(before, planned)
        if running(row) and (not same_deps or options):
            what = "dependencies" if not same_deps else "options (" + ", ".join(options) + ")"
            out.reason = (
                f"step {name!r} is running (attempt {row.attempt}) and version {new.version} "
                f"changes its {what}"
            )
            return out
        if started(row):
            if not same_deps:
                out.reason = (
                    f"step {name!r} is {row.status.value} and its dependencies changed "
                    f"({_describe(deps_now[name])} -> {_describe(_plan_deps(planned))})"
                )
                return out
            continue
        if before is None or not same_deps or options:
            out.changed.append(name)
    unfinished = {n for n, r in rows.items() if not r.status.terminal and n not in out.dropped}
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


def sinks_of(plan: WorkflowPlan) -> tuple[str, ...]:
    """The steps whose outputs make a run's output (as `cascade.new_run` finds them)."""
    at_end = {s.name for s in plan.steps if s.options is not None and s.options.at_end}
    sinks = {s.name: s.name not in at_end for s in plan.steps}
    for s in plan.steps:
        if s.name not in at_end:
            for dep, _ in s.dependencies:
                sinks[dep] = False
    return tuple(name for name, sink in sinks.items() if sink)


def move(
    txn: Txn,
    run_id: str,
    *,
    old: WorkflowPlan | None,
    new: WorkflowPlan,
    by: str,
    expected: Fit | None = None,
    keys: Mapping[str, str] | None = None,
) -> Transition:
    """Move a run to version `new` if it fits now (decided again on the rows as committed; if
    `expected` is given, only if that decision is the same), adding, dropping and changing its
    steps as the module docstring says; else refuse. `keys`: the concurrency keys of the steps
    it (re)makes, resolved from the run's input by the caller (who has the code)."""
    yield from need_all(txn, run_id)
    run = txn.runs.get(run_id)
    if run is None:
        txn.result.refusal = f"run {run_id!r} does not exist"
        return
    if old is not None and run.fingerprint != old.fingerprint:
        txn.result.refusal = (
            f"run {run_id!r} {MOVED_MEANWHILE}: it is on version {run.version} "
            f"({run.fingerprint}) now"
        )
        return
    decided = fit(run, steps_of(txn, run_id), old, new)
    if expected is not None and not decided.same_move(expected):
        txn.result.refusal = f"run {run_id!r} {MOVED_MEANWHILE}: a worker claimed or ended a step"
        return
    if decided.reason is not None:
        txn.result.refusal = decided.reason
        return
    before, version = run.fingerprint, run.version
    run.fingerprint, run.version = new.fingerprint, new.version
    txn.moved_runs.add(run_id)
    txn.emit(run, UPGRADED, None, from_fingerprint=before, from_version=version,
             fingerprint=new.fingerprint, version=new.version, by=by, added=decided.added,
             dropped=decided.dropped, changed=decided.changed)  # fmt: skip
    if decided.restructures:
        yield from _restructure(txn, run, new, decided, keys or {})
    txn.result.readied += 1  # workers of the new version look for its ready steps


def _restructure(
    txn: Txn, run: RunRow, new: WorkflowPlan, decided: Fit, keys: Mapping[str, str]
) -> Transition:
    rows = {s.name: s for s in steps_of(txn, run.id) if s.task is None}
    static = set(rows)
    for name in decided.dropped:
        txn.drop(rows.pop(name))
        run.unfinished -= 1
    planned = {s.name: s for s in new.steps}
    dependents: dict[str, list[Edge]] = {name: [] for name in planned}
    for s in new.steps:
        for dep, kind in s.dependencies:
            dependents[dep].append(Edge(s.name, kind, dep in s.defaults))
    run_priority = next((r.options.run_priority for r in rows.values() if r.options is not None), 0)
    remade: list[StepRow] = []
    for s in new.steps:
        row = rows.get(s.name)
        if row is None:
            row = StepRow(run.id, s.name, run.next_idx, StepStatus.PENDING, 0)
            run.next_idx += 1
            run.unfinished += 1
            rows[s.name] = row
            txn.insert(row)
        elif s.name not in decided.changed:
            continue
        else:
            txn.reshape(row)
        row.optional = s.optional
        row.priority = s.priority + run_priority
        row.options = _options(s.options, run_priority, keys.get(s.name))
        remade.append(row)
    for name, row in rows.items():  # every static step's edges are the new version's
        edges = tuple(dependents[name])
        edges += tuple(e for e in row.dependents if e.target not in static)  # to spawned ones
        if edges != row.dependents:
            row.dependents = edges
            txn.reshape(row)
    run.sinks = sinks_of(new)
    ended: list[StepRow] = []
    for row in remade:  # counted before any of them ends: each waits for those not ended
        row.unmet = 0
        row.skip_reason = None
        for dep, kind in planned[row.name].dependencies:
            up = rows[dep]
            if not up.status.terminal:
                row.unmet += 1
            elif row.skip_reason is None:
                row.skip_reason = doom(up, Edge(row.name, kind, dep in planned[row.name].defaults))
    for row in remade:
        gated = row.options is not None and row.options.gate is not None
        if row.unmet > 0:
            row.status = StepStatus.PENDING
            row.available_at = row.ready_at = None
        elif row.skip_reason is not None:
            row.status = StepStatus.SKIPPED
            row.finished_at = txn.now
            txn.emit(run, "step_skipped", row.name, reason=row.skip_reason)
            ended.append(row)
        elif row.status is StepStatus.PENDING or gated != (row.status is StepStatus.WAITING):
            reached(txn, run, row, ended)
        elif row.status is StepStatus.READY:
            delay = row.options.delay if row.options is not None else None
            row.available_at = (row.ready_at or txn.now) + (delay or 0.0)
    for row in ended:
        yield from settle(txn, run, row)
    txn.changed_runs[run.id] = run
    yield from end_if_done(txn, run)


def _options(options: StepOptions | None, run_priority: int, key: str | None) -> StepOptions | None:
    if run_priority:
        options = replace(options or StepOptions(), run_priority=run_priority)
    if key is not None and options is not None:
        options = replace(options, key=key)
    return options
