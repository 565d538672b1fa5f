"""Concurrency keys that read dependency outputs: resolved by the worker, admitted by the store.

A key of run-input fields is resolved at `start` and stored on the step row, so claims count it
(`_queues.py`). A key that reads the outputs of the step's dependencies cannot be: stores run no
user code, and the outputs do not exist yet. Such a step's key is stored *pending* (None):

    claim (pending: no key to count) ──► worker loads the inputs, resolves the key
        ──► admit_key, one transaction under the flow lock: the key is stored on the step, then
            fewer than key_limit running steps share it → keep the lease, run the handler
            otherwise → hand the step back (ready, attempt not counted, `step_key_full`)

The key stays on the row, so every later claim counts it and skips the step while its key is
full, as for any keyed step: nothing spins. A retry keeps the key (its upstream outputs have not
changed); a Goto that runs the step again makes it pending again (`forget_key`), and a fork
creates its steps pending. Steps without such a key never come here: their claims say
`key_pending=False`, and the worker runs them as before.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .rows import StepRow, StepStatus
from .transitions import Transition, Txn, _back_to_ready, _paused_when_idle, need, release

if TYPE_CHECKING:
    pass

KEY_FULL = "step_key_full"  # the event of a step handed back because its key was full


def forget_key(txn: Txn, step: StepRow) -> None:
    """Make a key read from upstream outputs pending again: the step runs again on new ones."""
    options = step.options
    if options is not None and options.key_from_outputs and options.key is not None:
        step.options = replace(options, key=None)
        txn.rekeyed.add((step.run_id, step.name))


def admit(txn: Txn, run_id: str, name: str, token: str, key: str, running: int) -> Transition:
    """Store `key` on a claimed step (held under `token`) and keep it running if fewer than its
    `key_limit` other running steps have that key (`running` counts those stored with it, the
    step itself included if it already had it); else hand it back. `txn.result.accepted` is
    [True] when the step may run."""
    yield from need(txn, run_id, (name,))
    step, run = txn.step(run_id, name), txn.runs.get(run_id)
    if (
        step is None
        or run is None
        or step.options is None
        or step.status is not StepStatus.RUNNING
        or step.lease_token != token
    ):
        txn.result.accepted.append(False)  # its lease was lost: another worker may hold it
        return
    if run.status.terminal:  # cancelled meanwhile: handed back, it ends here
        txn.result.accepted.append(False)
        yield from release(txn, run_id, name, token)
        return
    options = step.options
    limit = options.key_limit or 1
    others = running - (1 if options.key == key else 0)
    if options.key != key:
        step.options = replace(options, key=key)
        txn.rekeyed.add((run_id, name))
        txn.touch(step)
    if others < limit:
        txn.result.accepted.append(True)
        return
    txn.result.accepted.append(False)
    worker = step.worker_id
    # it held a slot of its queue (a completion's wake-up if the queue has a concurrency
    # limit), not of its key; and it is claimable again only once its key frees, which the
    # completion that frees it announces: no "ready" wake-up now
    txn.ended_attempts.append(replace(step, options=options))
    _back_to_ready(txn, step)
    txn.result.readied -= 1
    txn.emit(run, KEY_FULL, name, key=key, key_limit=limit, running=others, worker=worker)
    yield from _paused_when_idle(txn, run_id)
