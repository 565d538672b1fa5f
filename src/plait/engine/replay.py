"""Replay: run the current code of one step with the inputs a run recorded, writing nothing.

For debugging a fix before forking: `engine.replay(run_id, step)` reads what the step's
handler received when it ran (`StepRow.input`, recorded by each attempt) or, for a step that
never ran or an argument the code has gained since, the run input and the outputs of the
step's dependencies from the store, calls the handler of the newest version of
the workflow registered in this process exactly as a worker would (same argument binding and
validation, `when=` condition, timeout, error codes: `worker.attempt` does it), and
compares what it returns with what the run recorded. Nothing is claimed, written or logged in
the store. A handler that raises is reported, not propagated. A spawned step replays with the
input it was spawned with; what a replayed step would spawn is listed (`spawned`), not run, so a
step that returns handles replays to the names of the steps whose outputs it would gather.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import _codec
from .._errors import StepError
from ..core.diff import diff_values, step_document
from ..core.rows import Claim, StepInputs, StepRow, StepStatus
from ..worker.attempt import attempt
from ..worker.handler_threads import HandlerThreads
from ..workflow.context import Caller, StepContext
from ..workflow.definition import StepDef, Workflow


@dataclass(frozen=True, slots=True)
class Replay:
    """What replaying a step gave, next to what its run recorded.

    `status` is how the new call ended: "done", "failed" (see `error` and `traceback`),
    "skipped" (its `when=` condition is false now) or "waiting" (a ctx.call of it found the
    child run the step called unfinished). `diff` lists the differences between the
    recorded step and the new call (`core.diff` entries over status, output and error:
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
    code: str | None = None  # the digest of the code replayed
    recorded_code: str | None = None  # of the code that ran the recorded attempt (if recorded)

    @property
    def changed(self) -> bool:
        return bool(self.diff)


async def replay_step(
    workflow: Workflow,
    step: StepDef,
    recorded: StepRow,
    inputs: StepInputs,
    recorded_fingerprint: str,
    calls: Callable[[str, str, asyncio.AbstractEventLoop], Caller] | None = None,
) -> Replay:
    """Call the step's handler once, in this process, as a worker would; compare the result.
    `calls` makes what its ctx.call reads (the recorded child runs); without it, a ctx.call
    fails the step."""
    threads = HandlerThreads(1)
    threads.loop = asyncio.get_running_loop()
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
        reads=None if recorded.options is None else recorded.options.reads,
        refusal=None if recorded.options is None else recorded.options.refusal,
        policed=recorded.options is not None and recorded.options.policed,
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
    if calls is not None:
        ctx._caller = calls(claim.run_id, recorded.name, threads.loop)
    try:
        outcome = await attempt(workflow, step, claim, ctx, inputs, threads=threads)
    finally:
        threads.shutdown()
    assert outcome is not None  # None only when a key was not admitted: replay admits none
    if outcome.skipped:
        status, output, error = "skipped", None, None
    elif outcome.call is not None:  # its ctx.call found the recorded child unfinished
        status, output, error = "waiting", None, None
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
        code=workflow.code_of(recorded.name, recorded.task),
        recorded_code=recorded.code,
    )


# -- a whole run -----------------------------------------------------------------------------------

OK, DIVERGED, FAILED, REUSED, NOT_RUN = "ok", "diverged", "failed", "reused", "not_run"


@dataclass(frozen=True, slots=True)
class StepReplay:
    """One step of a whole-run replay. `result`: "ok" (the current code reproduced the
    record), "diverged" (it ended otherwise: `replay.diff`), "failed" (the current code
    failed: `replay.error`), "reused" (upstream of `from_step`: its recorded output stands) or
    "not_run" (`reason` says why: its dependencies did not give it an input in the record, or
    the run never ran it)."""

    step: str
    result: str
    replay: Replay | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RunReplay:
    """A whole run replayed with the current code, in dependency order, writing nothing."""

    run_id: str
    workflow: str
    version: str
    fingerprint: str  # of the code replayed
    recorded_fingerprint: str
    from_step: str | None
    steps: list[StepReplay]

    @property
    def ok(self) -> bool:
        """No step diverged or failed."""
        return all(s.result not in (DIVERGED, FAILED) for s in self.steps)


def judged(replay: Replay) -> str:
    """A replayed step's result: failed, diverged or ok."""
    if replay.status == "failed":
        return FAILED
    return DIVERGED if replay.changed else OK


def gathered(parent: Replay, recorded: StepRow, outputs: dict[str, Any]) -> Replay:
    """A parent that returned handles, its output the replayed outputs of the children it
    gathers (`outputs`, by name), compared again with its record."""
    names = parent.output
    if parent.status != "done" or not parent.spawned:
        return parent
    if isinstance(names, str) and names in outputs:
        output = outputs[names]
    elif isinstance(names, list) and all(isinstance(n, str) and n in outputs for n in names):
        output = [outputs[n] for n in names]
    else:
        return parent
    new_doc = {"status": parent.status, "output": output, "error": None}
    diff = diff_values(step_document(recorded), new_doc)
    return dataclasses.replace(parent, output=output, diff=diff)


def with_arguments(
    inputs: StepInputs, data_deps: Sequence[str], args: dict[str, Any]
) -> StepInputs:
    """A step's inputs as its handler received them (`StepRow.input`, by parameter): each
    recorded dependency's value as its output, every other recorded argument as a run-input
    field; what was not recorded (a parameter the code has gained since) as `inputs` has it."""
    run_input = _codec.loads(inputs.run_input)
    fields = dict(run_input) if isinstance(run_input, dict) else {}
    ends = dict(inputs.dependencies)
    for name, value in args.items():
        if name in data_deps:
            ends[name] = (StepStatus.DONE, _codec.dumps(value))
        else:
            fields[name] = value
    return StepInputs(_codec.dumps(fields), ends, inputs.state, inputs.errors)
