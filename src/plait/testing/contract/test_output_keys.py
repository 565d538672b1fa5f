"""Concurrency keys that read dependency outputs, on every store (`transitions.admit_key`).

Such a key is pending when its step becomes ready; the worker that claims the step resolves it
and the store admits it (`admit_key`) under the same count as claims, or hands the step back.
Most cases drive the store directly, so that each admission is seen; some run real workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import plait
from plait.core.rows import Claim, Outcome, StepStatus
from plait.core.transitions import KEY_FULL
from plait.worker.attempt import KEY_ERROR


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def orders(key_limit: int = 1) -> plait.Workflow:
    """order → charge, charged at most `key_limit` at once per customer, which only the
    order's output names."""
    wf = plait.Workflow("orders")

    @wf.step
    def order(n: int) -> dict[str, Any]:
        return {"customer": "abc"[n % 3], "n": n}

    @wf.step(concurrency_key=lambda order: order["customer"], key_limit=key_limit)
    def charge(order: dict[str, Any]) -> int:
        return int(order["n"])

    return wf


async def claim(engine: plait.Engine, wf: plait.Workflow, now: float) -> list[Claim]:
    claims = await engine.store.claim(
        worker_id="w", fingerprints=[wf.fingerprint], limit=10, lease=30.0, now=now
    )
    return sorted(claims, key=lambda c: c.run_id)


async def ordered(engine: plait.Engine, wf: plait.Workflow, customers: dict[str, str]) -> float:
    """Start one run per id and complete its order step (output: that customer)."""
    for run_id in customers:
        await engine.start_async(wf, {"n": 0}, run_id=run_id)
    now = time.time()
    done = []
    for c in await claim(engine, wf, now):
        assert c.step == "order" and not c.key_pending
        output = orjson.dumps({"customer": customers[c.run_id], "n": 0})
        done.append(Outcome(c.run_id, c.step, c.token, output=output))
    assert (await engine.store.complete(done, now)).accepted == [True] * len(customers)
    return now


async def stored_key(engine: plait.Engine, run_id: str, step: str = "charge") -> str | None:
    [row] = [s for s in await engine.store.get_steps(run_id) if s.name == step]
    assert row.options is not None
    return row.options.key


async def test_a_pending_key_is_admitted_once_per_free_slot(engine: plait.Engine) -> None:
    wf = orders()
    now = await ordered(engine, wf, {"r1": "a", "r2": "a", "r3": "b"})
    assert await stored_key(engine, "r1") is None  # pending: not known when it became ready
    claims = await claim(engine, wf, now)
    assert [(c.run_id, c.key_pending) for c in claims] == [("r1", True), ("r2", True), ("r3", True)]
    r1, r2, r3 = claims
    store = engine.store

    assert (await store.admit_key("r1", "charge", r1.token, "a", now)).accepted == [True]
    given_back = await store.admit_key("r2", "charge", r2.token, "a", now)
    assert given_back.accepted == [False]
    # no wake-up: it can run only once 'a' frees, and the completion that frees it says so
    assert (given_back.readied, given_back.slot_freed) == (0, False)
    assert (await store.admit_key("r3", "charge", r3.token, "b", now)).accepted == [True]

    # the key is stored: r2 waits in ready, its attempt not counted, and says why
    [step] = [s for s in await engine.steps_async("r2") if s.name == "charge"]
    assert (step.status, step.attempts, step.error) == (StepStatus.READY, 0, None)
    assert await stored_key(engine, "r2") == "a"
    [event] = [e for e in await engine.events_async("r2") if e.type == KEY_FULL]
    assert event.step == "charge"
    assert event.payload == {
        "step": "charge", "key": "a", "key_limit": 1, "running": 1, "worker": "w",
    }  # fmt: skip

    # later claims count its key like any other: skipped while 'a' is full, not taken
    held = await store.claim(
        worker_id="w2", fingerprints=[wf.fingerprint], limit=10, lease=30.0, now=now
    )
    assert list(held) == [] and held.limited
    done = await store.complete([Outcome("r1", "charge", r1.token, output=b"0")], now)
    assert done.slot_freed  # its key had a slot: held workers are woken
    [again] = await claim(engine, wf, now)
    assert (again.run_id, again.attempt, again.key_pending) == ("r2", 1, False)  # admitted


async def test_a_step_handed_back_frees_its_queue_slot(engine: plait.Engine) -> None:
    wf = plait.Workflow("queued")

    @wf.step
    def order(n: int) -> str:
        return "a"

    @wf.step(queue="charges", concurrency_key=lambda order: order, key_limit=1)
    def charge(order: str, n: int) -> int:
        return n

    await engine.configure_queue_async("charges", concurrency=2)
    for i in range(3):
        await engine.start_async(wf, {"n": i}, run_id=f"r{i}")
    now = time.time()
    orders = await claim(engine, wf, now)
    done = [Outcome(c.run_id, c.step, c.token, output=b'"a"') for c in orders]
    await engine.store.complete(done, now)
    r0, r1 = await claim(engine, wf, now)  # the queue's two slots
    assert (await engine.store.claim(
        worker_id="w", fingerprints=[wf.fingerprint], limit=10, lease=30.0, now=now
    )).limited  # fmt: skip
    assert (await engine.store.admit_key("r0", "charge", r0.token, "a", now)).accepted == [True]
    given_back = await engine.store.admit_key("r1", "charge", r1.token, "a", now)
    assert given_back.accepted == [False] and given_back.slot_freed  # r2 may take its queue slot
    [r2] = await claim(engine, wf, now)
    assert (r2.run_id, r2.key_pending) == ("r2", True)


async def test_the_step_itself_is_not_counted_against_its_key(engine: plait.Engine) -> None:
    wf = orders(key_limit=2)
    now = await ordered(engine, wf, {"r1": "a", "r2": "a", "r3": "a"})
    r1, r2, r3 = await claim(engine, wf, now)
    store = engine.store
    assert (await store.admit_key("r1", "charge", r1.token, "a", now)).accepted == [True]
    # admitting again (its key now stored, so counted once) changes nothing
    assert (await store.admit_key("r1", "charge", r1.token, "a", now)).accepted == [True]
    assert (await store.admit_key("r2", "charge", r2.token, "a", now)).accepted == [True]
    assert (await store.admit_key("r3", "charge", r3.token, "a", now)).accepted == [False]


async def test_an_admission_without_the_lease_changes_nothing(engine: plait.Engine) -> None:
    wf = orders()
    now = await ordered(engine, wf, {"r1": "a"})
    [c] = await claim(engine, wf, now)
    result = await engine.store.admit_key("r1", "charge", "not-the-token", "a", now)
    assert result.accepted == [False] and result.readied == 0
    assert await stored_key(engine, "r1") is None
    [step] = [s for s in await engine.steps_async("r1") if s.name == "charge"]
    assert step.status is StepStatus.RUNNING
    assert (await engine.store.admit_key("r1", "charge", c.token, "a", now)).accepted == [True]


async def test_a_cancelled_run_ends_the_step_at_admission(engine: plait.Engine) -> None:
    wf = orders()
    now = await ordered(engine, wf, {"r1": "a"})
    [c] = await claim(engine, wf, now)
    await engine.cancel_async("r1")
    result = await engine.store.admit_key("r1", "charge", c.token, "a", now)
    assert result.accepted == [False]
    [step] = [s for s in await engine.steps_async("r1") if s.name == "charge"]
    assert step.status is StepStatus.CANCELLED


async def test_a_retry_keeps_its_key_and_a_goto_resolves_it_again(engine: plait.Engine) -> None:
    wf = orders()
    now = await ordered(engine, wf, {"r1": "a"})
    [c] = await claim(engine, wf, now)
    assert (await engine.store.admit_key("r1", "charge", c.token, "a", now)).accepted == [True]
    failed = Outcome("r1", "charge", c.token, error_code="boom", error_message="x", retry_at=now)
    await engine.store.complete([failed], now)
    [retry] = await claim(engine, wf, now)
    # its upstream outputs are those it had: the key is the same, admitted by the claim
    assert (retry.attempt, retry.key_pending) == (2, False)
    assert await stored_key(engine, "r1") == "a"


def looping() -> plait.Workflow:
    """pick → charge (keyed by pick's output) → check, which loops back to pick once: the
    second pass picks another customer."""
    wf = plait.Workflow("looping")

    @wf.step
    def pick(ctx: plait.StepContext) -> str:
        return f"customer-{ctx.iteration}"

    @wf.step(concurrency_key=lambda pick: pick, key_limit=1)
    def charge(pick: str) -> str:
        return pick

    @wf.step
    def check(ctx: plait.StepContext, charge: str) -> Any:
        return plait.Goto("pick", max_iterations=3) if ctx.iteration == 0 else charge

    return wf


async def test_a_goto_makes_the_key_pending_and_the_next_pass_resolves_it(
    engine: plait.Engine,
) -> None:
    wf = looping()
    await engine.start_async(wf, {}, run_id="loop")
    keys: list[tuple[str, str | None]] = []
    for _ in range(6):  # pick, charge, check, then each again
        [c] = await claim(engine, wf, time.time())
        if c.step == "charge":
            assert c.key_pending  # the second pass too: the key was forgotten by the Goto
            expected = f"customer-{c.iteration}"
            result = await engine.store.admit_key("loop", "charge", c.token, expected, time.time())
            assert result.accepted == [True]
        keys.append((c.step, await stored_key(engine, "loop")))
        if c.step == "check" and c.iteration == 0:
            outcome = Outcome("loop", c.step, c.token, goto="pick", max_iterations=3)
        else:
            outcome = Outcome(
                "loop", c.step, c.token, output=orjson.dumps(f"customer-{c.iteration}")
            )
        await engine.store.complete([outcome], time.time())
    assert keys == [
        ("pick", None),
        ("charge", "customer-0"),
        ("check", "customer-0"),
        ("pick", None),  # reset by the Goto: pending again
        ("charge", "customer-1"),
        ("check", "customer-1"),
    ]


async def test_a_worker_resolves_a_key_again_after_a_goto(engine: plait.Engine) -> None:
    wf = looping()
    handle = await engine.start_async(wf, {})
    await engine.run_worker_async(concurrency=2, until=[handle.id], timeout=30)
    assert await handle.result_async(timeout=5) == {"check": "customer-1"}
    assert await stored_key(engine, handle.id) == "customer-1"


async def test_a_fork_resolves_the_key_from_the_new_outputs(engine: plait.Engine) -> None:
    wf = orders()
    first = await engine.start_async(wf, {"n": 1}, run_id="first")
    await engine.run_worker_async(concurrency=2, until=[first.id], timeout=30)
    assert await stored_key(engine, "first") == "b"
    fork = await engine.fork_async(
        "first", "charge", overrides={"order": {"customer": "z", "n": 7}}, new_run_id="forked"
    )
    assert await stored_key(engine, "forked") is None  # pending, not copied from the parent
    await engine.run_worker_async(concurrency=2, until=[fork.id], timeout=30)
    assert await fork.result_async(timeout=5) == {"charge": 7}
    assert await stored_key(engine, "forked") == "z"


async def test_a_failing_key_fails_the_step_with_a_clear_message(engine: plait.Engine) -> None:
    wf = plait.Workflow("badkeys")

    @wf.step
    def order(kind: str) -> dict[str, Any]:
        return {"customer": ["a"]} if kind == "list" else {}

    @wf.step(concurrency_key=lambda order: order["customer"], key_limit=1)
    def charge(order: dict[str, Any]) -> None:
        raise AssertionError("the handler must not run")

    raising = await engine.start_async(wf, {"kind": "empty"})
    listed = await engine.start_async(wf, {"kind": "list"})
    await engine.run_worker_async(concurrency=2, until=[raising.id, listed.id], timeout=30)
    expected = {
        raising.id: "workflow 'badkeys', step 'charge': concurrency_key raised KeyError: "
        "'customer'",
        listed.id: "workflow 'badkeys', step 'charge': concurrency_key must return a string or "
        "an integer, got ['a']",
    }
    for run_id, message in expected.items():
        [step] = [s for s in await engine.steps_async(run_id) if s.name == "charge"]
        assert step.status is StepStatus.FAILED
        assert step.error is not None
        assert (step.error.code, step.error.message) == (KEY_ERROR, message)
        assert step.attempts == 1  # not retried: the same outputs give the same key
        with pytest.raises(plait.RunFailed):
            await engine.wait_async(run_id, timeout=5)


async def test_workers_run_one_step_per_key_and_different_keys_together(
    engine: plait.Engine,
) -> None:
    """Four runs, two customers: never two charges of one customer at once, but one of each
    customer together (the barrier needs two charges running at once to let either pass)."""
    wf = plait.Workflow("together")
    lock = threading.Lock()
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    barrier = threading.Barrier(2, timeout=20)

    @wf.step
    def order(customer: str) -> str:
        return customer

    @wf.step(concurrency_key=lambda order: order, key_limit=1)
    def charge(order: str) -> str:
        with lock:
            running[order] = running.get(order, 0) + 1
            peak[order] = max(peak.get(order, 0), running[order])
        barrier.wait()  # raises if no other charge comes to run alongside within 20 s
        with lock:
            running[order] -= 1
        return order

    runs = [await engine.start_async(wf, {"customer": c}) for c in ("a", "a", "b", "b")]
    await engine.run_worker_async(concurrency=4, until=[r.id for r in runs], timeout=60)
    for r in runs:
        assert (await r.result_async(timeout=5))["charge"] in ("a", "b")
    assert peak == {"a": 1, "b": 1}
    given_back = [e for r in runs for e in await engine.events_async(r.id) if e.type == KEY_FULL]
    assert all(e.payload["key_limit"] == 1 for e in given_back)


def test_steps_without_such_a_key_cost_nothing_new(
    tmp_path: Path, monkeypatch: Any, sqlite_statements: list[str]
) -> None:
    """Every statement the SQLite store runs, recorded (the same programs drive PostgreSQL):
    runs whose keys are of run-input fields, or that have none, never send an admission nor
    write a key; runs whose key reads an output do."""
    plain = plait.Workflow("plain")

    @plain.step
    def first(customer: str) -> str:
        return customer

    @plain.step(concurrency_key=lambda customer: customer, key_limit=1)
    def second(first: str) -> str:
        return first

    with plait.Engine(f"sqlite:///{tmp_path / 'p.db'}", lease=5.0) as engine:
        admissions: list[tuple[Any, ...]] = []
        admit = engine.store.admit_key

        async def counted(*args: Any) -> Any:
            admissions.append(args)
            return await admit(*args)

        monkeypatch.setattr(engine.store, "admit_key", counted)
        runs = [engine.start(plain, {"customer": c}).id for c in "aab"]
        engine.run_worker(concurrency=4, until=runs, timeout=30)
        assert sqlite_statements and admissions == []
        assert not [sql for sql in sqlite_statements if "SET options" in sql]
        keyed = [engine.start(orders(), {"n": n}).id for n in (1, 2)]
        engine.run_worker(concurrency=4, until=keyed, timeout=30)
        assert len(admissions) >= 2  # the recording sees them
        assert [sql for sql in sqlite_statements if "SET options" in sql]
