"""Tasks: functions a running step may add to its run (`ctx.spawn`, `ctx.map`).

    @wf.task
    def resize(ctx, image: dict) -> dict: ...

    @wf.step
    def thumbnails(ctx, images: list) -> list:
        return ctx.map(resize, images)        # the output: every resize's output, in order

A task takes at most one value (the first parameter after `ctx`, the spawned step's `input`).
What a handler spawns is recorded with its success only (see `core.spawn` for the state machine);
a misuse (an unregistered function, a bad name, input that is not JSON) fails the step with code
`invalid_spawn`, as retrying the same code would not help.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from .. import _codec
from .._errors import DefinitionError, Permanent
from ..core.rows import Spawn, StepOptions
from ..core.spawn import child_prefix
from .context import OMITTED
from .definition import NAME_RE, StepDef, check_name
from .options import flag, handler_options, seconds
from .params import adapter, context_param, type_hints

if TYPE_CHECKING:
    from .definition import Workflow

INVALID_SPAWN = "invalid_spawn"
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
    for p in named[1:]:
        if p.default is p.empty:
            raise DefinitionError(
                f"{where}: a task takes one input (its first parameter after ctx, here "
                f"{named[0].name!r}); give parameter {p.name!r} a default"
            )
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
        self._counts: dict[str, int] = {}

    def spawn(
        self,
        fn: Callable[..., Any] | str,
        *,
        name: str | None = None,
        input: Any = OMITTED,
        after: Iterable[Handle] = (),
        not_before: datetime | None = None,
        optional: bool | None = None,
        priority: int | None = None,
        colocate: bool = False,
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
        payload = self._input(task, where, input)
        befores = self._after(where, after)
        optional = task.optional if optional is None else _flag(where, "optional", optional)
        colocate = _flag(where, "colocate", colocate)
        self._names.add(full)
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
