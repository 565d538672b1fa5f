"""Digests of handler code, for workflow fingerprints: a change of a handler's source is a new
version of its workflow."""

from __future__ import annotations

import hashlib
import inspect
import weakref
from collections.abc import Callable
from typing import Any


def code_digest(fn: Callable[..., Any]) -> str:
    given = getattr(fn, "__plait_digest__", None)
    if isinstance(given, str):  # a function generated for a workflow file: its own digest
        return given
    code = getattr(fn, "__code__", None)
    if code is None:  # a callable object or builtin: its class's source stands for it
        return _source_digest(type(fn) if not inspect.isroutine(fn) else fn)
    return _code_digest_cached(code, fn)


_DIGESTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _code_digest_cached(code: Any, fn: Callable[..., Any]) -> str:
    # generated graphs reuse one function body for thousands of steps: read its source once
    digest = _DIGESTS.get(code)
    if digest is None:
        digest = _DIGESTS[code] = _source_digest(fn)
    return digest


def _source_digest(obj: Any) -> str:
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        source = repr(code.co_code) if code is not None else getattr(obj, "__qualname__", repr(obj))
    return hashlib.sha256(source.encode()).hexdigest()[:16]
