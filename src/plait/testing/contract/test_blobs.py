"""Blobs on every store (`plait.core.blobs`): payloads longer than the store's threshold are kept
once under their SHA-256 with a count of references; reads are transparent; `gc` removes what
nobody refers to. The store methods first, then whole workflows through an Engine."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

import plait
from plait.stores import Store, open_store
from plait.stores.memory import MemoryStore

try:
    from plait.stores.nats import NatsStore
except ImportError:  # no nats-py: the nats backend is not run either

    class NatsStore:  # type: ignore[no-redef]
        pass


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def change_refs(store: Store, deltas: dict[str, int]) -> set[str]:
    """The helper a store's own transactions use to count references (artifacts use it)."""
    if isinstance(store, MemoryStore):
        with store._lock:
            return store.blob_refs(deltas)
    if isinstance(store, NatsStore):
        return await store.blob_refs(deltas)
    programs: Any = store._programs  # type: ignore[attr-defined]  # the SQL stores' programs
    found: set[str] = await store._transact(  # type: ignore[attr-defined]
        "count references", lambda: programs.blob_refs(deltas)
    )
    return found


# -- the store methods ---------------------------------------------------------------------------


async def test_a_put_blob_is_read_back_and_counted_once(store: Store) -> None:
    data = b"x" * 1000
    assert await store.blob_stats() == plait.BlobStats(0, 0, 0)
    await store.put_blob(sha(data), data, time.time())
    await store.put_blob(sha(data), data, time.time())  # idempotent: refs unchanged

    assert await store.get_blob(sha(data)) == data
    assert await store.blob_stats() == plait.BlobStats(blobs=1, bytes=1000, references=0)


async def test_a_missing_blob_is_an_error_naming_its_hash(store: Store) -> None:
    absent = sha(b"never stored")
    with pytest.raises(plait.BlobNotFound) as caught:
        await store.get_blob(absent)
    assert str(caught.value) == (
        f"no blob {absent} in this store: it was never stored, or gc removed it after its last "
        "reference went"
    )
    with pytest.raises(plait.BlobNotFound) as caught:
        await store.get_blob("../../etc/passwd")
    assert str(caught.value) == (
        "'../../etc/passwd' is not a blob hash: a blob is named by its SHA-256 as 64 lower-case "
        "hex digits"
    )


async def test_a_blob_put_under_another_hash_is_refused_and_not_stored(store: Store) -> None:
    with pytest.raises(ValueError, match=r"hashes to .*, not to the hash it was put under"):
        await store.put_blob(sha(b"other"), b"data", time.time())
    assert await store.blob_stats() == plait.BlobStats(0, 0, 0)


async def test_gc_removes_only_unreferenced_blobs_older_than_given(store: Store) -> None:
    old, young, kept = b"old" * 100, b"young" * 100, b"kept" * 100
    await store.put_blob(sha(old), old, 1000.0)
    await store.put_blob(sha(kept), kept, 1000.0)
    await store.put_blob(sha(young), young, 3000.0)
    assert await change_refs(store, {sha(kept): 1}) == {sha(kept)}

    assert await store.gc_blobs(older_than=2000.0) == 1

    with pytest.raises(plait.BlobNotFound):
        await store.get_blob(sha(old))
    assert await store.get_blob(sha(young)) == young
    assert await store.get_blob(sha(kept)) == kept
    assert await store.blob_stats() == plait.BlobStats(2, len(young) + len(kept), 1)


async def test_putting_a_known_blob_again_refreshes_its_age(store: Store) -> None:
    data = b"again" * 100
    await store.put_blob(sha(data), data, 1000.0)
    await store.put_blob(sha(data), data, 3000.0)
    assert await store.gc_blobs(older_than=2000.0) == 0
    assert await store.get_blob(sha(data)) == data


async def test_counting_references_says_which_hashes_exist(store: Store) -> None:
    data = b"counted" * 100
    await store.put_blob(sha(data), data, 1000.0)
    absent = sha(b"absent")
    assert await change_refs(store, {sha(data): 2, absent: 1}) == {sha(data)}
    assert await change_refs(store, {sha(data): -1}) == {sha(data)}
    assert (await store.blob_stats()).references == 1
    assert await store.gc_blobs(older_than=2000.0) == 0  # still referenced
    assert await change_refs(store, {sha(data): -1}) == {sha(data)}
    assert await store.gc_blobs(older_than=2000.0) == 1


@pytest.mark.parametrize("value", ["0", "-5", "lots", ""])
def test_a_bad_threshold_in_the_url_is_a_store_error(store_url: str, value: str) -> None:
    url = f"{store_url}{'&' if '?' in store_url else '?'}blob_threshold={value}"
    with pytest.raises(plait.StoreError) as caught:
        open_store(url)
    assert f"blob_threshold={value!r} is not a number of bytes of at least 1" in str(caught.value)


# -- payloads through an Engine ------------------------------------------------------------------

THRESHOLD = 200  # bytes: the stores under test keep longer payloads as blobs
BIG = "b" * 1000  # its JSON (1002 bytes) is over the threshold
SMALL = "s" * 10


def with_threshold(url: str, threshold: int = THRESHOLD) -> str:
    return f"{url}{'&' if '?' in url else '?'}blob_threshold={threshold}"


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(with_threshold(store_url), lease=5.0) as eng:
        yield eng


def chain() -> plait.Workflow:
    """make(text, copies) → measure(make): a big output read by the next step."""
    wf = plait.Workflow("blobby")

    @wf.step
    def make(text: str, copies: int) -> str:
        return text * copies

    @wf.step
    def measure(make: str) -> dict[str, Any]:
        return {"length": len(make), "head": make[:3]}

    return wf


def first_output(engine: plait.Engine, run_id: str) -> Any:
    return engine.steps(run_id)[0].output


def finish(engine: plait.Engine, *handles: plait.RunHandle) -> None:
    engine.run_worker(until=list(handles), timeout=30)


def test_a_big_output_is_stored_once_and_read_back_everywhere(engine: plait.Engine) -> None:
    wf = chain()
    handle = engine.start(wf, {"text": "b", "copies": 1000})
    finish(engine, handle)

    # the dependency input of `measure`, the views, and the run's result
    assert handle.result() == {"measure": {"length": 1000, "head": "bbb"}}
    assert {s.name: s.output for s in engine.steps(handle.id)} == {
        "make": BIG,
        "measure": {"length": 1000, "head": "bbb"},
    }
    # make's output, and measure's recorded input {"make": …}, which keeps make's blob (the
    # rest of it in its row)
    assert engine.blob_stats() == plait.BlobStats(blobs=1, bytes=1002, references=2)
    assert engine.diff(handle.id, handle.id)["make"] == {"status": "same", "diff": []}
    replayed = engine.replay(handle.id, "measure")
    assert replayed.status == "done" and replayed.diff == []


def test_small_payloads_make_no_blobs(engine: plait.Engine) -> None:
    handle = engine.start(chain(), {"text": "s", "copies": 10})
    finish(engine, handle)
    assert handle.result() == {"measure": {"length": 10, "head": "sss"}}
    assert engine.blob_stats() == plait.BlobStats(0, 0, 0)


def test_a_big_run_input_and_output_are_blobs_too(engine: plait.Engine) -> None:
    wf = plait.Workflow("echo")

    @wf.step
    def echo(text: str) -> str:
        return text

    handle = engine.start(wf, {"text": BIG})
    finish(engine, handle)

    assert engine.get_run(handle.id).input == {"text": BIG}
    assert handle.result() == {"echo": BIG}
    assert engine.get_run(handle.id).output == {"echo": BIG}
    # the input {"text": …}, the step's output "…" and the run output {"echo": …} differ; the
    # step's recorded input {"text": …} is the run input's bytes: it shares that blob
    stats = engine.blob_stats()
    assert (stats.blobs, stats.references) == (3, 4)


def test_identical_outputs_share_one_blob(engine: plait.Engine) -> None:
    wf = chain()
    first = engine.start(wf, {"text": "b", "copies": 1000})
    second = engine.start(wf, {"text": "b", "copies": 1000})
    finish(engine, first, second)

    assert first.result() == second.result() == {"measure": {"length": 1000, "head": "bbb"}}
    # make's outputs, and measure's recorded inputs
    assert engine.blob_stats() == plait.BlobStats(blobs=1, bytes=1002, references=4)


def test_forks_share_blobs_and_deleting_runs_lets_gc_remove_them(engine: plait.Engine) -> None:
    wf = chain()
    parent = engine.start(wf, {"text": "b", "copies": 1000})
    finish(engine, parent)
    fork = engine.fork(parent.id, "measure")  # reuses make's output
    finish(engine, fork)
    assert fork.result() == {"measure": {"length": 1000, "head": "bbb"}}
    # make's output and measure's recorded input (the same blob), in both runs
    assert engine.blob_stats() == plait.BlobStats(blobs=1, bytes=1002, references=4)

    engine.delete_run(parent.id)
    assert engine.blob_stats() == plait.BlobStats(blobs=1, bytes=1002, references=2)
    assert engine.gc(grace=0) == 0  # the fork still refers to it
    assert first_output(engine, fork.id) == BIG

    engine.delete_run(fork.id)
    assert engine.blob_stats() == plait.BlobStats(blobs=1, bytes=1002, references=0)
    assert engine.gc() == 0  # younger than the default grace (an hour)
    assert engine.gc(grace=0) == 1
    assert engine.blob_stats() == plait.BlobStats(0, 0, 0)


def test_gc_refuses_a_bad_grace(engine: plait.Engine) -> None:
    for grace in (-1, "soon", float("nan"), True):
        with pytest.raises(plait.ConfigError) as caught:
            engine.gc(grace=grace)  # type: ignore[arg-type]
        assert str(caught.value) == (f"gc: grace must be a number of seconds >= 0, got {grace!r}")


def test_a_spawned_map_with_big_inputs_and_outputs_is_gathered(engine: plait.Engine) -> None:
    wf = plait.Workflow("fanout")

    @wf.task
    def shout(text: str) -> str:
        return text.upper()

    @wf.step
    def split(ctx: plait.StepContext, n: int) -> list[plait.Handle]:
        return ctx.map(shout, [chr(ord("a") + i) * 1000 for i in range(n)])

    @wf.step
    def lengths(split: list[str]) -> list[int]:
        return [len(s) for s in split]

    handle = engine.start(wf, {"n": 3})
    finish(engine, handle)

    assert handle.result() == {"lengths": [1000, 1000, 1000]}
    outputs = {s.name: s.output for s in engine.steps(handle.id)}
    assert outputs["split"] == ["A" * 1000, "B" * 1000, "C" * 1000]
    assert outputs["split/shout-1"] == "B" * 1000
    # three inputs, three outputs, the parent's gathered list, also held by lengths' input
    stats = engine.blob_stats()
    assert (stats.blobs, stats.references) == (7, 8)


def test_a_loop_rewriting_a_big_output_lets_the_old_blob_go(engine: plait.Engine) -> None:
    wf = plait.Workflow("grow")

    @wf.step
    def grow(ctx: plait.StepContext) -> str:
        return str(ctx.iteration) * 70_000

    @wf.step
    def check(grow: str, ctx: plait.StepContext) -> Any:
        if ctx.iteration < 2:
            return plait.Goto("grow", max_iterations=5)
        return grow[:1]

    handle = engine.start(wf)
    finish(engine, handle)

    assert handle.result() == {"check": "2"}
    assert first_output(engine, handle.id) == "2" * 70_000
    # the log names a reset output over 64 KiB by its hash rather than copying it
    resets = [e.payload for e in engine.events(handle.id) if e.type == "step_reset"]
    assert resets[0]["output_size"] == 70_002 and "output" not in resets[0]
    assert resets[0]["output_sha256"] == sha(b'"' + b"0" * 70_000 + b'"')
    # each pass wrote another output (which check's recorded input holds too): the two it
    # replaced have no reference left
    assert engine.blob_stats() == plait.BlobStats(blobs=3, bytes=3 * 70_002, references=2)
    assert engine.gc(grace=0) == 2
    assert engine.blob_stats() == plait.BlobStats(blobs=1, bytes=70_002, references=2)
    assert handle.result() == {"check": "2"}


def test_the_threshold_of_the_store_url_decides(store_url: str) -> None:
    with plait.Engine(with_threshold(store_url, 5000), lease=5.0) as engine:
        handle = engine.start(chain(), {"text": "b", "copies": 1000})
        finish(engine, handle)
        assert engine.blob_stats() == plait.BlobStats(0, 0, 0)
        assert handle.result() == {"measure": {"length": 1000, "head": "bbb"}}
    with plait.Engine(with_threshold(store_url, 100), lease=5.0) as engine:
        handle = engine.start(chain(), {"text": "b", "copies": 1000})
        finish(engine, handle)
        assert engine.blob_stats() == plait.BlobStats(1, 1002, 2)  # and measure's input
        assert handle.result() == {"measure": {"length": 1000, "head": "bbb"}}


def test_runs_written_under_another_threshold_read_back(
    durable_backend: Any, tmp_path: Any
) -> None:
    url = durable_backend.url(tmp_path)
    with plait.Engine(with_threshold(url, 100), lease=5.0) as engine:
        kept = engine.start(chain(), {"text": "b", "copies": 1000})
        finish(engine, kept)
    with plait.Engine(with_threshold(url, 5000), lease=5.0) as engine:
        plain = engine.start(chain(), {"text": "p", "copies": 1000})
        finish(engine, plain)
        assert engine.blob_stats() == plait.BlobStats(1, 1002, 2)  # only the first run's
        assert first_output(engine, kept.id) == BIG
        assert first_output(engine, plain.id) == "p" * 1000


def test_small_payloads_cost_no_new_statement(tmp_path: Any, sqlite_statements: list[str]) -> None:
    """Every statement the SQLite store runs, recorded: a run of small payloads sends nothing
    about blobs (the same programs drive PostgreSQL, where a statement may be a round trip)."""
    with plait.Engine(with_threshold(f"sqlite:///{tmp_path / 'p.db'}"), lease=5.0) as engine:
        small = engine.start(chain(), {"text": "s", "copies": 10})
        finish(engine, small)
        assert sqlite_statements and not [sql for sql in sqlite_statements if "blobs" in sql]
        big = engine.start(chain(), {"text": "b", "copies": 1000})
        finish(engine, big)
        assert [sql for sql in sqlite_statements if "blobs" in sql]  # the recording sees them


def test_a_big_signal_payload_kept_early_is_a_blob_read_by_its_dependent(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("signalled")
    wf.signal("document")

    @wf.step
    def size(document: dict[str, str]) -> int:
        return len(document["text"])

    handle = engine.start(wf, {})
    assert engine.signal(handle.id, "document", {"text": BIG})  # kept until reached
    assert engine.blob_stats().references == 1
    finish(engine, handle)

    assert handle.result() == {"size": 1000}
    assert engine.steps(handle.id)[0].output == {"text": BIG}
    assert engine.blob_stats() == plait.BlobStats(1, 1011, 2)  # and size's recorded input


def test_a_large_payload_under_a_high_threshold_stays_in_its_row(store_url: str) -> None:
    """25 MB inline, no blob (PostgreSQL sends it outside pipeline mode too, as a precaution:
    the hang seen with blobs did not show with rows; test_blobs_large covers the blob path)."""
    wf = plait.Workflow("inline")

    @wf.step
    def make() -> str:
        return "i" * 25_000_000

    @wf.step
    def measure(make: str) -> int:
        return len(make)

    with plait.Engine(with_threshold(store_url, 100_000_000), lease=30.0) as engine:
        handle = engine.start(wf, {})
        engine.run_worker(until=handle, timeout=60)
        assert handle.result() == {"measure": 25_000_000}
        if engine.store.blob_threshold < 25_000_000:  # NATS: a row is one message, at most 1 MiB
            assert engine.blob_stats().blobs == 1  # make's output, measure's recorded input
        else:
            assert engine.blob_stats() == plait.BlobStats(0, 0, 0)
