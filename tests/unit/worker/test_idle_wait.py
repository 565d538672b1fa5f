"""The waiting policy of a worker that found nothing to claim (`plait.worker.idle_wait.IdleWait`), on
a fake engine and store: when a look at a store that counts changes replaces a claim, and when
the wait ends anyway (a wake-up, a due timer, the safety sweep, an unreadable counter)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from plait._clock import REAL, Clock
from plait._errors import StoreError
from plait._portal import Broadcast
from plait._runtime import Runtime
from plait.worker.idle_wait import IdleWait

T = TypeVar("T")


class CountingStore:
    """A store with a change counter the test moves; it counts the reads of it."""

    capabilities = frozenset({"change_counter"})

    def __init__(self) -> None:
        self.counter = 7
        self.reads = 0
        self.failing = False
        self.on_read: Callable[[int], None] = lambda reads: None  # what happens elsewhere

    async def change_counter(self) -> int:
        self.reads += 1
        self.on_read(self.reads)
        if self.failing:
            raise StoreError("SQLite store x.db: reading the change counter failed: disk I/O error")
        return self.counter


class PlainStore:
    capabilities: frozenset[str] = frozenset()


@dataclass
class FakeRuntime:
    store: Any
    idle_interval: float = 0.01
    sweep_interval: float = 60.0
    push_live: bool = False
    work_ready: Broadcast = field(default_factory=Broadcast)
    clock: Clock = REAL


def policy(engine: FakeRuntime) -> IdleWait:
    return IdleWait(cast(Runtime, engine))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def wait(idle: IdleWait, engine: FakeRuntime, **kwargs: Any) -> bool:
    defaults: dict[str, Any] = {"limited": True, "next_at": None}
    wakers = [(engine.work_ready, engine.work_ready.generation)]
    return await idle.wait(wakers, **(defaults | kwargs))


def test_the_first_look_claims_then_only_a_change_ends_the_wait() -> None:
    async def scenario() -> None:
        store = CountingStore()
        engine = FakeRuntime(store)
        idle = policy(engine)
        assert await wait(idle, engine) is False  # no counter read before: claim
        assert store.reads == 1

        def commit_elsewhere_at_the_fifth_read(reads: int) -> None:
            if reads == 5:
                store.counter += 1

        store.reads = 0
        store.on_read = commit_elsewhere_at_the_fifth_read
        assert await asyncio.wait_for(wait(idle, engine), 5) is False
        assert store.reads == 5  # four looks that saw no change (no claim), one that did
        # the next wait starts from the counter read before that claim
        store.reads = 0
        await asyncio.wait_for(wait(idle, engine), 5)
        assert store.reads == 5

    run(scenario())


def test_a_wake_up_ends_the_wait_without_a_look() -> None:
    async def scenario() -> None:
        store = CountingStore()
        engine = FakeRuntime(store)
        idle = policy(engine)
        await wait(idle, engine)  # the first look: counter read
        store.reads = 0

        def woken_at_the_third_read(reads: int) -> None:
            if reads == 3:
                engine.work_ready.fire()

        store.on_read = woken_at_the_third_read
        assert await asyncio.wait_for(wait(idle, engine), 5) is True
        assert store.reads == 3  # woken while waiting after its third look: no fourth

    run(scenario())


def test_a_due_delayed_step_or_token_ends_the_wait_without_a_look() -> None:
    async def scenario() -> None:
        store = CountingStore()
        engine = FakeRuntime(store, idle_interval=1.0)
        idle = policy(engine)
        await wait(idle, engine)
        reads = store.reads
        began = time.monotonic()
        assert await wait(idle, engine, next_at=time.time() + 0.05) is False
        assert 0.04 < time.monotonic() - began < 0.9  # at the due time, before the next look
        assert store.reads == reads

    run(scenario())


def test_the_sweep_claims_although_nothing_changed() -> None:
    async def scenario() -> None:
        store = CountingStore()
        engine = FakeRuntime(store, sweep_interval=0.3)
        idle = policy(engine)
        await wait(idle, engine)
        began = time.monotonic()
        assert await asyncio.wait_for(wait(idle, engine), 5) is False
        assert time.monotonic() - began >= 0.3 - 0.02
        assert store.reads > 5  # looked every 0.01 s meanwhile, claiming at none

    run(scenario())


def test_an_unreadable_counter_ends_the_wait_so_the_claim_meets_the_outage() -> None:
    async def scenario() -> None:
        store = CountingStore()
        engine = FakeRuntime(store)
        idle = policy(engine)
        await wait(idle, engine)
        store.failing = True
        assert await asyncio.wait_for(wait(idle, engine), 5) is False
        assert store.reads == 2

    run(scenario())


def test_a_store_that_does_not_count_changes_claims_at_every_look() -> None:
    async def scenario() -> None:
        engine = FakeRuntime(PlainStore(), idle_interval=0.5)
        idle = policy(engine)
        began = time.monotonic()
        assert await wait(idle, engine, limited=False) is False  # idle: the first look is quick
        assert time.monotonic() - began < 0.4  # (2 ms), not the interval
        began = time.monotonic()
        assert await wait(idle, engine) is False  # held: one poll_interval
        assert time.monotonic() - began >= 0.5 - 0.01

    run(scenario())


def test_while_pushes_flow_a_look_is_a_claim_at_the_sweep_interval() -> None:
    async def scenario() -> None:
        store = CountingStore()
        engine = FakeRuntime(store, idle_interval=0.05, push_live=True)
        idle = policy(engine)
        assert await wait(idle, engine, limited=False) is False
        assert store.reads == 0  # the store pushes: no counter needed

    run(scenario())
