"""Transitions of what waits on the outside world: approvals, signals, and the clock (approvals
expiring, run deadlines). Pure, like the worker's transitions and the operator's actions.

A step with a gate waits in `waiting` once its dependencies are met (`cascade.reach`).
An approval is decided by `approve` (the step becomes ready and runs) or `reject` (it fails
with code `rejected`, and the usual cascade applies), or by its expiry. A signal step is done
with the payload of the first `signal` sent to it; a signal sent before the step is reached is
kept in the step's output until then. Each action writes who did what to the run's log, and a
refused one changes nothing and says why (`txn.result.refusal`).
"""

from __future__ import annotations

from .actions import REJECTED
from .calls import waits_for
from .cascade import end_unfinished, join_expired, settle
from .rows import Gate, OnExpiry, RunRow, RunStatus, StepRow, StepStatus
from .txn import Transition, Txn, need, need_all

DEADLINE_EXCEEDED = "deadline_exceeded"


def _gated_step(
    txn: Txn, run_id: str, name: str, gate: Gate
) -> tuple[RunRow, StepRow] | tuple[None, None]:
    """The run and step an action on a gate is about, or a refusal saying what is wrong."""
    run, step = txn.runs.get(run_id), txn.step(run_id, name)
    if run is None:
        txn.result.refusal = f"run {run_id!r} does not exist"
        return None, None
    if step is None:
        txn.result.refusal = f"run {run_id!r} has no step {name!r}"
        return None, None
    if step.options is None or step.options.gate is not gate:
        txn.result.refusal = (
            f"step {name!r} of workflow {run.workflow!r} is not an approval gate "
            "(declare it with @wf.step(approval=...))"
            if gate is Gate.APPROVAL
            else f"step {name!r} of workflow {run.workflow!r} is not a signal "
            f"(declare it with wf.signal({name!r}))"
        )
        return None, None
    return run, step


def _not_waiting(txn: Txn, run: RunRow, step: StepRow, done: str) -> None:
    state = step.status.value
    if step.joining:
        state = f"running the {step.unmet} step(s) it spawned"
    elif (child := waits_for(step)) is not None:
        state = f"waiting for the run it called, {child!r}"
    if run.status.terminal:
        state += f" (the run is {run.status.value})"
    txn.result.refusal = (
        f"step {step.name!r} of run {run.id!r} is {state}: only a waiting step can be {done}"
    )


def _waiting_approval(
    txn: Txn, run_id: str, name: str, done: str
) -> tuple[RunRow, StepRow] | tuple[None, None]:
    """The run and the waiting approval a decision is about, or a refusal saying why not."""
    run, step = _gated_step(txn, run_id, name, Gate.APPROVAL)
    if run is None or step is None:
        return None, None
    if step.status is not StepStatus.WAITING or step.joining or waits_for(step) is not None:
        _not_waiting(txn, run, step, done)
        return None, None
    return run, step


def approve(txn: Txn, run_id: str, name: str, *, by: str, note: str | None) -> Transition:
    """A waiting approval becomes ready (claimable after its delay, if it has one). In a paused
    run it waits for `resume` like every ready step."""
    yield from need(txn, run_id, (name,))
    run, step = _waiting_approval(txn, run_id, name, "approved")
    if run is None or step is None:
        return
    _open(txn, step)
    txn.emit(run, "step_approved", name, by=by, note=note)


def reject(txn: Txn, run_id: str, name: str, *, by: str, reason: str | None) -> Transition:
    """A waiting approval fails with code `rejected`; its dependents are skipped as usual."""
    yield from need(txn, run_id, (name,))
    run, step = _waiting_approval(txn, run_id, name, "rejected")
    if run is None or step is None:
        return
    txn.emit(run, "step_rejected", name, by=by, reason=reason)
    yield from _fail_rejected(txn, run, step, reason or f"rejected by {by}")


def signal(txn: Txn, run_id: str, name: str, payload: bytes, *, by: str) -> Transition:
    """Deliver a payload to a signal step: it is done with it now if it is waiting, or when it
    is reached if not yet. Only the first delivery counts; a later one is logged as ignored.
    `txn.result.accepted` says which it was."""
    yield from need(txn, run_id, (name,))
    run, step = _gated_step(txn, run_id, name, Gate.SIGNAL)
    if run is None or step is None:
        return
    size = len(payload)
    if step.status is StepStatus.WAITING:
        txn.result.accepted.append(True)
        step.status = StepStatus.DONE
        step.output = payload
        step.available_at = None
        step.finished_at = txn.now
        txn.touch(step)
        txn.emit(run, "signal_received", name, by=by, size=size)
        txn.emit(run, "step_completed", name, signal=True)
        yield from settle(txn, run, step)
        return
    if step.status is StepStatus.PENDING and step.output is None:
        txn.result.accepted.append(True)
        step.output = payload  # kept until the step is reached (`cascade.reach`)
        txn.touch(step)
        txn.emit(run, "signal_kept", name, by=by, size=size)
        return
    txn.result.accepted.append(False)
    already = step.status is StepStatus.DONE or step.output is not None
    why = "a signal was already delivered" if already else f"the step is {step.status.value}"
    txn.emit(run, "signal_ignored", name, by=by, size=size, reason=why)


# -- the clock -------------------------------------------------------------------------------


def expire_approval(txn: Txn, run_id: str, name: str) -> Transition:
    """An approval undecided past its expiry is decided as its `on_expiry` says."""
    yield from need(txn, run_id, (name,))
    run, step = txn.runs.get(run_id), txn.step(run_id, name)
    if run is None or step is None or step.status is not StepStatus.WAITING:
        return
    options = step.options
    if options is None or step.available_at is None or step.available_at > txn.now:
        return
    if step.joining:  # a step waiting for what it spawned, past its join timeout
        yield from join_expired(txn, run, step)
        return
    after = options.expires_after
    if options.on_expiry is OnExpiry.APPROVE:
        _open(txn, step)
        txn.emit(run, "step_approved", name, by="plait", note=f"no decision within {after}s")
        return
    txn.emit(run, "step_rejected", name, by="plait", reason="expired")
    yield from _fail_rejected(txn, run, step, f"no decision within {after}s: rejected on expiry")


def pass_deadline(txn: Txn, run_id: str) -> Transition:
    """A run unfinished at its deadline fails with `deadline_exceeded`; its unfinished steps
    are cancelled (running ones interrupted)."""
    yield from need_all(txn, run_id)
    run = txn.runs.get(run_id)
    if run is None or run.status.terminal or run.deadline is None or run.deadline > txn.now:
        return
    error = f"{DEADLINE_EXCEEDED}: the run did not finish by its deadline"
    running = yield from end_unfinished(txn, run, RunStatus.FAILED, error, by="deadline")
    txn.emit(run, "run_failed", None, code=DEADLINE_EXCEEDED, error=error, interrupting=running)


def _open(txn: Txn, step: StepRow) -> None:
    delay = step.options.delay if step.options is not None else None
    step.status = StepStatus.READY
    step.ready_at = txn.now
    step.available_at = txn.now + (delay or 0.0)
    txn.result.readied += 1
    txn.touch(step)


def _fail_rejected(txn: Txn, run: RunRow, step: StepRow, message: str) -> Transition:
    step.status = StepStatus.FAILED
    step.error_code = REJECTED
    step.error_message = message
    step.available_at = None
    step.finished_at = txn.now
    txn.touch(step)
    yield from settle(txn, run, step)
