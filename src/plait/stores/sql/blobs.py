"""Blobs on the SQL stores (`core.blobs`): the programs that read, write and count them, run by
the store transactions (`stores.sql.programs`), so a row and the blob it names commit together.

Writing a payload longer than the threshold: its row keeps the hash, and the blob gains a
reference, `UPDATE … refs + n` first, so that the data of a blob the store already has is never
sent again; only when no row was updated is it inserted with its data (`ON CONFLICT` counts the
references instead if another transaction inserted it meanwhile). Dropping references is one
batched statement. A payload at or under the threshold costs a length check, nothing more.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from ...core.blobs import BlobStats, digest, framed, missing, row_blobs
from ...core.rows import Excerpt, RunRow, StepRow, excerpt_of
from .ops import LARGE_BYTES, Program, execute, fetch, large, read_blobs, write_blob
from .queries import Queries
from .rows import (
    RUN_INPUT_BLOB,
    RUN_OUTPUT_BLOB,
    STEP_INPUT_BLOB,
    STEP_OUTPUT_BLOB,
    run_from_row,
    step_from_row,
)


class BlobWrites:
    """The blob references one transaction adds (with the data) and drops."""

    __slots__ = ("added", "dropped", "large", "threshold")

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.added: dict[str, tuple[bytes, int]] = {}
        self.dropped: dict[str, int] = {}
        self.large = False  # a payload over LARGE_BYTES stays in its row (a high threshold)

    def keep(self, payload: bytes | None) -> tuple[bytes | None, str | None]:
        """(what the payload's column holds, the blob hash column) for a payload written:
        itself and no hash at or under the threshold, else nothing and its hash; a recorded
        input holding a big output (`core.blobs.framed`): its frame and the output's hash."""
        if payload is None:
            return None, None
        if len(payload) <= self.threshold:
            self.large = self.large or len(payload) > LARGE_BYTES
            return payload, None
        split = framed(payload, self.threshold)
        if split is not None:  # an input holding a big output: that output's blob, shared
            part, frame = split
            sha256 = digest(part)
            self.refer(sha256, part)
            return frame, sha256  # the row keeps the rest (`step_from_row` joins them)
        sha256 = digest(payload)
        self.refer(sha256, payload)
        return None, sha256

    def refer(self, sha256: str, data: bytes) -> None:
        """One more reference to the blob of `data` (stored if the store lacks it), whatever
        its size: a payload over the threshold, or an artifact kept in the database."""
        known = self.added.get(sha256)
        self.added[sha256] = (data, 1) if known is None else (known[0], known[1] + 1)

    def drop(self, sha256: str | None) -> None:
        """A column that named this blob (if any) is being rewritten or deleted."""
        if sha256 is not None:
            self.dropped[sha256] = self.dropped.get(sha256, 0) + 1

    def __bool__(self) -> bool:
        return bool(self.added or self.dropped)

    def announce(self) -> Program[None]:
        """Before the rows that carry these payloads are sent: say if one is large."""
        if self.large:
            self.large = False
            yield from large()


class BlobPrograms:
    """The blob statements of one dialect, as program steps."""

    def __init__(self, queries: Queries, threshold: int) -> None:
        self.q = queries
        self.threshold = threshold

    def writes(self) -> BlobWrites:
        return BlobWrites(self.threshold)

    def fetch(
        self, hashes: Collection[str], excerpt: int | None = None
    ) -> Program[dict[str, bytes]]:
        """The data of these blobs (those the store has), in one query; none if no hashes.
        With `excerpt`, only the first `excerpt` bytes of each longer one (an Excerpt)."""
        if not hashes:
            return {}
        params = {"sha_list": self.q.dialect.list_param(hashes), "excerpt": excerpt}
        query = self.q["get_blobs" if excerpt is None else "get_blob_excerpts"]
        rows = yield from read_blobs(query, params)
        return {
            sha256: Excerpt(data, size) if len(data) < size else _bytes(data)
            for sha256, data, size in rows
        }

    def write(self, writes: BlobWrites, now: float) -> Program[None]:
        """Count what a transaction added and dropped, storing the blobs the store lacks."""
        deltas = {sha256: -count for sha256, count in writes.dropped.items()}
        for sha256, (_, count) in writes.added.items():
            deltas[sha256] = deltas.get(sha256, 0) + count
        changes: dict[str, int] = {}
        for sha256, delta in sorted(deltas.items()):  # rows locked in one order: no deadlock
            if delta <= 0 or sha256 not in writes.added:
                if delta:
                    changes[sha256] = delta
                continue
            params: dict[str, Any] = {"sha256": sha256, "refs": delta}
            if (yield from execute(self.q["add_blob_refs"], params)) == 0:
                data = writes.added[sha256][0]
                params.update(size=len(data), data=data, created_at=now)
                if len(data) > LARGE_BYTES:
                    yield from large()
                yield from write_blob(self.q["insert_blob"], params)
        if changes:
            yield from self.change_refs(changes)

    def change_refs(self, deltas: Mapping[str, int]) -> Program[set[str]]:
        """Add `deltas[hash]` (+n or -n) to the reference counts of blobs the store has, in one
        statement; the hashes it found (a hash missing from them names no blob)."""
        changes = [[sha256, delta] for sha256, delta in sorted(deltas.items()) if delta]
        if not changes:
            return set()
        params = {"delta_list": self.q.dialect.list_param(changes)}
        rows = yield from fetch(self.q["change_blob_refs"], params)
        return {row[0] for row in rows}

    def steps(
        self, rows: Sequence[Sequence[Any]], excerpt: int | None = None
    ) -> Program[list[StepRow]]:
        """The steps of rows of a `steps` query, with the blobs they name (one more query);
        with `excerpt`, their payloads cut to that many bytes (`Store.get_steps`)."""
        hashes = row_blobs(rows, STEP_OUTPUT_BLOB, STEP_INPUT_BLOB)
        blobs = yield from self.fetch(hashes, excerpt)
        steps = [step_from_row(row, blobs) for row in rows]
        if excerpt is not None:
            for step in steps:
                step.output = excerpt_of(step.output, excerpt)
                step.input = excerpt_of(step.input, excerpt)
        return steps

    def runs(
        self, rows: Sequence[Sequence[Any]], *, with_input: bool = True, excerpt: int | None = None
    ) -> Program[list[RunRow]]:
        """The runs of rows of a `runs` query, with the blobs they name (one more query);
        without `with_input`, an input kept as a blob is not read (`run_from_row`); with
        `excerpt`, their payloads cut to that many bytes (`Store.get_run`)."""
        columns = [RUN_OUTPUT_BLOB] + ([RUN_INPUT_BLOB] if with_input else [])
        blobs = yield from self.fetch(row_blobs(rows, *columns), excerpt)
        runs = [run_from_row(row, blobs, with_input=with_input) for row in rows]
        if excerpt is not None:
            for run in runs:
                run.input = excerpt_of(run.input, excerpt)
                run.output = excerpt_of(run.output, excerpt)
        return runs

    def read_steps(
        self, query: str, params: Mapping[str, Any], excerpt: int | None = None
    ) -> Program[list[StepRow]]:
        """A plain read of steps, with their blobs, in one transaction."""
        return (yield from self.steps((yield from fetch(self.q[query], params)), excerpt))

    def read_runs(
        self, query: str, params: Mapping[str, Any], excerpt: int | None = None
    ) -> Program[list[RunRow]]:
        """A plain read of runs, with their blobs, in one transaction."""
        rows = yield from fetch(self.q[query], params)
        return (yield from self.runs(rows, excerpt=excerpt))

    def put(self, sha256: str, data: bytes, now: float) -> Program[None]:
        """Store a blob with no reference yet (or refresh the age of a known one): a row that
        refers to it then counts its reference with `change_refs` in its own transaction, within
        the gc grace period."""
        rows = yield from fetch(self.q["touch_blob"], {"sha256": sha256, "created_at": now})
        if not rows:
            params = {"sha256": sha256, "size": len(data), "data": data, "created_at": now}
            if len(data) > LARGE_BYTES:
                yield from large()
            yield from write_blob(self.q["put_blob"], params)

    def get(self, sha256: str) -> Program[bytes]:
        blobs = yield from self.fetch((sha256,))
        if sha256 not in blobs:
            raise missing(sha256)
        return blobs[sha256]

    def stats(self) -> Program[BlobStats]:
        rows = yield from fetch(self.q["blob_stats"], {})
        blobs, size, refs = rows[0]
        return BlobStats(int(blobs), int(size), int(refs))

    def gc(self, older_than: float) -> Program[int]:
        rows = yield from fetch(self.q["gc_blobs"], {"older_than": older_than})
        return len(rows)


def _bytes(data: Any) -> bytes:
    # sqlite3 and psycopg give bytes (a copy of 50 MB saved); a memoryview would be copied
    return data if isinstance(data, bytes) else bytes(data)


def output_blobs(rows: Iterable[Sequence[Any]]) -> dict[tuple[str, str], str]:
    """(run, step) → the blob its output is kept in, for the rows of a `steps` query."""
    column = STEP_OUTPUT_BLOB
    return {(row[0], row[1]): row[column] for row in rows if row[column] is not None}


def input_blobs(rows: Iterable[Sequence[Any]]) -> dict[tuple[str, str], str]:
    """(run, step) → the blob its input is kept in, for the rows of a `steps` query."""
    column = STEP_INPUT_BLOB
    return {(row[0], row[1]): row[column] for row in rows if row[column] is not None}


def hashes_of(rows: Iterable[Any]) -> list[str]:
    """The non-null hashes among the values of these rows (of hash columns only)."""
    return [sha for row in rows for sha in row if sha is not None]
