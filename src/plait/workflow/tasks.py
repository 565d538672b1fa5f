"""Tasks: functions a running step may add to its run (`ctx.spawn`, `ctx.map`).

    @wf.task
    def resize(ctx, image: dict) -> dict: ...

    @wf.step
    def thumbnails(ctx, images: list) -> list:
        return ctx.map(resize, images)        # the output: every resize's output, in order

A task's first parameter after `ctx` is its `input`; `ctx.spawn(..., input=)` binds it to a JSON
value or to a handle's output. Its parameters may also be bound by name: `inputs=` to outputs
(of handles, or of upstream workflow steps named by a string), `args=` to JSON values; the
spawned step waits for the handles it reads. `args=` rather than keyword arguments of `spawn`
itself: a task's parameters never collide with spawn's own options (`name`, `priority`...).

What a handler spawns is recorded with its success only (see `core.spawn` for the state
machine); a misuse (an unregistered function, a bad name, input that is not JSON, a parameter
bound twice or not at all, an unknown handle or step, a step that is not upstream) fails the
step with code `invalid_spawn`, as retrying the same code would not help.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from .. import _codec
from .._errors import DefinitionError, Permanent
from ..core.rows import Spawn, StepOptions, StepStatus
from ..core.spawn import INVALID_SPAWN, child_prefix
from .context import OMITTED
from .definition import NAME_RE, StepDef, check_name
from .options import flag, handler_options, seconds
from .params import adapter, context_param, type_hints

if TYPE_CHECKING:
    from .definition import Workflow

# the parameter of a spawned step's one read when `input=` a handle alone: the task's input is
# that output, recorded as it is (the bytes of the output, so a big one shares its blob)
WHOLE = ""
MAX_SPAWNED = 100_000  # steps one attempt may spawn: a bound on a runaway loop
TASK_OPTIONS = frozenset({"retry", "timeout", "optional", "priority", "queue", "target"})


@dataclass(frozen=True, slots=True)
class Handle:
    """A step spawned by the running step: pass it in `after=`, or return it (or a list of them)
    to make the step's output the spawned steps' outputs."""

    name: str

    def __repr__(self) -> str:
        return f"Handle({self.name!r})"


def make_task(wf: Workflow, name: str, fn: Callable[..., Any], options: dict[str, Any]) -> StepDef:
    """A task of `wf`: its handler, how its input binds, and its options."""
    check_name("task", name)
    where = f"workflow {wf.name!r}, task {name!r}"
    retry, priority = handler_options(where, fn, options, TASK_OPTIONS)
    queue, target = options.get("queue"), options.get("target")
    placed = None
    if queue is not None or target is not None:
        from ..core.placement import check_label
        from ..core.queues import check_queue

        placed = StepOptions(
            queue=None if queue is None else check_queue(where, queue),
            target=None if target is None else check_label(where, target),
        )
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"{where}: cannot read the handler's signature: {exc}") from None
    ctx_param = context_param(fn, sig)
    takes = [p for p in sig.parameters.values() if p.name != ctx_param]
    for p in takes:
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            raise DefinitionError(f"{where}: parameter {p.name!r} must be passable by keyword")
    named = [p for p in takes if p.kind is not p.VAR_KEYWORD]
    input_param = named[0] if named else None
    hints = type_hints(fn) if getattr(fn, "__annotations__", None) else {}
    return StepDef(
        name=name,
        fn=fn,
        optional=flag(where, "optional", options.get("optional", False)),
        retry=retry,
        timeout=seconds(where, "timeout", options.get("timeout")),
        priority=priority,
        options=placed,
        ctx_param=ctx_param,
        signature=sig,
        task_input=None if input_param is None else input_param.name,
        task_input_required=input_param is not None and input_param.default is input_param.empty,
        task_adapter=None
        if input_param is None
        else adapter(hints.get(input_param.name, inspect.Parameter.empty)),
        is_task=True,
    )


@functools.lru_cache(maxsize=512)
def task_parameters(fn: Callable[..., Any]) -> tuple[dict[str, bool], bool, dict[str, Any]]:
    """A task's parameters besides its context: {name: required}, whether it takes
    **kwargs, and the validator of each annotated one."""
    sig = inspect.signature(fn)
    ctx_param = context_param(fn, sig)
    hints = type_hints(fn) if getattr(fn, "__annotations__", None) else {}
    params: dict[str, bool] = {}
    adapters: dict[str, Any] = {}
    kw = False
    for p in sig.parameters.values():
        if p.name == ctx_param:
            continue
        if p.kind is p.VAR_KEYWORD:
            kw = True
            continue
        params[p.name] = p.default is p.empty
        adapters[p.name] = adapter(hints.get(p.name, inspect.Parameter.empty))
    return params, kw, adapters


def bound_kwargs(
    task: StepDef,
    ctx: Any,
    literal: bytes | None,
    reads: tuple[tuple[str, str], ...],
    ends: Mapping[str, tuple[StepStatus, bytes | None]],
) -> tuple[dict[str, Any], bytes]:
    """Arguments for one call of a task bound by parameter (`ctx.spawn(inputs=, args=)`): its
    literal arguments (a JSON object) and the outputs it reads, validated; and what it
    receives as JSON, to record (the outputs spliced in as the store gave them). pydantic's
    ValidationError if a value does not fit."""
    if len(reads) == 1 and reads[0][0] == WHOLE:  # `input=` a handle: the output, as it is
        ended = ends.get(reads[0][1])
        whole = b"null" if ended is None or ended[1] is None else ended[1]
        return task_kwargs(task, ctx, whole), whole
    values: dict[str, Any] = {} if literal is None else _codec.loads(literal)
    raw: dict[str, bytes] = {}
    for param, source in reads:
        ended = ends.get(source)
        raw[param] = b"null" if ended is None or ended[1] is None else ended[1]
        values[param] = _codec.loads(raw[param])
    _, _, adapters = task_parameters(task.fn)
    kwargs: dict[str, Any] = {}
    if task.ctx_param:
        kwargs[task.ctx_param] = ctx
    parts = []
    for name, value in values.items():
        check = adapters.get(name)
        kwargs[name] = check.validate_python(value) if check is not None else value
        parts.append(_codec.dumps(name) + b":" + (raw.get(name) or _codec.dumps(value)))
    return kwargs, b"{" + b",".join(parts) + b"}"


def task_kwargs(task: StepDef, ctx: Any, input_json: bytes | None) -> dict[str, Any]:
    """Arguments for one call of a task (pydantic's ValidationError if its input does not fit)."""
    kwargs: dict[str, Any] = {}
    if task.ctx_param:
        kwargs[task.ctx_param] = ctx
    if task.task_input is not None and input_json is not None:
        value = _codec.loads(input_json)
        adapter = task.task_adapter
        kwargs[task.task_input] = adapter.validate_python(value) if adapter else value
    return kwargs


class Spawner:
    """What one attempt of a step spawns; sent with its outcome if it succeeds."""

    def __init__(self, wf: Workflow, step: str, iteration: int) -> None:
        self.wf = wf
        self.step = step
        self.prefix = child_prefix(step, iteration)
        self.spawned: list[Spawn] = []
        self._names: set[str] = set()
        self._detached: set[str] = set()
        self._counts: dict[str, int] = {}
        self._upstream: dict[str, set[str]] = {}  # workflow step -> the steps it depends on

    def spawn(
        self,
        fn: Callable[..., Any] | str,
        *,
        name: str | None = None,
        input: Any = OMITTED,
        inputs: Mapping[str, Handle | str] | None = None,
        args: Mapping[str, Any] | None = None,
        after: Iterable[Handle] = (),
        not_before: datetime | None = None,
        optional: bool | None = None,
        priority: int | None = None,
        colocate: bool = False,
        join: bool = True,
    ) -> Handle:
        task = self._task(fn)
        where = f"ctx.spawn({task.name!r}) in step {self.step!r}"
        if len(self.spawned) >= MAX_SPAWNED:
            _refuse(f"{where}: a step may spawn at most {MAX_SPAWNED:,} steps per attempt")
        if name is None:
            n = self._counts.get(task.name, 0)
            self._counts[task.name] = n + 1
            label = f"{task.name}-{n}"
        else:
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                _refuse(
                    f"{where}: invalid name {name!r}: use 1-128 ASCII letters, digits, '_', '-' "
                    "or '.', starting with a letter or '_'"
                )
            label = name
        full = self.prefix + label
        if full in self._names:
            _refuse(f"{where}: this step already spawned a step named {label!r}")
        reads: tuple[tuple[str, str], ...] | None = None
        if inputs is None and args is None and not isinstance(input, Handle):
            payload = self._input(task, where, input)
        else:
            payload, reads = self._bound(task, where, input, inputs, args)
        befores = self._after(where, after)
        optional = task.optional if optional is None else _flag(where, "optional", optional)
        colocate = _flag(where, "colocate", colocate)
        join = _flag(where, "join", join)
        self._names.add(full)
        if not join:
            self._detached.add(full)
        self.spawned.append(
            Spawn(
                name=full,
                task=task.name,
                input=payload,
                after=befores,
                optional=optional,
                priority=task.priority if priority is None else _priority(where, priority),
                not_before=_epoch(where, not_before),
                colocate=colocate,
                options=task.options,
                reads=reads,
                join=join,
            )
        )
        return Handle(full)

    def map(self, fn: Callable[..., Any] | str, items: Iterable[Any]) -> list[Handle]:
        if isinstance(items, (str, bytes, dict)):
            _refuse(f"ctx.map in step {self.step!r}: items must be a list or other iterable of "
                    f"inputs, got {type(items).__name__}")  # fmt: skip
        return [self.spawn(fn, input=item) for item in items]

    def gather(self, result: Any) -> bytes | None:
        """The names whose outputs the step's output is, if it returned a handle or a list of
        handles (None if it returned a plain value)."""
        if isinstance(result, Handle):
            return self._gathered([result], single=True)
        if isinstance(result, (list, tuple)) and result and isinstance(result[0], Handle):
            if not all(isinstance(h, Handle) for h in result):
                _refuse(
                    f"step {self.step!r} returned a list mixing handles and other values: "
                    "return a handle, a list of handles, or a plain JSON value"
                )
            return self._gathered(result, single=False)
        return None

    def _gathered(self, handles: Iterable[Handle], *, single: bool) -> bytes:
        names = [h.name for h in handles]
        for n in names:
            if n not in self._names:
                _refuse(f"step {self.step!r} returned a handle it did not spawn: {n!r}")
            if n in self._detached:
                _refuse(
                    f"step {self.step!r} returned the handle of {n!r}, spawned with "
                    "join=False: a step gathers the outputs of the steps it joins only"
                )
        return orjson.dumps(names[0] if single else names)

    def _task(self, fn: Callable[..., Any] | str) -> StepDef:
        task = self.wf.task_of(fn)
        if task is None:
            shown = fn if isinstance(fn, str) else getattr(fn, "__name__", repr(fn))
            _refuse(
                f"step {self.step!r} spawned {shown!r}, which is not a task of workflow "
                f"{self.wf.name!r}: decorate it with @wf.task"
            )
        return task

    def _input(self, task: StepDef, where: str, value: Any) -> bytes | None:
        if value is OMITTED:
            if task.task_input_required:
                _refuse(f"{where}: the task takes an input ({task.task_input!r}): pass input=")
            return None
        if task.task_input is None:
            _refuse(f"{where}: the task takes no input (no parameter besides ctx), got one")
        try:
            return _codec.dumps(value)
        except _codec.EncodeError as exc:
            _refuse(f"{where}: input is not JSON: {exc}")

    def _bound(
        self,
        task: StepDef,
        where: str,
        input: Any,
        inputs: Mapping[str, Handle | str] | None,
        args: Mapping[str, Any] | None,
    ) -> tuple[bytes | None, tuple[tuple[str, str], ...]]:
        """A spawn bound by parameter: its literal arguments (a JSON object; None for `input=`
        a handle alone) and the (parameter, step) pairs whose outputs it reads."""
        params, kw, _ = task_parameters(task.fn)
        given: dict[str, str] = {}  # parameter -> how it is given
        literal: dict[str, Any] = {}
        reads: dict[str, str] = {}

        def bind(param: Any, how: str) -> str:
            if not isinstance(param, str):
                _refuse(f"{where}: {how} takes parameter names (strings), got {param!r}")
            if param not in params and not kw:
                known = ", ".join(repr(p) for p in params) or "none"
                _refuse(
                    f"{where}: {how} names parameter {param!r}, which the task does not "
                    f"have (its parameters besides ctx: {known})"
                )
            if param in given:
                _refuse(
                    f"{where}: parameter {param!r} is given both by {given[param]} and by "
                    f"{how}: give it once"
                )
            given[param] = how
            return param

        if input is not OMITTED:
            if task.task_input is None:
                _refuse(f"{where}: the task takes no input (no parameter besides ctx), got one")
            bind(task.task_input, "input=")
            if isinstance(input, Handle):
                source = self._handle(where, "input=", input)
                if inputs is None and args is None:  # its input is that output, as it is
                    return None, ((WHOLE, source),)
                reads[task.task_input] = source
            else:
                literal[task.task_input] = input
        if inputs is not None:
            if not isinstance(inputs, Mapping):
                _refuse(f"{where}: inputs= must be a dict of parameter -> handle or step name, "
                        f"got {type(inputs).__name__}")  # fmt: skip
            for param, given_source in inputs.items():
                bind(param, "inputs=")
                reads[param] = (
                    self._handle(where, "inputs=", given_source)
                    if isinstance(given_source, Handle)
                    else self._static(where, param, given_source)
                )
        if args is not None:
            if not isinstance(args, Mapping):
                _refuse(f"{where}: args= must be a dict of parameter -> JSON value, "
                        f"got {type(args).__name__}")  # fmt: skip
            for param, value in args.items():
                literal[bind(param, "args=")] = value
        missing = [p for p, required in params.items() if required and p not in given]
        if missing:
            _refuse(
                f"{where}: parameter(s) {', '.join(map(repr, missing))} of the task are not "
                "given: bind them with input=, inputs= or args="
            )
        try:
            payload = _codec.dumps(literal)
        except _codec.EncodeError as exc:
            _refuse(f"{where}: its arguments are not JSON: {exc}")
        return payload, tuple(reads.items())

    def _handle(self, where: str, how: str, h: Handle) -> str:
        if h.name not in self._names:
            _refuse(
                f"{where}: {how} reads {h!r}, which is not a handle of a step this step "
                "spawned (in this attempt, before this one)"
            )
        return h.name

    def _static(self, where: str, param: str, source: Any) -> str:
        """The workflow step whose output `param` reads: one upstream of this step's."""
        if not isinstance(source, str):
            _refuse(
                f"{where}: inputs= binds {param!r} to {source!r}: give a handle of a step this "
                "step spawned, or the name of a workflow step"
            )
        if source not in self.wf:
            _refuse(
                f"{where}: inputs= binds {param!r} to step {source!r}, which workflow "
                f"{self.wf.name!r} does not have"
            )
        root = self.step.split("/", 1)[0].split("#", 1)[0]  # the workflow step spawning
        if source == root or root in self._ups(source):
            what = "is this step" if source == root else f"depends on step {root!r}"
            _refuse(
                f"{where}: inputs= binds {param!r} to step {source!r}, which {what}: the "
                "spawned step would wait for a step that waits for it (a cycle)"
            )
        if source not in self._ups(root):
            _refuse(
                f"{where}: inputs= binds {param!r} to step {source!r}, which is not upstream "
                f"of step {root!r}: a spawned step reads the outputs of workflow steps that "
                "the spawning step depends on (directly or not), which have ended"
            )
        return source

    def _ups(self, name: str) -> set[str]:
        """The workflow steps `name` depends on, directly or not."""
        found = self._upstream.get(name)
        if found is None:
            found = set()
            todo = [name]
            while todo:
                for dep in self.wf[todo.pop()].dependencies():
                    if dep not in found:
                        found.add(dep)
                        todo.append(dep)
            self._upstream[name] = found
        return found

    def _after(self, where: str, after: Iterable[Handle]) -> tuple[str, ...]:
        if isinstance(after, Handle):
            after = (after,)
        names: dict[str, None] = {}
        for h in after:
            if not isinstance(h, Handle) or h.name not in self._names:
                _refuse(f"{where}: after= takes handles of steps this step spawned, got {h!r}")
            names[h.name] = None
        return tuple(names)


def _refuse(message: str) -> NoReturn:
    raise Permanent(message, code=INVALID_SPAWN)


def _flag(where: str, option: str, value: Any) -> bool:
    if value is not True and value is not False:
        _refuse(f"{where}: {option} must be True or False, got {value!r}")
    return value


def _priority(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _refuse(f"{where}: priority must be an integer, got {value!r}")
    return int(value)


def _epoch(where: str, when: datetime | None) -> float | None:
    if when is None:
        return None
    if not isinstance(when, datetime):
        _refuse(f"{where}: not_before must be a datetime, got {when!r}")
    at = when.timestamp()  # a naive datetime is local time
    if not math.isfinite(at):
        _refuse(f"{where}: not_before is not a valid time: {when!r}")
    return at
