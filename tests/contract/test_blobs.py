"""Blobs on every store (`plait._blobs`): payloads longer than the store's threshold are kept
once under their SHA-256 with a count of references; reads are transparent; `gc` removes what
nobody refers to. The store methods first, then whole workflows through an Engine."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

import plait
from plait.stores import Store, open_store
from plait.stores.memory import MemoryStore


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def change_refs(store: Store, deltas: dict[str, int]) -> set[str]:
    """The helper a store's own transactions use to count references (artifacts use it)."""
    if isinstance(store, MemoryStore):
        with store._lock:
            return store.blob_refs(deltas)
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
