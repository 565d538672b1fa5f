"""Engine views as JSON: dataclasses become objects, datetimes ISO 8601 strings (UTC), enums
their values, epoch seconds stay numbers. Payloads (inputs, outputs) are JSON already."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from starlette.responses import Response

from .. import _codec
from .._errors import StepError


def plain(value: Any) -> Any:
    """`value` as plain JSON types."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StepError):
        return {"code": value.code, "message": value.message}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):  # a NamedTuple
        return plain(value._asdict())
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return value


class JSON(Response):
    """A JSON response encoded by plait's codec (the run's own JSON rule)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _codec.dumps(plain(content))
