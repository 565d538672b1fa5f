"""`run_worker(until=...)` returns once the awaited runs have ended, however they end: by this
worker's commits or by another commit of the same process (a cancel), whatever the worker was
doing then (its slots all busy, for one)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import plait

SLOW = 60.0  # the safety sweep and the poll: a worker that relied on them would time out


async def test_a_worker_with_its_slots_full_notices_an_awaited_run_cancelled_meanwhile() -> None:
    engine = plait.Engine("memory://", poll_interval=SLOW, sweep_interval=SLOW)
    entered, gate = threading.Event(), threading.Event()
    wf = plait.Workflow("hold")

    @wf.step()
    def hold() -> int:
        entered.set()
        gate.wait(30)
        return 1

    gated = plait.Workflow("gated")
    gated.add_step("approve_me", lambda: 1, approval=True)

    await engine.register_async(wf)
    await engine.register_async(gated)
    await engine.start_async(gated, run_id="awaited")  # waits for an approval: nothing to claim
    # the worker reads the awaited run when it starts, then in its first idle look: from then
    # on its next look is SLOW seconds away, unless a run ended by another commit wakes it
    store = await engine._rt.ready()
    reads, looked = 0, asyncio.Event()
    read_runs = store.get_runs

    async def counting(run_ids: Any) -> Any:
        nonlocal reads
        reads += 1
        if reads == 2:
            looked.set()
        return await read_runs(run_ids)

    store.get_runs = counting  # type: ignore[method-assign]
    worker = asyncio.create_task(
        engine.run_worker_async(until=["awaited"], concurrency=1, timeout=30)
    )
    await asyncio.wait_for(looked.wait(), 10)
    await engine.start_async(wf, run_id="other")
    assert await asyncio.to_thread(entered.wait, 10)  # other's step holds the only slot
    await engine.cancel_async("awaited")  # ended by another commit while the slot is held
    gate.set()  # the slot frees; nothing is left to claim
    await asyncio.wait_for(worker, 10)
    assert (await engine.get_run_async("awaited")).status is plait.RunStatus.CANCELLED
    assert (await engine.get_run_async("other")).status is plait.RunStatus.COMPLETED
    await engine.close_async()
