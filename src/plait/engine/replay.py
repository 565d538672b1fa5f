"""Replay: run the current code of one step with the inputs a run recorded, writing nothing.

For debugging a fix before forking: `engine.replay(run_id, step)` reads the run input and the
outputs of the step's dependencies from the store, calls the handler of the newest version of
the workflow registered in this process exactly as a worker would (same argument binding and
validation, `when=` condition, timeout, error codes; `_worker.Worker._attempt` does it), and
compares what it returns with what the run recorded. Nothing is claimed, written or logged in
the store. A handler that raises is reported, not propagated. A spawned step replays with the
input it was spawned with; what a replayed step would spawn is listed (`spawned`), not run, so a
step that returns handles replays to the names of the steps whose outputs it would gather.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _codec
from .._errors import StepError
from ..core.diff import diff_values, step_document
from ..core.rows import Claim, StepInputs, StepRow, StepStatus
from ..workflow.context import StepContext
from ..workflow.definition import StepDef, Workflow

if TYPE_CHECKING:
    from .engine import Engine


@dataclass(frozen=True, slots=True)
class Replay:
    """What replaying a step gave, next to what its run recorded.

    `status` is how the new call ended: "done", "failed" (see `error` and `traceback`) or
    "skipped" (its `when=` condition is false now). `diff` lists the differences between the
    recorded step and the new call (`plait._diff` entries over status, output and error:
    paths such as "/output/total"); it is empty when the call reproduced the record."""

    run_id: str
    step: str
    workflow: str
    version: str
    fingerprint: str  # of the code replayed
    recorded_fingerprint: str  # of the version the run was started on
    recorded_status: StepStatus
    recorded: Any  # the recorded output (None unless the step is done)
    recorded_error: StepError | None
    status: str
    output: Any
    error: StepError | None
    traceback: str | None
    diff: list[dict[str, Any]] = field(default_factory=list)
    spawned: list[str] = field(default_factory=list)  # the steps the call would have spawned

    @property
    def changed(self) -> bool:
        return bool(self.diff)


async def replay_step(
    engine: Engine,
    workflow: Workflow,
    step: StepDef,
    recorded: StepRow,
    inputs: StepInputs,
    recorded_fingerprint: str,
) -> Replay:
    """Call the step's handler once, in this process, as a worker would; compare the result."""
    from ..worker.worker import (
        Worker,  # the worker imports the engine's module; import it when used
    )

    worker = Worker(engine, [workflow], concurrency=1, grace=0.0)
    worker._pool.loop = asyncio.get_running_loop()
    claim = Claim(
        run_id=recorded.run_id,
        step=recorded.name,
        fingerprint=workflow.fingerprint,
        attempt=max(recorded.attempt, 1),
        token="replay",  # noqa: S106  # not a secret: no lease is taken, nothing is written
        lease_expires_at=0.0,
        iteration=recorded.iteration,
        task=recorded.task,
        input=recorded.input,
    )
    ctx = StepContext(
        run_id=claim.run_id,
        step=recorded.name,
        workflow=workflow.name,
        attempt=claim.attempt,
        run_input={},
        iteration=claim.iteration,
        definition=workflow,
    )
    try:
        outcome = await worker._attempt(workflow, step, claim, ctx, inputs)
    finally:
        worker._pool.shutdown()
    assert outcome is not None  # None only after a store admitted a key: the claim has none
    if outcome.skipped:
        status, output, error = "skipped", None, None
    elif outcome.succeeded:
        gathered = None if outcome.gather is None else _codec.loads(outcome.gather)
        output = gathered if gathered is not None else _codec.loads(outcome.output)
        status, error = "done", None
    else:
        status, output = "failed", None
        error = StepError(outcome.error_code or "failed", outcome.error_message or "")
    new_doc = {
        "status": status,
        "output": output,
        "error": None if error is None else {"code": error.code, "message": error.message},
    }
    old_doc = step_document(recorded)
    return Replay(
        run_id=recorded.run_id,
        step=recorded.name,
        workflow=workflow.name,
        version=workflow.version,
        fingerprint=workflow.fingerprint,
        recorded_fingerprint=recorded_fingerprint,
        recorded_status=recorded.status,
        recorded=old_doc["output"],
        recorded_error=(
            StepError(recorded.error_code, recorded.error_message or "")
            if recorded.error_code is not None
            else None
        ),
        status=status,
        output=output,
        error=error,
        traceback=outcome.traceback,
        diff=diff_values(old_doc, new_doc),
        spawned=[s.name for s in outcome.spawned],
    )
