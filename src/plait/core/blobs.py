"""Content-addressed blobs (DESIGN §3.5): the pure parts every store shares.

A payload (a run's input or output, a step's output, a spawned step's input) longer than the
store's threshold is kept once in the store's blob table, under its SHA-256, with a count of the
rows that refer to it; the row keeps only the hash. Identical payloads, forks and reused steps
share one blob; deleting a run drops its references, and `gc` removes blobs nobody refers to
(once they are older than a grace period, so that a blob written just before the row that will
refer to it commits is never taken away).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .._errors import BlobNotFound, StoreError
from .rows import Excerpt

DEFAULT_THRESHOLD = 64 * 1024  # bytes: longer payloads go to the blob table
DEFAULT_GRACE = 3600.0  # seconds an unreferenced blob is kept before gc may remove it
# seconds an artifact file no row refers to is kept before gc may remove it: an attempt that
# saved it may still commit (data/artifacts.py; here so that `plait --help` need not import it)
ARTIFACT_GRACE = 24 * 3600.0
THRESHOLD_OPTION = "blob_threshold"  # the store URL's option (`?blob_threshold=1024`)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class BlobStats:
    """What the blob table holds: `blobs` distinct payloads of `bytes` bytes in all, and
    `references` rows (run inputs and outputs, step outputs, spawned inputs) referring to them."""

    blobs: int
    bytes: int
    references: int


def digest(data: bytes) -> str:
    """The hex SHA-256 of a payload: its blob's key."""
    return hashlib.sha256(data).hexdigest()


def check_hash(sha256: object) -> str:
    """`sha256` if it is a hex SHA-256 (64 lower-case hex digits), else BlobNotFound."""
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise BlobNotFound(
            f"{sha256!r} is not a blob hash: a blob is named by its SHA-256 as 64 lower-case "
            "hex digits"
        )
    return sha256


def missing(sha256: str, where: str = "") -> BlobNotFound:
    """The error for a blob the store does not hold."""
    detail = f" (referred to by {where})" if where else ""
    return BlobNotFound(
        f"no blob {sha256} in this store{detail}: it was never stored, or gc removed it "
        "after its last reference went"
    )


def check_put(sha256: str, data: bytes) -> None:
    """Refuse to store data under a hash that is not its own (a blob is named by its content)."""
    check_hash(sha256)
    if not isinstance(data, bytes):
        raise TypeError(f"blob {sha256}: data must be bytes, got {type(data).__name__}")
    actual = digest(data)
    if actual != sha256:
        raise ValueError(
            f"blob {sha256}: the data given hashes to {actual}, not to the hash it was put "
            "under; nothing was stored"
        )


class Blobbing(Protocol):
    def keep(self, payload: bytes | None) -> tuple[bytes | None, str | None]:
        """(what the payload's column holds, the blob hash column) for a payload written."""
        ...


def payload_of(blobs: Mapping[str, bytes], sha256: str, what: str) -> bytes:
    """The data of blob `sha256` among `blobs` read for `what` (BlobNotFound if absent)."""
    data = blobs.get(sha256)
    if data is None:
        raise missing(sha256, what)
    return data


def row_blobs(rows: Iterable[Sequence[Any]], *columns: int) -> list[str]:
    """The blob hashes these rows name in these columns (each once)."""
    found: dict[str, None] = {}
    for row in rows:
        for column in columns:
            if row[column] is not None:
                found[row[column]] = None
    return list(found)


class Spliced(bytes):
    """A payload holding another payload verbatim at `[start:end]`: a step's recorded input
    (an object by parameter) with an upstream output spliced in as the store gave it. Kept as a
    blob, that part is the output's own blob (the same bytes, so the same hash) and the row keeps
    only the rest around it, its *frame* (`framed`); read back, the two make it again
    (`unframed`)."""

    start: int
    end: int

    def __new__(cls, data: bytes, start: int, end: int) -> Spliced:
        made = super().__new__(cls, data)
        made.start, made.end = start, end
        return made


# where the part goes in a frame: a JSON text never holds a raw NUL byte (JSON escapes it)
_MARK = b"\x00"


def framed(payload: bytes, threshold: int) -> tuple[bytes, bytes] | None:
    """(the part to keep as a blob, the frame the row keeps) for a Spliced payload whose part
    is over the threshold and whose frame is not; else None (kept whole, as any payload)."""
    if not isinstance(payload, Spliced) or payload.end - payload.start <= threshold:
        return None
    if len(payload) - (payload.end - payload.start) >= threshold:
        return None
    part = payload[payload.start : payload.end]
    return part, payload[: payload.start] + _MARK + payload[payload.end :]


def unframed(frame: bytes, part: bytes) -> bytes:
    """The payload a frame and its part make (`framed`'s inverse); an excerpt of the part (a
    read cut short, `rows.Excerpt`) makes one of the payload, of the payload's size."""
    head, _, tail = bytes(frame).partition(_MARK)
    if isinstance(part, Excerpt):
        return Excerpt(head + part, len(head) + part.size + len(tail))
    return Spliced(head + part + tail, len(head), len(head) + len(part))


def parse_threshold(value: str, url: str) -> int:
    """The `blob_threshold` option of a store URL: a number of bytes, at least 1."""
    if not value.isdigit() or int(value) < 1:
        raise StoreError(
            f"store URL {url!r}: {THRESHOLD_OPTION}={value!r} is not a number of bytes of at "
            "least 1 (payloads longer than it are stored once, as blobs)"
        )
    return int(value)
