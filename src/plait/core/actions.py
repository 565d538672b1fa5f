"""Operator actions on runs (DESIGN §3.3), as transitions of the pure state machine.

Each is a generator over a `Txn`, like the worker transitions (`core.transitions`): it asks for
the rows it needs, decides, and changes records; the store commits it in one transaction. An
action that the run's state does not allow changes nothing and sets `txn.result.refusal` to a
sentence saying the state and what is allowed, which the engine raises. Actions are idempotent
where a user would retry them: cancelling a cancelled run is a no-op.

Operator actions may load every step of a run (`need_all`): they are rare and not on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable

from .cascade import (
    CHILD_FAILED,
    doom,
    end_unfinished,
    fails_run,
    in_flight,
    reach,
    reached,
    settle,
    skipped_by_condition,
)
from .rows import Edge, EdgeKind, RunRow, RunStatus, StepRow, StepStatus
from .spawn import children_of, recount, reopen_parent
from .txn import Transition, Txn, need_all, steps_of

REJECTED = "rejected"  # the error code of a rejected approval (see `gates.reject`)
CANCELLABLE = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSING, RunStatus.PAUSED)


def _allowed(statuses: tuple[RunStatus, ...]) -> str:
    return ", ".join(s.value for s in statuses)


def _run_or_refuse(txn: Txn, run_id: str) -> RunRow | None:
    run = txn.runs.get(run_id)
    if run is None:
        txn.result.refusal = f"run {run_id!r} does not exist"
    return run


def _refuse(txn: Txn, run: RunRow, action: str, done: str, allowed: tuple[RunStatus, ...]) -> None:
    """Refuse an action the run's state does not allow, saying when it is allowed."""
    txn.result.refusal = (
        f"run {run.id!r} is {run.status.value}: it cannot be {done} "
        f"({action} is allowed while a run is {_allowed(allowed)})"
    )


def cancel(txn: Txn, run_id: str, *, reason: str | None, by: str) -> Transition:
    """Cancel a run: terminal. Waiting steps end `cancelled`; running steps are interrupted (the
    worker learns it from its next heartbeat) and whatever they report schedules nothing."""
    yield from need_all(txn, run_id)
    run = _run_or_refuse(txn, run_id)
    if run is None:
        return
    if run.status is RunStatus.CANCELLED:
        return  # already done: retrying a cancel is harmless
    if run.status not in CANCELLABLE:
        _refuse(txn, run, "cancel", "cancelled", CANCELLABLE)
        return
    running = yield from end_unfinished(txn, run, RunStatus.CANCELLED, reason or "cancelled", by=by)
    txn.emit(run, "run_cancelled", None, by=by, reason=reason, interrupting=running)


PAUSABLE = (RunStatus.PENDING, RunStatus.RUNNING)
RESUMABLE = (RunStatus.PAUSING, RunStatus.PAUSED)


def pause(txn: Txn, run_id: str, *, by: str) -> Transition:
    """Dispatch nothing new; steps in flight finish, retries included. The run is `pausing`
    until none is left, then `paused`. Pausing a pausing or paused run changes nothing."""
    yield from need_all(txn, run_id)
    run = _run_or_refuse(txn, run_id)
    if run is None:
        return
    if run.status in RESUMABLE:
        return
    if run.status not in PAUSABLE:
        _refuse(txn, run, "pause", "paused", PAUSABLE)
        return
    flying = [s.name for s in steps_of(txn, run_id) if in_flight(s)]
    run.status = RunStatus.PAUSING if flying else RunStatus.PAUSED
    txn.emit(run, "run_pausing" if flying else "run_paused", None, by=by, in_flight=flying)


def resume(txn: Txn, run_id: str, *, by: str) -> Transition:
    """Dispatch again. The cascades of steps that ended during the pause were applied as they
    ended, so what became ready meanwhile is claimed now. Resuming a running run changes nothing."""
    yield from need_all(txn, run_id)
    run = _run_or_refuse(txn, run_id)
    if run is None:
        return
    if run.status in PAUSABLE:
        return
    if run.status not in RESUMABLE:
        _refuse(txn, run, "resume", "resumed", RESUMABLE)
        return
    run.status = RunStatus.RUNNING if run.started_at is not None else RunStatus.PENDING
    txn.emit(run, "run_resumed", None, by=by)
    txn.result.readied += sum(1 for s in steps_of(txn, run_id) if s.status is StepStatus.READY)


def retry(txn: Txn, run_id: str, step_name: str, *, by: str) -> Transition:
    """A failed step goes back to `ready` with a fresh attempt budget; the dependents its failure
    skipped go back to `pending` (unless another failure still dooms them); the run runs again.
    A paused run stays paused: the step waits for `resume` like the rest. A parent failed by the
    steps it spawned (`child_failed`) is retried by retrying those: it waits for them again."""
    yield from need_all(txn, run_id)
    run = _run_or_refuse(txn, run_id)
    if run is None:
        return
    steps = {s.name: s for s in steps_of(txn, run_id)}
    step = steps.get(step_name)
    if step is None:
        txn.result.refusal = f"run {run_id!r} has no step {step_name!r}"
        return
    if run.status is RunStatus.CANCELLED:
        txn.result.refusal = f"run {run_id!r} is cancelled: its steps cannot be retried"
        return
    if step.status is not StepStatus.FAILED:
        txn.result.refusal = (
            f"step {step_name!r} of run {run_id!r} is {step.status.value}: "
            "only a failed step can be retried"
        )
        return
    upstream = upstream_of(steps.values())
    leaves = _failed_leaves(step, upstream)
    if not leaves:
        txn.result.refusal = (
            f"step {step_name!r} of run {run_id!r} was failed by the steps it spawned, "
            "none of which failed in its current pass: there is nothing to retry"
        )
        return
    back: list[StepRow] = []
    parents: dict[str, StepRow] = {}
    for failed in leaves:
        _retry_one(txn, run, steps, upstream, failed, back, parents, by=by)
    for dep in back:  # counted once every step has come back: each waits for all that did
        dep.unmet = sum(1 for up, _ in upstream.get(dep.name, ()) if not up.status.terminal)
    for parent in parents.values():  # likewise, the parents joining their children again
        recount(parent, children_of(parent, upstream.get(parent.name, ())))
        txn.touch(parent)
    if run.status.terminal:
        run.status = RunStatus.RUNNING
        run.finished_at = None
        run.output = None
    if run.status is RunStatus.PENDING:
        run.status = RunStatus.RUNNING
    failed_now = [s for s in steps.values() if s.status.terminal and fails_run(s)]
    run.error = None
    if failed_now:
        first = failed_now[0]
        what = first.error_message or first.skip_reason or first.status.value
        run.error = f"step {first.name!r} {first.status.value}: {what}"
    txn.changed_runs[run.id] = run


ENDED_FOR_FAILURE = (RunStatus.FAILED, RunStatus.CANCELLED)


def resume_failed(txn: Txn, run_id: str, *, by: str) -> Transition:
    """A failed or cancelled run runs again (fluxor's ResumeFailedProcess): its failed and
    cancelled steps, and the steps skipped because of them, go back to `pending` with a fresh
    attempt budget, and are ready as soon as their dependencies allow; completed steps keep
    their outputs (and steps skipped by a condition stay skipped). A parent that spawned steps
    joins them again. Refused for a run that has not ended, has completed, or still has running
    steps (interrupted when it ended, their outcomes not reported yet)."""
    yield from need_all(txn, run_id)
    run = _run_or_refuse(txn, run_id)
    if run is None:
        return
    if run.status not in ENDED_FOR_FAILURE:
        hint = {
            RunStatus.COMPLETED: "it has nothing to run again",
            RunStatus.PAUSED: "resume it instead",
            RunStatus.PAUSING: "resume it instead",
        }.get(run.status, "it has not ended")
        txn.result.refusal = (
            f"run {run_id!r} is {run.status.value}: only a failed or cancelled run can be "
            f"resumed this way ({hint})"
        )
        return
    steps = steps_of(txn, run_id)
    running = [s.name for s in steps if s.status is StepStatus.RUNNING]
    if running:
        txn.result.refusal = (
            f"run {run_id!r} still has running steps ({', '.join(running)}), interrupted when it "
            "ended: resume it once their workers have reported them (or their leases expired)"
        )
        return
    back = [
        s
        for s in steps
        if s.status in (StepStatus.FAILED, StepStatus.CANCELLED)
        or (s.status is StepStatus.SKIPPED and not skipped_by_condition(s))
    ]
    previous = run.status
    run.status = RunStatus.RUNNING if run.started_at is not None else RunStatus.PENDING
    run.finished_at = None
    run.output = None
    run.error = None
    txn.emit(run, "run_reopened", None, by=by, previous=previous.value, steps=len(back))
    for step in back:
        was, code = step.status, step.error_code
        _reopen(run, step)
        step.status = StepStatus.PENDING
        step.attempt = step.recoveries = 0
        step.error_code = step.error_message = step.skip_reason = None
        step.lease_token = step.lease_expires_at = step.worker_id = step.started_at = None
        step.available_at = step.ready_at = None
        txn.touch(step)
        txn.emit(run, "step_reopened", step.name, by=by, previous=was.value, code=code)
    upstream = upstream_of(steps)
    ready: list[StepRow] = []
    for step in back:  # counted once every step is back: each waits for all that came back
        ups = upstream.get(step.name, ())
        children = children_of(step, ups)
        if children:  # a parent that spawned steps: it joins them again
            step.status = StepStatus.WAITING
            recount(step, children)
            continue
        step.unmet = sum(
            1 for up, e in ups if e.kind is not EdgeKind.CHILD and not up.status.terminal
        )
        reason = doomed_by(ups)
        if reason is not None:  # a dependency that stays as it ended (say, cancelled before)
            step.skip_reason = reason
        if step.unmet <= 0:
            ready.append(step)
    for step in ready:
        if step.skip_reason is not None:
            step.status = StepStatus.SKIPPED
            step.finished_at = txn.now
            txn.emit(run, "step_skipped", step.name, reason=step.skip_reason)
            yield from settle(txn, run, step)
            continue
        settled: list[StepRow] = []
        reached(txn, run, step, settled)
        for done in settled:  # a signal delivered while it was cancelled
            yield from settle(txn, run, done)
    txn.changed_runs[run.id] = run


def _failed_leaves(step: StepRow, upstream: dict[str, list[tuple[StepRow, Edge]]]) -> list[StepRow]:
    """The step itself, or, for a parent failed by its children, the failed children (theirs,
    if they were failed by their own children) that a retry runs again."""
    if step.error_code != CHILD_FAILED:
        return [step]
    found = []
    for child in children_of(step, upstream.get(step.name, ())):
        if child.status is StepStatus.FAILED and not child.optional:
            found.extend(_failed_leaves(child, upstream))
    return found


def _retry_one(
    txn: Txn,
    run: RunRow,
    steps: dict[str, StepRow],
    upstream: dict[str, list[tuple[StepRow, Edge]]],
    step: StepRow,
    back: list[StepRow],
    parents: dict[str, StepRow],
    *,
    by: str,
) -> None:
    code = step.error_code
    _reopen(run, step)
    step.attempt = step.recoveries = 0
    step.error_code = step.error_message = None
    step.lease_token = step.lease_expires_at = step.worker_id = step.started_at = None
    if code == REJECTED:  # a rejected approval is asked for again
        reach(step, txn.now)
    else:
        step.status = StepStatus.READY
        step.available_at = step.ready_at = txn.now
        txn.result.readied += 1
    txn.touch(step)
    txn.emit(run, "step_retried", step.name, by=by, previous_code=code)
    # Skipped dependents come back once no dependency dooms them any more. One that another
    # skipped dependent still dooms is looked at again when that one comes back. A parent
    # failed by this (spawned) step waits for its children again.
    reopened = [step]
    while reopened:
        for edge in reopened.pop().dependents:
            dep = steps[edge.target]
            if edge.kind is EdgeKind.CHILD:
                parents[dep.name] = dep
                if reopen_parent(txn, run, dep):
                    reopened.append(dep)
                continue
            reason = doomed_by(upstream.get(dep.name, ()))
            if dep.status is StepStatus.PENDING:
                # still waiting on others, already doomed by this failure: not any more
                dep.skip_reason = reason
                txn.touch(dep)
                back.append(dep)
                continue
            if dep.status is not StepStatus.SKIPPED or skipped_by_condition(dep):
                continue
            if reason is not None:
                continue
            _reopen(run, dep)
            dep.status = StepStatus.PENDING
            dep.skip_reason = None
            txn.touch(dep)
            txn.emit(run, "step_reopened", dep.name, by=by)
            reopened.append(dep)
            back.append(dep)


def upstream_of(steps: Iterable[StepRow]) -> dict[str, list[tuple[StepRow, Edge]]]:
    """For each step, the steps it depends on, with their edge to it (from `dependents`)."""
    upstream: dict[str, list[tuple[StepRow, Edge]]] = {}
    for s in steps:
        for edge in s.dependents:
            upstream.setdefault(edge.target, []).append((s, edge))
    return upstream


def doomed_by(ups: Iterable[tuple[StepRow, Edge]]) -> str | None:
    """Why one of these ended dependencies skips its dependent (DESIGN §3.2), or None: the
    reason `cascade.settle` would have given."""
    for up, edge in ups:
        if up.status.terminal and (reason := doom(up, edge)) is not None:
            return reason
    return None


def _reopen(run: RunRow, step: StepRow) -> None:
    """Count an ended step as unfinished again (and no longer as a failure of the run)."""
    if fails_run(step):
        run.failures -= 1
    run.unfinished += 1
    step.finished_at = None
