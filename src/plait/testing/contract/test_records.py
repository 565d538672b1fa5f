"""Records on every store: documents steps write with their success (and never after a failed
attempt), and the engine's get / put with expected revisions / delete / list by prefix."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def run(engine: plait.Engine, wf: plait.Workflow, data: dict[str, Any] | None = None) -> Any:
    handle = engine.start(wf, data or {})
    engine.run_worker(until=handle, timeout=60, concurrency=4)
    return handle


def test_a_step_records_documents_with_its_success(engine: plait.Engine) -> None:
    wf = plait.Workflow("orders")

    @wf.step
    def place(ctx: plait.StepContext, order: int) -> int:
        ctx.record("orders", f"o-{order}", {"total": 10})
        ctx.record("orders", f"o-{order}", {"total": 12})  # the last write wins, counted twice
        ctx.record("audit", "last", {"order": order})
        return order

    handle = run(engine, wf, {"order": 7})

    assert handle.result() == {"place": 7}
    assert engine.records("orders").get("o-7") == ({"total": 12}, 2)
    assert engine.records("audit").get("last") == ({"order": 7}, 1)
    page = engine.records("orders").list()
    assert [(r.key, r.run_id, r.step) for r in page.items] == [("o-7", handle.id, "place")]


def test_a_failed_attempt_records_nothing_and_its_retry_records_once(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("flaky", retry=plait.Retry(attempts=3, delay=0.01))

    @wf.step
    def write(ctx: plait.StepContext) -> str:
        ctx.record("seen", f"attempt-{ctx.attempt}", {"attempt": ctx.attempt})
        ctx.record("seen", "count", {"n": ctx.attempt})
        if ctx.attempt < 3:
            raise RuntimeError("not yet")
        return "ok"

    run(engine, wf)

    keys = [r.key for r in engine.records("seen").list().items]
    assert keys == ["attempt-3", "count"]
    assert engine.records("seen").get("count") == ({"n": 3}, 1)


def test_a_step_that_fails_for_good_records_nothing(engine: plait.Engine) -> None:
    wf = plait.Workflow("fails")

    @wf.step
    def boom(ctx: plait.StepContext) -> None:
        ctx.record("never", "k", {"x": 1})
        raise plait.Permanent("no")

    handle = run(engine, wf)

    with pytest.raises(plait.RunFailed):
        handle.result()
    assert engine.records("never").get("k") is None
    assert engine.records("never").list().items == []


def test_put_creates_at_revision_one_and_cas_advances(engine: plait.Engine) -> None:
    counters = engine.records("counters")
    assert counters.get("c") is None
    assert counters.put("c", {"value": 0}, expected_revision=0) == 1
    for _ in range(5):
        found = counters.get("c")
        assert found is not None
        doc, revision = found
        counters.put("c", {"value": doc["value"] + 1}, expected_revision=revision)
    assert counters.get("c") == ({"value": 5}, 6)
    # no expected revision: written whatever is there
    assert counters.put("c", {"value": 100}) == 7
    assert counters.put("new", [1, 2]) == 1


def test_ten_concurrent_puts_expecting_the_same_revision_one_wins(engine: plait.Engine) -> None:
    docs = engine.records("race")
    docs.put("k", {"winner": None}, expected_revision=0)

    async def contend() -> list[Any]:
        async def put(i: int) -> Any:
            try:
                return await docs.put_async("k", {"winner": i}, expected_revision=1)
            except plait.RevisionConflict as exc:
                return exc

        return await asyncio.gather(*(put(i) for i in range(10)))

    outcomes: list[Any] = []

    def in_thread() -> None:  # each on its own loop: the puts really race in the store
        outcomes.extend(asyncio.run(contend()))

    threads = [threading.Thread(target=in_thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(outcomes) == 20
    wins = [o for o in outcomes if o == 2]
    conflicts = [o for o in outcomes if isinstance(o, plait.RevisionConflict)]
    assert len(wins) == 1 and len(conflicts) == 19
    found = docs.get("k")
    assert found is not None
    doc, revision = found
    assert revision == 2 and doc["winner"] is not None
    assert all(c.expected == 1 and c.actual == 2 for c in conflicts)


def test_revision_conflicts_say_what_was_expected_and_write_nothing(engine: plait.Engine) -> None:
    docs = engine.records("docs")
    docs.put("a", {"v": 1})
    with pytest.raises(plait.RevisionConflict) as created:
        docs.put("a", {"v": 2}, expected_revision=0)
    assert str(created.value) == (
        "record 'a' of collection 'docs' is at revision 1, but the write expected to create it "
        "(expected_revision=0); nothing was written. Read it again and retry."
    )
    with pytest.raises(plait.RevisionConflict) as missing:
        docs.put("b", {"v": 2}, expected_revision=3)
    assert "record 'b' of collection 'docs' does not exist, but the write expected revision 3" in (
        str(missing.value)
    )
    assert docs.get("a") == ({"v": 1}, 1)
    assert docs.get("b") is None


def test_delete_with_and_without_expected_revision(engine: plait.Engine) -> None:
    docs = engine.records("docs")
    docs.put("a", 1)
    docs.put("a", 2)
    assert docs.delete("missing") is False
    with pytest.raises(plait.RevisionConflict):
        docs.delete("a", expected_revision=1)
    assert docs.get("a") == (2, 2)
    assert docs.delete("a", expected_revision=2) is True
    assert docs.get("a") is None
    docs.put("b", 1)
    assert docs.delete("b") is True
    assert docs.put("b", "again", expected_revision=0) == 3  # anew, after the deletion's 2


def test_a_recreated_document_continues_its_revisions(engine: plait.Engine) -> None:
    docs = engine.records("docs")
    assert docs.put("k", "old", expected_revision=0) == 1
    assert docs.put("k", "old 2") == 2
    assert docs.delete("k") is True
    assert docs.put("k", "new", expected_revision=0) == 4  # deleting took revision 3
    assert docs.get("k") == ("new", 4)
    assert docs.delete("k", expected_revision=4) is True
    assert docs.put("k", "newer") == 6  # without an expected revision, too
    assert docs.get("k") == ("newer", 6)


def test_a_write_expecting_the_deleted_documents_revision_conflicts(
    engine: plait.Engine,
) -> None:
    docs = engine.records("docs")
    docs.put("k", {"v": "old"}, expected_revision=0)
    found = docs.get("k")  # a writer reads revision 1 of the old document
    assert found is not None
    _, seen = found
    docs.delete("k")
    for expected in (seen, seen + 1):  # the revision read, and the deletion's (not a document)
        with pytest.raises(plait.RevisionConflict) as deleted:
            docs.put("k", {"v": "stale"}, expected_revision=expected)
        assert str(deleted.value) == (
            f"record 'k' of collection 'docs' does not exist, but the write expected revision "
            f"{expected}; nothing was written. Read it again and retry."
        )
        assert (deleted.value.expected, deleted.value.actual) == (expected, 0)
    docs.put("k", {"v": "new"}, expected_revision=0)
    with pytest.raises(plait.RevisionConflict) as recreated:
        docs.put("k", {"v": "stale"}, expected_revision=seen)
    assert str(recreated.value) == (
        "record 'k' of collection 'docs' is at revision 3, but the write expected revision 1; "
        "nothing was written. Read it again and retry."
    )
    assert docs.get("k") == ({"v": "new"}, 3)


def test_get_and_list_never_show_deleted_documents(engine: plait.Engine) -> None:
    docs = engine.records("docs")
    for key in ("a", "b", "c"):
        docs.put(key, key)
    docs.delete("b")
    docs.delete("c")
    docs.put("c", "c again")
    assert docs.get("b") is None
    assert [(r.key, r.doc, r.revision) for r in docs.list().items] == [
        ("a", "a", 1),
        ("c", "c again", 3),
    ]
    page = docs.list(limit=1)
    assert [r.key for r in page.items] == ["a"] and page.next_after == "a"
    assert [r.key for r in docs.list("b").items] == []
    assert docs.delete("b") is False  # deleted already: nothing to delete


def test_deleting_a_deleted_document_with_an_expected_revision_conflicts(
    engine: plait.Engine,
) -> None:
    docs = engine.records("docs")
    docs.put("k", 1)
    assert docs.delete("k", expected_revision=1) is True
    for expected in (1, 2):  # the document's last revision, and the deletion's
        with pytest.raises(plait.RevisionConflict) as caught:
            docs.delete("k", expected_revision=expected)
        assert str(caught.value) == (
            f"record 'k' of collection 'docs' does not exist, but the write expected revision "
            f"{expected}; nothing was written. Read it again and retry."
        )
    assert docs.put("k", 2, expected_revision=0) == 3


def test_a_step_recording_a_deleted_key_continues_its_revisions(engine: plait.Engine) -> None:
    docs = engine.records("audit")
    docs.put("last", {"order": 0})
    docs.delete("last")
    wf = plait.Workflow("audits")

    @wf.step
    def write(ctx: plait.StepContext) -> None:
        ctx.record("audit", "last", {"order": 1})

    run(engine, wf)

    assert docs.get("last") == ({"order": 1}, 3)


def test_list_by_prefix_pages_in_key_order(engine: plait.Engine) -> None:
    docs = engine.records("items")
    for i in range(7):
        docs.put(f"a-{i}", i)
    docs.put("b-0", "other")
    engine.records("other").put("a-9", "another collection")

    first = docs.list("a-", limit=3)
    assert [r.key for r in first.items] == ["a-0", "a-1", "a-2"]
    assert first.next_after == "a-2"
    second = docs.list("a-", after=first.next_after, limit=3)
    assert [r.key for r in second.items] == ["a-3", "a-4", "a-5"]
    third = docs.list("a-", after=second.next_after, limit=3)
    assert [(r.key, r.doc, r.revision) for r in third.items] == [("a-6", 6, 1)]
    assert third.next_after is None
    assert [r.key for r in docs.list().items] == [f"a-{i}" for i in range(7)] + ["b-0"]
    assert docs.list("zzz").items == []
    # a prefix with SQL LIKE wildcards matches them literally
    docs.put("a%_x", "literal")
    assert [r.key for r in docs.list("a%").items] == ["a%_x"]


@pytest.mark.parametrize(
    "name",
    ["orders; DROP TABLE runs; --", "", "x" * 101, "1abc", "a b", "a'b", None, 42, "ünï"],
)
def test_invalid_collection_names_are_refused(engine: plait.Engine, name: Any) -> None:
    with pytest.raises(plait.InputError) as caught:
        engine.records(name)
    assert str(caught.value) == (
        f"invalid collection name {name!r}: a collection name is 1-100 letters, digits, '_', "
        "'.' or '-', starting with a letter"
    )


def test_bad_keys_revisions_docs_and_limits_are_refused(engine: plait.Engine) -> None:
    docs = engine.records("docs")
    with pytest.raises(plait.InputError, match=r"^a record key must be a string, got int 42$"):
        docs.get(42)  # type: ignore[arg-type]  # the error under test
    with pytest.raises(plait.InputError, match=r"a key is 1-1024 characters, without NUL"):
        docs.put("", 1)
    with pytest.raises(plait.InputError, match=r"a key is 1-1024 characters, without NUL"):
        docs.put("a\x00b", 1)
    with pytest.raises(plait.InputError, match=r"a key is 1-1024 characters, without NUL"):
        docs.put("k" * 1025, 1)
    with pytest.raises(plait.InputError, match=r"expected_revision must be None .* got -1"):
        docs.put("k", 1, expected_revision=-1)
    with pytest.raises(plait.InputError, match=r"expected_revision must be None .* got True"):
        docs.put("k", 1, expected_revision=True)
    with pytest.raises(plait.InputError, match=r"^record 'k' of collection 'docs': the document"):
        docs.put("k", object())
    with pytest.raises(plait.InputError, match=r"expected_revision=0 means 'create only'"):
        docs.delete("k", expected_revision=0)
    with pytest.raises(plait.InputError, match=r"^limit must be an integer from 1 to 1000, got 0"):
        docs.list(limit=0)
    assert docs.list().items == []  # nothing was written by any of them


def test_a_bad_record_in_a_step_fails_that_step_with_the_reason(engine: plait.Engine) -> None:
    wf = plait.Workflow("bad")

    @wf.step
    def write(ctx: plait.StepContext) -> None:
        ctx.record("bad name!", "k", 1)

    handle = run(engine, wf)

    with pytest.raises(plait.RunFailed) as caught:
        handle.result()
    assert "invalid collection name 'bad name!'" in str(caught.value)


def test_gc_purges_tombstones_only_after_their_age(
    engine: plait.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = engine.records("docs")
    for key in ("kept", "gone", "live"):
        docs.put(key, key)
    docs.delete("kept")
    docs.delete("gone")
    engine.gc()  # tombstones a moment old: well within TOMBSTONE_AGE
    assert docs.put("kept", "again", expected_revision=0) == 3
    monkeypatch.setattr(plait.engine.data, "TOMBSTONE_AGE", -60.0)  # as if 60s in the future
    engine.gc()
    assert docs.put("gone", "again", expected_revision=0) == 1  # purged: starts over
    assert [(r.key, r.revision) for r in docs.list().items] == [
        ("gone", 1),
        ("kept", 3),
        ("live", 1),
    ]
