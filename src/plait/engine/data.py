"""The data plane (DESIGN §3.5): records (documents steps write), workflow-state documents (a
typed layer over records), artifacts (files steps save),
and the operator's tools over stored data: deleting runs, and the blobs payloads are kept in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from typing import Any, BinaryIO

from .._errors import ArtifactNotFound, BlobNotFound, ConfigError, InputError, RunStateError
from .._runtime import Runtime
from ..core.blobs import BlobStats
from ..data.artifacts import Artifact, to_artifact
from ..data.records import TOMBSTONE_AGE, Records
from ..data.states import States
from . import operator

_SHA256 = re.compile(r"[0-9a-f]{64}")


def records(rt: Runtime, collection: str) -> Records:
    return Records(rt.store, rt.portal, rt.ready, collection)


def states(rt: Runtime, collection: str) -> States:
    return States(rt.store, rt.portal, rt.ready, collection)


async def delete_run(rt: Runtime, run_id: str, force: bool) -> None:
    if not isinstance(force, bool):
        raise RunStateError(f"force must be True or False, got {force!r}")
    store = await rt.ready()
    row = await rt.run_row(run_id)  # RunNotFound, with the usual message
    if not row.status.terminal:
        if not force:
            raise RunStateError(
                f"run {run_id!r} is {row.status.value}: delete_run deletes finished runs "
                "only. Cancel it first, or pass force=True (which cancels it, then deletes)."
            )
        await operator.cancel(rt, run_id, "deleted", None)
    saved = await store.list_artifacts(run_id)
    if not await store.delete_run(run_id):
        await rt.run_row(run_id)  # deleted meanwhile by someone else: RunNotFound
        raise RunStateError(f"run {run_id!r} could not be deleted: it is not finished")
    # the rows went with the run; their files now (one per artifact, shared with nobody; one
    # saved meanwhile by a late outcome is left to gc_artifacts)
    await asyncio.to_thread(rt.artifacts.remove, saved)


async def get_blob(rt: Runtime, sha256: str) -> bytes:
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise InputError(
            f"a blob is named by its SHA-256, 64 lowercase hex digits; got {sha256!r:.80}"
        )
    store = await rt.ready()
    return await store.get_blob(sha256)


async def blob_stats(rt: Runtime) -> BlobStats:
    store = await rt.ready()
    return await store.blob_stats()


def check_grace(grace: Any, error: type[Exception], where: str = "") -> float:
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not grace >= 0:
        raise error(f"{where}grace must be a number of seconds >= 0, got {grace!r}")
    return float(grace)


async def gc(rt: Runtime, grace: float) -> int:
    grace = check_grace(grace, ConfigError, "gc: ")
    if math.isinf(grace):
        return 0
    store = await rt.ready()
    removed = await store.gc_blobs(rt.clock.time() - grace)
    await gc_artifacts(rt, grace)
    await store.purge_record_tombstones(rt.clock.time() - TOMBSTONE_AGE)
    return removed


# -- artifacts ------------------------------------------------------------------------------------


async def artifacts(rt: Runtime, run_id: str) -> list[Artifact]:
    store = await rt.ready()
    rows = await store.list_artifacts(run_id)
    if not rows:
        await rt.run_row(run_id)  # RunNotFound, with the usual message
    return [to_artifact(row, rt.artifacts) for row in rows]


async def open_artifact(rt: Runtime, artifact_id: str) -> BinaryIO:
    if not isinstance(artifact_id, str):
        raise InputError(
            f"an artifact id must be a string, got {type(artifact_id).__name__} {artifact_id!r}"
        )
    store = await rt.ready()
    row = await store.get_artifact(artifact_id)
    if row is None:
        raise ArtifactNotFound(f"no artifact with id {artifact_id!r} in {rt.url}")
    if row.path is None:  # kept in the database: the blob of its sha256
        try:
            row = dataclasses.replace(row, data=await store.get_blob(row.sha256))
        except BlobNotFound:
            raise ArtifactNotFound(
                f"artifact {row.id} ({row.name!r}): its bytes, blob {row.sha256}, are "
                "missing from the store's blob table"
            ) from None
    return await asyncio.to_thread(rt.artifacts.open, row)


async def gc_artifacts(rt: Runtime, grace: float) -> int:
    grace = check_grace(grace, InputError)
    store = await rt.ready()
    return await rt.artifacts.sweep(store.known_artifacts, grace)
