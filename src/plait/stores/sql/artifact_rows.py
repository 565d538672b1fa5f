"""Artifacts (`data.artifacts`) as the SQL stores' rows: the parameters of a row inserted in
a step's success transaction, and the record of a row read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core.rows import ArtifactRow


def artifact_params(a: ArtifactRow) -> dict[str, Any]:
    return {
        "id": a.id,
        "run_id": a.run_id,
        "step": a.step,
        "name": a.name,
        "size": a.size,
        "sha256": a.sha256,
        "content_type": a.content_type,
        "path": a.path,
        "metadata": None if a.metadata is None else a.metadata.decode(),
        "created_at": a.created_at,
    }


def artifact_from_row(row: Sequence[Any]) -> ArtifactRow:
    id_, run_id, step, name, size, sha256, content_type, path, metadata, created_at = row
    return ArtifactRow(
        id_, run_id, step, name, int(size), sha256, content_type, path,
        None if metadata is None else metadata.encode(), created_at,
    )  # fmt: skip
