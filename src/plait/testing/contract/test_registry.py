"""The worker registry on every store (issue 6, part 6): workers register what they serve and
heartbeat; a graceful stop deregisters; a dead worker stops being live when its registration
expires and is forgotten later; `topology` says which live workers can run which steps, and
`inspect` why no live worker can take a ready step (fingerprint, queue, target). Also: the
reserved `plait.` collections are refused to users (issue 5), and a watcher in the worker's own
process sees a step start at once.

Clocks are driven through parameters (`Presence.beat(now)`, `forget_dead(store, now)`) rather
than waited for."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

import plait
from plait.core.topology import WORKERS, ServedWorkflow, WorkerInfo
from plait.worker.registry import FORGET_AFTER, SWEEP_EVERY, Presence, forget_dead

DEADLINE = 20.0


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=3.0) as eng:
        yield eng


async def wait_until(read: Any, ok: Any, what: str) -> Any:
    """Poll an async `read()` until `ok(value)`, failing past DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    pause = 0.005
    while True:
        value = await read()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE}s: {value!r}"
        await asyncio.sleep(pause)  # polling interval of a condition wait with a deadline
        pause = min(pause * 2, 0.1)


def mixed() -> plait.Workflow:
    """Three steps ready at once: one plain, one in queue 'emails', one for label 'gpu', and one
    colocated with the gpu step."""
    wf = plait.Workflow("mixed")

    @wf.step
    def plain() -> int:
        return 1

    @wf.step(queue="emails")
    def mail() -> int:
        return 2

    @wf.step(target="gpu")
    def train() -> int:
        return 3

    @wf.step(colocate_with="train")
    def evaluate(train: int) -> int:
        return train

    return wf


def info(
    worker_id: str,
    wf: plait.Workflow,
    *,
    labels: tuple[str, ...] = (),
    queues: tuple[str, ...] | None = None,
    now: float | None = None,
    ttl: float = 30.0,
) -> WorkerInfo:
    now = time.time() if now is None else now
    served = (ServedWorkflow(wf.name, wf.version, wf.fingerprint),)
    return WorkerInfo(worker_id, "h", 1, labels, queues, served, 4, now, now, now + ttl)


async def register(engine: plait.Engine, w: WorkerInfo, now: float | None = None) -> Presence:
    presence = Presence(await engine._rt.ready(), w, w.expires_at - w.heartbeat_at)
    await presence.beat(w.heartbeat_at if now is None else now)
    return presence


# -- registering --------------------------------------------------------------------------------


async def test_two_workers_register_and_a_stopped_one_leaves(engine: plait.Engine) -> None:
    a, b = plait.Workflow("alpha", version="2"), plait.Workflow("beta")
    release = asyncio.Event()

    @a.step
    async def one() -> int:
        await release.wait()  # A's run lasts until both workers have been seen
        return 1

    @b.step(queue="emails")
    def two() -> int:
        return 2

    run_a = await engine.start_async(a, run_id="ra")
    started = time.time()
    # worker A serves alpha until its run ends (then stops gracefully); B serves beta until stopped
    worker_a = asyncio.create_task(
        engine.run_worker_async(workflows=[a], labels=["gpu", "eu"], concurrency=2, until=run_a)
    )
    worker_b = asyncio.create_task(
        engine.run_worker_async(workflows=[b], queues=["emails"], concurrency=3)
    )
    try:
        both = await wait_until(engine.workers_async, lambda ws: len(ws) == 2, "both register")
        [wa] = [w for w in both if w.queues is None]
        [wb] = [w for w in both if w.queues == ("emails",)]
        assert (wa.labels, wb.labels) == (("eu", "gpu"), ())
        assert wa.workflows == (ServedWorkflow("alpha", "2", a.fingerprint),)
        assert wb.workflows == (ServedWorkflow("beta", b.version, b.fingerprint),)
        for w, concurrency in ((wa, 2), (wb, 3)):
            assert (w.host, w.pid, w.concurrency) == (
                socket.gethostname(),
                os.getpid(),
                concurrency,
            )
            assert w.id.startswith(f"{socket.gethostname()}:{os.getpid()}:")
            assert started - 1 <= w.started_at <= w.heartbeat_at <= time.time()
            assert w.expires_at == pytest.approx(w.heartbeat_at + 3.0)
            assert w.live
        assert wa.id != wb.id and wb.fingerprints == {b.fingerprint}
        release.set()
        await asyncio.wait_for(worker_a, DEADLINE)  # its run ended: a graceful stop
        assert [w.id for w in await engine.workers_async()] == [wb.id]  # A left; B stays
        assert [w.id for w in await engine.workers_async(include_dead=True)] == [wb.id]
    finally:
        release.set()
        engine.stop_workers()
        await asyncio.gather(worker_a, worker_b, return_exceptions=True)
    assert await engine.workers_async(include_dead=True) == []  # B's stop deregistered it too


async def test_a_registered_worker_shows_every_field(engine: plait.Engine) -> None:
    wf = mixed()
    now = time.time()
    w = WorkerInfo(
        "host-1:42:abc", "host-1", 42, ("eu", "gpu"), ("emails",),
        (ServedWorkflow("mixed", "1", wf.fingerprint),), 8, now - 100, now, now + 30,
    )  # fmt: skip
    await register(engine, w)
    [got] = await engine.workers_async()
    assert got == w
    assert got.as_dict() == {
        "id": "host-1:42:abc",
        "host": "host-1",
        "pid": 42,
        "labels": ["eu", "gpu"],
        "queues": ["emails"],
        "workflows": [{"name": "mixed", "version": "1", "fingerprint": wf.fingerprint}],
        "concurrency": 8,
        "started_at": now - 100,
        "heartbeat_at": now,
        "expires_at": now + 30,
    }


async def test_a_dead_worker_ages_out_and_is_forgotten_later(engine: plait.Engine) -> None:
    wf = mixed()
    now = time.time()
    alive = await register(engine, info("alive", wf, now=now))
    # "dead" heartbeat last 100 s ago, its lease 30 s: expired 70 s ago
    await register(engine, info("dead", wf, now=now - 100))
    assert [w.id for w in await engine.workers_async()] == ["alive"]
    everyone = await engine.workers_async(include_dead=True)
    assert [(w.id, w.live) for w in everyone] == [("alive", True), ("dead", False)]
    # not forgotten before FORGET_AFTER has passed since it expired...
    assert await forget_dead(engine.store, now) == 0
    assert len(await engine.workers_async(include_dead=True)) == 2
    # ...and forgotten after, by the next sweep of a live worker's heartbeat
    later = now - 70 + FORGET_AFTER + 1
    await alive.beat(later)
    assert [w.id for w in await engine.workers_async(include_dead=True)] == ["alive"]
    # a heartbeat sweeps only every SWEEP_EVERY seconds
    await register(engine, info("dead2", wf, now=later - FORGET_AFTER - 100))
    await alive.beat(later + 1)
    assert len(await engine.workers_async(include_dead=True)) == 2
    await alive.beat(later + SWEEP_EVERY + 1)
    assert [w.id for w in await engine.workers_async(include_dead=True)] == ["alive"]


async def test_a_heartbeat_renews_the_registration(engine: plait.Engine) -> None:
    wf = mixed()
    now = time.time()
    presence = await register(engine, info("w", wf, now=now - 100))
    assert await engine.workers_async() == []
    await presence.beat(now)
    [w] = await engine.workers_async()
    assert (w.started_at, w.heartbeat_at, w.expires_at) == (now - 100, now, now + 30)
    await presence.leave()
    assert await engine.workers_async(include_dead=True) == []


async def test_bad_workers_argument_is_refused(engine: plait.Engine) -> None:
    with pytest.raises(plait.InputError) as exc:
        await engine.workers_async(include_dead="yes")  # type: ignore[arg-type]  # on purpose
    assert str(exc.value) == "include_dead must be True or False, got 'yes'"


# -- topology -----------------------------------------------------------------------------------


async def test_topology_lists_per_step_the_live_workers_that_can_run_it(
    engine: plait.Engine,
) -> None:
    wf, other = mixed(), plait.Workflow("other")
    other.step(name="x")(lambda: None)
    await engine.register_async(wf)
    now = time.time()
    await register(engine, info("gpu-box", wf, labels=("gpu",), now=now))
    await register(engine, info("plain-box", wf, queues=("default",), now=now))
    await register(engine, info("mailer", wf, queues=("emails",), now=now))
    await register(engine, info("elsewhere", other, labels=("gpu",), now=now))
    await register(engine, info("dead-gpu", wf, labels=("gpu",), now=now - 100))
    for t in (await engine.topology_async(wf), await engine.topology_async("mixed")):
        assert (t.workflow, t.version, t.fingerprint) == ("mixed", wf.version, wf.fingerprint)
        assert [w.id for w in t.workers] == ["gpu-box", "mailer", "plain-box"]
        assert {name: s.workers for name, s in t.steps.items()} == {
            "plain": ("gpu-box", "plain-box"),
            "mail": ("gpu-box", "mailer"),
            "train": ("gpu-box",),
            "evaluate": ("gpu-box",),
        }
        assert [(s.queue, s.target, s.blocker) for s in t.steps.values()] == [
            ("default", None, None),
            ("emails", None, None),
            ("default", "gpu", None),
            ("default", "=train", None),
        ]
    assert (await engine.topology_async("mixed")).as_dict()["steps"][2] == {
        "step": "train", "queue": "default", "target": "gpu", "workers": ["gpu-box"],
        "blocker": None,
    }  # fmt: skip


async def test_topology_says_why_no_live_worker_can_run_a_step(engine: plait.Engine) -> None:
    wf = mixed()
    await engine.register_async(wf)
    t = await engine.topology_async(wf)
    nobody = (
        f"no live worker serves this fingerprint (mixed v{wf.version}, {wf.fingerprint}): "
        "start a worker with this version of the workflow"
    )
    assert t.workers == ()
    assert {s.blocker for s in t.steps.values()} == {nobody}
    await register(engine, info("plain-box", wf, queues=("default",)))
    t = await engine.topology_async(wf)
    assert t.steps["plain"].workers == ("plain-box",)
    assert t.steps["mail"].blocker == (
        "no live worker serves this queue ('emails'): 1 live worker serves the fingerprint, "
        "with --queues that leave it out"
    )
    assert t.steps["train"].blocker == (
        "no live worker serves this target: it needs a worker with label 'gpu'; "
        "1 live worker serves the fingerprint and queue"
    )
    assert t.steps["evaluate"].blocker == (
        "no live worker serves this target: it needs a worker that can run step 'train' too; "
        "1 live worker serves the fingerprint and queue"
    )


async def test_topology_of_an_unknown_workflow_is_refused(engine: plait.Engine) -> None:
    with pytest.raises(plait.WorkflowNotFound) as exc:
        await engine.topology_async("ghost")
    assert str(exc.value) == (
        f"topology: no workflow 'ghost' is registered in {engine.url}; see plait workflows"
    )
    await engine.register_async(mixed())
    with pytest.raises(plait.WorkflowNotFound) as exc:
        await engine.topology_async("mixed", fingerprint="0000")
    assert "no workflow 'mixed' with fingerprint '0000' is registered" in str(exc.value)


# -- inspect ------------------------------------------------------------------------------------


async def test_inspect_says_why_no_live_worker_can_take_a_ready_step(engine: plait.Engine) -> None:
    wf = mixed()
    await engine.start_async(wf, run_id="r")
    ready = ("plain", "mail", "train")

    async def blockers() -> dict[str, list[str]]:
        seen = await engine.inspect_async("r")
        return {name: seen.blockers[name] for name in ready}

    nobody = [
        f"no live worker serves this fingerprint (mixed v{wf.version}, {wf.fingerprint}): "
        "start a worker with this version of the workflow"
    ]
    assert await blockers() == dict.fromkeys(ready, nobody)
    # a worker of another version of the workflow serves nothing of this run
    older = plait.Workflow("mixed", version="0")
    older.step(name="plain")(lambda: None)
    await register(engine, info("old", older))
    assert await blockers() == dict.fromkeys(ready, nobody)
    await register(engine, info("plain-box", wf, queues=("default",)))
    assert await blockers() == {
        "plain": ["no worker has claimed it yet (is a worker serving this workflow version?)"],
        "mail": [
            "no live worker serves this queue ('emails'): 1 live worker serves the "
            "fingerprint, with --queues that leave it out"
        ],
        "train": [
            "no live worker serves this target: it needs a worker with label 'gpu'; 1 live "
            "worker serves the fingerprint and queue"
        ],
    }
    await register(engine, info("gpu-box", wf, labels=("gpu",)))
    found = await blockers()
    assert found["mail"] == [
        "no worker has claimed it yet (is a worker serving this workflow version?)"
    ]
    assert found["train"] == ["needs a worker with label 'gpu': waiting for it to claim the step"]
    # the gpu worker dies: its registration expires, and the step is blocked again
    await register(engine, info("gpu-box", wf, labels=("gpu",), now=time.time() - 100))
    assert (await blockers())["train"][0].startswith("no live worker serves this target")


async def test_inspect_names_the_worker_a_colocated_step_waits_for(engine: plait.Engine) -> None:
    wf = mixed()
    await engine.start_async(wf, run_id="r")
    await register(engine, info("gpu-box", wf, labels=("gpu",)))
    await register(engine, info("gpu-2", wf, labels=("gpu",)))
    now = time.time()
    claims = await engine.store.claim(
        worker_id="gpu-box", fingerprints=[wf.fingerprint], limit=10, lease=30.0, now=now,
        labels=["gpu"],
    )  # fmt: skip
    from plait.core.rows import Outcome

    [train] = [c for c in claims if c.step == "train"]
    await engine.store.complete([Outcome("r", "train", train.token, output=b"3")], now)
    seen = await engine.inspect_async("r")
    assert seen.blockers["evaluate"] == [
        "needs the worker that ran step 'train' (gpu-box): waiting for it to claim the step"
    ]
    await register(engine, info("gpu-box", wf, labels=("gpu",), now=now - 100))  # it died
    seen = await engine.inspect_async("r")
    assert seen.blockers["evaluate"] == [
        "no live worker serves this target: it needs the worker that ran step 'train' "
        "(gpu-box); 1 live worker serves the fingerprint and queue"
    ]


# -- reserved collections (issue 5) -------------------------------------------------------------


async def test_reserved_collections_are_refused(engine: plait.Engine) -> None:
    for name in ("plait.schedules", "plait.leases", "plait.workers", "plait.mine", "Plait.X"):
        with pytest.raises(plait.InputError) as exc:
            engine.records(name)
        assert str(exc.value) == (
            f"collection name {name!r} is reserved: collections named 'plait.…' hold plait's "
            "own state (schedules, the scheduler's lease, the worker registry, workflow-state "
            "documents: engine.states); choose another name"
        )
    # plait's own documents are untouched, and users may still use names that merely start so
    await register(engine, info("w", mixed()))
    assert len(await engine.store.list_records(WORKERS, "", "", 10)) == 1
    await engine.records("plaits").put_async("k", 1)
    assert await engine.records("plaits").get_async("k") == (1, 1)


async def test_a_step_cannot_record_into_a_reserved_collection(engine: plait.Engine) -> None:
    wf = plait.Workflow("sneaky")

    @wf.step
    def write(ctx: plait.StepContext) -> None:
        ctx.record("plait.schedules", "nightly", {"cron": "* * * * *"})

    run = await engine.start_async(wf, run_id="r")
    await engine.run_worker_async(until=run, timeout=DEADLINE)
    with pytest.raises(plait.RunFailed) as exc:
        await run.result_async(timeout=5)
    error = exc.value.failures["write"]
    assert error.code == "InputError"
    assert "collection name 'plait.schedules' is reserved" in error.message
    assert await engine.schedules_async() == []


# -- a watcher in the worker's process ------------------------------------------------------------


async def test_a_watcher_in_the_same_process_sees_a_step_start_at_once(store_url: str) -> None:
    """Without a wake-up at the claim, a watcher that has backed off (polls every 2.56 s by
    now; its poll_interval allows 60 s) would see step_started only after the step ended (on
    PostgreSQL the store's push of the claim's events wakes it as well)."""
    async with plait.Engine(store_url, poll_interval=60.0, sweep_interval=60.0) as engine:
        started = asyncio.Event()
        wf = plait.Workflow("slow")

        @wf.step
        async def work() -> bool:
            try:
                await asyncio.wait_for(started.wait(), 1.0)
            except TimeoutError:
                return False
            return True

        run = await engine.start_async(wf, run_id="r")
        reads = 0
        get_events = engine.store.get_events

        async def counted(*args: Any) -> Any:
            nonlocal reads
            reads += 1
            return await get_events(*args)

        engine.store.get_events = counted  # type: ignore[method-assign,assignment]  # counts the polls

        async def watch() -> list[str]:
            kinds = []
            async for event in engine.watch_async("r"):
                kinds.append(event.type)
                if event.type == "step_started":
                    started.set()
            return kinds

        watcher = asyncio.create_task(watch())

        async def polls() -> int:
            return reads

        # polling, the watcher backs off to a pause of 2.56 s after 9 reads; with push (the
        # PostgreSQL store) it waits for a wake-up after its first
        backed_off = 1 if "push_events" in engine.store.capabilities else 9
        await wait_until(polls, lambda n: n >= backed_off, "the watcher waits")
        await engine.run_worker_async(until=run, timeout=DEADLINE)
        assert await run.result_async(timeout=5) == {"work": True}
        kinds = await asyncio.wait_for(watcher, DEADLINE)
        assert kinds.index("step_started") < kinds.index("step_completed")


# -- the scheduler's pass, on the registry's timer ----------------------------------------------


async def test_the_elected_scheduler_renews_its_lease_without_reading_it(
    engine: plait.Engine,
) -> None:
    from plait.engine.schedules import Scheduler

    wf = mixed()
    s = await engine.schedule_async("yearly", wf, cron="0 3 1 1 *")
    a, b = Scheduler(engine._rt, "a", ttl=10.0), Scheduler(engine._rt, "b", ttl=10.0)
    reads = []
    get_record = engine.store.get_record

    async def counted(*args: Any) -> Any:
        reads.append(args)
        return await get_record(*args)

    engine.store.get_record = counted  # type: ignore[method-assign,assignment]  # counts the lease reads
    now = s.next_at - 3600
    await a.beat(now)
    assert a.elected and len(reads) == 1  # taking the lease reads it
    await a.beat(now + 3)
    await a.beat(now + 6)
    assert a.elected and len(reads) == 1  # renewing it does not
    # a stalls past its lease; b takes over; a's renewal then fails, and it reads who holds it
    await b.beat(now + 20)
    assert b.elected
    await a.beat(now + 21)
    assert not a.elected
    await b.beat(now + 23)
    assert b.elected
