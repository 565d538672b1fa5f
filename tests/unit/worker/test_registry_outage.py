"""The worker's registry pass (worker/registry.keep_registered) during a store outage: one
warning line per failed pass, no traceback (the claim loop already says the store is away, with
"failed, will retry" and then "store reachable again", which the fault tests wait for), and
the pass is tried again until the store answers. Anything else that goes wrong keeps its
traceback: that is a bug to report."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

import plait
from plait.stores import Store
from plait.worker.registry import keep_registered, registration

TTL = 0.06  # a pass every 20 ms


class FlakyStore:
    """Fails `put_record` with `error` the first `failures` times, then records the beats."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures = error, failures
        self.beats = 0
        self.recovered = asyncio.Event()

    async def put_record(self, row: Any, expected: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error
        self.beats += 1
        self.recovered.set()

    async def list_records(self, *args: Any) -> list[Any]:
        return []

    async def delete_record(self, *args: Any) -> tuple[bool, None]:
        return True, None


async def registered_through(store: FlakyStore) -> None:
    stop = asyncio.Event()
    info = registration("w1", [], labels=(), queues=None, concurrency=1, ttl=TTL, now=0.0)
    task = asyncio.create_task(keep_registered(cast(Store, store), info, TTL, stop, None))
    await asyncio.wait_for(store.recovered.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_an_outage_is_one_line_per_pass(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore(plait.StoreError("store away (workers retry)"), failures=2)
    with caplog.at_level(logging.WARNING, logger="plait.worker.registry"):
        await registered_through(store)
    failed = [r for r in caplog.records if "registry pass failed" in r.getMessage()]
    assert [r.getMessage() for r in failed] == [
        "worker w1: registry pass failed (next pass soon): store away (workers retry)"
    ] * 2
    assert all(r.exc_info is None for r in failed)
    assert store.beats >= 1


async def test_a_bug_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore(KeyError("oops"), failures=1)
    with caplog.at_level(logging.WARNING, logger="plait.worker.registry"):
        await registered_through(store)
    (failed,) = [r for r in caplog.records if "registry pass failed" in r.getMessage()]
    assert failed.getMessage() == "worker w1: registry pass failed"
    assert failed.exc_info is not None and failed.exc_info[0] is KeyError
