"""Prometheus metrics (prometheus-client), labels bounded: workflow, step (a spawned step's
task, never its generated name), queue, error code, status; never a run id.

Two sides:
- the server's `/metrics` reads the store at scrape time: runs by status, steps ready, running
  and waiting per queue, the oldest ready step's age per queue (backlog depth and age), live
  workers and their slots;
- a worker's (`plait worker --metrics-port N`): `WorkerMetrics`, the observer the worker calls
  when it claims, completes and loses steps, counts what it did: steps started, completed and
  failed, step duration and queue wait (ready → started) histograms, lease expiries, and its
  slots used and available.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from starlette.responses import Response

from ..core.rows import Claim, Outcome, RunStatus
from ..engine.engine import Engine
from ..engine.views import RunFilter

router = APIRouter(include_in_schema=False)

# seconds: a step takes from milliseconds to hours; so may it wait
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)


async def scrape(engine: Engine) -> bytes:
    """One scrape of what the store holds now, in the Prometheus text format."""
    registry = CollectorRegistry()
    runs = Gauge("plait_runs", "Runs in the store by status", ["status"], registry=registry)
    steps = Gauge(
        "plait_steps", "Steps ready, running or waiting, by queue", ["queue", "status"],
        registry=registry,
    )  # fmt: skip
    oldest = Gauge(
        "plait_queue_oldest_ready_age_seconds",
        "How long the oldest claimable ready step of the queue has waited",
        ["queue"],
        registry=registry,
    )
    workers = Gauge(
        "plait_workers", "Workers registered with the store", ["state"], registry=registry
    )
    slots = Gauge(
        "plait_worker_slots", "Step slots of the live workers", ["state"], registry=registry
    )
    for status in RunStatus:
        runs.labels(status.value).set(await engine.count_runs_async(RunFilter(status=status)))
    now = time.time()
    running = 0
    for queue, state, count, since in await engine.store.step_backlog(now):
        steps.labels(queue, state.value).set(count)
        if state.value == "running":
            running += count
        if since is not None:
            oldest.labels(queue).set(max(0.0, now - since))
    found = await engine.workers_async(include_dead=True)
    live = [w for w in found if w.is_live(now)]
    workers.labels("live").set(len(live))
    workers.labels("dead").set(len(found) - len(live))
    capacity = sum(w.concurrency for w in live)
    slots.labels("used").set(min(running, capacity) if capacity else running)
    slots.labels("available").set(max(0, capacity - running))
    return generate_latest(registry)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    engine: Engine = request.app.state.engine
    return Response(await scrape(engine), media_type=CONTENT_TYPE_LATEST)


class WorkerMetrics:
    """The worker's side: what one worker process did, counted as it happens (the observer the
    worker calls: `Runtime.observer`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        labels = ["workflow", "step", "queue"]
        self.started = Counter("plait_steps_started", "Step attempts started", labels, registry=r)
        self.completed = Counter(
            "plait_steps_completed", "Step attempts that succeeded", labels, registry=r
        )
        self.failed = Counter(
            "plait_steps_failed", "Step attempts that failed (retried or not), by error code",
            [*labels, "code"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "plait_step_duration_seconds", "Step attempt run time (started → ended)",
            [*labels, "outcome"], buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "plait_step_queue_wait_seconds", "Time a step waited claimable (ready → started)",
            ["workflow", "queue"], buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.expiries = Counter(
            "plait_lease_expiries", "Step leases found expired (their worker died or hung)",
            registry=r,
        )  # fmt: skip
        self.slots = Gauge("plait_worker_slots", "This worker's step slots", ["state"], registry=r)
        self._running: dict[str, tuple[tuple[str, str, str], float]] = {}  # token → labels, start

    # -- the observer the worker calls (`plait._runtime.Observer`) ------------------------------

    def claimed(self, worker: Any, claims: Sequence[Claim], now: float) -> None:
        for c in claims:
            wf = worker.workflows.get(c.fingerprint)
            if wf is None:
                continue
            step = wf.handler(c.step, c.task)
            queue = (step.options.queue if step.options else None) or "default"
            labels = (wf.name, c.task or c.step, queue)  # a spawned step: its task, bounded
            self._running[c.token] = (labels, now)
            self.started.labels(*labels).inc()
            if c.claimable_since is not None:
                self.queue_wait.labels(wf.name, queue).observe(max(0.0, now - c.claimable_since))
        self._slots(worker)

    def committed(
        self, worker: Any, outcomes: Sequence[Outcome], accepted: Sequence[bool], now: float
    ) -> None:
        for outcome, counted in zip(outcomes, accepted, strict=False):
            known = self._running.pop(outcome.token, None)
            if known is None or not counted:
                continue
            labels, started = known
            if outcome.call is not None:  # it called a sub-workflow: it waits, unfinished
                kind = "calling"
            elif outcome.error_code is None:
                self.completed.labels(*labels).inc()
                kind = "skipped" if outcome.skipped else "succeeded"
            else:
                self.failed.labels(*labels, outcome.error_code).inc()
                kind = "failed"
            self.duration.labels(*labels, kind).observe(max(0.0, now - started))
        self._slots(worker)

    def expired(self, worker: Any, count: int) -> None:
        self.expiries.inc(count)

    def _slots(self, worker: Any) -> None:
        capacity = int(getattr(worker, "concurrency", 0))
        used = min(len(self._running), capacity) if capacity else len(self._running)
        self.slots.labels("used").set(used)
        self.slots.labels("available").set(max(0, capacity - used))

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve /metrics on host:port from a daemon thread; the server object."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
