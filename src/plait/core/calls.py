"""Sub-workflow calls: a step that calls another workflow (`ctx.call`) waits for the child run
without holding a worker. Pure.

    handler: ctx.call(child, input) ── no child run yet ──► the worker starts it (idempotent: its
        id is the caller's run, step, iteration and call number), then reports Outcome(call=id)
    complete (this module's `suspend`): the step gives its attempt back and waits (`waiting`,
        no lease, its child's id in `gather`); if the child has already ended, it is ready at once
    the child run ends (`returned`, in the transaction that ends it): the waiting step is ready
    the step runs again: ctx.call finds the child ended and returns its output (or raises
        ChildFailed), at once; a second ctx.call of the handler starts the next child

A cancelled run cancels the children its steps wait for (`cascade.end_unfinished`), in the same
transaction. The child knows its caller (`RunRow.parent_run`, `RunRow.called_by`); the caller's
step, while it waits, knows its child (`waits_for`), and its log says which child it called
(`step_calling`) and how it ended (`step_call_returned`).
"""

from __future__ import annotations

import orjson

from .rows import RunRow, StepRow, StepStatus
from .txn import Transition, Txn, need

CALLING = "step_calling"  # a step waits for the child run it called
RETURNED = "step_call_returned"  # that child ended: the step is ready to run again
_KEY = "call"


def marker(child: str) -> bytes:
    """What a step waiting for `child` keeps in its `gather` (which only a step joining what it
    spawned uses otherwise: such a step has unfinished children, a calling step has none)."""
    return orjson.dumps({_KEY: child})


def waits_for(step: StepRow) -> str | None:
    """The child run a waiting step waits for, or None (not waiting for a call)."""
    if step.status is not StepStatus.WAITING or step.unmet or step.gather is None:
        return None
    if not step.gather.startswith(b"{"):
        return None
    found = orjson.loads(step.gather).get(_KEY)
    return found if isinstance(found, str) else None


def suspend(txn: Txn, run: RunRow, step: StepRow, child: str) -> Transition:
    """A running step called `child` (a run its worker started): it waits for it, its attempt
    given back (a call is no failure: the retry budget is untouched), unless `child` has
    already ended, in which case it is ready to run again at once."""
    yield from need(txn, child)
    ended = txn.runs.get(child)
    step.attempt -= 1
    step.lease_token = None
    step.lease_expires_at = None
    step.worker_id = None
    step.error_code = step.error_message = None
    txn.touch(step)
    txn.emit(run, CALLING, step.name, child=child)
    if ended is not None and ended.status.terminal:
        _ready(txn, step)
        txn.emit(run, RETURNED, step.name, child=child, status=ended.status.value)
        return
    step.status = StepStatus.WAITING
    step.available_at = None
    step.gather = marker(child)


def returned(txn: Txn, child: RunRow) -> Transition:
    """`child` just ended: the step that called it, if it waits for it, is ready again (to run
    its handler, whose ctx.call now returns). In the transaction that ends the child."""
    if child.parent_run is None or child.called_by is None:
        return
    yield from need(txn, child.parent_run, (child.called_by,))
    run, step = txn.runs.get(child.parent_run), txn.step(child.parent_run, child.called_by)
    if run is None or step is None or run.status.terminal or waits_for(step) != child.id:
        return
    _ready(txn, step)
    txn.touch(step)
    txn.emit(run, RETURNED, step.name, child=child.id, status=child.status.value)


def _ready(txn: Txn, step: StepRow) -> None:
    step.status = StepStatus.READY
    step.gather = None
    step.available_at = step.ready_at = txn.now
    txn.result.readied += 1
