"""`Engine.doctor` on every store: the store opens; what its settings promise about an
acknowledged commit, read from the store itself (the test servers are set up durable: SQLite
FULL, PostgreSQL's defaults, nats-server with `sync_interval: always`; memory is not); and
whether unfinished runs have a live worker. The verdicts on other settings:
tests/unit/core/test_durability.py; the CLI: tests/unit/cli/test_doctor.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import plait
from plait.testing.contract.conftest import Backend
from plait.testing.contract.test_registry import wait_until

# What each store's test setup reads as: (status, the line, the settings)
EXPECTED = {
    "memory": ("warn", "in this process's memory: nothing survives the process", {}),
    "sqlite": (
        "ok",
        "every commit is on disk before it returns",
        {"journal_mode": "wal", "synchronous": "full"},
    ),
    "postgres": (
        "ok",
        "every commit is flushed to disk before it returns",
        {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"},
    ),
    "nats": (
        "ok",
        "the server fsyncs every write before it acknowledges it",
        {"sync_interval": "always", "replicas": "1"},
    ),
}


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=3.0) as eng:
        yield eng


def by_name(checks: list[plait.DoctorCheck]) -> dict[str, plait.DoctorCheck]:
    assert [c.name for c in checks] == ["store", "durability", "workers"]
    return {c.name: c for c in checks}


async def test_the_store_opens_and_says_how_durable_it_is(
    engine: plait.Engine, backend: Backend
) -> None:
    checks = by_name(await engine.doctor_async())
    assert checks["store"].status == "ok"
    assert checks["store"].says.endswith(": open, schema current")
    durability = checks["durability"]
    # plait's own stores say what their test setup is; a store from outside says something
    status, says, settings = EXPECTED.get(
        backend.name, (durability.status, durability.says, durability.settings)
    )
    assert status in ("ok", "warn", "fail") and says
    assert (durability.status, durability.says) == (status, says)
    assert durability.settings == settings
    assert durability.as_dict() == {
        "name": "durability",
        "status": status,
        "says": says,
        "settings": settings,
    }
    assert (checks["workers"].status, checks["workers"].says) == (
        "ok",
        "no live worker; 0 unfinished runs",
    )


async def test_unfinished_runs_without_a_worker_are_a_warning(engine: plait.Engine) -> None:
    wf = plait.Workflow("doctored")
    release = asyncio.Event()

    @wf.step
    async def wait() -> int:
        await release.wait()
        return 1

    runs = [await engine.start_async(wf, run_id=f"d{i}") for i in range(2)]
    workers = by_name(await engine.doctor_async())["workers"]
    assert (workers.status, workers.says) == (
        "warn",
        "no live worker, and 2 unfinished runs waiting for one (start one: plait worker FILE.py)",
    )

    worker = asyncio.create_task(engine.run_worker_async(workflows=[wf], until=runs))
    try:
        found = await wait_until(
            engine.doctor_async,
            lambda checks: by_name(checks)["workers"].status == "ok",
            "the worker to register",
        )
        assert by_name(found)["workers"].says == "1 live worker; 2 unfinished runs"
    finally:
        release.set()
        await asyncio.wait_for(worker, 20)
    workers = by_name(await engine.doctor_async())["workers"]
    assert workers.says == "no live worker; 0 unfinished runs"
