"""OpenTelemetry traces built from the journal, read with an in-memory span exporter: ids
derived from the run, one span per attempt (a crashed attempt too), the handler's own spans
nested under its attempt's, and the caller's trace context linked from the run's span."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import plait

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from plait.worker.tracing import attempt_span_id, trace_id_of

_PROVIDER = TracerProvider()
_LIVE = InMemorySpanExporter()  # the spans handlers make while they run
_PROVIDER.add_span_processor(SimpleSpanProcessor(_LIVE))


@pytest.fixture(scope="module", autouse=True)
def provider() -> Iterator[TracerProvider]:
    # the global provider can be set once per process: this module's, for its tests
    trace.set_tracer_provider(_PROVIDER)
    yield _PROVIDER


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[plait.Engine]:
    _LIVE.clear()
    with plait.Engine(f"sqlite:///{tmp_path / 't.db'}", lease=1.0) as eng:
        yield eng


def test_spans_from_events_with_ids_from_the_run(engine: plait.Engine) -> None:
    wf = plait.Workflow("traced", retry=plait.Retry(attempts=2, delay=0.01))
    calls = {"n": 0}

    @wf.step()
    def first() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("once")
        with trace.get_tracer("app").start_as_current_span("inside first"):
            return 1

    @wf.step()
    async def second(first: int) -> int:
        with trace.get_tracer("app").start_as_current_span("inside second"):
            return first + 1

    tracer = trace.get_tracer("caller")
    with tracer.start_as_current_span("request") as request:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        engine.start(wf, None, run_id="traced-1", trace_context=carrier)
    engine.run_worker(until="traced-1", timeout=30)

    exporter = InMemorySpanExporter()
    spans = engine.export_trace("traced-1", exporter)
    assert list(exporter.get_finished_spans()) == spans
    run_span, *attempts = spans
    assert run_span.name == "run traced" and run_span.parent is None
    assert run_span.context.trace_id == trace_id_of("traced-1")
    assert run_span.attributes["plait.run.status"] == "completed"
    assert [s.name for s in attempts] == ["step first", "step first", "step second"]
    assert [s.attributes["plait.step.attempt"] for s in attempts] == [1, 2, 1]
    assert [s.attributes["plait.step.outcome"] for s in attempts] == [
        "retrying", "completed", "completed",
    ]  # fmt: skip
    for s in attempts:
        assert s.parent.span_id == run_span.context.span_id
        assert s.context.trace_id == run_span.context.trace_id
        assert s.start_time <= s.end_time
    # the durable events' own timestamps, to the nanosecond
    started = [e for e in engine.events("traced-1") if e.type == "step_started"]
    assert [s.start_time for s in attempts] == [int(e.ts.timestamp() * 1e9) for e in started]
    # the caller's trace is linked from the run's span
    (link,) = run_span.links
    assert link.context.trace_id == request.get_span_context().trace_id
    assert link.context.span_id == request.get_span_context().span_id

    # the handlers' own spans are children of their attempt's span, in the run's trace
    inside = {s.name: s for s in _LIVE.get_finished_spans()}
    assert inside["inside first"].parent.span_id == attempt_span_id("traced-1", "first", 0, 2, 0)
    assert inside["inside first"].parent.span_id == attempts[1].context.span_id
    assert inside["inside second"].parent.span_id == attempts[2].context.span_id
    assert inside["inside second"].context.trace_id == trace_id_of("traced-1")

    # exported again: the same spans
    again = engine.export_trace("traced-1", InMemorySpanExporter())
    assert [(s.context.span_id, s.start_time, s.end_time) for s in again] == [
        (s.context.span_id, s.start_time, s.end_time) for s in spans
    ]


def test_an_attempt_a_crash_cut_short_is_one_span(engine: plait.Engine) -> None:
    wf = plait.Workflow("crashy")

    @wf.step()
    def only() -> int:
        return 1

    handle = engine.start(wf, None, run_id="crashy-1")
    # a worker that died holding the step: claimed under a lease it never renews
    claimed = engine._portal.call(engine.store.claim(
        worker_id="dead", fingerprints=[wf.fingerprint], limit=1, lease=1.0, now=time.time(),
    ))  # fmt: skip
    assert len(claimed) == 1
    engine.run_worker(until=handle, timeout=30)
    spans = engine.export_trace("crashy-1", InMemorySpanExporter())
    attempts = [s for s in spans if s.name == "step only"]
    assert [s.attributes["plait.step.outcome"] for s in attempts] == ["lease_expired", "completed"]
    assert attempts[0].attributes["plait.worker.id"] == "dead"
    assert len({s.context.span_id for s in attempts}) == 2
    # the recovered attempt keeps its number: its span id counts the attempt that was lost
    assert [s.attributes["plait.step.attempt"] for s in attempts] == [1, 1]
    assert attempts[1].context.span_id == attempt_span_id("crashy-1", "only", 0, 1, 1)


def test_trace_context_is_checked(engine: plait.Engine) -> None:
    wf = plait.Workflow("ctx")

    @wf.step()
    def one() -> int:
        return 1

    with pytest.raises(plait.InputError, match="trace_context must be a dict"):
        engine.start(wf, None, trace_context={"nope": "x"})
    with pytest.raises(plait.InputError, match="invalid traceparent"):
        engine.start(wf, None, trace_context={"traceparent": "00-zz"})
    assert engine.count_runs() == 0
    with pytest.raises(plait.RunNotFound):
        engine.export_trace("ghost", InMemorySpanExporter())


def test_export_traces_exports_each_run_this_process_ends(tmp_path: Path) -> None:
    wf = plait.Workflow("auto_traced")

    @wf.step()
    def only() -> int:
        return 1

    exporter = InMemorySpanExporter()
    with plait.Engine(f"sqlite:///{tmp_path / 't.db'}") as engine:
        engine.export_traces(exporter)
        engine.start(wf, None, run_id="done")
        engine.start(wf, None, run_id="stopped")
        engine.cancel("stopped")  # an operator's commit ends it: exported too
        engine.run_worker(until=["done"], timeout=30)
    # closing waited for the exports under way
    runs = {
        s.attributes["plait.run.id"]: s for s in exporter.get_finished_spans() if s.parent is None
    }
    assert {r: s.attributes["plait.run.status"] for r, s in runs.items()} == {
        "done": "completed", "stopped": "cancelled",
    }  # fmt: skip
    steps = [s for s in exporter.get_finished_spans() if s.parent is not None]
    assert [(s.name, s.attributes["plait.run.id"]) for s in steps] == [("step only", "done")]


def test_export_traces_a_failing_exporter_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wf = plait.Workflow("auto_traced_broken")

    @wf.step()
    def only() -> int:
        return 1

    class Broken(InMemorySpanExporter):
        def export(self, spans: object) -> object:
            raise ConnectionError("collector unreachable")

    with plait.Engine(f"sqlite:///{tmp_path / 't.db'}") as engine:
        engine.export_traces(Broken())
        handle = engine.start(wf, None, run_id="r")
        engine.run_worker(until=handle, timeout=30)
        assert handle.result() == {"only": 1}
    assert "exporting the trace of run r failed" in caplog.text
    assert "collector unreachable" in caplog.text


def test_export_traces_none_stops_exporting(tmp_path: Path) -> None:
    wf = plait.Workflow("auto_traced_off")

    @wf.step()
    def only() -> int:
        return 1

    exporter = InMemorySpanExporter()
    with plait.Engine(f"sqlite:///{tmp_path / 't.db'}") as engine:
        engine.export_traces(exporter)
        engine.export_traces(None)
        engine.start(wf, None, run_id="r")
        engine.run_worker(until="r", timeout=30)
    assert exporter.get_finished_spans() == ()
