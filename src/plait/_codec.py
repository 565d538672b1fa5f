"""JSON in and out. Never pickle: payloads are JSON, typed values are validated by pydantic."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic_core import to_jsonable_python

MESSAGE_LIMIT = 4096  # bytes of an error message kept on the step record


class EncodeError(ValueError):
    """A value cannot be represented as JSON."""


def _fallback(value: Any) -> Any:
    # pydantic models, dataclasses' nested pydantic parts, sets, Decimal, …
    try:
        return to_jsonable_python(value)
    except Exception as exc:  # pydantic raises its own error types for unknown objects
        raise TypeError(f"{type(value).__name__} is not JSON serializable") from exc


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(
            value,
            default=_fallback,
            option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
        )
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise EncodeError(str(exc)) from exc


def loads(data: bytes | str | None) -> Any:
    if data is None:
        return None
    return orjson.loads(data)


def cap_message(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """Cut a message to at most `limit` UTF-8 bytes, saying that it was cut."""
    raw = message.encode("utf-8", "replace")
    if len(raw) <= limit:
        return message
    room = max(limit - len(f"… [{len(raw)} more bytes]".encode()), 0)  # the longest marker
    keep = raw[:room].decode("utf-8", "ignore")  # drops a character cut in the middle
    return f"{keep}… [{len(raw) - len(keep.encode())} more bytes]"
