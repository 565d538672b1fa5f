"""Prometheus metrics read from real scrapes: the server's /metrics over a store a real worker
filled, and a worker's own /metrics (`WorkerMetrics` served over HTTP, as `plait worker
--metrics-port` does) after it ran steps, failed one, and found a lease expired."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

import plait
from plait.server.metrics import WorkerMetrics

from .browser import free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return found[(name, tuple(sorted(labels.items())))]


def test_server_scrape_counts_runs_backlog_and_workers(
    client: TestClient, engine: plait.Engine
) -> None:
    engine.start("flaky", {"n": 1}, run_id="m-failed")
    engine.run_worker(until="m-failed", timeout=30)
    engine.start("shop", {"order_id": 1}, run_id="m-pending")  # fetch ready, in "default"
    engine.start("waits", {}, run_id="m-waiting")  # its signal step waits
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert value(found, "plait_runs", status="failed") == 1
    assert value(found, "plait_runs", status="pending") == 2
    assert value(found, "plait_runs", status="completed") == 0
    assert value(found, "plait_steps", queue="default", status="ready") == 1
    assert value(found, "plait_steps", queue="default", status="waiting") == 1
    assert value(found, "plait_queue_oldest_ready_age_seconds", queue="default") >= 0
    assert value(found, "plait_workers", state="live") == 0
    assert "run_id" not in response.text and "m-pending" not in response.text  # bounded labels


def test_worker_metrics_from_a_real_worker(tmp_path: Path) -> None:
    metrics = WorkerMetrics()
    port = free_port()
    server = metrics.serve(port)
    try:
        with plait.Engine(f"sqlite:///{tmp_path / 'w.db'}", lease=5.0) as engine:
            engine.observe(metrics)
            wf = plait.Workflow("metered")

            @wf.task()
            def item(n: int) -> int:
                return n

            @wf.step(queue="bulk")
            def fan(ctx: plait.StepContext, n: int) -> list[plait.Handle]:
                return ctx.map(item, list(range(n)))

            @wf.step()
            def bad(fan: list[int]) -> int:
                raise plait.Permanent("nope", code="broken")

            engine.start(wf, {"n": 5}, run_id="metered-1")
            engine.run_worker(until="metered-1", timeout=30, concurrency=3)
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    finally:
        server.shutdown()
    found = samples(text.decode())
    assert (
        value(found, "plait_steps_started_total", workflow="metered", step="fan", queue="bulk") == 1
    )
    # spawned steps are counted under their task, never their generated names
    assert value(found, "plait_steps_started_total", workflow="metered", step="item",
                 queue="default") == 5  # fmt: skip
    assert value(found, "plait_steps_completed_total", workflow="metered", step="item",
                 queue="default") == 5  # fmt: skip
    assert value(found, "plait_steps_failed_total", workflow="metered", step="bad",
                 queue="default", code="broken") == 1  # fmt: skip
    assert value(found, "plait_step_duration_seconds_count", workflow="metered", step="item",
                 queue="default", outcome="succeeded") == 5  # fmt: skip
    assert value(found, "plait_step_queue_wait_seconds_count", workflow="metered",
                 queue="default") == 6  # fmt: skip
    assert value(found, "plait_worker_slots", state="used") == 0
    assert value(found, "plait_worker_slots", state="available") == 3
    assert "metered-1" not in text.decode()


async def test_worker_metrics_count_lease_expiries(tmp_path: Path) -> None:
    metrics = WorkerMetrics()
    async with plait.Engine(f"sqlite:///{tmp_path / 'x.db'}", lease=1.0) as engine:
        engine.observe(metrics)
        wf = plait.Workflow("lost")

        @wf.step()
        def one() -> int:
            return 1

        handle = await engine.start_async(wf, None, run_id="lost-1")
        store = engine.store
        # a worker that died: it claimed the step and never came back (its lease ends in 1 s)
        claims = await store.claim(worker_id="dead", fingerprints=[wf.fingerprint], limit=1,
                                   lease=1.0, now=time.time())  # fmt: skip
        assert len(claims) == 1
        await engine.run_worker_async(until=handle, timeout=30)
    found = samples(metrics_text(metrics))
    assert value(found, "plait_lease_expiries_total") == 1
    assert value(found, "plait_steps_completed_total", workflow="lost", step="one",
                 queue="default") == 1  # fmt: skip


def metrics_text(metrics: WorkerMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


def test_worker_command_refuses_a_port_in_use(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    app = tmp_path / "app.py"
    app.write_text(
        "import plait\nwf = plait.Workflow('w')\n@wf.step()\ndef a() -> int:\n    return 1\n"
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "plait", "worker", str(app), "--metrics-port", str(port),
             "--db", f"sqlite:///{tmp_path / 'p.db'}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in done.stderr
