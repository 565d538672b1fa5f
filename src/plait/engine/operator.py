"""The operator's actions on a run: cancel, pause, resume and retry (transitions of
`core.actions`), and the decisions steps wait for from outside, approvals and signals
(transitions of `core.gates`). Each is applied in one store transaction; a refused one raises
RunStateError and changes nothing.
"""

from __future__ import annotations

import getpass
import socket
from typing import Any

from .. import _codec
from .._errors import InputError
from .._runtime import Runtime
from ..core import actions, gates, user_events
from ..core.calls import waits_for
from ..core.rows import CommitResult, RunRow, StepRow, StepStatus
from .views import Run, Step, Waiting


def actor(by: str | None) -> str:
    """Who acts, as given (checked), or this process's user@host."""
    if by is None:
        return this_user()
    if not isinstance(by, str) or not by.strip() or len(by) > 200:
        raise InputError(f"by must be a non-empty string of at most 200 characters, got {by!r}")
    return by


def this_user() -> str:
    """Who acts, for the run's log: user@host of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# -- actions on a run -----------------------------------------------------------------------------


async def cancel(rt: Runtime, run_id: str, reason: str | None, by: str | None) -> Run:
    if reason is not None and not isinstance(reason, str):
        raise InputError(f"reason must be a string, got {type(reason).__name__}")
    await rt.run_row(run_id)  # RunNotFound, with the usual message
    await rt.apply(actions.cancel, run_id, reason=reason, by=actor(by))
    return Run.from_row(await rt.run_row(run_id))


async def pause(rt: Runtime, run_id: str, by: str | None) -> Run:
    await rt.run_row(run_id)
    await rt.apply(actions.pause, run_id, by=actor(by))
    return Run.from_row(await rt.run_row(run_id))


async def resume(rt: Runtime, run_id: str, by: str | None) -> Run:
    await rt.run_row(run_id)
    await rt.apply(actions.resume, run_id, by=actor(by))
    return Run.from_row(await rt.run_row(run_id))


async def retry(rt: Runtime, run_id: str, step: str, by: str | None) -> Run:
    _check_step(step)
    await rt.run_row(run_id)
    await rt.apply(actions.retry, run_id, step_name=step, by=actor(by))
    return Run.from_row(await rt.run_row(run_id))


async def resume_failed(rt: Runtime, run_id: str, by: str | None) -> Run:
    await rt.run_row(run_id)
    await rt.apply(actions.resume_failed, run_id, by=actor(by))
    return Run.from_row(await rt.run_row(run_id))


async def annotate(rt: Runtime, run_id: str, type_: str, payload: Any, by: str | None) -> None:
    if not isinstance(run_id, str):
        raise InputError(f"run_id must be a string, got {type(run_id).__name__}")
    event = user_events.user_event(type_, payload)  # InputError first: nothing is read
    who = actor(by)
    await rt.run_row(run_id)  # RunNotFound, with the usual message
    await rt.apply(user_events.annotate, run_id, event=event, by=who)


# -- approvals and signals ------------------------------------------------------------------------


async def approve(rt: Runtime, run_id: str, step: str, by: str | None, note: str | None) -> Step:
    _check_text("note", note)
    await _decide(rt, gates.approve, run_id, step, by=actor(by), note=note)
    return await _step(rt, run_id, step)


async def reject(rt: Runtime, run_id: str, step: str, reason: str | None, by: str | None) -> Step:
    _check_text("reason", reason)
    await _decide(rt, gates.reject, run_id, step, by=actor(by), reason=reason)
    return await _step(rt, run_id, step)


async def signal(rt: Runtime, run_id: str, name: str, payload: Any, by: str | None) -> bool:
    try:
        data = _codec.dumps(payload)
    except _codec.EncodeError as exc:
        raise InputError(f"signal payload for {name!r} is not JSON: {exc}") from None
    result = await _decide(rt, gates.signal, run_id, name, payload=data, by=actor(by))
    return bool(result.accepted and result.accepted[0])


async def list_waiting(rt: Runtime, limit: int, run_id: str | None = None) -> list[Waiting]:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InputError(f"limit must be a positive integer, got {limit!r}")
    store = await rt.ready()
    if run_id is None:
        rows = await store.list_waiting(limit)
    else:  # one run's: its waiting steps (not the ones waiting for what they spawned)
        await rt.run_row(run_id)  # RunNotFound, with the usual message
        found = [s for s in await store.get_steps(run_id) if s.status is StepStatus.WAITING]
        rows = sorted(
            (s for s in found if not s.joining), key=lambda s: (s.ready_at or 0.0, s.name)
        )
        rows = rows[:limit]
    rows = [row for row in rows if waits_for(row) is None]  # not a decision: a child run
    runs = {r.id: r for r in await store.get_runs({row.run_id for row in rows})}
    waiting = []
    for row in rows:
        run = runs[row.run_id]
        request = await _approval_request(rt, run, row)
        waiting.append(Waiting.from_row(row, run.workflow, request))
    return waiting


async def _approval_request(rt: Runtime, run: RunRow, row: StepRow) -> dict[str, Any] | None:
    """What a waiting approval asks about, if its step says (`__plait_request__`, set by a
    workflow file's steps): computed from the run's input, the step's inputs and the session
    state as they are now. None for a workflow this process has not registered."""
    wf = rt.workflows.get(run.fingerprint)
    if wf is None or row.task is not None or row.name not in wf:
        return None
    step = wf[row.name]
    request = getattr(step.fn, "__plait_request__", None)
    if request is None:
        return None
    inputs = (await rt.store.step_inputs({run.id: step.data_deps})).get(run.id)
    if inputs is None:
        return None
    outputs = {
        dep: _codec.loads(output) if status is StepStatus.DONE else step.defaults.get(dep)
        for dep, (status, output) in inputs.dependencies.items()
    }
    state = _codec.loads(inputs.state) if inputs.state else {}
    asked: dict[str, Any] = request(_codec.loads(inputs.run_input), outputs, state)
    return asked


async def _decide(
    rt: Runtime, decision: Any, run_id: str, step: str, **options: Any
) -> CommitResult:
    _check_step(step)
    await rt.run_row(run_id)  # RunNotFound, with the usual message
    return await rt.apply(decision, run_id, name=step, **options)


async def _step(rt: Runtime, run_id: str, name: str) -> Step:
    return next(Step.from_row(s) for s in await rt.store.get_steps(run_id) if s.name == name)


def _check_step(step: object) -> None:
    if not isinstance(step, str):
        raise InputError(f"step must be a step name, got {type(step).__name__}")


def _check_text(what: str, value: object) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > 2000):
        raise InputError(f"{what} must be a string of at most 2000 characters, got {value!r:.80}")
