"""A 50 MB payload on every store: it works end to end, and plait does not hold it in memory
more than twice."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest

import plait
from plait.core.rows import Excerpt, Outcome
from plait.stores import Store
from plait.testing.contract.helpers import NOW, chain, claim, start

SIZE = 50_000_000  # bytes of the payload's JSON


@pytest.fixture
def tracing() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def peak_since(base: int) -> float:
    """The highest traced memory since the last reset, above `base`, in payloads."""
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    return (peak - base) / SIZE


async def test_a_50_mb_payload_is_held_at_most_twice(store: Store, tracing: None) -> None:
    """What "twice" covers: every Python allocation made (by plait and the database driver's
    Python side) from the moment a worker hands the store the JSON bytes of a step's result
    (`complete`) until the next step has its input's JSON bytes (`step_inputs`), and while
    the views read the run back (`get_steps`, `get_run`). The payload given to `complete` was
    allocated before and is not counted; neither are the user's value, its JSON encoding and
    decoding (orjson reserves more than it keeps, which tracemalloc counts), nor the C buffers
    of SQLite and libpq. A sink's output is copied once more, into the run's output."""
    plan = chain("big", 2)  # s0 → s1; s1 is the sink
    await store.save_workflow(plan)
    await start(store, plan, "big")
    [first] = await claim(store, [plan])
    payload = b'"' + b"x" * (SIZE - 2) + b'"'
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()

    await store.complete([Outcome("big", "s0", first.token, output=payload)], NOW + 1)
    assert peak_since(base) < 1.1  # the blob's data, written once (PostgreSQL's driver: a copy)

    [second] = await claim(store, [plan], now=NOW + 2)
    inputs = await store.step_inputs({"big": ["s0"]})
    assert inputs["big"].dependencies["s0"][1] == payload
    assert peak_since(base) < 1.1  # the input handed to s1
    del inputs

    await store.complete([Outcome("big", "s1", second.token, output=payload)], NOW + 3)
    assert peak_since(base) < 2.1  # and the run's output, {"s1": …}

    steps = await store.get_steps("big")
    run = await store.get_run("big")
    assert peak_since(base) < 2.1  # the steps' outputs (one blob, read once) and the run's
    assert [s.output for s in steps] == [payload, payload]
    assert run is not None and run.output is not None
    assert run.output[:6] == b'{"s1":' and run.output[6:-1] == payload
    del steps, run

    stats = await store.blob_stats()
    assert (stats.blobs, stats.bytes, stats.references) == (2, 2 * SIZE + 7, 3)

    # an excerpt reads the start of each payload, never the rest (`plait runs show`)
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    cut = await store.get_run("big", excerpt=100)
    [cut0, cut1] = await store.get_steps("big", excerpt=100)
    [listed] = await store.list_runs(workflow=None, status=None, limit=5, before=None, excerpt=0)
    assert peak_since(base) < 0.01
    assert cut is not None and isinstance(cut.output, Excerpt)
    assert (cut.output, cut.output.size) == (b'{"s1":' + payload[:94], SIZE + 7)
    assert cut.input == b"{}" and type(cut.input) is bytes  # short enough: whole, as it is
    for step in (cut0, cut1):
        assert isinstance(step.output, Excerpt)
        assert (step.output, step.output.size) == (payload[:100], SIZE)
    assert isinstance(listed.output, Excerpt) and (listed.output, listed.output.size) == (
        b"",
        SIZE + 7,
    )
    assert isinstance(listed.input, Excerpt) and (listed.input, listed.input.size) == (b"", 2)


def test_a_50_mb_output_works_end_to_end(store_url: str) -> None:
    wf = plait.Workflow("big_output")

    @wf.step
    def make() -> str:
        return "x" * SIZE

    @wf.step
    def measure(make: str) -> dict[str, object]:
        return {"length": len(make), "tail": make[-3:]}

    with plait.Engine(store_url, lease=30.0) as engine:
        handle = engine.start(wf, {})
        engine.run_worker(until=handle, timeout=60)
        assert handle.result() == {"measure": {"length": SIZE, "tail": "xxx"}}
        # make's output, also held by measure's recorded input {"make": …}
        assert engine.blob_stats() == plait.BlobStats(1, SIZE + 2, 2)
        assert len(engine.steps(handle.id)[0].output) == SIZE
        seen = engine.inspect(handle.id, excerpt=20)  # what `plait runs show` reads
        whole = b'{"measure":{"length":%d,"tail":"xxx"}}' % SIZE
        assert seen.run.input == {}  # short enough: whole, decoded
        assert isinstance(seen.run.output, Excerpt)
        assert (seen.run.output, seen.run.output.size) == (whole[:20], len(whole))
        cut = seen.steps[0].output
        assert isinstance(cut, Excerpt) and (cut, cut.size) == (b'"' + b"x" * 19, SIZE + 2)
        assert engine.steps(handle.id, excerpt=0)[0].output == b""
        engine.delete_run(handle.id)
        assert engine.gc(grace=0) == 1
