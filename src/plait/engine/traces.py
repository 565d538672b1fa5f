"""Traces built from the journal: a run's OpenTelemetry spans, made from its durable events'
own timestamps (the `otel` extra: opentelemetry-api and -sdk).

- The trace id is derived from the run id (`worker.tracing.trace_id_of`): a run is one trace
  however long it lasts and however many workers it hops across.
- One span for the run (`run <workflow>`, from its start to its end, or to now while it runs),
  and one per attempt of a step (`step <name>`, from `step_started` to the event that ended the
  attempt), a child of the run's. Their ids are computed, not drawn: the span a worker made
  current while the attempt's handler ran (`worker.tracing.attempt_span`) has the same id, so the
  spans the handler made nest under this one, and an attempt is one span across crashes,
  recoveries and re-exports (an attempt a crash cut short ends at its `step_lease_expired`).
- A trace context passed to `start(trace_context=...)` (W3C `traceparent`) is kept in the run's
  first event, and the run's span links to it.

Export with `Engine.export_trace(run_id, exporter)`, at the end of a run or again any time; or
let `Engine.export_traces(exporter)` export each run that this process's commits end (its
workers' and operator actions'), in the background, off the workers' path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

from .._errors import InputError
from .._runtime import Runtime
from ..worker.tracing import attempt_span_id, span_id_of, trace_id_of
from .views import Event

SCOPE = "plait"
_ENDS = {
    "step_completed": "ok",
    "step_failed": "error",
    "step_retrying": "error",
    "step_lease_expired": "unset",
    "step_released": "unset",
    "step_cancelled": "error",
    "step_key_full": "unset",
}
PAGE = 5000
log = logging.getLogger("plait.traces")
NO_SDK = "traces need the otel extra: pip install 'plait[otel]' (opentelemetry-sdk)"


def check_trace_context(carrier: Any) -> dict[str, str] | None:
    """A W3C trace context ({"traceparent": …, "tracestate": …}), checked; None if absent."""
    if carrier is None:
        return None
    if not isinstance(carrier, dict) or not isinstance(carrier.get("traceparent"), str):
        raise InputError(
            "trace_context must be a dict with a W3C 'traceparent' string "
            "(as opentelemetry's propagate.inject fills), got " + repr(carrier)[:100]
        )
    parts = carrier["traceparent"].split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        raise InputError(f"invalid traceparent {carrier['traceparent']!r:.100}")
    kept = {"traceparent": carrier["traceparent"]}
    if isinstance(carrier.get("tracestate"), str):
        kept["tracestate"] = carrier["tracestate"][:512]
    return kept


async def _events(rt: Runtime, run_id: str) -> list[Event]:
    store = await rt.ready()
    found: list[Event] = []
    after = 0
    while True:
        batch = await store.get_events(run_id, after, PAGE)
        found += [Event.from_row(e) for e in batch]
        if len(batch) < PAGE:
            return found
        after = batch[-1].seq


def _ns(event: Event) -> int:
    return int(event.ts.timestamp() * 1_000_000_000)


async def spans(rt: Runtime, run_id: str) -> list[Any]:
    """The run's spans (opentelemetry.sdk.trace.ReadableSpan), the run's first."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import Link, SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        raise InputError(NO_SDK) from None
    run = await rt.run_row(run_id)
    events = await _events(rt, run_id)
    trace_id = trace_id_of(run_id)
    flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)
    scope = InstrumentationScope(SCOPE)

    def context(span_id: int) -> Any:
        return trace.SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)

    run_context = context(span_id_of(run_id))
    base: dict[str, Any] = {"plait.run.id": run_id, "plait.workflow.name": run.workflow,
            "plait.workflow.version": run.version}  # fmt: skip
    if run.parent_run:
        base["plait.fork.parent_run_id"] = run.parent_run
    out: list[Any] = []
    open_: dict[str, tuple[Event, int]] = {}
    for e in events:
        if e.step is None:
            continue
        if e.type == "step_started":
            attempt = int(e.payload.get("attempt", 0))
            open_[e.step] = (e, attempt)
        elif e.type in _ENDS and e.step in open_:
            start, attempt = open_.pop(e.step)
            iteration = int(start.payload.get("iteration", 0))
            recoveries = int(start.payload.get("recoveries", 0))
            outcome = _ENDS[e.type]
            status = (
                Status(StatusCode.OK) if outcome == "ok"
                else Status(StatusCode.ERROR, str(e.payload.get("message") or e.payload.get("code")))
                if outcome == "error" else Status(StatusCode.UNSET)
            )  # fmt: skip
            attributes: dict[str, Any] = {
                **base, "plait.step.name": e.step, "plait.step.attempt": attempt,
                "plait.step.outcome": e.type.removeprefix("step_"),
                "plait.worker.id": str(start.payload.get("worker", "")),
            }  # fmt: skip
            if "code" in e.payload:
                attributes["error.type"] = str(e.payload["code"])
            out.append(
                ReadableSpan(
                    name=f"step {e.step}",
                    context=context(
                        attempt_span_id(run_id, e.step, iteration, attempt, recoveries)
                    ),
                    parent=run_context,
                    attributes=attributes,
                    kind=SpanKind.INTERNAL,
                    status=status,
                    start_time=_ns(start),
                    end_time=_ns(e),
                    instrumentation_scope=scope,
                )
            )
    links = []
    first = events[0] if events else None
    if first is not None and isinstance(first.payload.get("trace_context"), dict):
        carried = TraceContextTextMapPropagator().extract(first.payload["trace_context"])
        caller = trace.get_current_span(carried).get_span_context()
        if caller.is_valid:
            links.append(Link(caller, {"plait.link": "started_by"}))
    status_code = {"completed": StatusCode.OK, "failed": StatusCode.ERROR}.get(
        run.status.value, StatusCode.UNSET
    )
    end = run.finished_at
    run_span = ReadableSpan(
        name=f"run {run.workflow}",
        context=run_context,
        parent=None,
        attributes={**base, "plait.run.status": run.status.value},
        links=links,
        kind=SpanKind.INTERNAL,
        status=Status(status_code, run.error if status_code is StatusCode.ERROR else None),
        start_time=int(run.created_at * 1_000_000_000),
        end_time=int(end * 1_000_000_000) if end is not None else None,
        instrumentation_scope=scope,
    )
    return [run_span, *out]


async def export(rt: Runtime, run_id: str, exporter: Any) -> list[Any]:
    """Build the run's spans and hand them to `exporter` (a SpanExporter); the spans."""
    built = await spans(rt, run_id)
    exporter.export(built)
    return built


def _require_sdk() -> None:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        raise InputError(NO_SDK) from None


class TraceExport:
    """Exports the trace of each run this process ended (`Runtime.ended_runs`): each in a task of
    its own, the exporter called in a thread (an OTLP exporter does network I/O); a failure is
    logged, never raised into the commit that ended the run."""

    def __init__(self, rt: Runtime, exporter: Any) -> None:
        _require_sdk()  # when export is asked for, not at a run's end
        self.rt = rt
        self.exporter = exporter
        self.pending: set[asyncio.Task[None]] = set()

    def ended(self, run_ids: Collection[str]) -> None:
        for run_id in run_ids:
            task = asyncio.get_running_loop().create_task(self._export(run_id))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _export(self, run_id: str) -> None:
        try:
            built = await spans(self.rt, run_id)
            await asyncio.to_thread(self.exporter.export, built)
        except Exception:
            log.warning("exporting the trace of run %s failed", run_id, exc_info=True)

    async def drain(self) -> None:
        """Wait for the exports under way (the Runtime closes after them)."""
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)
