"""Errors as the API answers them: JSON `{"error": {"type", "message"}}` with the Engine's own
message, and the status that says what went wrong (404 unknown, 409 wrong state, 422 bad input)."""

from __future__ import annotations

from typing import Any

from .._errors import (
    ArtifactNotFound,
    BlobNotFound,
    ConfigError,
    DefinitionError,
    InputError,
    PlaitError,
    RevisionConflict,
    RunConflict,
    RunNotFound,
    RunStateError,
    StateError,
    StateNotFound,
    StoreError,
    WorkflowNotFound,
)
from ..core.cron import CronError
from .encode import JSON


class NotFound(PlaitError):
    """An API path names something that does not exist (a step, a queue, a schedule)."""


# the status of each error the Engine raises; any other PlaitError is a 400
STATUS: list[tuple[type[PlaitError], int]] = [
    (NotFound, 404),
    (RunNotFound, 404),
    (ArtifactNotFound, 404),
    (BlobNotFound, 404),
    (WorkflowNotFound, 404),
    (RunStateError, 409),
    (RunConflict, 409),
    (RevisionConflict, 409),
    (StateNotFound, 404),
    (StateError, 409),
    (InputError, 422),
    (CronError, 422),
    (ConfigError, 422),
    (DefinitionError, 422),
    (StoreError, 503),
]


def status_of(exc: PlaitError) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def error(status: int, kind: str, message: str, **more: Any) -> JSON:
    return JSON({"error": {"type": kind, "message": message, **more}}, status_code=status)
