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

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _codec
from .._errors import InputError, StoreError
from .queues import resolve_key
from .rows import Claim, Outcome

if TYPE_CHECKING:
    from ..worker.worker import Worker
    from ..workflow.definition import StepDef, Workflow

KEY_ERROR = "concurrency_key_error"  # the key callable raised, or returned no string or integer


@dataclass(frozen=True, slots=True)
class Refusal:
    """The handler must not run: the step failed (`outcome`, to commit), or it was handed back
    or its lease lost (None: nothing to commit)."""

    outcome: Outcome | None


async def admit_key(
    worker: Worker,
    wf: Workflow,
    step: StepDef,
    claim: Claim,
    run_input: Any,
    outputs: dict[str, Any],
) -> Refusal | None:
    """Resolve a claimed step's pending key from its inputs, bound like its parameters, and
    have the store admit it. None: admitted, run the handler."""
    where = f"workflow {wf.name!r}, step {claim.step!r}"
    try:
        value = run_input if isinstance(run_input, dict) else {}
        key = resolve_key(where, step.concurrency_key, value, outputs)
    except InputError as exc:  # as at start for a run-input key; here the step fails
        message = _codec.cap_message(str(exc))
        return Refusal(
            Outcome(
                claim.run_id, claim.step, claim.token, error_code=KEY_ERROR, error_message=message
            )
        )
    while True:
        try:
            result = await worker.store.admit_key(
                claim.run_id, claim.step, claim.token, key, time.time()
            )
            break
        except StoreError as exc:
            await worker._outage.failed("admitting a concurrency key", exc, worker._stopping)
            if worker._stopping.is_set():
                return Refusal(None)  # still in flight: the stopping worker hands it back
    worker._outage.recovered()
    worker.engine._committed(result)
    if result.accepted == [True]:
        return None
    worker._inflight.pop(claim.token, None)  # handed back, or no longer ours
    worker._slot_freed.set()
    return Refusal(None)
