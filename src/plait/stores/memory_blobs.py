"""The memory store's blobs (`core.blobs`): payloads over the threshold kept once, with the
reference count of each and which column of which row refers to which. Not locked: the memory
store calls it under its own lock."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from urllib.parse import parse_qsl

from .._errors import StoreError
from ..core.blobs import (
    DEFAULT_THRESHOLD,
    THRESHOLD_OPTION,
    BlobStats,
    digest,
    framed,
    parse_threshold,
)
from ..core.rows import StepRow

Column = tuple[str, str, str]  # (run, step or "", "input"/"output")


@dataclasses.dataclass(slots=True)
class _Blob:
    data: bytes
    refs: int
    created_at: float


class MemoryBlobs:
    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._blobs: dict[str, _Blob] = {}
        self._held: dict[Column, str] = {}  # column → the hash of the blob it holds

    def put(self, sha256: str, data: bytes, now: float) -> None:
        """Store a blob with no reference yet, or refresh the age of a known one."""
        blob = self._blobs.get(sha256)
        if blob is None:
            self._blobs[sha256] = _Blob(data, 0, now)
        else:
            blob.created_at = now

    def get(self, sha256: str) -> bytes | None:
        blob = self._blobs.get(sha256)
        return None if blob is None else blob.data

    def stats(self) -> BlobStats:
        blobs = self._blobs.values()
        return BlobStats(len(blobs), sum(len(b.data) for b in blobs), sum(b.refs for b in blobs))

    def gc(self, older_than: float) -> int:
        gone = [s for s, b in self._blobs.items() if b.refs <= 0 and b.created_at < older_than]
        for sha256 in gone:
            del self._blobs[sha256]
        return len(gone)

    def refs(self, deltas: Mapping[str, int]) -> set[str]:
        """Add `deltas[hash]` to the reference counts of the blobs kept; the hashes found."""
        found = set()
        for sha256, delta in deltas.items():
            blob = self._blobs.get(sha256)
            if blob is not None:
                blob.refs += delta
                found.add(sha256)
        return found

    def refer(self, sha256: str, data: bytes, now: float) -> None:
        """One more reference to the blob of `data` (stored if new): an artifact's bytes."""
        blob = self._blobs.get(sha256)
        if blob is None:
            blob = self._blobs[sha256] = _Blob(data, 0, now)
        blob.refs += 1

    def keep(self, where: Column, payload: bytes | None, now: float) -> bytes | None:
        """`payload` is now what the column `where` holds: a payload over the threshold is
        counted on its blob (stored if new), and what the column held before is let go. The
        payload returned is the blob's own bytes, so equal payloads share memory."""
        old = self._held.pop(where, None)
        split = None if payload is None else framed(payload, self.threshold)
        if split is not None:  # an input holding a big output: that output's blob, shared
            sha256 = digest(split[0])
            self.refer(sha256, split[0], now)
            self._held[where] = sha256
        elif payload is not None and len(payload) > self.threshold:
            sha256 = digest(payload)
            self.refer(sha256, payload, now)
            self._held[where] = sha256
            payload = self._blobs[sha256].data
        if old is not None:
            self._blobs[old].refs -= 1
        return payload

    def kept_step(self, step: StepRow, old: StepRow | None, now: float) -> StepRow:
        """A step about to be stored, its payloads counted on blobs if they changed."""
        if old is None or old.output is not step.output:
            step.output = self.keep((step.run_id, step.name, "output"), step.output, now)
        if old is None or old.input is not step.input:
            step.input = self.keep((step.run_id, step.name, "input"), step.input, now)
        return step

    def forget_run(self, run_id: str, steps: list[str]) -> None:
        """A deleted run's columns let their blobs go."""
        for name in ["", *steps]:
            self.keep((run_id, name, "input"), None, 0.0)
            self.keep((run_id, name, "output"), None, 0.0)


def threshold_of_url(url: str) -> int:
    """The blob threshold of a memory:// URL (`memory://?blob_threshold=N`)."""
    _, _, query = url.partition("?")
    threshold = DEFAULT_THRESHOLD
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == THRESHOLD_OPTION:
            threshold = parse_threshold(value, url)
        elif key != "artifacts":  # the engine's (where artifact bytes go), checked there
            raise StoreError(
                f"memory store URL {url!r}: unknown option {key!r} (known: {THRESHOLD_OPTION}, "
                "artifacts)"
            )
    return threshold
