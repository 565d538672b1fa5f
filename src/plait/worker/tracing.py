"""Traces, the worker's part: while a handler runs, its attempt's span is the current span, so
the spans a handler makes (or its instrumented libraries make) nest under it.

The attempt's span is never recorded here: it is built afterwards from the durable events'
timestamps (`plait.engine.traces`), with the same ids, computed from the run id alone. So an
attempt is one span whatever crashed meanwhile, and a week-long run is one trace. Here it is a
non-recording span carrying those ids.

OpenTelemetry is optional (the `otel` extra): without it, or without a tracer provider set by the
application, nothing happens and nothing is imported (`_trace`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any


def trace_id_of(run_id: str) -> int:
    """The run's trace id: 128 bits of SHA-256 of its id (never 0)."""
    return int.from_bytes(hashlib.sha256(b"plait-trace:" + run_id.encode()).digest()[:16]) or 1


def span_id_of(*parts: object) -> int:
    """A span's id from what names it: the run; or a run, step, iteration and attempt."""
    key = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(b"plait-span:" + key).digest()[:8]) or 1


def attempt_span_id(run_id: str, step: str, iteration: int, attempt: int, recoveries: int) -> int:
    """The span id of one attempt: its step's pass (a Goto's iteration), its attempt number, and
    how many attempts before it ended without an outcome (a recovered attempt keeps its number)."""
    return span_id_of(run_id, step, iteration, attempt, recoveries)


def _trace() -> Any:
    """The opentelemetry.trace module if the application uses it: imported already (setting a
    tracer provider imports it), or named by OTEL_PYTHON_TRACER_PROVIDER (then imported here);
    else None, and nothing is imported (a worker of an application that does not trace pays
    nothing, even with the package installed)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None and "OTEL_PYTHON_TRACER_PROVIDER" in os.environ:
        try:
            from opentelemetry import trace
        except ImportError:
            return None
    return trace


def attempt_span(
    run_id: str, step: str, iteration: int, attempt: int, recoveries: int
) -> contextlib.AbstractContextManager[Callable[[Any], Any]]:
    """Make the attempt's span current for the block; yields a wrapper that carries it into a
    handler thread (contextvars do not follow a function into another thread by themselves).
    Without a tracer provider, one shared context that does nothing (every attempt asks)."""
    trace = _trace()
    if not trace or isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return _NO_SPAN
    return _span(trace, run_id, step, iteration, attempt, recoveries)


@contextlib.contextmanager
def _span(
    trace: Any, run_id: str, step: str, iteration: int, attempt: int, recoveries: int
) -> Iterator[Callable[[Any], Any]]:
    from opentelemetry import context as otel_context

    span_context = trace.SpanContext(
        trace_id=trace_id_of(run_id),
        span_id=attempt_span_id(run_id, step, iteration, attempt, recoveries),
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(span_context)))
    try:
        yield _carried
    finally:
        otel_context.detach(token)


def _same(fn: Any) -> Any:
    return fn


def _carried(fn: Any) -> Any:
    context = contextvars.copy_context()
    return functools.wraps(fn)(lambda *args, **kwargs: context.run(fn, *args, **kwargs))


_NO_SPAN = contextlib.nullcontext(_same)
