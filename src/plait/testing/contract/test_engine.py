"""The rules of DESIGN §3, checked through the public Engine API on every store.

Each test starts real runs and serves them with a real worker in this process, on every store of
backends.py (the `store_url` fixture); a new store joins there, or by `add_backends`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

import pydantic
import pytest

import plait
from plait.core.rows import Outcome


@pytest.fixture
def url(store_url: str) -> str:
    return store_url


@pytest.fixture
def engine(url: str) -> Iterator[plait.Engine]:
    with plait.Engine(url, lease=5.0) as eng:
        yield eng


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def serve(engine: plait.Engine, *handles: plait.RunHandle, concurrency: int = 4) -> None:
    engine.run_worker(until=list(handles), timeout=30, concurrency=concurrency)


# -- happy path ---------------------------------------------------------------------------------


def test_chain_runs_in_order_and_output_is_the_sinks(engine: plait.Engine) -> None:
    wf = plait.Workflow("chain")
    order: list[str] = []

    @wf.step
    def a(x: int) -> int:
        order.append("a")
        return x + 1

    @wf.step
    async def b(a: int) -> int:
        order.append("b")
        return a * 10

    @wf.step(after=["a"])
    def c(b: int, suffix: str = "!") -> str:
        order.append("c")
        return f"{b}{suffix}"

    run = engine.start(wf, {"x": 1})
    serve(engine, run)
    assert run.result(timeout=5) == {"c": "20!"}
    assert order == ["a", "b", "c"]
    got = engine.get_run(run.id)
    assert got.status is plait.RunStatus.COMPLETED and got.output == {"c": "20!"}
    steps = engine.steps(run.id)
    assert [s.name for s in steps] == ["a", "b", "c"]
    assert all(s.status is plait.StepStatus.DONE and s.attempts == 1 for s in steps)
    assert [s.output for s in steps] == [2, 20, "20!"]
    events = engine.events(run.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "run_started" and events[-1].type == "run_completed"
    completed = [e.payload["step"] for e in events if e.type == "step_completed"]
    assert completed == ["a", "b", "c"]
    assert engine.events(run.id, after_seq=3) == events[3:]


def test_fan_out_and_in_with_add_step(engine: plait.Engine) -> None:
    wf = plait.Workflow("fan")
    wf.add_step("root", lambda: 1)
    for i in range(50):
        wf.add_step(f"leaf{i}", lambda root, i=i: root + i, deps=["root"])
    wf.add_step("sink", lambda **outs: sum(outs.values()), deps=[f"leaf{i}" for i in range(50)])
    run = engine.start(wf)
    serve(engine, run, concurrency=16)
    assert run.result() == {"sink": sum(1 + i for i in range(50))}


class Order(pydantic.BaseModel):
    id: int
    items: list[str]


@dataclasses.dataclass
class Total:
    count: int


def test_typed_input_and_outputs_round_trip(engine: plait.Engine) -> None:
    wf = plait.Workflow("typed")

    @wf.step
    def load(order: Order) -> Order:
        assert isinstance(order, Order)
        return order

    @wf.step
    def count(load: Order) -> Total:
        assert isinstance(load, Order)  # an annotated dependency is decoded
        return Total(len(load.items))

    run = engine.start(wf, {"order": {"id": 1, "items": ["a", "b"]}})
    serve(engine, run)
    assert run.result() == {"count": {"count": 2}}


def test_step_context(engine: plait.Engine) -> None:
    wf = plait.Workflow("ctx")
    seen: dict[str, object] = {}

    @wf.step
    def a(ctx: plait.StepContext, n: int) -> int:
        seen.update(run=ctx.run_id, step=ctx.step, attempt=ctx.attempt, input=dict(ctx.input))
        return n

    run = engine.start(wf, {"n": 3}, run_id="ctx-run")
    serve(engine, run)
    assert seen == {"run": "ctx-run", "step": "a", "attempt": 1, "input": {"n": 3}}


# -- starting -----------------------------------------------------------------------------------


def test_start_is_idempotent_by_run_id(engine: plait.Engine) -> None:
    wf = plait.Workflow("idem")
    calls: list[int] = []

    @wf.step
    def only(n: int) -> int:
        calls.append(n)
        return n

    first = engine.start(wf, {"n": 1}, run_id="same")
    second = engine.start(wf, {"n": 1}, run_id="same")
    third = engine.start(wf, {"n": 2}, run_id="same", if_exists="return")
    serve(engine, first)
    assert second.id == third.id == first.id and second.result() == {"only": 1}
    assert (first.created, second.created, third.created) == (True, False, False)
    assert calls == [1]
    assert len(engine.list_runs().runs) == 1


def test_run_id_of_another_workflow_is_refused(engine: plait.Engine) -> None:
    one, two = plait.Workflow("one"), plait.Workflow("two")
    one.add_step("s", lambda: 1)
    two.add_step("s", lambda: 2)
    engine.start(one, run_id="shared")
    with pytest.raises(
        plait.RunConflict, match=r"run id 'shared' is already used by a run of workflow 'one'"
    ):
        engine.start(two, run_id="shared")


def test_start_by_name(engine: plait.Engine) -> None:
    wf = plait.Workflow("named")
    wf.add_step("s", lambda n: n)
    with pytest.raises(plait.WorkflowNotFound, match=r"unknown workflow 'named'"):
        engine.start("named", {"n": 1})
    engine.register(wf)
    run = engine.start("named", {"n": 4})
    serve(engine, run)
    assert run.result() == {"s": 4}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 2], r"must be a JSON object, got list"),
        ({}, r"misses field 'n', required by step 's'"),
        ({"n": "not a number"}, r"run input field 'n' \(step 's'\) is invalid"),
        ({"n": 1, "o": {"x": object()}}, r"is not JSON"),
    ],
)
def test_bad_input_is_refused_and_nothing_written(
    engine: plait.Engine, value: object, message: str
) -> None:
    wf = plait.Workflow("strict")

    @wf.step
    def s(n: int) -> int:
        return n

    with pytest.raises(plait.InputError, match=message):
        engine.start(wf, value)
    assert engine.list_runs().runs == []


@pytest.mark.parametrize("lease", [0.001, 0.99, 0, -5, math.nan, math.inf, 86_401, True, "30"])
def test_a_lease_outside_a_second_to_a_day_is_refused(url: str, lease: object) -> None:
    with pytest.raises(plait.ConfigError) as info:
        plait.Engine(url, lease=lease)  # type: ignore[arg-type]  # wrong types on purpose
    assert str(info.value) == (
        "lease must be a number of seconds >= 1 and <= 86400 (a worker renews its leases every "
        f"lease/3), got {lease!r}"
    )
    with plait.Engine(url, lease=1), plait.Engine(url, lease=86_400):
        pass  # the bounds themselves are accepted


@pytest.mark.parametrize("timeout", [-1, -0.5, math.nan, True, "5", math.inf])
def test_a_bad_wait_timeout_is_refused(engine: plait.Engine, timeout: object) -> None:
    wf = plait.Workflow("waited")
    wf.add_step("s", lambda: 1)
    run = engine.start(wf, run_id="w1")
    message = (
        "run 'w1': timeout must be None (no limit) or a finite number of seconds >= 0, "
        f"got {timeout!r}"
    )
    with pytest.raises(plait.InputError) as info:
        run.result(timeout=timeout)  # type: ignore[arg-type]  # on purpose
    assert str(info.value) == message
    servings: list[Callable[[], object]] = [
        lambda: engine.run_worker(until=run, timeout=timeout),  # type: ignore[arg-type]
        lambda: engine._portal.call(engine.run_worker_async(until=run, timeout=timeout)),  # type: ignore[arg-type]
    ]
    for serving in servings:
        with pytest.raises(plait.InputError) as info:
            serving()
        assert str(info.value) == (
            "run_worker: timeout must be None (no limit) or a finite number of seconds >= 0, "
            f"got {timeout!r}"
        )
    with pytest.raises(TimeoutError, match="run 'w1' did not end within 0s"):
        run.result(timeout=0)  # 0: look once
    serve(engine, run)
    assert run.result(timeout=0) == {"s": 1}


def test_run_worker_until_names_runs(engine: plait.Engine) -> None:
    with pytest.raises(plait.InputError) as info:
        engine.run_worker(until=5, timeout=1)  # type: ignore[arg-type]  # on purpose
    assert str(info.value) == (
        "run_worker: until takes runs (RunHandle or run id) or a list of them, got 5"
    )
    with pytest.raises(plait.InputError) as info:
        engine.run_worker(until=["a", 5], timeout=1)  # type: ignore[list-item]  # on purpose
    assert str(info.value) == (
        "run_worker: until takes runs (RunHandle or run id) or a list of them, got 5"
    )


def test_bad_run_id_is_refused(engine: plait.Engine) -> None:
    wf = plait.Workflow("ids")
    wf.add_step("s", lambda: 1)
    with pytest.raises(plait.InputError, match=r"invalid run id '../etc'"):
        engine.start(wf, run_id="../etc")
    # `$` alone would let a trailing newline through (into logs, CLI lines and headers)
    with pytest.raises(plait.InputError, match=r"invalid run id 'r1\\n'"):
        engine.start(wf, run_id="r1\n")


# -- failures, retries, cascades ------------------------------------------------------------------


def test_retry_until_success(engine: plait.Engine) -> None:
    wf = plait.Workflow("flaky", retry=plait.Retry(attempts=3, delay=0.01, jitter=0))

    @wf.step
    def flaky(ctx: plait.StepContext) -> str:
        if ctx.attempt < 3:
            raise plait.Retryable(f"attempt {ctx.attempt}", code="busy")
        return "ok"

    run = engine.start(wf)
    serve(engine, run)
    assert run.result() == {"flaky": "ok"}
    (step,) = engine.steps(run.id)
    assert step.attempts == 3 and step.error is None
    retries = [e for e in engine.events(run.id) if e.type == "step_retrying"]
    assert [(e.payload["attempt"], e.payload["code"]) for e in retries] == [
        (1, "busy"),
        (2, "busy"),
    ]


def test_exhausted_retries_fail_and_cascade(engine: plait.Engine) -> None:
    wf = plait.Workflow("cascade", retry=plait.Retry(attempts=2, delay=0))
    ran: list[str] = []

    @wf.step
    def a() -> None:
        raise ValueError("boom")

    @wf.step
    def b(a: object) -> None:
        ran.append("b")

    @wf.step
    def c(b: object) -> None:
        ran.append("c")

    @wf.step(after_any=["a"])
    def cleanup() -> str:
        ran.append("cleanup")
        return "cleaned"

    run = engine.start(wf)
    serve(engine, run)
    with pytest.raises(plait.RunFailed) as info:
        run.result()
    assert info.value.failures == {"a": plait.StepError("ValueError", "boom")}
    assert "step 'a' failed" in engine.get_run(run.id).error  # type: ignore[operator]
    steps = {s.name: s for s in engine.steps(run.id)}
    assert steps["a"].status is plait.StepStatus.FAILED and steps["a"].attempts == 2
    assert steps["b"].status is plait.StepStatus.SKIPPED
    assert steps["b"].skip_reason == "dependency 'a' failed"
    assert steps["c"].skip_reason == "dependency 'b' skipped"
    assert ran == ["cleanup"]
    failed = [e for e in engine.events(run.id) if e.type == "step_failed"]
    assert len(failed) == 1 and "ValueError: boom" in failed[0].payload["traceback"]


def test_permanent_is_not_retried(engine: plait.Engine) -> None:
    wf = plait.Workflow("perm", retry=plait.Retry(attempts=5, delay=0))

    @wf.step
    def charge() -> None:
        raise plait.Permanent("card declined", code="declined")

    run = engine.start(wf)
    serve(engine, run)
    with pytest.raises(plait.RunFailed, match=r"charge: \[declined\] card declined"):
        run.result()
    assert engine.steps(run.id)[0].attempts == 1


def test_defaults_absorb_a_failure_and_optional_keeps_run_completed(engine: plait.Engine) -> None:
    wf = plait.Workflow("soft")

    @wf.step
    def charge() -> int:
        return 5

    @wf.step(optional=True)
    def email(charge: int) -> str:
        raise RuntimeError("smtp down")

    @wf.step(defaults={"email": "not sent"})
    def finish(charge: int, email: str) -> str:
        return f"{charge}:{email}"

    run = engine.start(wf)
    serve(engine, run)
    assert run.result() == {"finish": "5:not sent"}
    assert engine.get_run(run.id).status is plait.RunStatus.COMPLETED


def test_after_cascades_but_after_any_does_not(engine: plait.Engine) -> None:
    wf = plait.Workflow("order_only")

    @wf.step
    def a() -> None:
        raise plait.Permanent("no")

    @wf.step(after=["a"])
    def strict() -> str:
        return "ran"

    @wf.step(after_any=["a"])
    def lenient() -> str:
        return "ran"

    run = engine.start(wf)
    serve(engine, run)
    status = {s.name: s.status for s in engine.steps(run.id)}
    assert status == {"a": "failed", "strict": "skipped", "lenient": "done"}


def test_timeouts_fail_with_code_timeout(engine: plait.Engine) -> None:
    wf = plait.Workflow("slow")
    release = threading.Event()

    @wf.step(timeout=0.05)
    async def slow_async() -> None:
        await asyncio.sleep(30)

    @wf.step(timeout=0.05, optional=True)
    def slow_sync(ctx: plait.StepContext) -> None:
        release.wait(30)

    run = engine.start(wf)
    serve(engine, run)
    release.set()
    errors = {s.name: s.error for s in engine.steps(run.id)}
    assert errors["slow_async"] is not None and errors["slow_async"].code == "timeout"
    assert errors["slow_sync"] is not None and errors["slow_sync"].code == "timeout"
    assert "exceeded its timeout of 0.05s" in errors["slow_async"].message


def test_unserializable_output_fails_without_retry(engine: plait.Engine) -> None:
    wf = plait.Workflow("unjson", retry=plait.Retry(attempts=3, delay=0))

    @wf.step
    def bad() -> object:
        return object()

    run = engine.start(wf)
    serve(engine, run)
    (step,) = engine.steps(run.id)
    assert step.error is not None and step.error.code == "unserializable_output"
    assert "not JSON" in step.error.message and step.attempts == 1


def test_error_message_is_capped_and_traceback_kept(engine: plait.Engine) -> None:
    wf = plait.Workflow("loud")

    @wf.step
    def loud() -> None:
        raise RuntimeError("x" * 10_000)

    run = engine.start(wf)
    serve(engine, run)
    (step,) = engine.steps(run.id)
    assert step.error is not None
    assert len(step.error.message.encode()) <= 4096 and step.error.message.endswith("more bytes]")
    failed = next(e for e in engine.events(run.id) if e.type == "step_failed")
    assert "Traceback" in failed.payload["traceback"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_handler_raising_base_exceptions_keeps_worker_consistent(
    engine: plait.Engine, exc: type[BaseException]
) -> None:
    wf = plait.Workflow("rude", retry=plait.Retry(attempts=3, delay=0))

    @wf.step
    def rude() -> None:
        raise exc()

    @wf.step
    def fine() -> int:
        return 1

    run = engine.start(wf)
    serve(engine, run)
    steps = {s.name: s for s in engine.steps(run.id)}
    assert steps["rude"].error is not None and steps["rude"].error.code == exc.__name__
    assert steps["rude"].attempts == 1 and steps["fine"].output == 1
    # the same engine still serves new runs afterwards
    again = engine.start(wf)
    serve(engine, again)
    assert engine.get_run(again.id).status is plait.RunStatus.FAILED


class _Odd(BaseException):
    """Neither an Exception nor one of the interpreter's own."""


async def _awaits_a_cancelled_future() -> None:
    future = asyncio.get_running_loop().create_future()
    future.cancel()
    await future


async def _cancels_its_own_task() -> None:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(0)


async def _async_generator_exit() -> None:
    raise GeneratorExit("leaked")


async def _async_odd() -> None:
    raise _Odd("odd")


def _sync_cancelled() -> None:
    raise asyncio.CancelledError


def _sync_generator_exit() -> None:
    raise GeneratorExit


def _sync_odd() -> None:
    raise _Odd


@pytest.mark.parametrize(
    ("handler", "code", "message"),
    [
        pytest.param(h, code, message, id=h.__name__.strip("_"))
        for h, code, message in [
            (_awaits_a_cancelled_future, "CancelledError", "handler raised CancelledError"),
            (_cancels_its_own_task, "CancelledError", "handler raised CancelledError"),
            (_async_generator_exit, "GeneratorExit", "handler raised GeneratorExit: leaked"),
            (_async_odd, "_Odd", "handler raised _Odd: odd"),
            (_sync_cancelled, "CancelledError", "handler raised CancelledError"),
            (_sync_generator_exit, "GeneratorExit", "handler raised GeneratorExit"),
            (_sync_odd, "_Odd", "handler raised _Odd"),
        ]
    ],
)
def test_any_base_exception_out_of_a_handler_fails_its_attempt_and_frees_its_slot(
    engine: plait.Engine, handler: Callable[[], object], code: str, message: str
) -> None:
    wf = plait.Workflow("ruder", retry=plait.Retry(attempts=3, delay=0))
    wf.add_step("rude", handler)
    wf.add_step("fine", lambda: 1, after_any=["rude"])

    run = engine.start(wf)
    # one slot: a handler that kept it would leave `fine` unclaimed (the worker timed out)
    engine.run_worker(until=run, timeout=10, concurrency=1)
    steps = {s.name: s for s in engine.steps(run.id)}
    rude = steps["rude"]
    assert rude.status is plait.StepStatus.FAILED and rude.attempts == 1  # not retried
    assert rude.error == plait.StepError(code, message)
    failed = next(e for e in engine.events(run.id) if e.type == "step_failed")
    assert code in failed.payload["traceback"]
    assert steps["fine"].output == 1


def test_a_base_exception_outside_the_handler_fails_the_step_and_frees_its_slot(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("odd_condition")

    def odd_condition() -> bool:
        raise _Odd("in a condition")

    wf.add_step("guarded", lambda: 1, when=odd_condition)
    wf.add_step("fine", lambda: 1, after_any=["guarded"])
    run = engine.start(wf)
    engine.run_worker(until=run, timeout=10, concurrency=1)
    steps = {s.name: s for s in engine.steps(run.id)}
    assert steps["guarded"].error == plait.StepError(
        "_Odd", "plait could not run step 'guarded': _Odd: in a condition"
    )
    assert steps["fine"].output == 1


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_handlers_own_timeout_error_is_not_a_step_timeout(
    engine: plait.Engine, kind: str
) -> None:
    wf = plait.Workflow("socket", retry=plait.Retry(attempts=2, delay=0))

    async def fetch_async() -> None:
        raise TimeoutError("the socket timed out")

    def fetch_sync() -> None:
        raise TimeoutError("the socket timed out")

    wf.add_step("fetch", fetch_async if kind == "async" else fetch_sync, timeout=30)
    run = engine.start(wf)
    serve(engine, run)
    (step,) = engine.steps(run.id)
    # an ordinary exception of the handler's: its class is the code, and it is retried
    assert step.error == plait.StepError("TimeoutError", "the socket timed out")
    assert step.attempts == 2


def test_a_worker_claims_fewer_steps_while_more_threads_are_stuck_than_it_replaces(
    engine: plait.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="plait.worker.handler_threads")
    wf = plait.Workflow("stuck_threads")
    gate = threading.Event()

    def hang() -> None:
        gate.wait(30)  # ignores ctx.cancelled: its thread is stuck past the timeout

    hangs = [f"hang{i}" for i in range(5)]  # concurrency 1: the pool replaces 4 stuck threads
    for name in hangs:
        wf.add_step(name, hang, timeout=0.05)
    wf.add_step("last", lambda: "ran", after_any=hangs)
    run = engine.start(wf)
    worker = threading.Thread(
        target=engine.run_worker, kwargs={"until": run, "timeout": 30, "concurrency": 1}
    )
    worker.start()
    try:

        def status() -> dict[str, plait.StepStatus]:
            return {s.name: s.status for s in engine.steps(run.id)}

        wait_until(
            lambda: status()["last"] is plait.StepStatus.READY,
            what="every hang to time out, and last to be ready",
        )
        assert all(status()[h] is plait.StepStatus.FAILED for h in hangs)
        assert "5 handler threads are stuck, more than the 4 this worker replaces" in caplog.text
        # no thread would start it: the worker does not claim it (checked for a moment)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            assert status()["last"] is plait.StepStatus.READY
            time.sleep(0.02)
    finally:
        gate.set()  # the stuck handlers return: their threads are free again
        worker.join(30)
    assert not worker.is_alive()
    assert engine.get_run(run.id).status is plait.RunStatus.FAILED
    assert {s.name: s.output for s in engine.steps(run.id)}["last"] == "ran"


def test_result_timeout_without_a_worker(engine: plait.Engine) -> None:
    wf = plait.Workflow("idle")
    wf.add_step("s", lambda: 1)
    run = engine.start(wf)
    with pytest.raises(TimeoutError, match=r"did not end within 0.05s \(it is pending\)"):
        run.result(timeout=0.05)


# -- leases -------------------------------------------------------------------------------------


def test_expired_lease_is_recovered_and_stale_outcome_fenced(url: str) -> None:
    wf = plait.Workflow("lease")
    wf.add_step("s", lambda: "fresh")
    with plait.Engine(url, lease=1.0) as engine:
        run = engine.start(wf)
        store = engine.store
        # a worker claims the step, then "dies" without finishing
        claims = engine._portal.call(
            store.claim(
                worker_id="dead", fingerprints=[wf.fingerprint], limit=1, lease=0.2, now=time.time()
            )
        )
        assert len(claims) == 1
        serve(engine, run)
        assert run.result() == {"s": "fresh"}
        (step,) = engine.steps(run.id)
        assert step.attempts == 1  # the recovery gave the attempt back
        types = [e.type for e in engine.events(run.id)]
        assert "step_lease_expired" in types
        # the dead worker wakes up and reports: fenced off, nothing changes
        stale = Outcome(run.id, "s", claims[0].token, output=b'"stale"')
        result = engine._portal.call(store.complete([stale], time.time()))
        assert result.accepted == [False]
        assert engine.steps(run.id)[0].output == "fresh"
        assert engine.events(run.id)[-1].type == "step_outcome_ignored"
        assert sum(e.type == "step_completed" for e in engine.events(run.id)) == 1


def test_graceful_stop_releases_unfinished_steps(url: str) -> None:
    wf = plait.Workflow("stoppable")
    started = threading.Event()

    @wf.step
    async def long(ctx: plait.StepContext) -> str:
        started.set()
        await asyncio.sleep(60)
        return "never"

    with plait.Engine(url) as engine:
        run = engine.start(wf)
        worker = threading.Thread(target=lambda: engine.run_worker(grace=0.05, workflows=[wf]))
        worker.start()
        assert started.wait(10)
        engine.stop_workers()
        worker.join(10)
        assert not worker.is_alive()
        (step,) = engine.steps(run.id)
        assert step.status is plait.StepStatus.READY and step.attempts == 0
        assert engine.events(run.id)[-1].type == "step_released"


# -- reading ------------------------------------------------------------------------------------


def test_list_runs_pages_and_filters(engine: plait.Engine) -> None:
    a, b = plait.Workflow("wa"), plait.Workflow("wb")
    a.add_step("s", lambda: 1)
    b.add_step("s", lambda: 1)
    ids = [engine.start(a if i % 2 else b, run_id=f"r{i}").id for i in range(7)]
    page1 = engine.list_runs(limit=3)
    page2 = engine.list_runs(limit=3, cursor=page1.next_cursor)
    page3 = engine.list_runs(limit=3, cursor=page2.next_cursor)
    seen = [r.id for r in [*page1, *page2, *page3]]
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 7
    assert page3.next_cursor is None
    assert {r.id for r in engine.list_runs(workflow="wa")} == {"r1", "r3", "r5"}
    assert len(engine.list_runs(status="pending")) == 7
    assert len(engine.list_runs(status=plait.RunStatus.COMPLETED)) == 0
    with pytest.raises(plait.InputError, match=r"unknown run status 'nope'"):
        engine.list_runs(status="nope")
    with pytest.raises(plait.InputError, match=r"invalid cursor 'garbage'"):
        engine.list_runs(cursor="garbage")
    with pytest.raises(plait.InputError, match=r"limit must be an integer between 1 and 10000"):
        engine.list_runs(limit=0)


def test_unknown_run_is_a_clear_error(engine: plait.Engine) -> None:
    for call in (engine.get_run, engine.steps, engine.events, engine.inspect):
        with pytest.raises(plait.RunNotFound, match=r"no run with id 'ghost'"):
            call("ghost")


def test_inspect_shows_counts_durations_and_blockers(engine: plait.Engine) -> None:
    wf = plait.Workflow("inspected")
    wf.add_step("a", lambda: 1)
    wf.add_step("b", lambda a: a, deps=["a"])
    wf.add_step("c", lambda a, b: 1, deps=["a", "b"])
    run = engine.start(wf)
    before = engine.inspect(run.id)
    assert before.counts["ready"] == 1 and before.counts["pending"] == 2
    assert before.blockers["b"] == ["a (ready)"]
    assert sorted(before.blockers["c"]) == ["a (ready)", "b (pending)"]
    assert before.blockers["a"][0].startswith("no live worker serves this fingerprint")
    serve(engine, run)
    after = engine.inspect(run.id)
    assert after.counts["done"] == 3 and after.blockers == {}
    assert all(s.duration is not None and s.queued is not None for s in after.steps)
    assert after.duration is not None and after.duration >= 0


def test_workflows_lists_registered_versions(engine: plait.Engine) -> None:
    v1, v2 = plait.Workflow("versions", version="1"), plait.Workflow("versions", version="2")
    v1.add_step("s", lambda: 1)
    v2.add_step("s", lambda: 2)
    engine.register(v1)
    engine.register(v2)
    infos = engine.workflows()
    assert {(w.name, w.version) for w in infos} == {("versions", "1"), ("versions", "2")}
    assert {w.fingerprint for w in infos} == {v1.fingerprint, v2.fingerprint}


def test_every_blocking_method_has_an_async_twin() -> None:
    blocking = [
        "register",
        "workflows",
        "start",
        "get_run",
        "list_runs",
        "steps",
        "events",
        "inspect",
        "run_worker",
        "close",
    ]
    for name in blocking:
        assert callable(getattr(plait.Engine, name))
        assert asyncio.iscoroutinefunction(getattr(plait.Engine, f"{name}_async"))
    assert asyncio.iscoroutinefunction(plait.RunHandle.result_async)


def test_async_api_in_a_user_event_loop(url: str) -> None:
    wf = plait.Workflow("asyncapi")
    wf.add_step("s", lambda n: n * 2)

    async def main() -> dict[str, object]:
        async with plait.Engine(url) as engine:
            run = await engine.start_async(wf, {"n": 21})
            await engine.run_worker_async(until=run, timeout=10)
            return await run.result_async(timeout=5)

    assert asyncio.run(main()) == {"s": 42}


def test_closing_the_engine_stops_its_workers_first(url: str) -> None:
    """A worker serving in another thread ends when its engine closes, instead of waiting on a
    closed store forever."""
    engine = plait.Engine(url, lease=5.0)
    wf = plait.Workflow("closing")

    @wf.step
    def only() -> int:
        return 1

    engine.register(wf)
    serving = threading.Thread(target=lambda: engine.run_worker(timeout=60, grace=1))
    serving.start()
    assert engine.start(wf).result(timeout=30) == {"only": 1}  # the worker is serving
    engine.close()
    serving.join(timeout=15)
    assert not serving.is_alive()
