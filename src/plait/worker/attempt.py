"""One attempt of a claimed step: bind its inputs, check its condition, call its handler, and
turn what happened into an `Outcome` for the store to commit.

The worker calls `attempt` for every step it claims; `engine.replay` calls it too, with the
inputs a run recorded, so a replayed step is bound, validated, timed and judged exactly as a
worker would. Nothing here touches the store except through `KeyAdmission`, which the worker
passes and replay does not (a replayed step takes no lease, so it has no key to admit).

A concurrency key that reads dependency outputs is resolved here, from the inputs just loaded
(stores run no user code), and admitted by the store in one transaction (`Store.admit_key`):

    claim (pending: no key to count) ──► resolve the key ──► the store stores it on the step,
        then: fewer than key_limit running steps share it → run the handler
              otherwise → the step is handed back (ready, attempt not counted, `step_key_full`)
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from .. import _codec
from .._clock import REAL, Clock
from .._errors import InputError, StepCancelled, StepFailure
from ..core.blobs import Spliced
from ..core.loops import INVALID_GOTO, Goto
from ..core.queues import resolve_key
from ..core.rows import Claim, Outcome, StepData, StepInputs, StepStatus
from ..workflow.context import CallWaits, CaughtError, StepContext
from ..workflow.definition import StepDef, Workflow
from ..workflow.tasks import bound_kwargs, task_kwargs
from .handler_threads import HandlerThreads, HandlerTimeout
from .tracing import attempt_span

TRACEBACK_LIMIT = 32 * 1024
KEY_ERROR = "concurrency_key_error"  # the key callable raised, or returned no string or integer

# Admit a claimed step under the key resolved for it: True to run it; False if it was handed
# back (its key is full) or its lease was lost, so the attempt ends without an outcome.
KeyAdmission = Callable[[Claim, str], Awaitable[bool]]


async def attempt(
    wf: Workflow,
    step: StepDef,
    claim: Claim,
    ctx: StepContext,
    inputs: StepInputs | None,
    *,
    threads: HandlerThreads,
    admit_key: KeyAdmission | None = None,
    clock: Clock = REAL,
    error_limit: int = _codec.MESSAGE_LIMIT,
    blob_threshold: int | None = None,
) -> Outcome | None:
    """Run one attempt of a claimed step; its outcome, or None when there is nothing to commit
    (its pending key was not admitted). Every exception out of the handler becomes a failed
    outcome; only the worker's own cancellation of the task (it set `ctx.cancelled` first: a
    stop, a cancelled run, a lost lease) propagates as `asyncio.CancelledError`."""

    received: bytes | None = None  # what the handler receives, once its arguments are bound

    def failure(
        code: str,
        message: str,
        retryable: bool | None,
        tb: str | None = None,
        exc: BaseException | None = None,
    ) -> Outcome:
        policy = wf.retry_for(step)
        if retryable is None and not policy.retries(code, exc):
            retryable = False  # the policy's non_retryable names it
        delay = policy.next_try(claim.attempt, retryable)
        details = getattr(exc, "details", None) if isinstance(exc, StepFailure) else None
        if details is not None:
            try:
                details = _codec.loads(_codec.dumps(details))
            except _codec.EncodeError as bad:
                message += f" (its details were not recorded: not JSON: {bad})"
                details = None
        return Outcome(
            claim.run_id,
            claim.step,
            claim.token,
            error_code=code,
            error_message=_codec.cap_message(message, error_limit),
            traceback=tb[-TRACEBACK_LIMIT:] if tb else None,
            error_details=details,
            retry_at=None if delay is None else clock.time() + delay,
            input=received,
        )

    def conflict_retry_at(data: StepData | None) -> float | None:
        """When to try again should a record written with an expected revision have another
        one at commit (`core.transitions.check_records`): a retryable failure."""
        appends = data is not None and any(c.op == "append" for c in data.state)
        if data is None or (not appends and all(w.expected is None for w in data.records)):
            return None
        delay = wf.retry_for(step).next_try(claim.attempt, True)
        return None if delay is None else clock.time() + delay

    def raised(exc: BaseException) -> Outcome:
        """A failed attempt for an exception out of the handler, its class name as the code. One
        that is not an `Exception` (KeyboardInterrupt, SystemExit, GeneratorExit, a CancelledError
        the handler raised itself, ...) is not retried; the worker keeps serving either way."""
        name = type(exc).__name__
        tb = "".join(traceback.format_exception(exc))
        if isinstance(exc, Exception):
            return failure(name, str(exc) or repr(exc), None, tb, exc)
        message = f"handler raised {name}" + (f": {exc}" if str(exc) else "")
        return failure(name, message, False, tb, exc)

    if inputs is None:
        return failure("run_missing", "the run's input could not be loaded", False)
    try:
        run_input = _codec.loads(inputs.run_input)
        ctx.input = run_input
        ctx._load_state(inputs.state)
        if inputs.labels:
            ctx._load_labels(inputs.labels)
        for name in step.error_sources:  # a catching step: the failure it handles
            if name in inputs.errors:
                ctx.error = CaughtError(name, *inputs.errors[name])
                break
        outputs: dict[str, Any] = {}
        # steps read for their errors only (a step at a failing run's end reads many)
        errors_only = set(step.error_sources).difference(step.data_deps)
        for dep, (status, output) in inputs.dependencies.items():
            if dep in errors_only:
                continue
            outputs[dep] = (
                _codec.loads(output) if status is StepStatus.DONE else step.defaults.get(dep)
            )
        if step.is_task and claim.reads is not None:  # bound by parameter: recorded
            kwargs, received = bound_kwargs(
                step, ctx, claim.input, claim.reads, inputs.dependencies
            )
        elif step.is_task:
            kwargs = task_kwargs(step, ctx, claim.input)
        else:
            kwargs = step.build_kwargs(ctx, run_input, outputs)
            received = recorded_input(step, kwargs, run_input, inputs, blob_threshold)
    except ValidationError as exc:
        return failure("invalid_input", f"step {claim.step!r}: {exc}", False)
    try:
        if not step.condition_holds(run_input, outputs, inputs.state):
            return Outcome(claim.run_id, claim.step, claim.token, skipped=True, input=received)
    except Exception as exc:
        return failure(
            "condition_error",
            f"step {claim.step!r}: its when= condition raised {type(exc).__name__}: {exc}",
            False,
            traceback.format_exc(),
        )
    if claim.key_pending and admit_key is not None:
        where = f"workflow {wf.name!r}, step {claim.step!r}"
        try:
            value = run_input if isinstance(run_input, dict) else {}
            key = resolve_key(where, step.concurrency_key, value, outputs)
        except InputError as exc:  # as at start for a run-input key; here the step fails
            return Outcome(
                claim.run_id,
                claim.step,
                claim.token,
                error_code=KEY_ERROR,
                error_message=_codec.cap_message(str(exc), error_limit),
            )
        if not await admit_key(claim, key):
            return None
    refusal = claim.refusal
    if refusal is None and not claim.policed:  # a row made before its options kept refusals
        refusal = step.refusal or (None if step.options is None else step.options.refusal)
    if refusal is not None:  # an approval policy (the run's or the workflow's) refuses it
        code, message = refusal
        return failure(code, f"step {claim.step!r}: {message}", False)
    timeout = wf.timeout_for(step)
    limit: asyncio.Timeout | None = None
    span = attempt_span(claim.run_id, claim.step, claim.iteration, claim.attempt, claim.recoveries)
    try:
        with span as carried:  # the attempt's span is current while its handler runs
            if step.is_async:
                async with asyncio.timeout(timeout) as limit:
                    result = await step.fn(**kwargs)
            else:  # its clock starts when a thread starts it (HandlerThreads)
                fn = carried(step.fn)
                ok, result = await threads.call(fn, kwargs, timeout, claim.run_id, claim.step)
                if not ok:
                    raise result
    except asyncio.CancelledError as exc:
        if ctx.cancelled:  # the worker's doing (stop, run cancelled, lease lost): it decides
            raise
        return raised(exc)  # the handler's own (a cancelled future it awaited): a failure
    except TimeoutError as exc:
        if not (isinstance(exc, HandlerTimeout) or (limit is not None and limit.expired())):
            return raised(exc)  # the handler's own TimeoutError (a socket's, say)
        ctx._request_cancel()  # a sync handler keeps its thread: it should poll ctx.cancelled
        return failure(
            "timeout", f"step {claim.step!r} exceeded its timeout of {timeout}s", None, exc=exc
        )
    except CallWaits as waits:  # it called a workflow whose run has not ended: it waits
        return Outcome(claim.run_id, claim.step, claim.token, call=waits.child_id, input=received)
    except StepCancelled as exc:
        return failure("cancelled", str(exc), False)
    except StepFailure as exc:
        return failure(exc.code, str(exc) or exc.code, exc.retryable, traceback.format_exc(), exc)
    except BaseException as exc:  # whatever a handler raises is its attempt's outcome
        return raised(exc)
    spawner = ctx._spawner
    if isinstance(result, Goto):  # loop back: the store checks the target and the count
        if spawner is not None and spawner.spawned:
            message = f"step {claim.step!r} spawned steps and returned a Goto: do one or the other"
            return failure(INVALID_GOTO, message, False)
        data = ctx._data()
        return Outcome(
            claim.run_id,
            claim.step,
            claim.token,
            goto=result.step,
            max_iterations=result.max_iterations,
            data=data,
            conflict_retry_at=conflict_retry_at(data),
            input=received,
        )
    try:
        gather = None if spawner is None else spawner.gather(result)
        output = None if gather is not None else _codec.dumps(result)
    except StepFailure as exc:
        return failure(exc.code, str(exc), False)
    except _codec.EncodeError as exc:
        return failure(
            "unserializable_output",
            f"step {claim.step!r} returned a value that is not JSON: {exc}",
            False,
        )
    spawned = () if spawner is None else tuple(spawner.spawned)
    data = ctx._data()
    return Outcome(
        claim.run_id,
        claim.step,
        claim.token,
        output=output,
        spawned=spawned,
        gather=gather,
        data=data,
        conflict_retry_at=conflict_retry_at(data),
        input=received,
    )


def recorded_input(
    step: StepDef,
    kwargs: dict[str, Any],
    run_input: Any,
    inputs: StepInputs,
    blob_threshold: int | None = None,
) -> bytes | None:
    """What a static step's handler receives, to record (`StepRow.input`): a JSON object of
    its arguments by parameter, its context left out. An upstream output is spliced in as the
    bytes the store gave (never encoded again); a run-input field is its value in the run
    input; a default its JSON, if it has one. The biggest upstream output in it, if it is over
    the store's `blob_threshold` (so a blob), is marked (`core.blobs.Spliced`), so that the
    store keeps it as that output's own blob, shared, with the rest of the input around it in
    the row (`core.blobs.framed`)."""
    parts: list[bytes] = []
    size = 1
    start = end = 0
    for name, value in kwargs.items():
        if name == step.ctx_param:
            continue
        ended = inputs.dependencies.get(name)
        raw = ended[1] if ended is not None and ended[0] is StepStatus.DONE else None
        spliced = raw is not None
        if raw is None:
            from_run = isinstance(run_input, dict) and name not in step.data_deps
            given = run_input.get(name, value) if from_run else value
            try:
                raw = _codec.dumps(given)
            except _codec.EncodeError:
                continue  # a default that has no JSON form: not recorded
        key = _codec.dumps(name) + b":"
        size += len(key) + (1 if parts else 0)
        if spliced and len(raw) > end - start:
            start, end = size, size + len(raw)
        size += len(raw)
        parts.append(key + raw)
    received = b"{" + b",".join(parts) + b"}"
    if blob_threshold is not None and end - start > blob_threshold:
        return Spliced(received, start, end)
    return received
