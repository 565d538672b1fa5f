"""Waiting for one step of a run to end (`engine.wait_step`, `RunHandle.step(name).result()`),
from any process: its output, or StepFailed / StepSkipped / StepCancelled with its error.

A step ends only with an event in its run's log, so the waiter is woken as a run's watcher is
(`engine.watch`): by this process's commits (`Runtime.events_written`), by the store's push of
the events other processes append to that run (PostgreSQL), and otherwise by a poll backing off
from 10 ms to `poll_interval` (to `sweep_interval` while the push is live). Each look reads the
one step's status (`Store.step_inputs`), never the whole run; its error is read once it ended.
"""

from __future__ import annotations

import time
from typing import Any

from .. import _codec
from .._errors import (
    InputError,
    RunNotFound,
    StepCancelled,
    StepError,
    StepFailed,
    StepSkipped,
)
from .._portal import Broadcast, wait_any
from .._runtime import Runtime
from ..core.rows import StepStatus
from ..workflow.options import wait_limit
from .watch import FIRST_POLL, event_pushes


def check(run_id: object, step: object) -> None:
    if not isinstance(run_id, str):
        raise InputError(f"wait_step: run_id must be a string, got {type(run_id).__name__}")
    if not isinstance(step, str):
        raise InputError(f"wait_step: step must be a step name (a string), got {step!r}")


async def wait_step(rt: Runtime, run_id: str, step: str, timeout: float | None) -> Any:
    """The step's output once it is done; StepFailed / StepSkipped / StepCancelled if it ended
    otherwise; TimeoutError if it has not ended by `timeout` (None: no limit, 0: look once).
    RunNotFound for an unknown run; InputError for a step the run does not have (yet: a step
    to be spawned cannot be waited for before it is)."""
    check(run_id, step)
    timeout = wait_limit(f"wait_step({run_id!r}, {step!r})", "timeout", timeout)
    store = await rt.ready()
    pushes = event_pushes(rt, store, run_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = FIRST_POLL
    while True:
        seen = rt.events_written.generation
        seen_push = pushes.generation if pushes is not None else None
        found = await store.step_inputs({run_id: (step,)})
        if run_id not in found:
            raise RunNotFound(f"no run with id {run_id!r} in {rt.url}")
        ended = found[run_id].dependencies.get(step)
        if ended is None:
            raise InputError(
                f"wait_step: run {run_id!r} has no step {step!r} "
                f"(its steps: {await _names(rt, run_id)})"
            )
        status, output = ended
        if status is StepStatus.DONE:
            return _codec.loads(output)
        if status.terminal:
            raise await _ended(rt, run_id, step, status)
        now = time.monotonic()
        if deadline is not None and deadline <= now:
            raise TimeoutError(
                f"step {step!r} of run {run_id!r} did not end within {timeout}s "
                f"(it is {status.value})"
            )
        wakers: list[tuple[Broadcast, int | None]] = [(rt.events_written, seen)]
        if pushes is not None:
            wakers.append((pushes, seen_push))
        wait = rt.idle_interval if pushes is not None and rt.push_live else pause
        if deadline is not None:
            wait = min(wait, deadline - now)
        woken = await wait_any(wakers, wait)
        pause = FIRST_POLL if woken else min(pause * 2, rt.idle_interval)


async def _names(rt: Runtime, run_id: str) -> str:
    """The run's step names, for a message: the first ten, and how many more."""
    names = [s.name for s in await rt.store.get_steps(run_id, excerpt=0)]
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return ", ".join(names[:10]) + more


async def _ended(rt: Runtime, run_id: str, step: str, status: StepStatus) -> Exception:
    """The error that says how the step ended, its error and reason read from the store."""
    row = next(s for s in await rt.store.get_steps(run_id, excerpt=0) if s.name == step)
    error = StepError(row.error_code, row.error_message or "") if row.error_code else None
    where = f"step {step!r} of run {run_id!r}"
    if status is StepStatus.FAILED:
        detail = f"[{error.code}] {error.message}" if error else "no error recorded"
        return StepFailed(f"{where} failed: {detail}", run_id=run_id, step=step, error=error)
    if status is StepStatus.SKIPPED:
        reason = row.skip_reason
        return StepSkipped(
            f"{where} was skipped" + (f": {reason}" if reason else ""),
            run_id=run_id,
            step=step,
            reason=reason,
        )
    run = await rt.store.get_run(run_id)
    reason = (error.message if error else None) or (run.error if run is not None else None)
    return StepCancelled(
        f"{where} was cancelled" + (f": {reason}" if reason else ""),
        run_id=run_id,
        step=step,
        error=error,
        reason=reason,
    )
