"""How a handler's parameters are read: type hints (tolerating ones that do not resolve), the
pydantic adapters that validate values, and which parameter receives the StepContext."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, TypeAdapter

from .context import StepContext

EMPTY = inspect.Parameter.empty
CONTEXT_NAME = "ctx"  # an unannotated parameter of this name receives the StepContext


def is_context(name: str, hint: Any) -> bool:
    return hint is StepContext or (name == CONTEXT_NAME and hint is EMPTY)


def context_param(fn: Callable[..., Any], sig: inspect.Signature) -> str | None:
    """The parameter that receives the StepContext (annotated so, or named `ctx`), if any."""
    hints = type_hints(fn) if getattr(fn, "__annotations__", None) else {}
    for p in sig.parameters.values():
        if p.kind is not p.VAR_KEYWORD and is_context(p.name, hints.get(p.name, EMPTY)):
            return p.name
    return None


def type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # some forward reference does not resolve: keep the ones that do
        hints: dict[str, Any] = {}
        for name, hint in getattr(fn, "__annotations__", {}).items():
            try:
                hints[name] = typing.get_type_hints(_Probe(hint), getattr(fn, "__globals__", None))[
                    "x"
                ]
            except Exception:  # this one stays untyped: its value is passed through unvalidated
                continue
        return hints


class _Probe:
    """A stand-in carrying one annotation, so get_type_hints can resolve it alone."""

    def __init__(self, hint: Any) -> None:
        self.__annotations__ = {"x": hint}


def adapter(hint: Any) -> TypeAdapter[Any] | None:
    """The validator of a parameter's values: pydantic's lax mode, but booleans and numbers
    kept apart (`no_bool_numbers`)."""
    if hint is EMPTY or hint is Any or hint is object:
        return None
    try:
        return TypeAdapter(no_bool_numbers(hint))
    except Exception:  # a type pydantic cannot validate: pass the JSON value through unchanged
        return None


def no_bool_numbers(hint: Any) -> Any:
    """`hint` with its int, float and bool, wherever they are in it (`list[int]`, `int | None`,
    `dict[str, float]`…), refusing the other kind: pydantic's lax mode takes `true` for 1 and
    1 for `true`, which JSON never means. Its other lax conversions stay ("42" for 42, 4.0 for
    4, "yes" for true). Inside a pydantic model, the model's own config decides."""
    if hint is int or hint is float:
        return Annotated[hint, _NOT_A_BOOL]
    if hint is bool:
        return Annotated[hint, _NOT_A_NUMBER]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None or not args or origin is typing.Literal:
        return hint
    if origin is Annotated:
        return Annotated[(no_bool_numbers(args[0]), *hint.__metadata__)]
    new = tuple(a if a is Ellipsis or isinstance(a, list) else no_bool_numbers(a) for a in args)
    if all(n is a for n, a in zip(new, args, strict=True)):
        return hint
    if origin is typing.Union or origin is types.UnionType:
        return typing.Union[new]  # noqa: UP007  # built from a tuple of members
    try:
        return origin[new]
    except TypeError:  # a generic that cannot be subscripted again: left as it is
        return hint


def _not_a_bool(value: Any) -> Any:
    if value is True or value is False:
        raise ValueError(f"{'true' if value else 'false'} is a boolean, not a number")
    return value


def _not_a_number(value: Any) -> Any:
    if type(value) is int or type(value) is float:
        raise ValueError(f"{value!r} is a number, not a boolean")
    return value


_NOT_A_BOOL = BeforeValidator(_not_a_bool)
_NOT_A_NUMBER = BeforeValidator(_not_a_number)
