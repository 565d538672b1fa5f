"""What a step sees of its world in its context, on every store: the worker running it (its id
and labels), the attempt, and its lease's expiry, which the worker's heartbeats move on."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import plait

DEADLINE = 20.0


def test_a_step_sees_its_worker_attempt_and_lease(store_url: str) -> None:
    wf = plait.Workflow("world", retry=plait.Retry(attempts=2, delay=0.0, jitter=0.0))
    seen: list[dict[str, Any]] = []

    @wf.step()
    def look(ctx: plait.StepContext) -> dict[str, Any]:
        first = ctx.lease_expires_at
        assert first is not None
        seen.append({"attempt": ctx.attempt, "lease": first})
        if ctx.attempt == 1:
            raise plait.Retryable("once more")
        # the worker renews the lease every lease/3 while the step runs: wait for one
        deadline = time.monotonic() + DEADLINE
        while ctx.lease_expires_at == first:
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.01)  # polling interval of a deadline-bounded condition wait
        return {
            "worker": ctx.worker_id,
            "labels": sorted(ctx.labels),
            "attempt": ctx.attempt,
            "renewed": ctx.lease_expires_at.timestamp() > first.timestamp(),  # type: ignore[union-attr]
        }

    with plait.Engine(store_url, lease=1.0) as engine:
        run = engine.start(wf, {})
        before = datetime.now(UTC)
        engine.run_worker(until=run, timeout=DEADLINE, labels=["gpu", "eu"])
        out = run.result(timeout=DEADLINE)["look"]
        (step,) = engine.steps(run.id)

    assert out["worker"] == step.worker and out["worker"].count(":") == 2
    assert out["labels"] == ["eu", "gpu"]
    assert out["attempt"] == 2 and [s["attempt"] for s in seen] == [1, 2]
    assert out["renewed"] is True
    for s in seen:  # a lease of a second from its claim
        assert before < s["lease"] < datetime.now(UTC) + timedelta(seconds=1)
