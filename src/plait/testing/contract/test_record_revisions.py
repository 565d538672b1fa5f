"""`ctx.record(..., expected_revision=)` on every store: the revision is checked in the
transaction that commits the step's success; a mismatch fails the attempt with code
`revision_conflict` (retryable) and commits nothing of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def run(engine: plait.Engine, wf: plait.Workflow, data: dict[str, Any] | None = None) -> Any:
    handle = engine.start(wf, data or {})
    engine.run_worker(until=handle, timeout=60, concurrency=4)
    return handle


def failure_of(handle: Any, step: str) -> plait.StepError:
    with pytest.raises(plait.RunFailed) as caught:
        handle.result()
    return caught.value.failures[step]


def test_a_step_writes_over_the_revision_it_expects(engine: plait.Engine) -> None:
    docs = engine.records("accounts")
    docs.put("a", {"balance": 1})
    wf = plait.Workflow("cas")

    @wf.step
    def pay(ctx: plait.StepContext) -> str:
        ctx.record("accounts", "a", {"balance": 2}, expected_revision=1)
        ctx.record("accounts", "a", {"balance": 3}, expected_revision=2)  # its own write counts
        ctx.record("accounts", "b", {"balance": 0}, expected_revision=0)  # create only
        return "ok"

    assert run(engine, wf).result() == {"pay": "ok"}
    assert docs.get("a") == ({"balance": 3}, 3)
    assert docs.get("b") == ({"balance": 0}, 1)


def test_a_conflict_fails_the_attempt_and_commits_nothing_of_it(engine: plait.Engine) -> None:
    docs = engine.records("accounts")
    docs.put("a", {"balance": 1})
    docs.put("a", {"balance": 5})  # revision 2
    wf = plait.Workflow("stale")

    @wf.step
    def pay(ctx: plait.StepContext) -> str:
        ctx.record("accounts", "other", {"x": 1})  # no expectation: still not committed
        ctx.save_artifact("receipt.txt", b"paid")
        ctx.record("accounts", "a", {"balance": 0}, expected_revision=1)
        return "ok"

    @wf.step
    def after(pay: str) -> str:
        return pay

    handle = run(engine, wf)

    error = failure_of(handle, "pay")
    assert error.code == "revision_conflict"
    assert error.message == (
        "record 'a' of collection 'accounts' is at revision 2, but the step's ctx.record "
        "expected revision 1; nothing of this attempt was committed"
    )
    assert docs.get("a") == ({"balance": 5}, 2)
    assert docs.get("other") is None
    assert engine.artifacts(handle.id) == []
    steps = {s.name: s.status for s in engine.steps(handle.id)}
    assert steps == {"pay": plait.StepStatus.FAILED, "after": plait.StepStatus.SKIPPED}


def test_a_conflict_is_retried_under_the_steps_retry_policy(engine: plait.Engine) -> None:
    docs = engine.records("counters")
    docs.put("n", {"n": 1})
    docs.put("n", {"n": 2})  # revision 2: the first attempt's expectation is stale
    wf = plait.Workflow("retrying", retry=plait.Retry(attempts=3, delay=0.01))

    @wf.step
    def bump(ctx: plait.StepContext) -> int:
        ctx.record("counters", "n", {"n": 3}, expected_revision=ctx.attempt)
        return ctx.attempt

    handle = run(engine, wf)

    assert handle.result() == {"bump": 2}
    assert docs.get("n") == ({"n": 3}, 3)
    retrying = [e for e in engine.events(handle.id) if e.type == "step_retrying"]
    assert [e.payload["code"] for e in retrying] == ["revision_conflict"]


def test_creating_an_existing_document_conflicts(engine: plait.Engine) -> None:
    engine.records("users").put("u", {"name": "first"})
    wf = plait.Workflow("create")

    @wf.step
    def make(ctx: plait.StepContext) -> None:
        ctx.record("users", "u", {"name": "second"}, expected_revision=0)

    error = failure_of(run(engine, wf), "make")
    assert error.code == "revision_conflict"
    assert error.message.startswith(
        "record 'u' of collection 'users' is at revision 1, but the step's ctx.record expected "
        "to create it (expected_revision=0)"
    )
    assert engine.records("users").get("u") == ({"name": "first"}, 1)


def test_a_deleted_document_is_created_again_and_its_old_revision_conflicts(
    engine: plait.Engine,
) -> None:
    docs = engine.records("users")
    docs.put("u", {"v": 1})
    docs.delete("u")  # a tombstone at revision 2
    wf = plait.Workflow("recreate")

    @wf.step
    def make(ctx: plait.StepContext, expected: int) -> None:
        ctx.record("users", "u", {"v": 2}, expected_revision=expected)

    error = failure_of(run(engine, wf, {"expected": 1}), "make")
    assert error.message.startswith(
        "record 'u' of collection 'users' does not exist, but the step's ctx.record expected "
        "revision 1"
    )
    run(engine, wf, {"expected": 0}).result()
    assert docs.get("u") == ({"v": 2}, 3)


def test_of_many_steps_expecting_one_revision_exactly_one_commits(engine: plait.Engine) -> None:
    docs = engine.records("race")
    docs.put("k", {"winner": None})
    wf = plait.Workflow("race")

    @wf.step
    def claim(ctx: plait.StepContext, me: int) -> int:
        ctx.record("race", "k", {"winner": me}, expected_revision=1)
        return me

    handles = [engine.start(wf, {"me": i}) for i in range(10)]
    engine.run_worker(until=handles, timeout=60, concurrency=10)

    won, lost = [], []
    for h in handles:
        try:
            won.append(h.result()["claim"])
        except plait.RunFailed as exc:
            lost.append(exc.failures["claim"].code)
    assert len(won) == 1
    assert lost == ["revision_conflict"] * 9
    assert docs.get("k") == ({"winner": won[0]}, 2)


def test_a_bad_expected_revision_fails_the_step_with_the_reason(engine: plait.Engine) -> None:
    wf = plait.Workflow("bad")

    @wf.step
    def write(ctx: plait.StepContext) -> None:
        ctx.record("docs", "k", {}, expected_revision=-1)

    error = failure_of(run(engine, wf), "write")
    assert error.code == "InputError"
    assert error.message.startswith(
        "expected_revision must be None (write whatever is there), 0 (create only) or the "
        "revision last read (an integer >= 1), got -1"
    )


def test_an_observer_is_told_a_conflict_is_a_failure(engine: plait.Engine) -> None:
    engine.records("docs").put("k", {"v": 1})
    codes: list[str | None] = []

    class Observer:
        def claimed(self, worker: Any, claims: Any, now: float) -> None:
            pass

        def committed(self, worker: Any, outcomes: Any, accepted: Any, now: float) -> None:
            codes.extend(o.error_code for o in outcomes)

        def expired(self, worker: Any, count: int) -> None:
            pass

    engine.observe(Observer())
    wf = plait.Workflow("observed")

    @wf.step
    def write(ctx: plait.StepContext) -> None:
        ctx.record("docs", "k", {"v": 2}, expected_revision=7)

    failure_of(run(engine, wf), "write")
    assert codes == ["revision_conflict"]
