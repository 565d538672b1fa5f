"""Retries and errors on every store (issue 18, item 5): a retry budget without a limit, linear
backoff, `non_retryable` classes and codes, JSON details raised with an error, and the error
message cap an Engine is given."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def serve(engine: plait.Engine, run: plait.RunHandle) -> None:
    engine.run_worker(until=run, timeout=30)


class CardDeclined(Exception):
    pass


def test_attempts_none_retries_until_success(engine: plait.Engine) -> None:
    wf = plait.Workflow("forever", retry=plait.Retry(attempts=None, delay=0, jitter=0))

    @wf.step
    def flaky(ctx: plait.StepContext) -> int:
        if ctx.attempt < 12:  # past any default budget
            raise RuntimeError(f"attempt {ctx.attempt}")
        return ctx.attempt

    run = engine.start(wf)
    serve(engine, run)
    assert run.result() == {"flaky": 12}
    assert engine.steps(run.id)[0].attempts == 12


def test_linear_backoff_spaces_retries_by_delay_times_attempt(engine: plait.Engine) -> None:
    wf = plait.Workflow(
        "linear", retry=plait.Retry(attempts=4, delay=0.2, backoff="linear", jitter=0)
    )

    @wf.step
    def flaky(ctx: plait.StepContext) -> str:
        if ctx.attempt < 4:
            raise RuntimeError("again")
        return "ok"

    run = engine.start(wf)
    serve(engine, run)
    assert run.result() == {"flaky": "ok"}
    retries = [e for e in engine.events(run.id) if e.type == "step_retrying"]
    waits = [float(e.payload["retry_at"]) - e.ts.timestamp() for e in retries]
    # 0.2, 0.4, 0.6 (exponential would be 0.2, 0.4, 0.8), less the moments to commit
    assert all(
        want - 0.15 < w <= want + 0.01 for w, want in zip(waits, [0.2, 0.4, 0.6], strict=True)
    ), waits


@pytest.mark.parametrize("non_retryable", [[CardDeclined], ["CardDeclined"], [Exception]])
def test_non_retryable_fails_at_once(engine: plait.Engine, non_retryable: list[object]) -> None:
    retry = plait.Retry(attempts=5, delay=0, non_retryable=non_retryable)  # type: ignore[arg-type]  # mixed list
    wf = plait.Workflow("declines", retry=retry)

    @wf.step
    def charge() -> None:
        raise CardDeclined("card declined")

    run = engine.start(wf)
    serve(engine, run)
    with pytest.raises(plait.RunFailed, match="card declined"):
        run.result()
    assert engine.steps(run.id)[0].attempts == 1


def test_a_code_such_as_timeout_can_be_non_retryable(engine: plait.Engine) -> None:
    wf = plait.Workflow(
        "slow", retry=plait.Retry(attempts=5, delay=0, non_retryable=["timeout"]), timeout=0.05
    )

    @wf.step
    async def slow() -> None:
        await asyncio.Event().wait()

    run = engine.start(wf)
    serve(engine, run)
    (step,) = engine.steps(run.id)
    assert step.error is not None and step.error.code == "timeout" and step.attempts == 1


def test_other_errors_still_retry_under_non_retryable(engine: plait.Engine) -> None:
    wf = plait.Workflow(
        "declines_other", retry=plait.Retry(attempts=3, delay=0, non_retryable=[CardDeclined])
    )

    @wf.step
    def charge(ctx: plait.StepContext) -> int:
        if ctx.attempt < 3:
            raise ConnectionError("flaky network")
        return ctx.attempt

    run = engine.start(wf)
    serve(engine, run)
    assert run.result() == {"charge": 3}


def test_retryable_stays_retryable_when_its_code_is_listed(engine: plait.Engine) -> None:
    wf = plait.Workflow("explicit", retry=plait.Retry(attempts=2, delay=0, non_retryable=["busy"]))

    @wf.step
    def call(ctx: plait.StepContext) -> int:
        if ctx.attempt < 2:
            raise plait.Retryable("busy now", code="busy")
        return ctx.attempt

    run = engine.start(wf)
    serve(engine, run)
    assert run.result() == {"call": 2}


def test_details_are_recorded_with_the_error(engine: plait.Engine) -> None:
    wf = plait.Workflow("detailed", retry=plait.Retry(attempts=2, delay=0))

    @wf.step
    def charge(ctx: plait.StepContext) -> None:
        if ctx.attempt == 1:
            raise plait.Retryable("gateway busy", code="busy", details={"retry_in": 3})
        raise plait.Permanent(
            "card declined",
            code="declined",
            details={"card": "visa", "amount": 12.5, "when": datetime(2026, 1, 2)},
        )

    run = engine.start(wf)
    serve(engine, run)
    with pytest.raises(plait.RunFailed):
        run.result()
    events = {e.type: e.payload for e in engine.events(run.id)}
    assert events["step_retrying"]["details"] == {"retry_in": 3}
    assert events["step_failed"]["details"] == {
        "card": "visa",
        "amount": 12.5,
        "when": "2026-01-02T00:00:00",
    }


def test_details_that_are_not_json_are_left_out_saying_so(engine: plait.Engine) -> None:
    wf = plait.Workflow("badly_detailed")

    @wf.step
    def charge() -> None:
        raise plait.Permanent("card declined", details={"card": object()})

    run = engine.start(wf)
    serve(engine, run)
    (step,) = engine.steps(run.id)
    assert step.error is not None
    assert step.error.message.startswith("card declined (its details were not recorded: not JSON")
    failed = next(e for e in engine.events(run.id) if e.type == "step_failed")
    assert "details" not in failed.payload


def test_error_limit_caps_the_message(store_url: str) -> None:
    with plait.Engine(store_url, lease=5.0, error_limit=300) as engine:
        wf = plait.Workflow("loud_limited")

        @wf.step
        def loud() -> None:
            raise RuntimeError("x" * 1_000)

        run = engine.start(wf)
        serve(engine, run)
        (step,) = engine.steps(run.id)
        assert step.error is not None
        assert len(step.error.message.encode()) <= 300
        assert step.error.message.endswith("more bytes]")
        assert step.error.message.startswith("x" * 250)


@pytest.mark.parametrize("bad", [0, 255, "4k", True, 4096.0])
def test_error_limit_must_be_an_integer_of_256_or_more(store_url: str, bad: object) -> None:
    with pytest.raises(
        plait.PlaitError, match=r"error_limit must be an integer >= 256 \(bytes\), got"
    ):
        plait.Engine(store_url, error_limit=bad)  # type: ignore[arg-type]  # the point


def test_a_deadline_ends_a_step_retried_without_limit(engine: plait.Engine) -> None:
    wf = plait.Workflow("forever_deadline", retry=plait.Retry(attempts=None, delay=0.01, jitter=0))

    @wf.step
    def hopeless() -> None:
        raise RuntimeError("never")

    run = engine.start(wf, deadline=0.5)
    serve(engine, run)
    with pytest.raises(plait.RunFailed) as info:
        run.result()
    assert info.value.code == "deadline_exceeded"


def test_details_must_be_a_mapping() -> None:
    with pytest.raises(
        TypeError,
        match=r"^Permanent\(details=\.\.\.\) must be a mapping \(a JSON object\), got list$",
    ):
        plait.Permanent("x", details=[1, 2])  # type: ignore[arg-type]  # on purpose
