"""Records: JSON documents in named collections of plait's own database (read models that steps
write), with a revision per document for optimistic concurrency.

    ctx.record("orders", "o-42", {"total": 99})       # in a step: committed with its success only
    ctx.record("orders", "o-42", doc, expected_revision=3)  # ...and only over revision 3
    orders = engine.records("orders")
    doc, revision = orders.get("o-42")                  # None if there is no such document
    orders.put("o-42", {**doc, "paid": True}, expected_revision=revision)   # or RevisionConflict
    orders.put("o-43", {...}, expected_revision=0)      # create only
    page = orders.list(prefix="o-", limit=100)          # by key, then page.next_after

A document's revision is 1 when it is created and grows by one per write (a step's `ctx.record`
counts as a write), so `expected_revision=` makes a read-modify-write safe against concurrent
writers: exactly one of several writers expecting the same revision wins. A key's revisions never
repeat: a delete leaves a tombstone one revision on (shown by no read), which a re-creation
continues after, so a writer holding a revision of the deleted document cannot overwrite the new
one. `engine.gc()` purges tombstones older than `TOMBSTONE_AGE`; only a writer holding a revision
read before that (and a key re-created since) could then match again.

Names are checked before they reach a store: a collection is 1-100 letters, digits, `_`, `.`,
`-` starting with a letter, and not `plait.…` (reserved for plait's own state, `engine.states`'
documents among it); a key is a non-empty string of at most 1024 characters without NUL.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import _codec
from .._errors import InputError, RevisionConflict
from .._portal import blocking
from ..core.rows import PAGE_LIMIT, RecordRow, RecordWrite

if TYPE_CHECKING:
    from .._portal import Portal
    from ..stores import Store

COLLECTION_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,99}")
KEY_LIMIT = 1024
TOMBSTONE_AGE = 30 * 24 * 3600.0  # seconds a deleted record's tombstone is kept (engine.gc)
# plait keeps its own documents (schedules, the scheduler's lease, the worker registry, the
# documents of engine.states: plait.states.<name>) in collections of this prefix; users' records
# may not touch them (plait's code uses the store)
RESERVED_PREFIX = "plait."


def check_collection(collection: object) -> str:
    """The collection name, or InputError saying what a name may be (or that it is reserved)."""
    if not isinstance(collection, str) or not COLLECTION_RE.fullmatch(collection):
        raise InputError(
            f"invalid collection name {collection!r}: a collection name is 1-100 letters, "
            "digits, '_', '.' or '-', starting with a letter"
        )
    if collection.lower().startswith(RESERVED_PREFIX):
        raise InputError(
            f"collection name {collection!r} is reserved: collections named '{RESERVED_PREFIX}…' "
            "hold plait's own state (schedules, the scheduler's lease, the worker registry, "
            "workflow-state documents: engine.states); "
            "choose another name"
        )
    return collection


def check_key(key: object) -> str:
    """The record key, or InputError saying what a key may be."""
    if not isinstance(key, str):
        raise InputError(f"a record key must be a string, got {type(key).__name__} {key!r}")
    if not key or len(key) > KEY_LIMIT or "\x00" in key:
        shown = key if len(key) <= 80 else key[:80] + "…"
        raise InputError(
            f"invalid record key {shown!r}: a key is 1-{KEY_LIMIT} characters, without NUL"
        )
    return key


def check_revision(expected: object) -> int | None:
    if expected is None:
        return None
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise InputError(
            "expected_revision must be None (write whatever is there), 0 (create only) or the "
            f"revision last read (an integer >= 1), got {expected!r}"
        )
    return expected


def encode_doc(collection: str, key: str, doc: Any) -> bytes:
    try:
        return _codec.dumps(doc)
    except _codec.EncodeError as exc:
        raise InputError(
            f"record {key!r} of collection {collection!r}: the document is not JSON: {exc}"
        ) from None


def record_write(collection: Any, key: Any, doc: Any, expected_revision: Any = None) -> RecordWrite:
    """What `ctx.record` buffers, checked at once (the handler sees the error where it wrote)."""
    collection, key = check_collection(collection), check_key(key)
    expected = check_revision(expected_revision)
    return RecordWrite(collection, key, encode_doc(collection, key, doc), expected)


@dataclass(frozen=True, slots=True)
class Record:
    """A document of a collection, as `Records.list` returns it."""

    key: str
    doc: Any
    revision: int
    updated_at: datetime
    run_id: str | None  # the run and step that wrote it last, if a step did
    step: str | None

    @classmethod
    def from_row(cls, row: RecordRow) -> Record:
        return cls(
            key=row.key,
            doc=_codec.loads(row.doc),
            revision=row.revision,
            updated_at=datetime.fromtimestamp(row.updated_at, UTC),
            run_id=row.run_id,
            step=row.step,
        )


@dataclass(frozen=True, slots=True)
class RecordPage:
    """One page of `Records.list`: the documents by key, and the key to pass as `after` for the
    next page (None when this is the last)."""

    items: list[Record]
    next_after: str | None


class Records:
    """The documents of one collection: `engine.records("orders")`. Every method has an async
    twin (`get_async`, …)."""

    def __init__(self, store: Store, portal: Portal, ready: Any, collection: str) -> None:
        self.collection = check_collection(collection)
        self._store = store
        self._portal = portal
        self._ready = ready  # the engine's: opens the store on first use

    def __repr__(self) -> str:
        return f"Records({self.collection!r})"

    async def get_async(self, key: str) -> tuple[Any, int] | None:
        """(document, revision), or None if there is no document of that key."""
        key = check_key(key)
        await self._ready()
        row = await self._store.get_record(self.collection, key)
        return None if row is None else (_codec.loads(row.doc), row.revision)

    get = blocking(get_async)

    async def put_async(self, key: str, doc: Any, *, expected_revision: int | None = None) -> int:
        """Write a document; return its new revision (1 for a new one). `expected_revision`:
        None writes whatever is there; 0 creates only; n writes only over revision n. Otherwise
        RevisionConflict, and nothing is written."""
        key = check_key(key)
        expected = check_revision(expected_revision)
        data = encode_doc(self.collection, key, doc)
        await self._ready()
        row = RecordRow(self.collection, key, data, 0, time.time())
        written, revision = await self._store.put_record(row, expected)
        if not written:
            assert expected is not None
            raise RevisionConflict(self.collection, key, expected, revision)
        return revision

    put = blocking(put_async)

    async def delete_async(self, key: str, *, expected_revision: int | None = None) -> bool:
        """Delete a document; False if there was none. With `expected_revision`, only that
        revision is deleted (else RevisionConflict, and nothing is)."""
        key = check_key(key)
        expected = check_revision(expected_revision)
        if expected == 0:
            raise InputError("expected_revision=0 means 'create only': it cannot delete")
        await self._ready()
        deleted, revision = await self._store.delete_record(self.collection, key, expected)
        if not deleted and expected is not None:
            raise RevisionConflict(self.collection, key, expected, revision)
        return deleted

    delete = blocking(delete_async)

    async def list_async(
        self, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> RecordPage:
        """The documents whose key starts with `prefix`, by key, from the first key after
        `after`; at most `limit` (1-1000) of them, with the `after` of the next page."""
        if not isinstance(prefix, str) or len(prefix) > KEY_LIMIT or "\x00" in prefix:
            raise InputError(
                f"prefix must be a string of at most {KEY_LIMIT} characters without NUL, "
                f"got {prefix!r}"
            )
        if after is not None:
            check_key(after)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_LIMIT:
            raise InputError(f"limit must be an integer from 1 to {PAGE_LIMIT}, got {limit!r}")
        await self._ready()
        rows = await self._store.list_records(self.collection, prefix, after or "", limit + 1)
        items = [Record.from_row(r) for r in rows[:limit]]
        return RecordPage(items, items[-1].key if len(rows) > limit else None)

    list = blocking(list_async)
