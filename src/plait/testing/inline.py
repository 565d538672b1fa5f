"""Inline runs: a workflow run to its end in one call, on a fresh memory store by default.

    result = plait.testing.run(wf, {"order_id": 7}, mocks={"charge": {"paid": True}},
                               approve={"review": True}, signals={"shipped": {"at": "noon"}})
    assert result.status == "completed"

One worker of concurrency 1 runs the steps, so they run one at a time in the order a worker
claims them, the same order every time. Signals are delivered as the run starts (plait keeps a
signal sent early until its step is reached); an approval gate is decided as soon as it waits.
A gate or signal step that waits with nothing given for it would wait forever: the run stops
there with `RunStuck`, which names it. On its own memory store, delays, retry backoff and
approval expiries take their real time; on `engine=TestEngine()` (`testing.clock`) they take
none. `timeout` bounds the whole run, in real seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from .._errors import InputError, PlaitError
from .._portal import Portal
from ..core.policy import police
from ..core.rows import Gate
from ..engine.engine import Engine
from ..engine.runs import run_policy
from ..workflow.definition import Workflow
from ..workflow.options import ApprovalPolicy
from .mocks import check_names, with_mocks
from .results import RunResult, describe

BY = "plait.testing"  # who approves, rejects and signals, in the run's events
DEFAULT_TIMEOUT = 60.0


class RunStuck(PlaitError):
    """An inline run reached an approval gate or a signal step that nothing given to
    `plait.testing.run` decides: pass `approve={step: True or False}` or `signals={step: payload}`.
    `result` holds the run as it stood."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result


def run(
    wf: Workflow,
    input: Any = None,
    *,
    mocks: Mapping[str, Any] | None = None,
    approve: Mapping[str, bool] | None = None,
    signals: Mapping[str, Any] | None = None,
    engine: Engine | None = None,
    run_id: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    approval_policy: str | ApprovalPolicy | None = None,
) -> RunResult:
    """Run `wf` with `input` to its end and return it (see the module's docstring). `mocks`:
    step or task name → a JSON value it returns, an exception it raises, or a callable called
    instead of its code. `approve`: approval gate → True (approve) or False (reject); with
    `approval_policy` (the run's own, as `engine.start`'s), the gates it makes too.
    `signals`: signal step → its payload. `engine`: run there (it is not closed) instead of on a
    new memory store. InputError for a name the workflow does not have in that role; RunStuck
    for a gate left undecided; TimeoutError past `timeout` seconds."""
    portal = Portal("plait-testing")
    try:
        return portal.call(
            run_async(
                wf, input, mocks=mocks, approve=approve, signals=signals, engine=engine,
                run_id=run_id, timeout=timeout, approval_policy=approval_policy,
            )
        )  # fmt: skip
    finally:
        portal.close()


async def run_async(
    wf: Workflow,
    input: Any = None,
    *,
    mocks: Mapping[str, Any] | None = None,
    approve: Mapping[str, bool] | None = None,
    signals: Mapping[str, Any] | None = None,
    engine: Engine | None = None,
    run_id: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    approval_policy: str | ApprovalPolicy | None = None,
) -> RunResult:
    """`run`, on the caller's event loop."""
    if not isinstance(wf, Workflow):
        raise InputError(f"plait.testing.run takes a plait.Workflow, got {wf!r}")
    approve, signals = dict(approve or {}), dict(signals or {})
    mocked = with_mocks(wf, dict(mocks or {}))
    policy = run_policy("plait.testing.run", approval_policy)
    plan = wf.plan() if policy is None else police(wf.plan(), policy, wf.policy_subjects())
    gates = [
        s.name for s in plan.steps if s.options is not None and s.options.gate is Gate.APPROVAL
    ]
    check_names(wf, "approve", approve, gates)
    check_names(wf, "signals", signals, [s.name for s in wf.steps if s.is_signal])
    for name, decision in approve.items():
        if not isinstance(decision, bool):
            raise InputError(
                f"approve={{{name!r}: {decision!r}}}: a decision is True (approve) or False "
                "(reject)"
            )
    drive = (mocked, input, approve, signals, run_id, timeout, approval_policy)
    if engine is not None:
        return await _drive(engine, *drive)
    async with Engine("memory://") as fresh:
        return await _drive(fresh, *drive)


async def _drive(
    engine: Engine,
    wf: Workflow,
    input: Any,
    approve: dict[str, bool],
    signals: dict[str, Any],
    run_id: str | None,
    timeout: float,
    approval_policy: str | ApprovalPolicy | None,
) -> RunResult:
    await engine.register_async(wf)
    handle = await engine.start_async(wf, input, run_id=run_id, approval_policy=approval_policy)
    for name, payload in signals.items():
        await engine.signal_async(handle.id, name, payload, by=BY)
    worker = asyncio.create_task(
        engine.run_worker_async(until=handle.id, concurrency=1, timeout=timeout, workflows=[wf])
    )
    decider = asyncio.create_task(_decide(engine, handle.id, approve, signals))
    try:
        done, _ = await asyncio.wait({worker, decider}, return_when=asyncio.FIRST_COMPLETED)
        if decider in done and (stuck := decider.result()) is not None:
            engine.stop_workers()
            await worker
            result = await collect(engine, handle.id)
            raise RunStuck(
                f"run {handle.id!r} of workflow {wf.name!r} waits at step {stuck!r}, and nothing "
                f"given to plait.testing.run decides it: {_hint(wf, stuck)}",
                result,
            )
        try:
            await worker  # the run ended, or the worker's error is raised here
        except TimeoutError:
            engine.stop_workers()
            result = await collect(engine, handle.id)
            raise TimeoutError(
                f"run {handle.id!r} did not end within timeout={timeout}s:\n{describe(result)}"
            ) from None
    finally:
        for task in (decider, worker):
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
    return await collect(engine, handle.id)


async def _decide(
    engine: Engine, run_id: str, approve: dict[str, bool], signals: dict[str, Any]
) -> str | None:
    """Decide each approval gate as it waits; the first waiting step nothing decides, or None
    once the run has ended."""
    async for event in engine.watch_async(run_id):
        if event.type != "step_waiting" or event.step is None:
            continue
        step, gate = event.step, event.payload.get("gate")
        if gate == Gate.APPROVAL and step in approve:
            if approve[step]:
                await engine.approve_async(run_id, step, by=BY)
            else:
                await engine.reject_async(run_id, step, reason="rejected by the test", by=BY)
        elif gate == Gate.SIGNAL and step in signals:
            continue  # delivered at the start: the step is done with it
        else:
            return step
    return None


def _hint(wf: Workflow, step: str) -> str:
    if step in wf and wf[step].is_signal:
        return f"pass signals={{{step!r}: <payload>}}"
    return f"pass approve={{{step!r}: True}} (or False to reject it)"


async def collect(engine: Engine, run_id: str) -> RunResult:
    """A run of `engine` as a RunResult: the run, its steps, its events."""
    run = await engine.get_run_async(run_id)
    steps = {s.name: s for s in await engine.steps_async(run_id)}
    events = await engine.events_async(run_id)
    return RunResult(run, steps, events)
