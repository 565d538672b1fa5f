"""Engine methods of artifacts (`_artifacts.py`): list a run's, open one, sweep unreferenced files.

`ArtifactMethods` is a mixin of `Engine`; each method is async and its blocking twin is derived by
`_portal.blocking`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any, BinaryIO

from .._errors import ArtifactNotFound, BlobNotFound, InputError
from .._portal import blocking
from ..data.artifacts import (
    DEFAULT_GRACE,
    Artifact,
    ArtifactStorage,
    split_url,
    storage_for,
    to_artifact,
)

if TYPE_CHECKING:
    from .._portal import Portal
    from ..core.rows import RunRow
    from ..stores import Store


class ArtifactMethods:
    """Artifacts, for `Engine` (which provides the rest)."""

    artifact_storage: ArtifactStorage  # where this engine's workers put the bytes they save

    if TYPE_CHECKING:
        _portal: Portal
        store: Store
        url: str

        async def _ready(self) -> Store: ...
        async def _run_row(self, run_id: str) -> RunRow: ...

    def _artifacts_configured(self, url: Any) -> Any:
        """Take the URL's `artifacts=` option (a folder, or 'database'); the URL for the store."""
        store_url, option = split_url(url)
        self.artifact_storage = storage_for(store_url, option)
        return store_url

    async def artifacts_async(self, run_id: str) -> list[Artifact]:
        """The artifacts the run's steps saved in attempts that succeeded, oldest first.
        RunNotFound if there is no such run."""
        store = await self._ready()
        rows = await store.list_artifacts(run_id)
        if not rows:
            await self._run_row(run_id)  # RunNotFound, with the usual message
        return [to_artifact(row, self.artifact_storage) for row in rows]

    async def open_artifact_async(self, artifact_id: str) -> BinaryIO:
        """The artifact's bytes, as a binary file object (close it, or use `with`); its size and
        sha256 are checked first. ArtifactNotFound for an unknown id, or a file that is
        missing, truncated or altered (the message says which)."""
        if not isinstance(artifact_id, str):
            raise InputError(
                f"an artifact id must be a string, got {type(artifact_id).__name__} {artifact_id!r}"
            )
        store = await self._ready()
        row = await store.get_artifact(artifact_id)
        if row is None:
            raise ArtifactNotFound(f"no artifact with id {artifact_id!r} in {self.url}")
        if row.path is None:  # kept in the database: the blob of its sha256
            try:
                row = dataclasses.replace(row, data=await store.get_blob(row.sha256))
            except BlobNotFound:
                raise ArtifactNotFound(
                    f"artifact {row.id} ({row.name!r}): its bytes, blob {row.sha256}, are "
                    "missing from the store's blob table"
                ) from None
        return await asyncio.to_thread(self.artifact_storage.open, row)

    async def gc_artifacts_async(self, grace: float = DEFAULT_GRACE) -> int:
        """Remove artifact files that no artifact references (a failed attempt's, a deleted
        run's, an interrupted copy's), last written more than `grace` seconds ago (default one
        day: a younger file may belong to an attempt still running). Returns how many."""
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not grace >= 0:
            raise InputError(f"grace must be a number of seconds >= 0, got {grace!r}")
        store = await self._ready()
        return await self.artifact_storage.sweep(store.known_artifacts, float(grace))

    artifacts = blocking(artifacts_async)
    open_artifact = blocking(open_artifact_async)
    gc_artifacts = blocking(gc_artifacts_async)
