"""Workers waiting on work done elsewhere do not poll with write transactions (`_idle_wait.py`).

A durable store either pushes other processes' commits (PostgreSQL: capability "push") or
counts them (SQLite: capability "change_counter", `PRAGMA data_version`), so that a worker held
by limits, or idle, makes a claim (a write) only when something may have changed. "Elsewhere" is
a second store object on the same database: its own connection, as another process would have,
and, being another Engine, none of the in-process wake-ups.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import plait
from plait.core.rows import Outcome
from plait.stores import Store, open_store
from plait.stores.protocol import CountsChanges
from plait.testing.contract.conftest import Backend

QUIET = 1.5  # seconds a waiting worker is watched while nothing changes
POLL = 0.05  # the waiting worker's poll_interval: 30 looks in QUIET


def solo() -> plait.Workflow:
    """Two steps in the queue `solo`: with a concurrency of 1, one holds the other back."""
    wf = plait.Workflow("solo")

    @wf.step(queue="solo")
    def first() -> str:
        return "first"

    @wf.step(queue="solo")
    def second() -> str:
        return "second"

    return wf


async def test_a_store_claims_change_counter_if_and_only_if_it_counts(store: Store) -> None:
    counts = "change_counter" in store.capabilities
    assert counts == isinstance(store, CountsChanges)


async def test_every_durable_store_tells_waiting_workers_of_other_processes_commits(
    durable_backend: Backend, tmp_path: Path
) -> None:
    capabilities = open_store(durable_backend.url(tmp_path)).capabilities
    assert {"push", "change_counter"} & capabilities, capabilities


async def test_the_change_counter_moves_only_when_another_connection_commits(
    durable_backend: Backend, tmp_path: Path
) -> None:
    url = durable_backend.url(tmp_path)
    if "change_counter" not in open_store(url).capabilities:
        assert "push" in open_store(url).capabilities  # others' commits are pushed instead
        return
    wf = solo()
    async with plait.Engine(url) as engine_here, plait.Engine(url) as engine_there:
        here, there = engine_here.store, engine_there.store
        assert isinstance(here, CountsChanges) and isinstance(there, CountsChanges)
        await engine_there.register_async(wf)
        await engine_there.configure_queue_async("solo", concurrency=1)
        await engine_there.start_async(wf, run_id="r")
        start = await here.change_counter()
        assert await here.change_counter() == start  # reading it changes nothing
        await there.get_run("r")
        await there.list_queues()
        assert await here.change_counter() == start  # nor do others' reads
        taken = await here.claim(
            worker_id="here", fingerprints=[wf.fingerprint], limit=1, lease=30.0, now=time.time()
        )
        assert len(taken) == 1
        assert await here.change_counter() == start  # nor its own commits: nobody to tell
        # a claim held back by the full queue takes nothing and writes nothing: held workers
        # do not wake each other up
        mine = await there.change_counter()
        held = await there.claim(
            worker_id="there", fingerprints=[wf.fingerprint], limit=1, lease=30.0, now=time.time()
        )
        assert list(held) == [] and held.limited
        assert await here.change_counter() == start
        assert await there.change_counter() == mine
        # a commit of another connection moves it, once
        await there.configure_queue("solo", 2, None, time.time())
        after = await here.change_counter()
        assert after != start
        assert await here.change_counter() == after  # once per commit seen, not per read
        outcome = Outcome(taken[0].run_id, taken[0].step, taken[0].token, output=b"1")
        assert (await here.complete([outcome], time.time())).slot_freed
        assert await there.change_counter() != mine  # and for the other connection likewise


@asynccontextmanager
async def waiting_worker(
    url: str, wf: plait.Workflow, until: str | None
) -> AsyncIterator[tuple[list[float], Callable[[], Any]]]:
    """A worker on its own Engine (so its own store object, and its own in-process wake-ups),
    looking every POLL seconds, with a safety sweep far away; the times of its claims."""
    engine = plait.Engine(url, poll_interval=POLL, sweep_interval=60.0)
    await engine.register_async(wf)
    await engine._rt.ready()
    times: list[float] = []
    original = engine.store.claim

    async def claim(**kwargs: Any) -> Any:
        times.append(time.time())
        return await original(**kwargs)

    engine.store.claim = claim  # type: ignore[method-assign]  # instrumenting this one store
    if "push" in engine.store.capabilities:
        deadline = time.monotonic() + 10
        while not engine._rt.push_live:  # so that its sweep is the far one
            assert time.monotonic() < deadline, "the store's notifications did not come up"
            await asyncio.sleep(0.01)
    task = asyncio.ensure_future(engine.run_worker_async(concurrency=2, until=until, timeout=60))
    try:
        yield times, lambda: task
    finally:
        if not task.done():
            engine.stop_workers()
        await asyncio.gather(task, return_exceptions=True)
        await engine.close_async()


async def wait_until(what: str, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        await asyncio.sleep(0.01)


async def test_a_held_worker_claims_only_once_another_connection_frees_the_slot(
    durable_backend: Backend, tmp_path: Path
) -> None:
    url = durable_backend.url(tmp_path)
    wf = solo()
    async with plait.Engine(url) as other:
        await other.register_async(wf)
        await other.configure_queue_async("solo", concurrency=1)
        run = await other.start_async(wf, run_id="held")
        [taken] = await other.store.claim(
            worker_id="other", fingerprints=[wf.fingerprint], limit=1, lease=60, now=time.time()
        )  # the queue is full: the waiting worker finds the other step held
        async with waiting_worker(url, wf, run.id) as (times, task):
            await wait_until("the worker found the step held", lambda: bool(times))
            first_look = times[0]
            await asyncio.sleep(QUIET)  # nothing changes meanwhile: watch it wait
            quiet = [t for t in times if t > first_look + 0.3]
            outcome = Outcome(taken.run_id, taken.step, taken.token, output=b"1")
            freed = await other.store.complete([outcome], time.time())
            freed_at = time.time()
            assert freed.slot_freed
            await asyncio.wait_for(task(), 30)
        assert len(quiet) <= 2, quiet  # a look every 0.05 s that claimed would make about 24
        started = max(s.started_at or 0 for s in await other.store.get_steps(run.id))
        assert started - freed_at < 5.0  # seen at its next look, not at the sweep (60 s)


async def test_an_idle_worker_claims_only_once_another_connection_adds_work(
    durable_backend: Backend, tmp_path: Path
) -> None:
    url = durable_backend.url(tmp_path)
    wf = solo()
    async with plait.Engine(url) as other:
        await other.register_async(wf)
        async with waiting_worker(url, wf, None) as (times, _):
            await wait_until("the worker looked for work", lambda: bool(times))
            settled = time.time() + 0.5  # its back-off's first looks, then one look per POLL
            await asyncio.sleep(QUIET)
            quiet = [t for t in times if t > settled]
            started_at = time.time()
            run = await other.start_async(wf, run_id="later")
            assert await other.wait_async(run.id, timeout=30) == {
                "first": "first",
                "second": "second",
            }
        assert len(quiet) <= 2, quiet  # a look every 0.05 s that claimed would make about 20
        steps = await other.store.get_steps("later")
        assert all(s.status is plait.StepStatus.DONE for s in steps)
        assert max(s.started_at or 0 for s in steps) - started_at < 5.0
