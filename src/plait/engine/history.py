"""Looking back at recorded runs: fork (a new run reusing what one recorded), diff (two runs
step by step) and replay (one step's current code on its recorded inputs; `replay.py`).
DESIGN §3.3."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from .. import _codec
from .._errors import InputError, RunConflict, RunStateError, WorkflowNotFound
from .._runtime import Runtime
from ..core.diff import diff_runs
from ..core.fork import fork_run, plan_fork, state_at_fork
from ..core.queues import flow_of_run
from ..workflow.definition import Workflow
from . import runs
from .operator import actor
from .replay import Replay, replay_step, with_arguments
from .runs import check_run_id, encode_input, plan_and_input

log = logging.getLogger(__name__)


# -- fork -----------------------------------------------------------------------------------------


async def fork(
    rt: Runtime,
    run_id: str,
    from_step: str,
    input: Any,
    overrides: Mapping[str, Any] | None,
    *,
    new_run_id: str | None,
    by: str | None,
) -> str:
    """Create the fork (see `Engine.fork`); its run id."""
    if not isinstance(from_step, str):
        raise InputError(f"from_step must be a step name, got {type(from_step).__name__}")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise InputError(
            f"overrides must map step names to outputs, got {type(overrides).__name__}"
        )
    if new_run_id is not None:
        check_run_id(new_run_id)
    who = actor(by)
    parent = await rt.run_row(run_id)
    if input is None:
        try:
            plan, value = await plan_and_input(rt, parent.workflow, _codec.loads(parent.input))
        except InputError as exc:
            raise InputError(
                f"cannot fork run {run_id!r} with its own input: {exc}; pass input="
            ) from None
    else:
        plan, value = await plan_and_input(rt, parent.workflow, input)
    input_json = encode_input(plan, value)
    store = rt.store
    parent_plan = await store.get_workflow(parent.workflow, parent.fingerprint)
    plan_of_fork = plan_fork(plan, run_id, await store.get_steps(run_id), parent_plan, from_step)
    encoded: dict[str, bytes] = {}
    for name, output in (overrides or {}).items():
        if not isinstance(name, str):
            raise InputError(f"overrides must be keyed by step name, got {name!r}")
        try:
            encoded[name] = _codec.dumps(output)
        except _codec.EncodeError as exc:
            raise InputError(f"override of step {name!r} is not JSON: {exc}") from None
    fork_id = new_run_id or runs.new_run_id()
    run, steps, events = fork_run(
        plan,
        parent,
        plan_of_fork,
        run_id=fork_id,
        input_json=input_json,
        overrides=encoded,
        by=who,
        now=time.time(),
        state=state_at_fork(await store.get_events(run_id, 0, None), plan_of_fork),
    )
    flow_of_run(rt.workflows.latest(plan.name), plan, steps, value, 0)  # concurrency keys
    stored, created = await store.create_run(run, steps, events)
    if not created and (stored.parent_run, stored.forked_from) != (run_id, from_step):
        raise RunConflict(
            f"run id {fork_id!r} is already used by another run; choose another new_run_id"
        )
    if created:
        log.debug(
            "run forked", extra={"run_id": fork_id, "parent_run": run_id, "from_step": from_step}
        )
        rt.work_ready.fire()
    return fork_id


# -- diff -----------------------------------------------------------------------------------------


async def diff(rt: Runtime, run_a: str, run_b: str) -> dict[str, dict[str, Any]]:
    for value in (run_a, run_b):
        if not isinstance(value, str):
            raise InputError(f"run ids must be strings, got {type(value).__name__}")
    await rt.run_row(run_a)
    await rt.run_row(run_b)
    return diff_runs(await rt.store.get_steps(run_a), await rt.store.get_steps(run_b))


# -- replay ---------------------------------------------------------------------------------------


async def replay(rt: Runtime, run_id: str, step: str, workflow: Workflow | None) -> Replay:
    if not isinstance(step, str):
        raise InputError(f"step must be a step name, got {type(step).__name__}")
    row = await rt.run_row(run_id)
    if workflow is not None:
        if not isinstance(workflow, Workflow):
            raise InputError(f"workflow must be a plait.Workflow, got {type(workflow).__name__}")
        if workflow.name != row.workflow:
            raise InputError(
                f"cannot replay run {run_id!r} with workflow {workflow.name!r}: "
                f"the run is of workflow {row.workflow!r}"
            )
        workflow.plan()  # raises DefinitionError
    else:
        workflow = rt.workflows.latest(row.workflow)
    if workflow is None:
        raise WorkflowNotFound(
            f"cannot replay run {run_id!r}: no version of workflow {row.workflow!r} is "
            "registered in this process; replay runs the code you have now, so register it "
            "first (engine.register(wf)) or pass it (replay(..., workflow=wf))"
        )
    rows = {r.name: r for r in await rt.store.get_steps(run_id)}
    recorded = rows.get(step)
    if recorded is not None and recorded.task is not None:  # a spawned step: its task
        task = workflow.task_of(recorded.task)
        if task is None:
            raise InputError(
                f"cannot replay step {step!r}: it runs task {recorded.task!r}, which workflow "
                f"{workflow.name!r} v{workflow.version} ({workflow.fingerprint}) does not have"
            )
        definition = task
    elif step not in workflow:
        raise InputError(
            f"cannot replay step {step!r}: workflow {workflow.name!r} "
            f"v{workflow.version} ({workflow.fingerprint}) has no such step; "
            f"its steps: {', '.join(s.name for s in workflow.steps)}"
        )
    elif recorded is None:
        raise InputError(f"cannot replay step {step!r}: run {run_id!r} has no such step")
    else:
        definition = workflow[step]
    # what the step's handler received when it ran, if it is a static step that did: replayed
    # as it was, whatever its dependencies (or the code's defaults) hold now
    received = _codec.loads(recorded.input) if recorded.task is None and recorded.input else None
    args: dict[str, Any] = received if isinstance(received, dict) else {}
    deps = tuple(d for d in definition.data_deps if d not in args)
    absent = [d for d in deps if d not in rows]
    if absent:
        raise InputError(
            f"cannot replay step {step!r} of run {run_id!r}: its current code needs the "
            f"output of {', '.join(repr(n) for n in absent)}, which the run does not have"
        )
    unended = [d for d in deps if not rows[d].status.terminal]
    if unended:
        states = ", ".join(f"{d!r} ({rows[d].status.value})" for d in unended)
        raise RunStateError(
            f"cannot replay step {step!r} of run {run_id!r}: its dependencies have not "
            f"all ended: {states}"
        )
    inputs = (await rt.store.step_inputs({run_id: deps}))[run_id]
    if args:
        inputs = with_arguments(inputs, definition.data_deps, args)
    log.debug("replaying step", extra={"run_id": run_id, "step": step})
    return await replay_step(workflow, definition, recorded, inputs, row.fingerprint)
