"""Flow control on every store: queues with global concurrency and rate limits, per-key limits,
priorities without starvation, and the errors of bad configuration (see plait/_queues.py).

Most cases claim through the store directly, at chosen clock values, so that rate limits are
checked exactly; one runs a real worker and records how many steps of a queue ran at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import plait
from plait.testing.contract.conftest import Backend


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def mailer() -> plait.Workflow:
    wf = plait.Workflow("mailer")

    @wf.step(queue="emails")
    def send(to: str) -> str:
        return to

    return wf


def keyed() -> plait.Workflow:
    wf = plait.Workflow("keyed")

    @wf.step(queue="orders", concurrency_key=lambda customer: customer, key_limit=1)
    def charge(customer: str, n: int) -> int:
        return n

    return wf


async def claim(
    engine: plait.Engine, wf: plait.Workflow, now: float, limit: int = 10, **flow: object
) -> list[str]:
    claims = await engine.store.claim(
        worker_id="w",
        fingerprints=[wf.fingerprint],
        limit=limit,
        lease=30.0,
        now=now,
        **flow,  # type: ignore[arg-type]  # each its own
    )
    return sorted(c.run_id for c in claims)


async def test_a_queue_configuration_is_stored_and_changeable(engine: plait.Engine) -> None:
    assert await engine.queues_async() == []
    q = await engine.configure_queue_async("emails", concurrency=5, rate=plait.Rate(10, per=2.0))
    assert (q.name, q.concurrency, q.rate, q.tokens) == ("emails", 5, plait.Rate(10, per=2.0), 10)
    await engine.configure_queue_async("emails", concurrency=2)
    [q] = await engine.queues_async()
    assert (q.concurrency, q.rate, q.tokens) == (2, None, None)


async def test_the_configuration_is_seen_by_another_engine(
    durable_backend: Backend, tmp_path: Path
) -> None:
    url = durable_backend.url(tmp_path)
    with plait.Engine(url) as first:
        await first.configure_queue_async("emails", concurrency=3)
    with plait.Engine(url) as second:
        [q] = await second.queues_async()
        assert (q.name, q.concurrency) == ("emails", 3)


async def test_claims_never_exceed_a_queue_concurrency(engine: plait.Engine) -> None:
    wf = mailer()
    await engine.configure_queue_async("emails", concurrency=2)
    for i in range(5):
        await engine.start_async(wf, {"to": f"u{i}"}, run_id=f"m{i}")
    now = time.time()
    assert len(await claim(engine, wf, now)) == 2
    assert await claim(engine, wf, now) == []  # both slots are taken, across claims
    await engine.configure_queue_async("emails", concurrency=3)  # changed at run time
    assert len(await claim(engine, wf, now)) == 1
    await engine.configure_queue_async("emails", concurrency=None)
    assert len(await claim(engine, wf, now)) == 2


async def test_a_worker_claims_only_the_queues_it_serves(engine: plait.Engine) -> None:
    wf = mailer()
    other = plait.Workflow("other")

    @other.step
    def work(to: str) -> str:
        return to

    await engine.start_async(wf, {"to": "a"}, run_id="mail")
    await engine.start_async(other, {"to": "b"}, run_id="plain")
    now = time.time()
    assert await claim(engine, wf, now, queues=["default"]) == []
    assert await claim(engine, other, now, queues=["emails"]) == []
    assert await claim(engine, wf, now, queues=["emails", "x"]) == ["mail"]
    assert await claim(engine, other, now, queues=["default"]) == ["plain"]


async def test_a_rate_limit_grants_burst_then_rate(engine: plait.Engine) -> None:
    wf = mailer()
    t = time.time()
    await engine.configure_queue_async("emails", rate=plait.Rate(2, per=1.0, burst=3))
    for i in range(10):
        await engine.start_async(wf, {"to": f"u{i}"}, run_id=f"m{i}")
    assert len(await claim(engine, wf, t + 1)) == 3  # the burst
    assert await claim(engine, wf, t + 1) == []  # waiting for tokens claims nothing
    assert len(await claim(engine, wf, t + 1.5)) == 1  # 2 a second
    assert len(await claim(engine, wf, t + 2.5)) == 2
    [q] = await engine.queues_async()
    assert q.tokens == pytest.approx(0.0)


async def test_a_rate_limit_survives_a_restart(durable_backend: Backend, tmp_path: Path) -> None:
    url = durable_backend.url(tmp_path)
    wf = mailer()
    t = time.time()
    with plait.Engine(url) as first:
        await first.configure_queue_async("emails", rate=plait.Rate(1, per=10.0, burst=2))
        for i in range(5):
            await first.start_async(wf, {"to": f"u{i}"}, run_id=f"m{i}")
        assert len(await claim(first, wf, t + 1)) == 2
    with plait.Engine(url) as second:  # a restart neither refills the bucket ...
        await second.register_async(wf)
        assert await claim(second, wf, t + 2) == []
        assert len(await claim(second, wf, t + 12)) == 1  # ... nor loses what accrued
        [q] = await second.queues_async()
        assert q.tokens == pytest.approx(0.1)


async def test_a_claim_never_charges_a_bucket_before_its_last_update(
    engine: plait.Engine,
) -> None:
    # A claim reads its clock before it waits for the lock that serialises claims, and another
    # claim may charge the bucket meanwhile: the late claim must charge and stamp its steps at
    # the bucket's time, not at its own earlier one (else the steps' start times crowd more
    # than the rate allows).
    wf = mailer()
    t = time.time()  # (epoch seconds: approx needs an absolute tolerance, not a relative one)
    await engine.configure_queue_async("emails", rate=plait.Rate(1, per=1.0, burst=5))
    for i in range(4):
        await engine.start_async(wf, {"to": f"u{i}"}, run_id=f"m{i}")
    assert await claim(engine, wf, t + 10, limit=2) == ["m0", "m1"]
    [counted] = await engine.store.list_queues()
    assert counted.bucket is not None and counted.bucket.updated_at == pytest.approx(
        t + 10, abs=1e-3
    )
    assert await claim(engine, wf, t + 5, limit=2) == ["m2", "m3"]  # its clock read earlier
    [q] = await engine.store.list_queues()
    assert q.bucket is not None and q.bucket.updated_at == pytest.approx(t + 10, abs=1e-3)
    assert q.bucket.tokens == pytest.approx(1.0)  # 5 - 2 - 2, nothing refilled for the past
    for run_id in ("m2", "m3"):
        [step] = await engine.store.get_steps(run_id)
        assert step.started_at == pytest.approx(t + 10, abs=1e-3), run_id  # not t + 5


async def test_reconfiguring_a_rate_keeps_the_tokens(engine: plait.Engine) -> None:
    wf = mailer()
    t = time.time()
    await engine.configure_queue_async("emails", rate=plait.Rate(1, per=100.0, burst=5))
    for i in range(8):
        await engine.start_async(wf, {"to": f"u{i}"}, run_id=f"m{i}")
    assert len(await claim(engine, wf, t + 1, limit=4)) == 4
    await engine.configure_queue_async("emails", rate=plait.Rate(1, per=100.0, burst=50))
    assert len(await claim(engine, wf, t + 1)) == 1  # no fresh burst


async def test_a_key_limit_holds_across_claims(engine: plait.Engine) -> None:
    wf = keyed()
    for i, customer in enumerate(["ann", "ann", "bob", "ann"]):
        await engine.start_async(wf, {"customer": customer, "n": i}, run_id=f"o{i}")
    now = time.time()
    first = await claim(engine, wf, now)
    assert first == ["o0", "o2"]  # one of ann's, one of bob's
    assert await claim(engine, wf, now) == []


async def test_a_run_priority_goes_first_and_the_oldest_is_not_starved(
    engine: plait.Engine,
) -> None:
    wf = mailer()
    await engine.start_async(wf, {"to": "old"}, run_id="low")
    await engine.start_async(wf, {"to": "a"}, run_id="high1", priority=5)
    await engine.start_async(wf, {"to": "b"}, run_id="high2", priority=5)
    now = time.time() + 1
    assert await claim(engine, wf, now, limit=1) == ["high1"]
    # "low" has waited since before aged_before: it is claimed ahead of "high2"
    assert await claim(engine, wf, now, limit=1, aged_before=now - 0.5) == ["low"]
    assert await claim(engine, wf, now, limit=1, aged_before=now - 100) == ["high2"]


async def test_a_worker_never_runs_more_than_the_queue_concurrency(engine: plait.Engine) -> None:
    wf = plait.Workflow("busy")
    lock = threading.Lock()
    running = peak = 0

    @wf.step(queue="slow")
    def work(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)  # the work itself: long enough for steps to overlap
        with lock:
            running -= 1
        return n

    await engine.configure_queue_async("slow", concurrency=3)
    runs = [await engine.start_async(wf, {"n": i}) for i in range(12)]
    await engine.run_worker_async(concurrency=8, until=runs, timeout=30)
    assert peak == 3
    assert [await r.result_async(timeout=5) for r in runs] == [{"work": i} for i in range(12)]


async def test_bad_configuration_is_refused_with_a_clear_message(engine: plait.Engine) -> None:
    for bad, message in [
        (0, "queue 'q': concurrency must be an integer >= 1 and <= 2147483647, got 0"),
        (-2, "queue 'q': concurrency must be an integer >= 1 and <= 2147483647, got -2"),
        (1.5, "queue 'q': concurrency must be an integer >= 1 and <= 2147483647, got 1.5"),
        (
            99999999999999999999,
            "queue 'q': concurrency must be an integer >= 1 and <= 2147483647, "
            "got 99999999999999999999",
        ),
        (2**31, "queue 'q': concurrency must be an integer >= 1 and <= 2147483647, got 2147483648"),
    ]:
        with pytest.raises(plait.ConfigError) as info:
            await engine.configure_queue_async("q", concurrency=bad)  # type: ignore[arg-type]  # on purpose
        assert str(info.value) == message
    with pytest.raises(plait.ConfigError) as info:
        await engine.configure_queue_async("my queue", concurrency=1)
    assert str(info.value) == (
        "configure_queue: invalid queue name 'my queue': use 1-100 letters, digits or any of "
        "_ . : @ - (no spaces)"
    )
    with pytest.raises(
        plait.ConfigError, match=r"queue 'q': rate must be a plait.Rate\(count, per="
    ):
        await engine.configure_queue_async("q", rate=10)  # type: ignore[arg-type]  # the error
    with pytest.raises(
        ValueError, match=r"rate count must be a finite number > 0 and <= 1e9, got 0"
    ):
        plait.Rate(0)
    with pytest.raises(plait.ConfigError, match="worker queues: invalid queue name 'a b'"):
        await engine.run_worker_async(queues=["a b"], timeout=1)
    assert await engine.queues_async() == []  # nothing was stored
    most = await engine.configure_queue_async("q", concurrency=2**31 - 1)  # the largest, stored
    assert [q.concurrency for q in await engine.queues_async()] == [most.concurrency] == [2**31 - 1]


def test_bad_step_options_are_definition_errors() -> None:
    wf = plait.Workflow("bad")
    cases = [
        ({"queue": "has space"}, "invalid queue name 'has space'"),
        ({"queue": ""}, "invalid queue name ''"),
        (
            {"concurrency_key": lambda c: c, "key_limit": 0},
            "key_limit must be an integer >= 1 and <= 2147483647, got 0",
        ),
        (
            {"concurrency_key": lambda c: c, "key_limit": 2**40},
            "key_limit must be an integer >= 1 and <= 2147483647, got 1099511627776",
        ),
        ({"concurrency_key": lambda c: c}, "concurrency_key and key_limit go together"),
        ({"key_limit": 2}, "concurrency_key and key_limit go together"),
        ({"concurrency_key": "customer", "key_limit": 1}, "concurrency_key must be a callable"),
    ]
    for options, message in cases:
        with pytest.raises(plait.DefinitionError, match=message):
            wf.step(name="s", **options)(lambda: None)  # type: ignore[arg-type]  # on purpose

    # a key reads run-input fields and the outputs of the step's own data dependencies only
    reads_a_step = plait.Workflow("reads")

    @reads_a_step.step
    def first() -> int:
        return 1

    @reads_a_step.step(concurrency_key=lambda first: first, key_limit=1, after=["first"])
    def second(n: int) -> int:
        return n

    with pytest.raises(plait.DefinitionError) as info:
        reads_a_step.plan()
    assert str(info.value) == (
        "workflow 'reads', step 'second': concurrency_key reads step 'first', which is not a "
        "data dependency of this step: a key may read run-input fields and the outputs of the "
        "steps the step itself reads (take it as a parameter, or list it in deps=)"
    )


async def test_bad_start_options_are_input_errors(engine: plait.Engine) -> None:
    with pytest.raises(plait.InputError, match="start: priority must be an integer, got 'high'"):
        await engine.start_async(mailer(), {"to": "a"}, priority="high")  # type: ignore[arg-type]  # the error
    wf = plait.Workflow("orders")

    @wf.step(concurrency_key=lambda order: order["customer"], key_limit=1)
    def charge(order: dict[str, object]) -> None:
        return None

    with pytest.raises(plait.InputError) as info:
        await engine.start_async(wf, {"order": {"customer": ["a"]}})
    assert str(info.value) == (
        "workflow 'orders', step 'charge': concurrency_key must return a string or an integer, "
        "got ['a']"
    )
    with pytest.raises(plait.InputError) as info:
        await engine.start_async(wf, {"order": {}})
    assert str(info.value) == (
        "workflow 'orders', step 'charge': concurrency_key raised KeyError: 'customer'"
    )
    assert (await engine.list_runs_async()).runs == []  # nothing was written


async def test_a_rate_limited_step_waits_without_holding_a_slot(engine: plait.Engine) -> None:
    wf = mailer()
    other = plait.Workflow("other")

    @other.step
    def work(to: str) -> str:
        return to

    await engine.configure_queue_async("emails", rate=plait.Rate(1, per=3600.0, burst=1))
    first = await engine.start_async(wf, {"to": "a"}, run_id="first")
    second = await engine.start_async(wf, {"to": "b"}, run_id="second")
    plain = await engine.start_async(other, {"to": "c"}, run_id="plain")
    # one slot: the second mail waits an hour for its token, and the plain step still runs
    await engine.run_worker_async(
        concurrency=1, until=[first, plain], timeout=20, workflows=[wf, other]
    )
    assert (await engine.get_run_async("second")).status is plait.RunStatus.PENDING
    [step] = await engine.steps_async(second.id)
    assert step.status is plait.StepStatus.READY


async def test_high_priority_work_does_not_starve_low_priority_work(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("stream")

    @wf.step
    def tick(n: int) -> int:
        time.sleep(0.01)  # the work: 200 high-priority steps keep one slot busy for 2 s
        return n

    low = await engine.start_async(wf, {"n": -1}, run_id="low")
    high = [await engine.start_async(wf, {"n": i}, priority=10) for i in range(200)]
    await engine.run_worker_async(concurrency=1, until=low, timeout=20, starvation_after=0.2)
    statuses = [(await engine.get_run_async(r.id)).status for r in high]
    assert statuses.count(plait.RunStatus.COMPLETED) < 100  # low went long before the stream
    assert (await low.result_async(timeout=1)) == {"tick": -1}
    # within the priority, the high-priority runs went first in the order they became ready
    done = [r.id for r in high if (await engine.get_run_async(r.id)).status.terminal]
    assert done == [r.id for r in high[: len(done)]]


async def test_spawned_steps_take_their_task_queue(engine: plait.Engine) -> None:
    wf = plait.Workflow("mass")

    @wf.task(queue="emails")
    def mail(to: str) -> str:
        return to

    @wf.step
    def root(ctx: plait.StepContext) -> list[plait.Handle]:
        return ctx.map(mail, ["a", "b", "c"])

    await engine.configure_queue_async("emails", concurrency=1)
    run = await engine.start_async(wf, run_id="mass")
    await engine.run_worker_async(until=run, timeout=20, workflows=[wf])
    assert await run.result_async(timeout=5) == {"root": ["a", "b", "c"]}
    children = [s for s in await engine.store.get_steps("mass") if s.task == "mail"]
    assert {s.options.queue for s in children if s.options} == {"emails"}
    assert len(children) == 3
    with pytest.raises(plait.DefinitionError, match="invalid queue name 'a b'"):
        wf.task(name="bad", queue="a b")(lambda: None)


async def test_a_fork_resolves_the_keys_of_the_steps_it_runs(engine: plait.Engine) -> None:
    wf = keyed()
    await engine.start_async(wf, {"customer": "ann", "n": 1}, run_id="o1")
    await engine.run_worker_async(until="o1", timeout=20, workflows=[wf])
    fork = await engine.fork_async("o1", "charge", input={"customer": "bob", "n": 2})
    [step] = await engine.store.get_steps(fork.id)
    assert step.options is not None and (step.options.key, step.options.key_limit) == ("bob", 1)


async def test_an_old_step_among_the_candidates_still_goes_first(engine: plait.Engine) -> None:
    wf = mailer()
    await engine.configure_queue_async("emails", concurrency=1)
    await engine.start_async(wf, {"to": "old"}, run_id="low")
    await engine.start_async(wf, {"to": "a"}, run_id="high", priority=5)
    now = time.time() + 1
    # both are candidates of a claim of 10, but the queue admits one: the aged one
    assert await claim(engine, wf, now, aged_before=now - 0.5) == ["low"]


async def live_worker(engine: plait.Engine, *workflows: plait.Workflow) -> None:
    """Register a live worker serving these workflows (test_registry.py)."""
    from plait.core.topology import ServedWorkflow, WorkerInfo
    from plait.worker.registry import Presence

    now = time.time()
    served = tuple(ServedWorkflow(w.name, w.version, w.fingerprint) for w in workflows)
    info = WorkerInfo("w", "h", 1, (), None, served, 1, now, now, now + 60)
    await Presence(engine.store, info, 60.0).beat(now)


async def test_inspect_names_the_limits_a_ready_step_waits_on(engine: plait.Engine) -> None:
    await engine.configure_queue_async(
        "emails", concurrency=2, rate=plait.Rate(10, per=60.0, burst=5)
    )
    await engine.start_async(mailer(), {"to": "a"}, run_id="m")
    await engine.start_async(keyed(), {"customer": "ann", "n": 1}, run_id="k")
    await live_worker(engine, mailer(), keyed())  # else: "no live worker serves…" instead
    assert (await engine.inspect_async("m")).blockers["send"] == [
        "queue 'emails' runs at most 2 at once",
        "queue 'emails' starts at most 10 per 60s (burst 5; 5.0 token(s) left)",
        "waiting for room under these limits (or for a worker)",
    ]
    assert (await engine.inspect_async("k")).blockers["charge"] == [
        "concurrency key 'ann' runs at most 1 at once",
        "waiting for room under these limits (or for a worker)",
    ]
