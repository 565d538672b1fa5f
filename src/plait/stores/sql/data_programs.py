"""The data plane's store transactions (records, deleting runs, blob references), as programs
(`stores.sql.programs`) shared by SQLite and PostgreSQL. A mixin of `Programs`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ...core.rows import TOMBSTONE, RecordRow
from .blobs import BlobPrograms, hashes_of
from .ops import Program, execute, fetch
from .queries import Queries


class DataPrograms:
    """Records, `delete_run` and blob references, for `Programs` (which provides the rest)."""

    q: Queries  # set by Programs
    blobs: BlobPrograms

    def delete_run(self, run_id: str) -> Program[bool]:
        q, params = self.q, {"id": run_id}
        deleted = yield from fetch(q["delete_finished_run"], params)
        if not deleted:
            return False
        held = [deleted[0][1:], *(yield from fetch(q["run_step_blobs"], params))]
        yield from execute(q["delete_run_steps"], params)
        yield from execute(q["delete_run_events"], params)
        yield from execute(q["delete_run_labels"], params)
        artifacts = yield from fetch(q["delete_run_artifacts"], params)
        held.extend((sha256,) for path, sha256 in artifacts if path is None)  # in the database
        drops: dict[str, int] = {}
        for sha256 in hashes_of(held):
            drops[sha256] = drops.get(sha256, 0) - 1
        yield from self.blobs.change_refs(drops)
        return True

    def blob_refs(self, deltas: Mapping[str, int]) -> Program[set[str]]:
        """Inside a program: add `deltas[hash]` (+n, -n) to the reference counts of blobs the
        store has; the hashes found (one missing from them names no blob: refuse what refers
        to it). A blob put with `put_blob` (no references) gains its first one this way."""
        return (yield from self.blobs.change_refs(deltas))

    # -- records

    def put_record(self, row: RecordRow, expected: int | None) -> Program[tuple[bool, int]]:
        q = self.q
        params: dict[str, Any] = {
            "collection": row.collection,
            "key": row.key,
            "doc": row.doc,
            "updated_at": row.updated_at,
        }
        if expected is None:
            rows = yield from fetch(q["put_record"], params)
        elif expected == 0:
            rows = yield from fetch(q["create_record"], params)
        else:
            rows = yield from fetch(q["update_record"], {**params, "expected": expected})
        if rows:
            return True, int(rows[0][0])
        key = {"collection": row.collection, "key": row.key}
        rows = yield from fetch(q["get_record_revision"], key)
        return False, int(rows[0][0]) if rows else 0

    def delete_record(
        self, collection: str, key: str, expected: int | None
    ) -> Program[tuple[bool, int]]:
        """Leave a tombstone (an empty doc), so that a re-creation continues the key's revisions
        rather than repeating them (a stale writer's expected revision never matches anew)."""
        key_params = {"collection": collection, "key": key}
        params: dict[str, Any] = {**key_params, "tombstone": TOMBSTONE, "updated_at": time.time()}
        if expected is None:
            rows = yield from fetch(self.q["delete_record"], params)
        else:
            rows = yield from fetch(self.q["delete_record_at"], {**params, "expected": expected})
        if rows:
            return True, int(rows[0][0])
        rows = yield from fetch(self.q["get_record_revision"], key_params)
        return False, int(rows[0][0]) if rows else 0

    def purge_record_tombstones(self, older_than: float) -> Program[int]:
        rows = yield from fetch(self.q["purge_record_tombstones"], {"older_than": older_than})
        return len(rows)
