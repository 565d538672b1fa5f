"""Flow control where only PostgreSQL can go wrong: a claim passes over runs that another
transaction holds (SKIP LOCKED), and must not spend their tokens.

SQLite serialises writers and the memory store has one lock, so neither ever passes a run over;
the shared behaviour is in test_queues.py and test_flow_wakes.py, run on every store.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import psycopg
import pytest
from psycopg import sql

import plait
from plait.core.queues import QueueConfig
from plait.core.rows import WorkflowPlan
from plait.stores import open_store
from plait.stores.postgres import PostgresStore
from plait.testing.contract.helpers import plan_of, start
from tests import postgres_server

PREFIX = "plait_pf_"
BURST = 20
SLOW = plait.Rate(0.001, per=1.0, burst=BURST)  # refills a token in 1,000 s: none in a test


@pytest.fixture
def url() -> Iterator[str]:
    base = postgres_server.require_server_url()
    name = PREFIX + f"{time.time_ns():x}"
    yield f"{base}?schema={name}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[PostgresStore]:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def tokens(store: PostgresStore, now: float) -> float:
    [q] = [q for q in await store.list_queues() if q.name == "rated"]
    bucket = QueueConfig.tokens_at(q, now)
    assert bucket is not None
    return bucket.tokens


def rated_plan(width: int) -> WorkflowPlan:
    return plan_of("rated", *[(f"s{i}", [], {"queue": "rated"}) for i in range(width)])


async def lock_run(conn: psycopg.AsyncConnection[tuple[object, ...]], run_id: str) -> None:
    """Begin a transaction that holds the run's row, as a completion of another worker does."""
    await conn.execute("BEGIN")
    await conn.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (run_id,))


async def test_a_run_passed_over_spends_no_token(url: str) -> None:
    async with opened(url) as store:
        plan = rated_plan(1)
        now = time.time()
        await store.configure_queue("rated", None, SLOW, now)
        await start(store, plan, "held", now=now)
        schema = url.rsplit("schema=", 1)[1]
        holder = await psycopg.AsyncConnection.connect(
            url.split("?")[0], autocommit=True, options=f"-c search_path={schema}"
        )
        try:
            await lock_run(holder, "held")  # another transaction holds the run
            passed = await store.claim(
                worker_id="w", fingerprints=[plan.fingerprint], limit=5, lease=30, now=now
            )
            assert list(passed) == []
            assert await tokens(store, now) == pytest.approx(BURST)  # nothing was spent
            await holder.execute("COMMIT")
        finally:
            await holder.close()
        taken = await store.claim(
            worker_id="w", fingerprints=[plan.fingerprint], limit=5, lease=30, now=now
        )
        assert [c.run_id for c in taken] == ["held"]
        assert await tokens(store, now) == pytest.approx(BURST - 1)


async def test_concurrent_claimers_spend_a_token_per_start(url: str) -> None:
    """Claimers race while other transactions hold runs for moments: every token spent is a
    step started, so the bucket's burst is started in full."""
    async with opened(url) as store:
        plan = rated_plan(3)
        now = time.time()
        await store.configure_queue("rated", None, SLOW, now)
        runs = [f"r{i}" for i in range(12)]  # 36 steps for 20 tokens
        for run_id in runs:
            await start(store, plan, run_id, now=now)
        schema = url.rsplit("schema=", 1)[1]
        started: list[str] = []
        done = asyncio.Event()

        async def claimer(worker: str) -> None:
            while not done.is_set():
                claims = await store.claim(
                    worker_id=worker, fingerprints=[plan.fingerprint], limit=2, lease=30,
                    now=time.time(),
                )  # fmt: skip
                started.extend(f"{c.run_id}/{c.step}" for c in claims)
                if not claims and claims.next_token_at is not None:
                    done.set()  # out of tokens

        async def holder() -> None:
            conn = await psycopg.AsyncConnection.connect(
                url.split("?")[0], autocommit=True, options=f"-c search_path={schema}"
            )
            try:
                while not done.is_set():
                    await lock_run(conn, random.choice(runs))
                    await asyncio.sleep(random.uniform(0.001, 0.01))  # the holding transaction
                    await conn.execute("COMMIT")
            finally:
                await conn.close()

        async with asyncio.timeout(60):
            await asyncio.gather(*(claimer(f"w{i}") for i in range(4)), holder(), holder())
        assert len(started) == len(set(started)) == BURST
        assert await tokens(store, time.time()) < 1
