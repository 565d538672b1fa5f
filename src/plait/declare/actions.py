"""Actions: the Python functions the steps of a workflow file call.

A function becomes an action by registering it under a name, `@plait.action("orders.charge")`,
or by being named in the file by its import path, `module:function`. Its parameters are the
step's `with:` arguments, checked when the file is loaded (an unknown argument, a missing one)
and validated by their annotations when the step runs (pydantic's lax mode, as a step's
parameters are); a parameter annotated `plait.StepContext`, or an unannotated one named `ctx`,
receives the step's context. This module imports no YAML: a module of actions needs only plait.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from .._errors import DefinitionError, Permanent
from ..workflow.digests import code_digest
from ..workflow.params import EMPTY, adapter, is_context, type_hints
from .expressions import did_you_mean

F = TypeVar("F", bound=Callable[..., Any])

ACTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)*$")
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
INVALID_ARGUMENTS = "invalid_arguments"  # the code of a step whose arguments do not fit


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    required: bool
    adapter: TypeAdapter[Any] | None


@dataclass
class Action:
    """A function a step can call, with what its parameters accept."""

    name: str
    fn: Callable[..., Any]
    params: dict[str, Param] = field(default_factory=dict)
    ctx_param: str | None = None
    accepts_kwargs: bool = False
    returns: Any = Any  # the return annotation: what an expression may read of the output

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    @property
    def digest(self) -> str:
        return code_digest(self.fn)

    def problems(self, given: list[str]) -> list[tuple[str | None, str]]:
        """What is wrong with calling it with the arguments `given`: (argument or None, message)."""
        found: list[tuple[str | None, str]] = []
        for name in given:
            if name not in self.params and not self.accepts_kwargs:
                takes = ", ".join(self.params) or "no argument"
                found.append(
                    (
                        name,
                        f"action {self.name!r} has no parameter {name!r}"
                        f"{did_you_mean(name, list(self.params))} (it takes: {takes})",
                    )
                )
        missing = [p.name for p in self.params.values() if p.required and p.name not in given]
        if missing:
            found.append(
                (
                    None,
                    f"action {self.name!r} needs argument{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(repr(m) for m in missing)} under with:",
                )
            )
        return found

    def arguments(self, values: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
        """The keyword arguments of one call: each value validated by its parameter's
        annotation. A value that does not fit fails the step, without retry, with code
        `invalid_arguments` and a message naming the action, the argument and the problem."""
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            param = self.params.get(name)
            if param is not None and param.adapter is not None:
                try:
                    value = param.adapter.validate_python(value)
                except ValidationError as exc:
                    raise Permanent(
                        f"action {self.name!r}, argument {name!r}: {_short(exc)} "
                        f"(got {_shown(value)})",
                        code=INVALID_ARGUMENTS,
                    ) from None
            kwargs[name] = value
        if self.ctx_param is not None:
            kwargs[self.ctx_param] = ctx
        return kwargs


def output_problem(hint: Any, fields: list[tuple[str, int]], what: str) -> tuple[str, int] | None:
    """Whether fields read in turn from a value of type `hint` exist: (message, offset of the
    field) for the first that cannot, else None. Only types that list their fields (pydantic
    models, dataclasses, TypedDicts) and scalars are checked; a dict, Any or an unannotated
    value may hold anything."""
    for name, offset in fields:
        hint = _without_none(hint)
        known = _fields_of(hint)
        if known is None:
            scalar = _scalar_kind(hint)
            if scalar is None:
                return None
            return f"{what} is {scalar}: it has no field {name!r}", offset
        if name not in known:
            listed = ", ".join(known) or "none"
            return (
                f"{what} has no field {name!r}{did_you_mean(name, list(known))} (its "
                f"{_type_name(hint)} has: {listed})",
                offset,
            )
        hint, what = known[name], f"{what}.{name}"
    return None


def _without_none(hint: Any) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else Any
    return hint


def _fields_of(hint: Any) -> dict[str, Any] | None:
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return {name: f.annotation for name, f in hint.model_fields.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = type_hints(hint)
        return {
            f.name: hints.get(f.name, Any)
            for f in dataclasses.fields(hint)
            if not f.name.startswith("_")
        }
    if typing.is_typeddict(hint):
        return dict(type_hints(hint))
    return None


def _scalar_kind(hint: Any) -> str | None:
    origin = typing.get_origin(hint) or hint
    if origin in (list, tuple, set, frozenset) or (
        isinstance(origin, type)
        and issubclass(origin, collections.abc.Sequence)
        and origin not in (str, bytes)
    ):
        return "a list"
    return {str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(hint)


def _type_name(hint: Any) -> str:
    return f"type {getattr(hint, '__name__', str(hint))}"


def make_action(name: str, fn: Callable[..., Any]) -> Action:
    where = f"action {name!r}"
    if not callable(fn):
        raise DefinitionError(f"{where}: {fn!r} is not a function")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"{where}: cannot read its signature: {exc}") from None
    hints = type_hints(fn) if getattr(fn, "__annotations__", None) else {}
    action = Action(name, fn, returns=hints.get("return", Any))
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            action.accepts_kwargs = True
            continue
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            raise DefinitionError(
                f"{where}: parameter {p.name!r} cannot be passed by keyword; actions are called "
                "with their with: arguments by name"
            )
        hint = hints.get(p.name, EMPTY)
        if is_context(p.name, hint):
            action.ctx_param = p.name
            continue
        action.params[p.name] = Param(p.name, p.default is EMPTY, adapter(hint))
    return action


_REGISTRY: dict[str, Action] = {}


def action(name: str) -> Callable[[F], F]:
    """Register a function as the action `name` ("service.method"), which the steps of a
    workflow file call with `action: service.method`. Its typed parameters are validated when
    a step calls it.

    >>> @plait.action("orders.charge")
    ... def charge(order_id: int, amount: float) -> dict: ...
    """
    if callable(name):
        raise DefinitionError(
            f'@plait.action needs the action\'s name: write @plait.action("service.method") '
            f"above {getattr(name, '__name__', 'the function')}"
        )
    if not isinstance(name, str) or not ACTION_NAME.fullmatch(name):
        raise DefinitionError(
            f"invalid action name {name!r}: use letters, digits, '_' or '-', in parts joined "
            "by '.', as in 'orders.charge'"
        )

    def register(fn: F) -> F:
        made = make_action(name, fn)
        old = _REGISTRY.get(name)
        if old is not None and _qualified(old.fn) != _qualified(fn):
            raise DefinitionError(
                f"action {name!r} is already registered, by {_qualified(old.fn)}; "
                f"{_qualified(fn)} cannot take its name"
            )
        _REGISTRY[name] = made  # the same function again (a module reloaded): the newer one
        return fn

    return register


def registered() -> dict[str, Action]:
    return dict(_REGISTRY)


def _qualified(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


class ActionNotFound(Exception):
    """An action name or import path that names no function."""


def resolve(ref: str) -> Action:
    """The action `ref` names: a registered name, or a `module:function` import path (which
    imports the module: user code runs). ActionNotFound with the reason otherwise."""
    if ":" in ref:
        if not IMPORT_PATH.fullmatch(ref):
            raise ActionNotFound(
                f"invalid import path {ref!r}: write module:function, as in 'shop.steps:charge'"
            )
        module_name, _, attr = ref.partition(":")
        module = import_module(module_name)
        value: Any = module
        for part in attr.split("."):
            if not hasattr(value, part):
                names = [n for n in dir(value) if not n.startswith("_")]
                raise ActionNotFound(
                    f"module {module_name!r} has no {attr!r}{did_you_mean(part, names)}"
                )
            value = getattr(value, part)
        if not callable(value):
            raise ActionNotFound(f"{ref!r} is a {type(value).__name__}, not a function")
        try:
            return make_action(ref, value)
        except DefinitionError as exc:
            raise ActionNotFound(str(exc)) from None
    found = _REGISTRY.get(ref)
    if found is None:
        raise ActionNotFound(
            f"unknown action {ref!r}{did_you_mean(ref, _REGISTRY)}: register a function with "
            "@plait.action(...) in a module listed under imports:, or name one by its import "
            "path, module:function"
        )
    return found


def import_module(name: str) -> Any:
    """Import a module a workflow file names; ActionNotFound saying why it could not."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ActionNotFound(f"cannot import module {name!r}: {exc}") from None
    except Exception as exc:  # the module's own code failed: say how
        raise ActionNotFound(
            f"importing module {name!r} raised {type(exc).__name__}: {exc}"
        ) from None


def _short(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc + ': ' if loc else ''}{err.get('msg')}")
    return "; ".join(parts)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
