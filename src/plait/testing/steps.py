"""One step's code called alone: `call_step(wf, "charge", input={...}, fetch={...})`.

The step's arguments are bound exactly as a worker binds them (`StepDef.build_kwargs`, or
`task_kwargs` for a task: the same validation of run-input fields and upstream outputs), from
the run input and the upstream outputs the test gives, and its `when=` condition is evaluated
as a worker would. Its context is a real `StepContext` of a run that does not exist: what the
step records, saves and spawns is captured in the returned `StepCall`, never stored. An
exception out of the step propagates as it is, so `pytest.raises` can catch it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import ValidationError

from .. import _codec
from .._errors import InputError
from .._portal import Portal
from ..core import identity
from ..core.rows import StepStatus
from ..workflow.context import StepContext
from ..workflow.definition import StepDef, Workflow
from ..workflow.tasks import bound_kwargs, task_kwargs, task_parameters

RUN_ID = "test-run"  # the run a called step's context says it belongs to


class Recorded(NamedTuple):
    """A document the step wrote with `ctx.record` (kept here, not in any store)."""

    collection: str
    key: str
    doc: Any
    expected_revision: int | None = None


class Saved(NamedTuple):
    """A file the step saved with `ctx.save_artifact` (its bytes kept here)."""

    name: str
    data: bytes
    content_type: str
    metadata: dict[str, Any] | None = None


class Spawned(NamedTuple):
    """A step the step spawned with `ctx.spawn` or `ctx.map` (not run)."""

    name: str
    task: str
    input: Any
    after: tuple[str, ...] = ()


class Bound(NamedTuple):
    """A task's parameters given as a spawn binds them: `args=` JSON values, `inputs=` the
    outputs they read (the values themselves: there is no run to read them from)."""

    args: Mapping[str, Any] | None = None
    inputs: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StepCall:
    """What one call of a step did. `output`: what it returned, as the steps after it would
    read it (through plait's JSON); the handles it returned if it returned spawned steps'
    handles. `skipped`: its `when=` condition was false, so its code was not called. `state`:
    the run's session state as the step left it (`ctx.state`, with its `set` and `append`).
    `events`: what it emitted (`ctx.emit`), (type without `user.`, payload), in order."""

    step: str
    output: Any
    records: list[Recorded] = field(default_factory=list)
    artifacts: list[Saved] = field(default_factory=list)
    spawned: list[Spawned] = field(default_factory=list)
    skipped: bool = False
    state: dict[str, Any] = field(default_factory=dict)  # ctx.state after it, its changes in
    events: list[tuple[str, Any]] = field(default_factory=list)  # ctx.emit: (type, payload)


def call_step(
    wf: Workflow,
    step: str,
    /,
    *,
    input: Mapping[str, Any] | Any = None,
    outputs: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
    attempt: int = 1,
    args: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    run_labels: Mapping[str, str] | None = None,
    **upstream: Any,
) -> StepCall:
    """Call the code of step (or task) `step` of `wf` once. `input`: the run input (for a
    task: its own input). Each upstream output the step reads is given by the upstream step's
    name (`fetch={...}`), or in `outputs=` for a name that is also one of these parameters.
    `state`: the run's session state when the step starts (`ctx.state`, and a `when=`
    condition's `plait.SessionState`). `attempt`: what `ctx.attempt` says. An upstream output
    not given takes the step's default for it, if it has one. `run_labels`: what
    `ctx.run_labels` says (the run's labels).

    A task spawned by parameter (`ctx.spawn(task, args={...}, inputs={...})`) is called as the
    worker calls it: `args=` its parameters' JSON values, `inputs=` the outputs its parameters
    read (the values, where the spawn names handles or steps), `input=` beside them its input
    parameter's value.

    InputError for an unknown step or upstream name, an upstream output or run-input field the
    step reads and the test did not give, a task parameter unknown, given twice or not at all,
    or a value its annotation refuses."""
    given = {**(outputs or {}), **upstream}
    bound = Bound(args, inputs)
    prepared = _prepare(wf, step, input, given, state, attempt, bound, run_labels)
    if isinstance(prepared, StepCall):
        return prepared
    definition, ctx, kwargs = prepared
    if definition.is_async:
        portal = Portal("plait-call-step")
        try:
            result = portal.call(definition.fn(**kwargs))
        finally:
            portal.close()
    else:
        result = definition.fn(**kwargs)
    return _captured(step, ctx, result)


async def call_step_async(
    wf: Workflow,
    step: str,
    /,
    *,
    input: Mapping[str, Any] | Any = None,
    outputs: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
    attempt: int = 1,
    args: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    run_labels: Mapping[str, str] | None = None,
    **upstream: Any,
) -> StepCall:
    """`call_step`, awaiting an async step on the caller's loop (a sync one is called here)."""
    given = {**(outputs or {}), **upstream}
    bound = Bound(args, inputs)
    prepared = _prepare(wf, step, input, given, state, attempt, bound, run_labels)
    if isinstance(prepared, StepCall):
        return prepared
    definition, ctx, kwargs = prepared
    result = definition.fn(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return _captured(step, ctx, result)


def _find(wf: Workflow, name: str) -> StepDef:
    if not isinstance(wf, Workflow):
        raise InputError(f"call_step takes a plait.Workflow, got {wf!r}")
    wf.plan()
    found = wf._steps.get(name) or wf.task_of(name)
    if found is None:
        names = ", ".join(repr(n) for n in [*wf._steps, *wf._tasks])
        raise InputError(f"workflow {wf.name!r} has no step or task {name!r} (it has: {names})")
    if found.is_signal:
        raise InputError(
            f"step {name!r} of workflow {wf.name!r} is a signal step: it has no code to call"
        )
    return found


def _prepare(
    wf: Workflow,
    name: str,
    input: Any,
    given: dict[str, Any],
    state: Mapping[str, Any] | None,
    attempt: int,
    bound: Bound,
    run_labels: Mapping[str, str] | None,
) -> tuple[StepDef, StepContext, dict[str, Any]] | StepCall:
    step = _find(wf, name)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise InputError(f"attempt must be an integer >= 1, got {attempt!r}")
    where = f"step {name!r}" if not step.is_task else f"task {name!r}"
    try:
        value = _codec.loads(_codec.dumps(input))  # what a worker would read back
    except _codec.EncodeError as exc:
        raise InputError(f"{where}: input is not JSON: {exc}") from None
    run_input = value if isinstance(value, dict) and not step.is_task else {}
    if state is not None and not isinstance(state, Mapping):
        raise InputError(f"{where}: state is a JSON object (the session state), got {state!r}")
    try:
        state_json = None if state is None else _codec.dumps(dict(state))
    except _codec.EncodeError as exc:
        raise InputError(f"{where}: state is not JSON: {exc}") from None
    labels = identity.check_labels(f"{where}: run_labels", run_labels)
    ctx = StepContext(
        run_id=RUN_ID, step=name, workflow=wf.name, attempt=attempt, run_input=run_input,
        definition=wf, run_labels=labels,
    )  # fmt: skip
    ctx._load_state(state_json)
    try:
        if step.is_task:
            if given:
                raise InputError(
                    f"{where} reads no upstream outputs, only its input: got "
                    f"{', '.join(repr(n) for n in given)}"
                )
            if bound.args is not None or bound.inputs is not None:
                return step, ctx, _bound_task(step, ctx, where, input, value, bound)
            return step, ctx, task_kwargs(step, ctx, None if input is None else _codec.dumps(value))
        if bound.args is not None or bound.inputs is not None:
            raise InputError(
                f"{where}: args= and inputs= bind the parameters of a task (a spawned step); a "
                "workflow step reads the run input (input=) and upstream outputs by step name "
                "(an upstream step named 'args' or 'inputs': give it in outputs=)"
            )
        if input is not None and not isinstance(value, dict):
            raise InputError(f"{where}: a run input is a JSON object, got {input!r}")
        outputs = _outputs(wf, step, where, given)
        _check_inputs(step, where, run_input)
        kwargs = step.build_kwargs(ctx, run_input, outputs)  # validated first, as in attempt
        if not step.condition_holds(run_input, outputs, state_json):
            return StepCall(name, None, skipped=True, state=ctx.state.to_dict())
        return step, ctx, kwargs
    except ValidationError as exc:
        raise InputError(f"{where}: {exc}") from None


def _bound_task(
    task: StepDef, ctx: StepContext, where: str, input: Any, value: Any, bound: Bound
) -> dict[str, Any]:
    """A task's arguments bound by parameter, checked as `ctx.spawn` checks them, then bound
    and validated as the worker binds them (`bound_kwargs`)."""
    params, kw, _ = task_parameters(task.fn)
    how: dict[str, str] = {}  # parameter -> how it is given
    literal: dict[str, Any] = {}
    ends: dict[str, tuple[StepStatus, bytes | None]] = {}  # parameter -> the output it reads

    def bind(param: Any, by: str) -> None:
        if not isinstance(param, str):
            raise InputError(f"{where}: {by} takes parameter names (strings), got {param!r}")
        if param not in params and not kw:
            known = ", ".join(repr(p) for p in params) or "none"
            raise InputError(
                f"{where}: {by} names parameter {param!r}, which the task does not have "
                f"(its parameters besides ctx: {known})"
            )
        if param in how:
            raise InputError(
                f"{where}: parameter {param!r} is given both by {how[param]} and by {by}: "
                "give it once"
            )
        how[param] = by

    if input is not None:
        if task.task_input is None:
            raise InputError(
                f"{where}: the task takes no input (no parameter besides ctx), got one"
            )
        bind(task.task_input, "input=")
        literal[task.task_input] = value
    for by, given in (("args=", bound.args), ("inputs=", bound.inputs)):
        if given is None:
            continue
        if not isinstance(given, Mapping):
            what = "JSON value" if by == "args=" else "the output it reads"
            raise InputError(
                f"{where}: {by} must be a dict of parameter -> {what}, got {type(given).__name__}"
            )
        for param, item in given.items():
            bind(param, by)
            try:
                encoded = _codec.dumps(item)
            except _codec.EncodeError as exc:
                raise InputError(f"{where}: {by} {param!r} is not JSON: {exc}") from None
            if by == "args=":
                literal[param] = _codec.loads(encoded)
            else:
                ends[param] = (StepStatus.DONE, encoded)
    missing = [p for p, required in params.items() if required and p not in how]
    if missing:
        raise InputError(
            f"{where}: parameter(s) {', '.join(map(repr, missing))} of the task are not given: "
            "bind them with input=, inputs= or args="
        )
    reads = tuple((param, param) for param in ends)
    return bound_kwargs(task, ctx, _codec.dumps(literal), reads, ends)[0]


def _outputs(wf: Workflow, step: StepDef, where: str, given: dict[str, Any]) -> dict[str, Any]:
    reads = list(step.data_deps)  # its parameters' and its when= condition's
    unknown = [n for n in given if n not in reads]
    if unknown:
        listed = ", ".join(repr(n) for n in reads) or "none"
        raise InputError(
            f"{where} of workflow {wf.name!r} does not read the output of "
            f"{', '.join(repr(n) for n in unknown)} (it reads: {listed})"
        )
    missing = [n for n in reads if n not in given and n not in step.defaults]
    if missing:
        raise InputError(
            f"{where} reads the output of {', '.join(repr(n) for n in missing)}: pass "
            + ", ".join(f"{n}=<its output>" for n in missing)
        )
    outputs = {n: step.defaults[n] for n in reads if n in step.defaults}
    for dep, value in given.items():
        try:
            outputs[dep] = _codec.loads(_codec.dumps(value))
        except _codec.EncodeError as exc:
            raise InputError(f"{where}: the output given for {dep!r} is not JSON: {exc}") from None
    return outputs


def _check_inputs(step: StepDef, where: str, run_input: Mapping[str, Any]) -> None:
    fields = [*step.inputs, *step.when_inputs]
    missing = [f.name for f in fields if f.required and f.name not in run_input]
    if missing:
        raise InputError(
            f"{where} reads the run-input field {', '.join(repr(n) for n in missing)}, which "
            "input= lacks"
        )


def _captured(name: str, ctx: StepContext, result: Any) -> StepCall:
    spawner = ctx._spawner
    spawned = [] if spawner is None else list(spawner.spawned)
    if spawner is not None and spawner.gather(result) is not None:
        output = result  # the handles whose steps' outputs the step's output will be
    else:
        try:
            output = _codec.loads(_codec.dumps(result))
        except _codec.EncodeError as exc:
            raise InputError(f"step {name!r} returned a value that is not JSON: {exc}") from None
    return StepCall(
        step=name,
        output=output,
        records=[
            Recorded(w.collection, w.key, _codec.loads(w.doc), w.expected) for w in ctx._records
        ],
        artifacts=[
            Saved(a.name, a.data or b"", a.content_type, _codec.loads(a.metadata))
            for a in ctx._artifacts
        ],
        spawned=[Spawned(s.name, s.task, _codec.loads(s.input), s.after) for s in spawned],
        state=ctx.state.to_dict(),
        events=[(e.type, e.payload) for e in ctx._events],
    )
