"""Helpers for tests that drive a Store directly: plans, starting runs, claiming, outcomes, and
reading back what a store holds, and waiting on a condition. Used by the contract suite and by
plait's one-backend store tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import orjson

import plait
from plait.core.cascade import new_run
from plait.core.rows import (
    Claim,
    Outcome,
    RunRow,
    StepRow,
    StepStatus,
    WorkflowPlan,
)
from plait.stores import Store

NOW = 1_000_000.0
LEASE = 30.0
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def noop(**kwargs: Any) -> None:
    return None


def plan_of(name: str, *steps: tuple[str, Sequence[str], dict[str, Any]]) -> WorkflowPlan:
    """A workflow plan: each step is (name, data dependencies, options)."""
    wf = plait.Workflow(name)
    for step, deps, options in steps:
        wf.add_step(step, noop, deps, **options)
    return wf.plan()


def chain(name: str = "chain", length: int = 3) -> WorkflowPlan:
    names = [f"s{i}" for i in range(length)]
    return plan_of(name, *[(n, names[i - 1 : i], {}) for i, n in enumerate(names)])


async def start(
    store: Store, plan: WorkflowPlan, run_id: str, now: float = NOW, data: bytes = b"{}"
) -> RunRow:
    run_row, steps, events = new_run(plan, run_id, data, now)
    created, fresh = await store.create_run(run_row, steps, events)
    assert fresh
    return created


async def claim(
    store: Store,
    plans: Iterable[WorkflowPlan],
    now: float = NOW,
    limit: int = 100,
    lease: float = LEASE,
    worker: str = "w1",
) -> list[Claim]:
    fingerprints = [p.fingerprint for p in plans]
    return await store.claim(
        worker_id=worker, fingerprints=fingerprints, limit=limit, lease=lease, now=now
    )


async def claim_one(store: Store, plan: WorkflowPlan, step: str, now: float = NOW) -> Claim:
    claims = await claim(store, [plan], now=now)
    found = [c for c in claims if c.step == step]
    assert len(found) == 1, f"expected to claim {step!r}, got {[c.step for c in claims]}"
    return found[0]


def ok(c: Claim, value: Any = None) -> Outcome:
    return Outcome(c.run_id, c.step, c.token, output=orjson.dumps(value))


def fail(c: Claim, code: str = "Boom", retry_at: float | None = None) -> Outcome:
    return Outcome(
        c.run_id,
        c.step,
        c.token,
        error_code=code,
        error_message=f"{c.step} broke",
        traceback="Traceback…",
        retry_at=retry_at,
    )


async def statuses(store: Store, run_id: str) -> dict[str, StepStatus]:
    return {s.name: s.status for s in await store.get_steps(run_id)}


async def step_row(store: Store, run_id: str, name: str) -> StepRow:
    return next(s for s in await store.get_steps(run_id) if s.name == name)


async def event_types(store: Store, run_id: str) -> list[str]:
    return [e.type for e in await store.get_events(run_id, 0, None)]


async def drain(store: Store, plans: Sequence[WorkflowPlan], batch: int = 64) -> int:
    """Claim and complete everything, `batch` at a time; the number of complete() calls."""
    commits = 0
    while claims := await claim(store, plans, limit=batch):
        result = await store.complete([ok(c, c.step) for c in claims], NOW)
        assert result.accepted == [True] * len(claims)
        commits += 1
    return commits


def wait_for(
    read: Callable[[], T],
    ok: Callable[[T], bool],
    what: str,
    diagnose: Callable[[], str],
    timeout: float,
    max_pause: float = 0.05,
) -> T:
    """Poll `read()` until `ok(value)`; past `timeout`, fail saying what and how things stand."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        value = read()
        if ok(value):
            return value
        assert time.monotonic() < deadline, (
            f"{what}: not within {timeout}s: {value!r}\n{diagnose()}"
        )
        time.sleep(pause)  # polling interval of a condition wait with a deadline
        pause = min(pause * 2, max_pause)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll `predicate()` until it holds; past `timeout`, fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)  # polling interval of a condition wait with a deadline
