"""The NATS store's commits: what a transaction writes, as KV messages, and how they are
published as one atomic batch.

A transition runs on the replica (`stores.nats_replica`), which captures what it would write;
`txn_writes` turns that into KV writes: the run's key, whole pages of steps (`page_writes`), one
key of events per run (`event_writes`), records, artifacts, queues, `flow`, and the reference
counts of the blobs that big payloads go to (`keep`, `ref_writes`). `encode` makes a KV value of
a row, its blob payloads left out. `publish` sends the writes as one atomic batch (server 2.12+;
`Nats-Batch-Id`, `Nats-Batch-Sequence`, `Nats-Batch-Commit`), every message carrying
`Nats-Expected-Last-Subject-Sequence`: the revision of its key the replica has. The server
applies all of them or none; a key that moved on is a `Conflict`, and the store runs the
transition again on a replica caught up.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import orjson
from nats.aio.client import Client

from .._errors import StoreError
from ..core.blobs import digest, framed
from ..core.queues import QueueConfig
from ..core.rows import EventRow, RecordRow, RunRow, StepRow
from ..core.txn import Txn
from . import nats_codec as codec
from .nats_replica import BlobInfo, PlanRef, Replica, held_id, page_key
from .nats_setup import NatsURL

REQUEST_TIMEOUT = 10.0  # seconds a commit or a read barrier waits for the server
KV_OP = "KV-Operation"
WRITER = "Plait-Writer"  # which store object wrote a message (its own are not wake-ups)
_WRONG_SEQUENCE = 10071
_BATCH_TOO_LARGE = 10199  # more messages than the server's limits.batch.max_msgs

# A write of a batch: (key, the row or plain value to store, or None to delete it; the blobs
# that stand for its big payloads {field: sha256}).
Write = tuple[str, Any, dict[str, Any]]


class Conflict(Exception):
    """A batch was refused: a key it expected at one revision was at another."""

    def __init__(self, seq: int) -> None:
        super().__init__(seq)
        self.seq = seq


async def publish(
    nc: Client,
    url: NatsURL,
    writer: str,
    revs: Mapping[str, int],
    writes: Sequence[Write],
    encoded: Sequence[bytes],
) -> int:
    """Publish `writes` (their values `encoded`) as one atomic batch, each message expecting
    the sequence `revs` has for its key (one write: a plain compare-and-set); the stream
    sequence of the first, once the server has acknowledged them all. Conflict if a key moved
    on; StoreError if the server refused the batch otherwise."""
    batch = secrets.token_hex(8)
    prefix = f"$KV.{url.bucket}."
    last = len(writes) - 1
    for i, ((key, value, _), data) in enumerate(zip(writes, encoded, strict=True)):
        headers = {
            WRITER: writer,
            "Nats-Expected-Last-Subject-Sequence": str(revs.get(key, 0)),
        }
        if last:  # one write is a plain compare-and-set: atomic batches cost a sync each
            headers["Nats-Batch-Id"] = batch
            headers["Nats-Batch-Sequence"] = str(i + 1)
        if value is None:
            headers[KV_OP] = "DEL"
        if i < last:
            await nc.publish(prefix + key, data, headers=headers)
            continue
        if last:
            headers["Nats-Batch-Commit"] = "1"
        reply = await nc.request(prefix + key, data, headers=headers, timeout=REQUEST_TIMEOUT)
        ack = json.loads(reply.data)
        error = ack.get("error")
        if error is not None:
            if error.get("err_code") == _WRONG_SEQUENCE:
                text = str(error.get("description", ""))
                number = text.rsplit(":", 1)[-1].strip()
                raise Conflict(int(number) if number.isdigit() else 0)
            if error.get("err_code") == _BATCH_TOO_LARGE:
                raise StoreError(
                    f"NATS store {url.shown}: the server refused a batch of "
                    f"{len(writes)} messages ({error.get('description')}): its "
                    "jetstream { limits { batch { max_msgs } } } is lower than this URL's "
                    f"batch_limit={url.batch_limit}; nothing was written"
                )
            raise StoreError(
                f"NATS store {url.shown}: the server refused a commit: "
                f"{error.get('description')} (err_code {error.get('err_code')})"
            )
        return int(ack["seq"]) - len(writes) + 1
    raise AssertionError("a batch of no writes")  # the store never publishes one


def txn_writes(
    replica: Replica,
    txns: Sequence[Txn],
    queues: Mapping[str, QueueConfig],
    flow: bool,
    threshold: int,
) -> tuple[list[Write], dict[str, bytes]]:
    """What the captured transactions wrote, as KV writes (and the blobs they need)."""
    r = replica
    writes: list[Write] = []
    blobs: dict[str, bytes] = {}
    refs: dict[str, int] = {}
    now = txns[0].now if txns else time.time()
    runs: dict[str, RunRow] = {}
    steps: dict[tuple[str, str], StepRow] = {}
    events: list[EventRow] = []
    dropped: set[tuple[str, str]] = set()  # steps an upgrade deleted
    for txn in txns:
        runs.update(txn.changed_runs)
        steps.update(txn.new_steps)
        steps.update(txn.changed_steps)
        events.extend(txn.events)
        dropped |= txn.dropped_steps
    for run in runs.values():
        key = codec.key("run", run.id)
        old = r._runs.get(run.id)
        updated = r._run_updated.get(run.id, now)
        if old is None or old.status is not run.status:
            updated = now
        fields = {"output": run.output, "input": run.input}
        held = keep(replica, key, fields, old, blobs, refs, threshold)
        writes.append((key, (run, updated), held))
    writes.extend(page_writes(replica, steps.values(), blobs, refs, threshold, dropped))
    writes.extend(event_writes(events))
    records: dict[str, RecordRow] = {}  # a key written twice: one write, counted twice
    for txn in txns:
        for run_id, step_name, data in txn.data:
            for record in data.records:
                key = codec.key("rec", record.collection, record.key)
                old_rec = records.get(key) or r._records.get((record.collection, record.key))
                records[key] = RecordRow(
                    record.collection, record.key, record.doc,
                    1 if old_rec is None else old_rec.revision + 1, now, run_id, step_name,
                )  # fmt: skip
            for artifact in data.artifacts:
                if artifact.path is None and artifact.data is not None:
                    blobs[artifact.sha256] = artifact.data
                    refs[artifact.sha256] = refs.get(artifact.sha256, 0) + 1
                    artifact = dataclasses.replace(artifact, data=None)
                writes.append((codec.key("art", run_id, artifact.id), artifact, {}))
    for txn in txns:  # records whose revision a transition checked: rewritten as they are,
        for collection, name in txn.records:  # so that the check holds when it commits
            key = codec.key("rec", collection, name)
            if key not in records:
                records[key] = r._records.get((collection, name))  # type: ignore[assignment]
    writes.extend((key, row, {}) for key, row in records.items())
    for config in queues.values():
        writes.append((codec.key("queue", config.name), config, {}))
    if flow:
        writes.append(("flow", {"at": now}, {}))
    writes.extend(ref_writes(replica, refs, blobs, now))
    return writes, blobs


def page_writes(
    replica: Replica,
    changed: Iterable[StepRow],
    blobs: dict[str, bytes],
    refs: dict[str, int],
    threshold: int,
    dropped: Collection[tuple[str, str]] = (),
) -> list[Write]:
    """The pages these changed (or new) steps are on, rewritten whole (without the
    `dropped` steps: the pages they were on are rewritten too)."""
    r = replica
    pages: dict[str, dict[str, StepRow]] = {}
    owners: dict[str, str] = {}
    for step in changed:
        key = page_key(step.run_id, step.idx)
        pages.setdefault(key, {})[step.name] = step
        owners[key] = step.run_id
    for run_id, name in dropped:
        gone = r._steps.get(run_id, {}).get(name)
        if gone is not None:
            key = page_key(run_id, gone.idx)
            pages.setdefault(key, {})
            owners[key] = run_id
    writes: list[Write] = []
    for key, news in pages.items():
        run_id = owners[key]
        stored = r._steps.get(run_id, {})
        names = replica.pages.get(run_id, {}).get(key, set()) | set(news)
        names -= {n for r_id, n in dropped if r_id == run_id}
        rows: list[StepRow] = []
        held: dict[str, dict[str, str]] = {}
        for name in names:
            hid = held_id(run_id, name)
            if name in news:
                step = news[name]
                fields = {"output": step.output, "input": step.input}
                h = keep(replica, hid, fields, stored.get(name), blobs, refs, threshold)
            else:
                step, h = stored[name], replica.held.get(hid, {})
            rows.append(step)
            if h:
                held[name] = h
        rows.sort(key=lambda step: step.idx)
        writes.append((key, rows, held))
    return writes


def keep(
    replica: Replica,
    key: str,
    fields: dict[str, bytes | None],
    old: Any,
    blobs: dict[str, bytes],
    refs: dict[str, int],
    threshold: int,
) -> dict[str, str]:
    """The blobs a row's big payloads go to (counting references that change)."""
    was = replica.held.get(key, {})
    held: dict[str, str] = {}
    for name, payload in fields.items():
        if old is not None and getattr(old, name) is payload and name in was:
            held[name] = was[name]  # unchanged: the same blob
            continue
        split = None if payload is None else framed(payload, threshold)
        if split is not None:  # an input holding a big output: that output's blob, shared
            sha = digest(split[0])
            held[name] = sha
            blobs[sha] = split[0]
            refs[sha] = refs.get(sha, 0) + 1
        elif payload is not None and len(payload) > threshold:
            sha = digest(payload)
            held[name] = sha
            blobs[sha] = payload
            refs[sha] = refs.get(sha, 0) + 1
        if name in was:
            refs[was[name]] = refs.get(was[name], 0) - 1
    return held


def ref_writes(
    replica: Replica, refs: Mapping[str, int], blobs: Mapping[str, bytes], now: float
) -> list[Write]:
    writes: list[Write] = []
    for sha, delta in refs.items():
        if delta == 0:
            continue
        info = replica.blob_info.get(sha)
        if info is None:
            size = len(blobs[sha]) if sha in blobs else 0
            info = BlobInfo(0, size, now)
        writes.append(
            (
                codec.key("blob", sha),
                {"refs": info.refs + delta, "size": info.size, "at": info.at},
                {},
            )
        )
    return writes


def event_writes(events: Sequence[EventRow]) -> list[Write]:
    """Events appended by one transaction: one key per run (`ev.<run>.<first seq>`)."""
    by_run: dict[str, list[EventRow]] = {}
    for event in events:
        by_run.setdefault(event.run_id, []).append(event)
    return [(codec.key("ev", run_id, str(evs[0].seq)), evs, {}) for run_id, evs in by_run.items()]


def frame(step: StepRow, field: str, threshold: int) -> bytes | None:
    """What a step's row keeps of a payload kept as a blob: nothing, or, for an input holding
    a big output, the rest around it (`core.blobs.framed`)."""
    payload = getattr(step, field)
    split = None if payload is None else framed(payload, threshold)
    return None if split is None else split[1]


def encode(key: str, value: Any, held: dict[str, Any], threshold: int) -> bytes:
    """A KV value: {"row": the row's fields, "blobs": {field: sha256}} (payloads that are in
    blobs are left out of the row); a run also keeps when its status last changed."""
    doc: dict[str, Any] = {}
    if isinstance(value, PlanRef):
        return orjson.dumps({"object": value.name})
    if isinstance(value, tuple):  # a run and its updated_at
        row, doc["updated"] = value
    else:
        row = value
    if held and key.startswith("steps."):  # a page: {step name: {field: sha256}}
        row = [
            dataclasses.replace(step, **{f: frame(step, f, threshold) for f in held[step.name]})
            if step.name in held
            else step
            for step in row
        ]
        doc["blobs"] = held
    elif held:
        row = dataclasses.replace(row, **dict.fromkeys(held))
        doc["blobs"] = held
    doc["row"] = codec.plain(row)
    return orjson.dumps(doc)
