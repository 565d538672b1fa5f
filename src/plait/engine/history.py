"""Looking back at recorded runs: fork (a new run reusing what one recorded), diff (two runs
step by step) and replay (one step's, or a whole run's, current code on its recorded inputs;
`replay.py`).
DESIGN §3.3."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from .. import _codec
from .._errors import InputError, RunConflict, RunStateError, WorkflowNotFound
from .._runtime import Runtime
from ..core.cascade import CONDITION
from ..core.diff import diff_runs
from ..core.fork import downstream, fork_run, plan_fork, state_at_fork, topological
from ..core.policy import of_events, started_with
from ..core.queues import flow_of_run
from ..core.rows import EdgeKind, RunRow, StepInputs, StepRow, StepStatus
from ..worker.calls import RecordedCalls
from ..workflow.definition import StepDef, Workflow
from . import runs, versions
from .operator import actor
from .replay import (
    NOT_RUN,
    REUSED,
    Replay,
    RunReplay,
    StepReplay,
    gathered,
    judged,
    replay_step,
    with_arguments,
)
from .runs import check_run_id, check_stored_input, encode_input

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
    fingerprint: str | None = None,
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
    plan, local = await versions.version_for_fork(rt, parent, fingerprint)
    validate = (
        local.validate_input if local is not None else functools.partial(check_stored_input, plan)
    )
    if input is None:
        try:
            value = validate(_codec.loads(parent.input))
        except InputError as exc:
            raise InputError(
                f"cannot fork run {run_id!r} with its own input: {exc}; pass input="
            ) from None
    else:
        value = validate(input)
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
    parent_events = await store.get_events(run_id, 0, None)
    policy = of_events(parent_events)  # a run's own approval policy: its fork keeps it
    run, steps, events = fork_run(
        runs.policed(local, plan, policy),
        parent,
        plan_of_fork,
        run_id=fork_id,
        input_json=input_json,
        overrides=encoded,
        by=who,
        now=rt.clock.time(),
        state=state_at_fork(parent_events, plan_of_fork),
    )
    if policy is not None:
        events = started_with(events, policy)
    flow_of_run(local, plan, steps, value, 0)  # concurrency keys
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


def _workflow_for(rt: Runtime, run_id: str, row: RunRow, workflow: Workflow | None) -> Workflow:
    """The code a replay of the run runs: `workflow` (checked: the run's workflow) or the
    newest version registered in this process."""
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
    return workflow


def recorded_arguments(recorded: StepRow) -> dict[str, Any]:
    """What a static step's handler received when it last ran, by parameter (`Step.input`);
    empty for a spawned step, or one whose input was not recorded (it never ran)."""
    received = _codec.loads(recorded.input) if recorded.task is None and recorded.input else None
    return received if isinstance(received, dict) else {}


async def replay_inputs(
    rt: Runtime, run_id: str, definition: StepDef, recorded: StepRow
) -> StepInputs:
    """What a replayed step's handler gets: the arguments its attempt recorded, replayed as
    they were whatever its dependencies hold now; for what was not recorded (a parameter the
    code has gained since), the run input and the outputs its dependencies
    recorded, as a worker would have loaded them."""
    args = recorded_arguments(recorded)
    deps = tuple(d for d in definition.data_deps if d not in args)
    reads = recorded.options.reads if recorded.options is not None else None
    if reads:  # a spawned step bound by parameter: the outputs it reads, as a worker loads them
        deps += tuple(source for _, source in reads)
    inputs = (await rt.store.step_inputs({run_id: deps}))[run_id]
    return with_arguments(inputs, definition.data_deps, args) if args else inputs


async def replay(rt: Runtime, run_id: str, step: str, workflow: Workflow | None) -> Replay:
    if not isinstance(step, str):
        raise InputError(f"step must be a step name, got {type(step).__name__}")
    row = await rt.run_row(run_id)
    workflow = _workflow_for(rt, run_id, row, workflow)
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
    args = recorded_arguments(recorded)  # replayed as received: its dependencies need not be
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
    inputs = await replay_inputs(rt, run_id, definition, recorded)
    log.debug("replaying step", extra={"run_id": run_id, "step": step})
    return await replay_step(
        workflow,
        definition,
        recorded,
        inputs,
        row.fingerprint,
        functools.partial(RecordedCalls, rt),
    )


# -- replay of a whole run ------------------------------------------------------------------------

# called before the `break_at` step runs: its name and what it will get (run input, outputs)
OnBreak = Callable[[str, dict[str, Any]], None]


def _parent_of(row: StepRow) -> str | None:
    return next((e.target for e in row.dependents if e.kind is EdgeKind.CHILD), None)


def _why_not(definition: StepDef, recorded: StepRow, rows: Mapping[str, StepRow]) -> str | None:
    """Why a step cannot be replayed on what the run recorded (None: it can)."""
    if definition.is_signal:
        return "a signal: its output came from outside the run"
    for dep, kind in definition.dependencies().items():
        r = rows.get(dep)
        if r is None:
            return f"its dependency {dep!r} has no record in the run"
        if not r.status.terminal:
            return f"its dependency {dep!r} has not ended ({r.status.value})"
        absorbed = kind is EdgeKind.AFTER_ANY or dep in definition.defaults
        if r.status is not StepStatus.DONE and not absorbed:
            return f"its dependency {dep!r} ended {r.status.value} in the run"
    ran = recorded.status in (StepStatus.DONE, StepStatus.FAILED) or (
        recorded.status is StepStatus.SKIPPED and recorded.skip_reason == CONDITION
    )
    if not ran:
        how = recorded.status.value + (f" ({recorded.skip_reason})" if recorded.skip_reason else "")
        return f"the run never ran it: it is {how}"
    return None


async def replay_run(
    rt: Runtime,
    run_id: str,
    workflow: Workflow | None,
    from_step: str | None,
    break_at: str | None,
    on_break: OnBreak | None,
) -> RunReplay:
    for name, value in (("from_step", from_step), ("break_at", break_at)):
        if value is not None and not isinstance(value, str):
            raise InputError(f"{name} must be a step name, got {type(value).__name__}")
    row = await rt.run_row(run_id)
    workflow = _workflow_for(rt, run_id, row, workflow)
    plan = workflow.plan()
    rows = {r.name: r for r in await rt.store.get_steps(run_id)}
    where = f"workflow {workflow.name!r} v{workflow.version} ({workflow.fingerprint})"
    if from_step is not None and (from_step not in workflow or from_step not in rows):
        missing = "the run" if from_step in workflow else where
        raise InputError(
            f"cannot replay run {run_id!r} from step {from_step!r}: {missing} has no such "
            f"step; its steps: {', '.join(s.name for s in workflow.steps)}"
        )
    children: dict[str, list[StepRow]] = {}
    for r in sorted(rows.values(), key=lambda r: r.idx):
        parent = _parent_of(r) if r.task is not None else None
        if parent is not None:
            children.setdefault(parent, []).append(r)
    order: list[str] = []

    def visit(name: str) -> None:
        order.append(name)
        for child in children.get(name, ()):
            visit(child.name)

    for name in topological(plan):
        visit(name)
    placed = set(order)
    order += [n for n in rows if n not in placed and rows[n].task is None]  # gone from the code
    rerun = set(order) if from_step is None else set()
    if from_step is not None:
        for name in downstream(plan, from_step):
            rerun.add(name)
        for name in order:
            parent = _parent_of(rows[name]) if name in rows and rows[name].task else None
            if parent is not None and parent in rerun:
                rerun.add(name)
    if break_at is not None:
        if break_at not in order:
            raise InputError(
                f"cannot break at step {break_at!r}: run {run_id!r} and {where} have no such step"
            )
        if break_at not in rerun:
            raise InputError(
                f"cannot break at step {break_at!r}: it is upstream of {from_step!r}, so the "
                "replay reuses its recorded output and never runs it"
            )
    results: dict[str, StepReplay] = {}
    outputs: dict[str, Any] = {}  # replayed outputs, for the parents that gather them
    for name in order:
        recorded = rows.get(name)
        if name not in rerun:
            results[name] = StepReplay(name, REUSED)
            continue
        if recorded is None:
            results[name] = StepReplay(name, NOT_RUN, reason="the run has no record of it")
            continue
        if recorded.task is not None:
            definition = workflow.task_of(recorded.task)
        else:
            definition = workflow[name] if name in workflow else None  # noqa: SIM401  # no .get
        if definition is None:
            what = f"task {recorded.task!r}" if recorded.task is not None else "such step"
            results[name] = StepReplay(name, NOT_RUN, reason=f"the current code has no {what}")
            continue
        why = _why_not(definition, recorded, rows)
        if why is not None:
            results[name] = StepReplay(name, NOT_RUN, reason=why)
            continue
        inputs = await replay_inputs(rt, run_id, definition, recorded)
        if name == break_at and on_break is not None:
            on_break(name, _break_view(inputs))
        log.debug("replaying step", extra={"run_id": run_id, "step": name})
        replayed = await replay_step(
            workflow, definition, recorded, inputs, row.fingerprint,
            functools.partial(RecordedCalls, rt),
        )  # fmt: skip
        if replayed.status == "done":
            outputs[name] = replayed.output
        results[name] = StepReplay(name, judged(replayed), replayed)
    for name, result in results.items():  # parents that gather: their children's new outputs
        if result.replay is not None and name in children:
            again = gathered(result.replay, rows[name], outputs)
            results[name] = StepReplay(name, judged(again), again)
    return RunReplay(
        run_id=run_id,
        workflow=workflow.name,
        version=workflow.version,
        fingerprint=workflow.fingerprint,
        recorded_fingerprint=row.fingerprint,
        from_step=from_step,
        steps=[results[n] for n in order],
    )


def _break_view(inputs: StepInputs) -> dict[str, Any]:
    """What a step stopped at by `break_at` will get, decoded for a person with a debugger."""
    return {
        "run_input": _codec.loads(inputs.run_input),
        "dependencies": {
            dep: {"status": status.value, "output": _codec.loads(output)}
            for dep, (status, output) in inputs.dependencies.items()
        },
    }
