"""Engine methods of the data plane (DESIGN §3.5): records (documents steps write), artifacts
(inherited from `_engine_artifacts.py`), and the operator's tools over stored data: deleting
runs, and the blobs payloads are kept in.

`DataMethods` is a mixin of `Engine`; each method is async and its blocking twin is derived by
`_portal.blocking`.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

from .._errors import ConfigError, RunStateError
from .._portal import blocking
from ..core.blobs import DEFAULT_GRACE, BlobStats
from ..data.records import TOMBSTONE_AGE, Records
from .artifacts import ArtifactMethods

if TYPE_CHECKING:
    from .._portal import Portal
    from ..core.rows import RunRow
    from ..stores import Store
    from .views import Run


class DataMethods(ArtifactMethods):
    """Records, artifacts (`_engine_artifacts.py`) and deleting runs, for `Engine` (which
    provides the rest)."""

    if TYPE_CHECKING:
        _portal: Portal
        store: Store

        async def _ready(self) -> Store: ...
        async def _run_row(self, run_id: str) -> RunRow: ...
        async def cancel_async(
            self, run_id: str, reason: str | None = None, *, by: str | None = None
        ) -> Run: ...

    def records(self, collection: str) -> Records:
        """The documents of a collection (created by its first write): get, put with
        `expected_revision`, delete, list by key prefix. InputError for an invalid name."""
        return Records(self.store, self._portal, self._ready, collection)

    async def delete_run_async(self, run_id: str, *, force: bool = False) -> None:
        """Delete a finished run: its steps, event log and artifacts (records its steps wrote
        stay; runs forked from it keep what they reused). RunNotFound if there is no such run;
        RunStateError for an unfinished one, unless `force`, which cancels it first."""
        if not isinstance(force, bool):
            raise RunStateError(f"force must be True or False, got {force!r}")
        store = await self._ready()
        row = await self._run_row(run_id)  # RunNotFound, with the usual message
        if not row.status.terminal:
            if not force:
                raise RunStateError(
                    f"run {run_id!r} is {row.status.value}: delete_run deletes finished runs "
                    "only. Cancel it first, or pass force=True (which cancels it, then deletes)."
                )
            await self.cancel_async(run_id, "deleted")
        saved = await store.list_artifacts(run_id)
        if not await store.delete_run(run_id):
            await self._run_row(run_id)  # deleted meanwhile by someone else: RunNotFound
            raise RunStateError(f"run {run_id!r} could not be deleted: it is not finished")
        # the rows went with the run; their files now (one per artifact, shared with nobody;
        # one saved meanwhile by a late outcome is left to gc_artifacts)
        await asyncio.to_thread(self.artifact_storage.remove, saved)

    delete_run = blocking(delete_run_async)

    async def blob_stats_async(self) -> BlobStats:
        """What the store's blob table holds: payloads longer than its `blob_threshold` (run
        inputs and outputs, step outputs, spawned inputs), each kept once, and the references
        to them. For operators and tests."""
        store = await self._ready()
        return await store.blob_stats()

    blob_stats = blocking(blob_stats_async)

    async def gc_async(self, *, grace: float = DEFAULT_GRACE) -> int:
        """Remove the blobs nobody refers to any more (their runs were deleted, their outputs
        rewritten by a retry or a loop) that are older than `grace` seconds; how many. The grace
        spares a blob stored for a row whose transaction has not committed yet. Also sweeps the
        artifact files nobody refers to, by the same grace (`gc_artifacts`, which counts them),
        and the tombstones of records deleted more than `TOMBSTONE_AGE` (30 days) ago."""
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not grace >= 0:
            raise ConfigError(f"gc: grace must be a number of seconds >= 0, got {grace!r}")
        if math.isinf(grace):
            return 0
        store = await self._ready()
        removed = await store.gc_blobs(time.time() - grace)
        await self.gc_artifacts_async(grace)
        await store.purge_record_tombstones(time.time() - TOMBSTONE_AGE)
        return removed

    gc = blocking(gc_async)
