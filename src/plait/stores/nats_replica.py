"""The NATS store's replica: this process's copy of the bucket, a `MemoryStore` kept current
by the store's ordered consumer, like a Kubernetes informer.

Each KV message (`decode`d) is applied by `Replica.apply_key` at its stream sequence, which
is kept per key (`revs`): the revision a transition saw, and so what its commit expects.
Beside the memory store's rows, the replica keeps what the memory store has no place for: which
payloads are kept as blobs (`held`), which steps each page key holds (`pages`, `PAGE` steps a
key), the event keys of each run, and the blobs' reference counts. A key written by another
process wakes this process's workers, waiters and watchers (`on_ready`, `on_ended`, …).

The replica's write paths are the NATS store's transitions: what they would write is captured
(`captured`), committed by the store (`stores.nats_commit`), and applied here only once the
server has acknowledged it.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import orjson

from ..core.blobs import unframed
from ..core.queues import QueueConfig
from ..core.rows import (
    ArtifactRow,
    EventRow,
    RecordRow,
    RunRow,
    RunStatus,
    StepRow,
    StepStatus,
    WorkflowPlan,
)
from ..core.txn import Txn
from . import nats_codec as codec
from .memory import MemoryStore

# steps are kept in pages of this many (by `idx`): a transaction readying 10,000 steps writes
# 625 keys, within one batch
PAGE = 16


@dataclasses.dataclass(slots=True)
class BlobInfo:
    refs: int
    size: int
    at: float


@dataclasses.dataclass(frozen=True, slots=True)
class PlanRef:
    """A workflow plan too long for a KV value, kept as the object `name` of the blob store."""

    name: str
    plan: Any


def _nothing() -> None:
    return None


class Replica(MemoryStore):
    """The memory store as this process's copy of the bucket. Its write paths are the NATS
    store's transitions: what they would write is captured, committed, and applied only once
    the server has acknowledged it."""

    def __init__(self) -> None:
        super().__init__("memory://")
        self.captured: list[Txn] = []
        self.captured_queues: dict[str, QueueConfig] = {}
        self.revs: dict[str, int] = {}  # key → the stream sequence of its last message seen
        # a run's key, or a step's `held_id` → {field: sha256} of its payloads kept as blobs
        self.held: dict[str, dict[str, str]] = {}
        self.pages: dict[str, dict[str, set[str]]] = {}  # run → its step pages' keys → names
        self.blob_info: dict[str, BlobInfo] = {}
        # run → the keys of its events (one per transaction that appended) → their seqs
        self.event_keys: dict[str, dict[str, list[int]]] = {}
        # what a key another process wrote wakes in this one (the store's subscribers)
        self.on_ready: Callable[[], None] = _nothing
        self.on_ended: Callable[[], None] = _nothing
        self.on_cancelled: Callable[[], None] = _nothing
        self.on_events: Callable[[Collection[str] | None], None] = lambda run_ids: None

    def _write(self, txn: Txn) -> None:
        self.captured.append(txn)

    def _set_queue(self, config: QueueConfig) -> None:
        self.captured_queues[config.name] = config

    async def resolved(
        self, row: Any, held: dict[str, Any], fetch: Callable[[str], Awaitable[bytes]]
    ) -> Any:
        """A row (or a page of steps) whose big payloads are in blobs, with them put back (the
        replica's own bytes when it holds the same blob there already)."""
        r = self
        if isinstance(row, list):
            for step in row:
                hid = held_id(step.run_id, step.name)
                had = self.held.get(hid, {})
                stored = r._steps.get(step.run_id, {}).get(step.name)
                for name, sha in held.get(step.name, {}).items():
                    if stored is not None and had.get(name) == sha:
                        setattr(step, name, getattr(stored, name))
                        continue
                    data = await fetch(sha)
                    frame = getattr(step, name)  # the rest of an input around an output
                    setattr(step, name, data if frame is None else unframed(frame, data))
            return row
        target = row[0] if isinstance(row, tuple) else row
        stored_run = r._runs.get(target.id)
        had = self.held.get(codec.key("run", target.id), {})
        for name, sha in held.items():
            if stored_run is not None and had.get(name) == sha:
                setattr(target, name, getattr(stored_run, name))
            else:
                setattr(target, name, await fetch(sha))
        return row

    def apply_key(self, key: str, row: Any, held: dict[str, Any], seq: int, remote: bool) -> None:
        """Make the replica hold `row` (None: deleted) under `key`, written at `seq`."""
        if self.revs.get(key, 0) >= seq:
            return
        self.revs[key] = seq
        parts = codec.split(key)
        kind = parts[0]
        if kind == "run":
            if held:
                self.held[key] = held
            else:
                self.held.pop(key, None)
        r = self
        with r._lock:
            if kind == "run":
                run_id = parts[1]
                old = r._runs.get(run_id)
                if row is None:
                    r._runs.pop(run_id, None)
                    r._run_updated.pop(run_id, None)
                    if not r._steps.get(run_id):
                        r._steps.pop(run_id, None)
                    if not r._events.get(run_id):
                        r._events.pop(run_id, None)
                    return
                run, updated = row
                r._runs[run_id] = run
                r._run_updated[run_id] = updated
                r._steps.setdefault(run_id, {})
                r._events.setdefault(run_id, [])
                if remote and (old is None or old.status is not run.status):
                    if run.status.terminal:
                        self.on_ended()
                    if run.status is RunStatus.CANCELLED:
                        self.on_cancelled()
                    if run.status is RunStatus.RUNNING:
                        self.on_ready()  # resumed or retried
            elif kind == "steps":
                run_id = parts[1]
                steps = r._steps.setdefault(run_id, {})
                pages = self.pages.setdefault(run_id, {})
                before = pages.pop(key, set())
                rows: list[StepRow] = row or []
                names = {step.name for step in rows}
                for name in before - names:
                    steps.pop(name, None)
                    self.held.pop(held_id(run_id, name), None)
                    for index in (r._ready, r._running, r._waiting):
                        index.pop((run_id, name), None)
                if row is None:
                    if not pages:
                        self.pages.pop(run_id, None)
                    return
                pages[key] = names
                woken = False
                for step in rows:
                    old_step = steps.get(step.name)
                    hid = held_id(run_id, step.name)
                    if step.name in held:
                        self.held[hid] = held[step.name]
                    else:
                        self.held.pop(hid, None)
                    if old_step is step:
                        continue
                    r._put_step(step)
                    if remote and (
                        step.status is StepStatus.READY
                        or (old_step is not None and old_step.status is StepStatus.RUNNING)
                    ):
                        woken = True
                if woken:
                    self.on_ready()
            elif kind == "ev":
                run_id = parts[1]
                events = r._events.setdefault(run_id, [])
                groups = self.event_keys.setdefault(run_id, {})
                if row is None:
                    gone = set(groups.pop(key, ()))
                    events[:] = [e for e in events if e.seq not in gone]
                    if not groups:
                        self.event_keys.pop(run_id, None)
                    return
                groups[key] = [e.seq for e in row]
                for event in row:
                    if not events or events[-1].seq < event.seq:  # the usual case: appended
                        events.append(event)
                        continue
                    at = bisect.bisect_left(events, event.seq, key=_seq)
                    if at < len(events) and events[at].seq == event.seq:
                        events[at] = event
                    else:
                        events.insert(at, event)
                if remote:
                    self.on_events([run_id])
            elif kind == "wf":
                if isinstance(row, PlanRef):
                    row = row.plan
                if row is None:
                    r._workflows.pop(parts[1], None)
                else:
                    r._workflows.setdefault(parts[1], row)
            elif kind == "queue":
                if row is None:
                    r._queues.pop(parts[1], None)
                else:
                    r._queues[parts[1]] = row
                if remote:
                    self.on_ready()
            elif kind == "rec":
                if row is None:
                    r._records.pop((parts[1], parts[2]), None)
                else:
                    r._records[(parts[1], parts[2])] = row
            elif kind == "art":
                run_id, artifact_id = parts[1], parts[2]
                if row is None:
                    r._artifacts.get(run_id, {}).pop(artifact_id, None)
                    if not r._artifacts.get(run_id):
                        r._artifacts.pop(run_id, None)
                    r._artifact_runs.pop(artifact_id, None)
                else:
                    r._artifacts.setdefault(run_id, {})[artifact_id] = row
                    r._artifact_runs[artifact_id] = run_id
            elif kind == "blob":
                if row is None:
                    self.blob_info.pop(parts[1], None)
                else:
                    self.blob_info[parts[1]] = BlobInfo(
                        int(row["refs"]), int(row["size"]), row["at"]
                    )

    def wake_all(self) -> None:
        self.on_ready()
        self.on_ended()
        self.on_cancelled()
        self.on_events(None)


def _seq(event: EventRow) -> int:
    return event.seq


def decode(key: str, data: bytes) -> tuple[Any, dict[str, str]]:
    kind = key.split(".", 1)[0]
    doc = orjson.loads(data)
    held = doc.get("blobs") or {}
    row = doc.get("row")
    if kind == "wf" and "object" in doc:
        return PlanRef(doc["object"], None), {}
    cls = ROW_TYPES.get(kind)
    if kind == "ev":  # the events one transaction appended to a run
        return [codec.build(EventRow, e) for e in row], held
    if kind == "steps":  # a page of a run's steps
        return [codec.build(StepRow, e) for e in row], held
    value = codec.build(cls, row) if cls is not None else row
    if kind == "run":
        return (value, doc.get("updated", 0.0)), held
    return value, held


def page_key(run_id: str, idx: int) -> str:
    """The key of the page holding a run's step of this `idx`."""
    return codec.key("steps", run_id, str(idx // PAGE))


def held_id(run_id: str, name: str) -> str:
    return f"{run_id}\x00{name}"


ROW_TYPES: dict[str, type] = {
    "run": RunRow,
    "wf": WorkflowPlan,
    "queue": QueueConfig,
    "rec": RecordRow,
    "art": ArtifactRow,
}
