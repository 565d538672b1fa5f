"""How a handler's parameters are read: type hints (tolerating ones that do not resolve), the
pydantic adapters that validate values, and which parameter receives the StepContext."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

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
    if hint is EMPTY or hint is Any or hint is object:
        return None
    try:
        return TypeAdapter(hint)
    except Exception:  # a type pydantic cannot validate: pass the JSON value through unchanged
        return None
