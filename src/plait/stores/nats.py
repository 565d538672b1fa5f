"""The NATS JetStream store: worker processes share one NATS server (or cluster), no database.

URL: `nats://host:4222[,host2:4222]?namespace=NAME` (options: `stores.nats_setup`).

What the store does, and why:
- Every key a transaction touches lives in one KV bucket per namespace (`plait_NAME`, stream
  `KV_plait_NAME`): `run.<id>`, `step.<run>.<name>`, `ev.<run>.<seq>`, `wf.<fingerprint>`,
  `queue.<name>`, `rec.<collection>.<key>`, `art.<run>.<id>`, `blob.<sha256>` (a blob's
  reference count; its bytes are in the Object Store `plait_NAME_blobs`) and `flow` (claims
  under queue or key limits write it, so two of them never admit past a limit together). JetStream
  makes a batch all-or-nothing only within one stream: hence one bucket.
- Reads are served by a local replica of the bucket (a `MemoryStore`), kept current by an
  ordered consumer on the bucket's stream, like a Kubernetes informer; so the memory store's
  queries and claim policy are reused as they are. A read first asks the stream for its last
  sequence and waits until the replica has applied it (read-your-writes across processes).
- A write runs the memory store's transition on copies of the replica's rows (nothing is
  applied), and commits what it changed as **one atomic batch** (server 2.12+), each message
  carrying `Nats-Expected-Last-Subject-Sequence`: the revision of that key the transition saw.
  A conflict (another process wrote one of those keys first) waits until the replica has
  caught up to the revision the server reported, and runs the transition again (bounded, with
  jitter). So a transition is never half-applied and never loses an update. The sequences the
  server acknowledges are applied to the replica at once (no read-back: JetStream has no
  read-after-write guarantee between a publish and a consumer).
- Push: every process sees every commit through its consumer: a step made ready (or a running
  step ending: a limit's slot freed), a run ended or cancelled, events appended by another
  process wake this process's workers, waiters and watchers.
- A batch holds at most the server's limit of messages (1,000 on 2.12–2.15): a transaction
  writing more keys is refused with StoreError naming the limit (never split, never half
  applied); `create_runs` commits runs in batches of whole runs, `delete_run` deletes the run
  key first and its rows after.
- Faults: nats-py's errors become StoreError at this boundary; the connection reconnects by
  itself, and workers retry as they do on PostgreSQL (outcomes are fenced, starts idempotent).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import io
import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import (
    DiscardPolicy,
    ObjectMeta,
    ObjectMetaOptions,
    ObjectStoreConfig,
    StorageType,
    StreamConfig,
)

from .._clock import REAL, Clock
from .._errors import RunConflict, StoreError
from .._portal import Portal
from ..core import durability
from ..core.blobs import BlobStats, check_hash, check_put, digest, framed, missing, unframed
from ..core.durability import Durability
from ..core.queues import QueueConfig, reconfigure
from ..core.rate import Rate
from ..core.rows import (
    TOMBSTONE,
    ArtifactRow,
    Claims,
    CodeOf,
    CommitResult,
    EventRow,
    Lease,
    Outcome,
    RecordRow,
    RunRow,
    RunStatus,
    StepInputs,
    StepRow,
    StepStatus,
    WorkflowPlan,
)
from ..core.txn import Action, Txn
from . import nats_codec as codec
from .memory import MemoryStore
from .nats_setup import NatsURL, check_server, describe, parse_url, probe
from .protocol import InputsWanted, NewRun

log = logging.getLogger(__name__)

T = TypeVar("T")

STORE_MARK = "plait-store"  # the stream metadata key that says a bucket is a plait store's
STORE_FORMAT = "1"
CONFLICT_RETRIES = 50
# steps are kept in pages of this many (by `idx`): a transaction readying 10,000 steps writes
# 625 keys, within one batch
PAGE = 16
BLOB_CHUNK = 512 * 1024  # bytes per message of a blob in the Object Store (nats-py: 128 KiB)
# the longest payload kept in its row (longer ones are blobs): a page of steps, with an output
# and an input each, must fit in one message of at most the server's max_payload
MIN_PAYLOAD = 1024 * 1024
MAX_VALUE = 768 * 1024  # a workflow plan longer than this is kept in the Object Store
MAX_INLINE = 16 * 1024
REQUEST_TIMEOUT = 10.0  # seconds a commit or a read barrier waits for the server
CATCH_UP_TIMEOUT = 30.0
RECONNECT_WAIT = 3.0  # seconds a call waits for a connection that is being re-established
_KV_OP = "KV-Operation"
_WRITER = "Plait-Writer"  # which store object wrote a message (its own are not wake-ups)
_WRONG_SEQUENCE = 10071
_BATCH_TOO_LARGE = 10199  # more messages than the server's limits.batch.max_msgs


class _Conflict(Exception):
    """A batch was refused: a key it expected at one revision was at another."""

    def __init__(self, seq: int) -> None:
        super().__init__(seq)
        self.seq = seq


@dataclasses.dataclass(slots=True)
class _BlobInfo:
    refs: int
    size: int
    at: float


@dataclasses.dataclass(frozen=True, slots=True)
class _PlanRef:
    """A workflow plan too long for a KV value, kept as the object `name` of the blob store."""

    name: str
    plan: Any


# A write of a batch: (key, the row or plain value to store, or None to delete it; the blobs
# that stand for its big payloads {field: sha256}).
_Write = tuple[str, Any, dict[str, Any]]


class _Replica(MemoryStore):
    """The memory store as this process's copy of the bucket. Its write paths are the NATS
    store's transitions: what they would write is captured, committed, and applied only once
    the server has acknowledged it."""

    def __init__(self) -> None:
        super().__init__("memory://")
        self.captured: list[Txn] = []
        self.captured_queues: dict[str, QueueConfig] = {}

    def _write(self, txn: Txn) -> None:
        self.captured.append(txn)

    def _set_queue(self, config: QueueConfig) -> None:
        self.captured_queues[config.name] = config


def _nothing() -> None:
    return None


class NatsStore:
    capabilities: frozenset[str] = frozenset({"push", "push_events"})
    clock: Clock = REAL

    def __init__(self, url: str, *, create: bool = True, read_only: bool = False) -> None:
        self.url = url
        self._url: NatsURL = parse_url(url)
        self.read_only = read_only
        self.create = create and not read_only
        # a row must fit in one message (1 MiB by default): longer payloads are always blobs
        self.blob_threshold = min(self._url.blob_threshold, MAX_INLINE)
        self._thread = Portal(name="plait-nats")
        self._nc: Client | None = None
        self._replica = _Replica()
        self._revs: dict[str, int] = {}  # key → the stream sequence of its last message seen
        # a run's key, or a step's `_held_id` → {field: sha256} of its payloads kept as blobs
        self._held: dict[str, dict[str, str]] = {}
        self._pages: dict[str, dict[str, set[str]]] = {}  # run → its step pages' keys → names
        self._blobs: dict[str, _BlobInfo] = {}
        # run → the keys of its events (one per transaction that appended) → their seqs
        self._event_keys: dict[str, dict[str, list[int]]] = {}
        self._applied = 0  # the stream sequence the consumer has delivered up to
        self._progress: asyncio.Event | None = None
        self._write_lock: asyncio.Lock | None = None
        self._local_blobs: Mapping[str, bytes] = {}  # the blobs of the commit under way
        self._sub: Any = None
        self._on_ready: Callable[[], None] = _nothing
        self._on_ended: Callable[[], None] = _nothing
        self._on_cancelled: Callable[[], None] = _nothing
        self._on_live: Callable[[bool], None] = lambda live: None
        self._on_events: Callable[[Collection[str] | None], None] = lambda run_ids: None
        self._closing = False
        self._writer = secrets.token_hex(8)
        self.server_version = ""
        self.sync_always: bool | None = None  # the server's sync_interval is `always`

    def __repr__(self) -> str:
        return f"NatsStore({self._url.shown!r})"

    def subscribe(
        self,
        *,
        ready: Callable[[], None],
        ended: Callable[[], None],
        cancelled: Callable[[], None],
        live: Callable[[bool], None],
    ) -> None:
        self._on_ready, self._on_ended, self._on_live = ready, ended, live
        self._on_cancelled = cancelled

    def subscribe_events(self, events: Callable[[Collection[str] | None], None]) -> None:
        self._on_events = events

    # -- lifecycle ------------------------------------------------------------------------

    async def _hop(self, what: str, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the store's loop thread, nats-py's errors as StoreError."""
        try:
            if self._thread.running_here():
                return await work
            return await asyncio.wrap_future(self._thread.submit(work))
        except StoreError:
            raise
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise self._error(what, exc) from None

    def _error(self, what: str, exc: BaseException) -> StoreError:
        gone = ""
        if isinstance(exc, (nats.errors.TimeoutError, TimeoutError)) or (
            self._nc is not None and not self._nc.is_connected
        ):
            gone = " (the server went away or did not answer; workers retry)"
        return StoreError(f"NATS store {self._url.shown}: {what} failed: {describe(exc)}{gone}")

    async def open(self) -> None:
        try:
            await self._hop("open", self._open())
        except BaseException:
            if self._nc is None:
                self._thread.close()
            raise

    async def _open(self) -> None:
        if self._nc is not None:
            return
        await probe(self._url)
        errors: list[BaseException] = []
        # while opening: the server refused something or dropped us (nats-py closes the
        # connection on a permissions violation; requests would only time out)
        trouble = asyncio.Event()

        async def error_cb(exc: Exception) -> None:
            errors.append(exc)
            if self._nc is None:
                trouble.set()

        async def disconnected_cb() -> None:
            if self._closing:
                return
            if self._nc is None:
                trouble.set()
                return
            cause = self._nc.last_error
            if cause is not None and _denied(cause):
                log.error("NATS store %s: %s", self._url.shown, describe(cause))
            log.warning("NATS store %s: disconnected; polling until it is back", self._url.shown)
            self._on_live(False)

        async def reconnected_cb() -> None:
            log.info("NATS store %s: reconnected", self._url.shown)
            self._on_live(True)
            self._wake_all()

        try:
            nc = await asyncio.wait_for(
                nats.connect(
                    servers=list(self._url.servers),
                    connect_timeout=self._url.connect_timeout,
                    error_cb=error_cb,
                    disconnected_cb=disconnected_cb,
                    reconnected_cb=reconnected_cb,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.2,
                    name="plait",
                    **self._url.options,
                ),
                self._url.connect_timeout * 2,
            )
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            cause = errors[-1] if errors else exc
            raise StoreError(
                f"cannot connect to NATS store {self._url.shown}: {describe(cause)}"
            ) from None
        try:
            await _unless(trouble, self._prepare(nc))
            if trouble.is_set():
                raise self._open_trouble(nc.last_error or (errors[-1] if errors else None))
        except BaseException:
            await nc.close()
            raise
        self._nc = nc
        try:
            await self._follow()
        except BaseException:
            self._nc = None
            await nc.close()
            raise

    def _open_trouble(self, cause: BaseException | None) -> StoreError:
        where = f"NATS store {self._url.shown}"
        if cause is not None and _denied(cause):
            return StoreError(
                f"{where}: this user may not use the store's subjects: {describe(cause)}. It "
                f"needs to publish on $JS.API.>, $KV.{self._url.bucket}.> "
                f"and $O.{self._url.objects}.>, and subscribe on _INBOX.> (docs/nats.md)"
            )
        why = describe(cause) if cause is not None else "no reason given"
        return StoreError(f"{where}: the server dropped the connection while opening: {why}")

    async def _prepare(self, nc: Client) -> None:
        """Check the server, then find or create the bucket (refusing one that is not ours)."""
        v = nc.connected_server_version
        self.server_version = str(v).replace("<nats server v", "").rstrip(">")
        info = nc._server_info  # nats-py keeps the INFO it got only there
        check_server(self._url, (v.major, v.minor, v.patch), bool(info.get("jetstream")))
        if nc.max_payload < MIN_PAYLOAD:
            raise StoreError(
                f"NATS store {self._url.shown}: the server's max_payload is {nc.max_payload} "
                f"bytes; plait needs at least {MIN_PAYLOAD} (the default, 1 MiB)"
            )
        js = nc.jetstream(timeout=REQUEST_TIMEOUT)
        where = f"NATS store {self._url.shown}"
        try:
            await js.account_info()
        except nats.js.errors.ServiceUnavailableError:
            raise StoreError(f"{where}: JetStream is not enabled for this account") from None
        except nats.errors.NoRespondersError:
            raise StoreError(
                f"{where}: JetStream did not answer (not enabled on the server, or this user "
                "may not use it)"
            ) from None
        except nats.js.errors.APIError as exc:
            raise StoreError(f"{where}: JetStream refused this account: {describe(exc)}") from None
        try:
            stream = await js.stream_info(self._url.stream)
        except nats.js.errors.NotFoundError:
            stream = None
        if stream is not None:
            meta = stream.config.metadata or {}
            if meta.get(STORE_MARK) is None:
                raise StoreError(
                    f"{where}: the stream {self._url.stream} exists but was not made by plait "
                    f"(no {STORE_MARK} in its metadata); it was left untouched. Choose another "
                    "namespace with ?namespace=NAME"
                )
            if meta[STORE_MARK] != STORE_FORMAT:
                raise StoreError(
                    f"{where}: the bucket {self._url.bucket} is in plait store format "
                    f"{meta[STORE_MARK]}, this plait reads format {STORE_FORMAT}; left untouched"
                )
            if not stream.config.allow_atomic:
                raise StoreError(f"{where}: the stream {self._url.stream} lost allow_atomic")
        elif not self.create:
            raise StoreError(
                f"no plait store in namespace {self._url.namespace} of {self._url.shown}; a "
                "worker or `plait run` creates it"
            )
        else:
            await self._create_bucket(js, where)
        try:
            await js.object_store(self._url.objects)
        except nats.js.errors.NotFoundError:
            if self.read_only:
                raise StoreError(f"{where}: no blob bucket {self._url.objects}") from None
            try:
                await js.create_object_store(
                    self._url.objects,
                    config=ObjectStoreConfig(
                        bucket=self._url.objects,
                        storage=StorageType.FILE,
                        replicas=self._url.replicas,
                    ),
                )
            except nats.js.errors.APIError:
                await js.object_store(self._url.objects)  # made by another process meanwhile
        self.sync_always = await self._sync_setting(nc)
        if self.sync_always is False:
            log.warning(
                "NATS store %s: the server does not fsync every write (sync_interval is not "
                "`always`): acknowledged commits may be lost on a power failure (docs/nats.md)",
                self._url.shown,
            )

    async def _create_bucket(self, js: Any, where: str) -> None:
        config = StreamConfig(
            name=self._url.stream,
            subjects=[f"$KV.{self._url.bucket}.>"],
            max_msgs_per_subject=1,
            discard=DiscardPolicy.NEW,
            storage=StorageType.FILE,
            num_replicas=self._url.replicas,
            allow_rollup_hdrs=True,
            deny_delete=True,
            allow_direct=True,
            allow_atomic=True,
            max_consumers=-1,
            max_msgs=-1,
            max_bytes=-1,
            max_msg_size=-1,
            metadata={STORE_MARK: STORE_FORMAT},
        )
        try:
            created = await js.add_stream(config)
        except nats.js.errors.APIError as exc:
            if "already in use" not in str(exc):
                raise StoreError(f"{where}: creating the bucket failed: {describe(exc)}") from None
            created = await js.stream_info(self._url.stream)  # another process made it
        if not created.config.allow_atomic:
            raise StoreError(
                f"{where}: the server dropped allow_atomic from the bucket's stream: atomic "
                "batch publish needs nats-server 2.12 or newer"
            )
        log.info("NATS store %s: created bucket %s", self._url.shown, self._url.bucket)

    async def _sync_setting(self, nc: Client) -> bool | None:
        """Whether the server fsyncs every write (`sync_interval: always`), from its VARZ if
        this account may ask for it (the system account's, imported: docs/nats.md); None when
        not known."""
        try:
            reply = await nc.request("$SYS.REQ.SERVER.PING.VARZ", b"{}", timeout=0.5)
            varz = json.loads(reply.data).get("data", {})
        except Exception:  # not allowed or not answered: unknown
            return None
        config = varz.get("jetstream", {}).get("config", {})
        if config.get("sync_always") is True:
            return True
        # a periodic sync is `sync_interval` in nanoseconds, and no `sync_always` at all
        return False if "sync_interval" in config else None

    async def close(self) -> None:
        if self._nc is None:
            self._thread.close()
            return
        await self._hop("close", self._close())
        self._thread.close()

    async def _close(self) -> None:
        self._closing = True
        nc, self._nc = self._nc, None
        if self._sub is not None:
            with contextlib.suppress(Exception):  # closing anyway
                await self._sub.unsubscribe()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _connected(self) -> Client:
        """The connection, waiting a moment for one that is reconnecting (a server restart)."""
        deadline = time.monotonic() + RECONNECT_WAIT
        for _ in range(int(RECONNECT_WAIT / 0.05)):
            if self._nc is None or self._nc.is_connected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)  # nats-py offers no event for "reconnected" but a callback
        return self._conn()

    def _conn(self) -> Client:
        if self._nc is None:
            raise StoreError(f"NATS store {self._url.shown}: the store is not open")
        if not self._nc.is_connected:
            raise StoreError(
                f"NATS store {self._url.shown}: the server went away (reconnecting); workers "
                "retry until it is back"
            )
        return self._nc

    # -- the replica ------------------------------------------------------------------------

    async def _follow(self) -> None:
        """Subscribe to the bucket (last message of each key, then every new one) and wait
        until the replica holds everything the stream had when we looked."""
        js = self._conn().jetstream(timeout=REQUEST_TIMEOUT)
        self._progress = asyncio.Event()
        self._sub = await js.subscribe(
            f"$KV.{self._url.bucket}.>",
            stream=self._url.stream,
            cb=self._delivered,
            ordered_consumer=True,
            deliver_policy=nats.js.api.DeliverPolicy.LAST_PER_SUBJECT,
            inactive_threshold=300.0,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        await self._catch_up(await self._last_seq())
        self._on_live(True)

    async def _last_seq(self) -> int:
        reply = await (await self._connected()).request(
            f"$JS.API.STREAM.INFO.{self._url.stream}", b"", timeout=REQUEST_TIMEOUT
        )
        info = json.loads(reply.data)
        if "error" in info:
            raise StoreError(
                f"NATS store {self._url.shown}: reading the bucket's state failed: "
                f"{info['error'].get('description')}"
            )
        return int(info["state"]["last_seq"])

    async def _catch_up(self, seq: int) -> None:
        """Wait until the replica has applied the stream up to `seq`."""
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        assert self._progress is not None
        while self._applied < seq:
            self._progress.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreError(
                    f"NATS store {self._url.shown}: the local copy did not catch up with the "
                    f"bucket (at {self._applied}, the stream at {seq}) in {CATCH_UP_TIMEOUT:g}s"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), left)

    async def _barrier(self) -> None:
        """Before a read: the replica holds every commit made before it (any process)."""
        await self._catch_up(await self._last_seq())

    async def _delivered(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        key = msg.subject[len(self._url.bucket) + 5 :]
        try:
            op = msg.headers.get(_KV_OP) if msg.headers else None
            # our own commit may be delivered before its acknowledgement: not news to us
            remote = not msg.headers or msg.headers.get(_WRITER) != self._writer
            deleted = op is not None or not msg.data
            if self._revs.get(key, 0) < seq:
                if deleted:
                    self._apply(key, None, {}, seq, remote=remote)
                else:
                    row, held = self._decode(key, msg.data)
                    if isinstance(row, _PlanRef):
                        plan = codec.decode(WorkflowPlan, await self._blob_data(row.name))
                        row = _PlanRef(row.name, plan)
                    if held:
                        row = await self._resolved(row, held)
                    self._apply(key, row, held, seq, remote=remote)
        except Exception:
            log.exception("NATS store %s: cannot apply key %s", self._url.shown, key)
        self._applied = max(self._applied, seq)
        if self._progress is not None:
            self._progress.set()

    def _decode(self, key: str, data: bytes) -> tuple[Any, dict[str, str]]:
        kind = key.split(".", 1)[0]
        doc = orjson.loads(data)
        held = doc.get("blobs") or {}
        row = doc.get("row")
        if kind == "wf" and "object" in doc:
            return _PlanRef(doc["object"], None), {}
        cls = _ROW_TYPES.get(kind)
        if kind == "ev":  # the events one transaction appended to a run
            return [codec.build(EventRow, e) for e in row], held
        if kind == "steps":  # a page of a run's steps
            return [codec.build(StepRow, e) for e in row], held
        value = codec.build(cls, row) if cls is not None else row
        if kind == "run":
            return (value, doc.get("updated", 0.0)), held
        return value, held

    async def _resolved(self, row: Any, held: dict[str, Any]) -> Any:
        """A row (or a page of steps) whose big payloads are in blobs, with them put back (the
        replica's own bytes when it holds the same blob there already)."""
        r = self._replica
        if isinstance(row, list):
            for step in row:
                hid = _held_id(step.run_id, step.name)
                had = self._held.get(hid, {})
                stored = r._steps.get(step.run_id, {}).get(step.name)
                for name, sha in held.get(step.name, {}).items():
                    if stored is not None and had.get(name) == sha:
                        setattr(step, name, getattr(stored, name))
                        continue
                    data = await self._blob_data(sha)
                    frame = getattr(step, name)  # the rest of an input around an output
                    setattr(step, name, data if frame is None else unframed(frame, data))
            return row
        target = row[0] if isinstance(row, tuple) else row
        stored_run = r._runs.get(target.id)
        had = self._held.get(codec.key("run", target.id), {})
        for name, sha in held.items():
            if stored_run is not None and had.get(name) == sha:
                setattr(target, name, getattr(stored_run, name))
            else:
                setattr(target, name, await self._blob_data(sha))
        return row

    async def _blob_data(self, sha: str) -> bytes:
        local = self._local_blobs.get(sha)
        if local is not None:
            return local
        obs = (
            await (await self._connected())
            .jetstream(timeout=REQUEST_TIMEOUT)
            .object_store(self._url.objects)
        )
        buffer = io.BytesIO()  # nats-py would join the chunks by `+=`: quadratic
        try:
            await obs.get(sha, writeinto=buffer)
        except nats.js.errors.ObjectNotFoundError:
            raise missing(sha) from None
        return buffer.getvalue()

    def _apply(self, key: str, row: Any, held: dict[str, Any], seq: int, remote: bool) -> None:
        """Make the replica hold `row` (None: deleted) under `key`, written at `seq`."""
        if self._revs.get(key, 0) >= seq:
            return
        self._revs[key] = seq
        parts = codec.split(key)
        kind = parts[0]
        if kind == "run":
            if held:
                self._held[key] = held
            else:
                self._held.pop(key, None)
        r = self._replica
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
                        self._on_ended()
                    if run.status is RunStatus.CANCELLED:
                        self._on_cancelled()
                    if run.status is RunStatus.RUNNING:
                        self._on_ready()  # resumed or retried
            elif kind == "steps":
                run_id = parts[1]
                steps = r._steps.setdefault(run_id, {})
                pages = self._pages.setdefault(run_id, {})
                before = pages.pop(key, set())
                rows: list[StepRow] = row or []
                names = {step.name for step in rows}
                for name in before - names:
                    steps.pop(name, None)
                    self._held.pop(_held_id(run_id, name), None)
                    for index in (r._ready, r._running, r._waiting):
                        index.pop((run_id, name), None)
                if row is None:
                    if not pages:
                        self._pages.pop(run_id, None)
                    return
                pages[key] = names
                woken = False
                for step in rows:
                    old_step = steps.get(step.name)
                    hid = _held_id(run_id, step.name)
                    if step.name in held:
                        self._held[hid] = held[step.name]
                    else:
                        self._held.pop(hid, None)
                    if old_step is step:
                        continue
                    r._put_step(step)
                    if remote and (
                        step.status is StepStatus.READY
                        or (old_step is not None and old_step.status is StepStatus.RUNNING)
                    ):
                        woken = True
                if woken:
                    self._on_ready()
            elif kind == "ev":
                run_id = parts[1]
                events = r._events.setdefault(run_id, [])
                groups = self._event_keys.setdefault(run_id, {})
                if row is None:
                    gone = set(groups.pop(key, ()))
                    events[:] = [e for e in events if e.seq not in gone]
                    if not groups:
                        self._event_keys.pop(run_id, None)
                    return
                groups[key] = [e.seq for e in row]
                for event in row:
                    at = bisect.bisect_left([e.seq for e in events], event.seq)
                    if at < len(events) and events[at].seq == event.seq:
                        events[at] = event
                    else:
                        events.insert(at, event)
                if remote:
                    self._on_events([run_id])
            elif kind == "wf":
                if isinstance(row, _PlanRef):
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
                    self._on_ready()
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
                    self._blobs.pop(parts[1], None)
                else:
                    self._blobs[parts[1]] = _BlobInfo(int(row["refs"]), int(row["size"]), row["at"])

    def _wake_all(self) -> None:
        self._on_ready()
        self._on_ended()
        self._on_cancelled()
        self._on_events(None)

    # -- committing -------------------------------------------------------------------------

    async def _commit(self, writes: Sequence[_Write], blobs: Mapping[str, bytes]) -> None:
        """Publish `writes` as one atomic batch, each expecting the revision of its key the
        replica has now, and apply them to the replica once acknowledged. _Conflict if one of
        the keys moved on; StoreError if the batch is over the server's limit."""
        if not writes:
            return
        if self.read_only:
            raise StoreError(f"NATS store {self._url.shown} is open read-only: a write was refused")
        if len(writes) > self._url.batch_limit:
            raise StoreError(
                f"NATS store {self._url.shown}: this transaction writes {len(writes)} keys, over "
                f"the limit of {self._url.batch_limit} messages in one atomic batch; nothing was "
                "written (raise the server's jetstream { limits { batch { max_msgs } } } and the "
                "URL's batch_limit=N with it: docs/nats.md)"
            )
        if len({key for key, _, _ in writes}) != len(writes):
            raise StoreError(f"NATS store {self._url.shown}: a batch wrote a key twice (a bug)")
        nc = await self._connected()
        encoded = [
            b"" if value is None else _encode(key, value, held, self.blob_threshold)
            for key, value, held in writes
        ]
        for (key, _, _), data in zip(writes, encoded, strict=True):
            if len(data) > nc.max_payload - 1024:
                raise StoreError(
                    f"NATS store {self._url.shown}: the value of {key} is {len(data)} bytes, over "
                    f"the server's max_payload of {nc.max_payload} bytes; nothing was written"
                )
        for sha, payload in blobs.items():
            if sha not in self._blobs:
                await self._put_object(sha, payload)
        self._local_blobs = blobs  # our messages may be delivered before the ack: no fetch
        try:
            await self._publish(writes, encoded)
        finally:
            self._local_blobs = {}

    async def _publish(self, writes: Sequence[_Write], encoded: Sequence[bytes]) -> None:
        nc = self._conn()
        batch = secrets.token_hex(8)
        prefix = f"$KV.{self._url.bucket}."
        last = len(writes) - 1
        for i, ((key, value, _), data) in enumerate(zip(writes, encoded, strict=True)):
            headers = {
                _WRITER: self._writer,
                "Nats-Expected-Last-Subject-Sequence": str(self._revs.get(key, 0)),
            }
            if last:  # one write is a plain compare-and-set: atomic batches cost a sync each
                headers["Nats-Batch-Id"] = batch
                headers["Nats-Batch-Sequence"] = str(i + 1)
            if value is None:
                headers[_KV_OP] = "DEL"
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
                    raise _Conflict(int(number) if number.isdigit() else 0)
                if error.get("err_code") == _BATCH_TOO_LARGE:
                    raise StoreError(
                        f"NATS store {self._url.shown}: the server refused a batch of "
                        f"{len(writes)} messages ({error.get('description')}): its "
                        "jetstream { limits { batch { max_msgs } } } is lower than this URL's "
                        f"batch_limit={self._url.batch_limit}; nothing was written"
                    )
                raise StoreError(
                    f"NATS store {self._url.shown}: the server refused a commit: "
                    f"{error.get('description')} (err_code {error.get('err_code')})"
                )
            first = int(ack["seq"]) - len(writes) + 1
            for j, (k, v, h) in enumerate(writes):
                self._apply(k, v, h, first + j, remote=False)

    async def _put_object(self, sha: str, data: bytes) -> None:
        obs = (
            await (await self._connected())
            .jetstream(timeout=REQUEST_TIMEOUT)
            .object_store(self._url.objects)
        )
        try:
            await obs.get_info(sha)
            return
        except nats.js.errors.ObjectNotFoundError:
            pass
        meta = ObjectMeta(name=sha, options=ObjectMetaOptions(max_chunk_size=BLOB_CHUNK))
        await obs.put(sha, data, meta=meta)

    async def _transact(
        self, what: str, attempt: Callable[[], tuple[list[_Write], dict[str, bytes], T]]
    ) -> T:
        """Build a transaction from the replica and commit it; on a conflict, catch up and
        build it again (the state it was decided on changed)."""

        async def run() -> T:
            for tries in range(CONFLICT_RETRIES):
                try:
                    async with self._writing():
                        writes, blobs, result = attempt()
                        await self._commit(writes, blobs)
                    return result
                except _Conflict as conflict:
                    await self._catch_up(conflict.seq)
                    await asyncio.sleep(random.uniform(0, 0.002 * min(tries + 1, 10)))
            raise StoreError(
                f"NATS store {self._url.shown}: {what} conflicted {CONFLICT_RETRIES} times with "
                "other writers; giving up"
            )

        return await self._hop(what, run())

    def _writing(self) -> asyncio.Lock:
        """This process's transactions commit one at a time: two of them decided on the same
        replica would conflict with each other (the worker batches outcomes instead)."""
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        return self._write_lock

    def _txn_writes(
        self, txns: Sequence[Txn], queues: Mapping[str, QueueConfig], flow: bool
    ) -> tuple[list[_Write], dict[str, bytes]]:
        """What the captured transactions wrote, as KV writes (and the blobs they need)."""
        r = self._replica
        writes: list[_Write] = []
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
            held = self._keep(key, fields, old, blobs, refs)
            writes.append((key, (run, updated), held))
        writes.extend(self._page_writes(steps.values(), blobs, refs, dropped))
        writes.extend(_event_writes(events))
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
        writes.extend(self._ref_writes(refs, blobs, now))
        return writes, blobs

    def _page_writes(
        self,
        changed: Iterable[StepRow],
        blobs: dict[str, bytes],
        refs: dict[str, int],
        dropped: Collection[tuple[str, str]] = (),
    ) -> list[_Write]:
        """The pages these changed (or new) steps are on, rewritten whole (without the
        `dropped` steps: the pages they were on are rewritten too)."""
        r = self._replica
        pages: dict[str, dict[str, StepRow]] = {}
        owners: dict[str, str] = {}
        for step in changed:
            key = _page_key(step.run_id, step.idx)
            pages.setdefault(key, {})[step.name] = step
            owners[key] = step.run_id
        for run_id, name in dropped:
            gone = r._steps.get(run_id, {}).get(name)
            if gone is not None:
                key = _page_key(run_id, gone.idx)
                pages.setdefault(key, {})
                owners[key] = run_id
        writes: list[_Write] = []
        for key, news in pages.items():
            run_id = owners[key]
            stored = r._steps.get(run_id, {})
            names = self._pages.get(run_id, {}).get(key, set()) | set(news)
            names -= {n for r_id, n in dropped if r_id == run_id}
            rows: list[StepRow] = []
            held: dict[str, dict[str, str]] = {}
            for name in names:
                hid = _held_id(run_id, name)
                if name in news:
                    step = news[name]
                    fields = {"output": step.output, "input": step.input}
                    h = self._keep(hid, fields, stored.get(name), blobs, refs)
                else:
                    step, h = stored[name], self._held.get(hid, {})
                rows.append(step)
                if h:
                    held[name] = h
            rows.sort(key=lambda step: step.idx)
            writes.append((key, rows, held))
        return writes

    def _keep(
        self,
        key: str,
        fields: dict[str, bytes | None],
        old: Any,
        blobs: dict[str, bytes],
        refs: dict[str, int],
    ) -> dict[str, str]:
        """The blobs a row's big payloads go to (counting references that change)."""
        was = self._held.get(key, {})
        held: dict[str, str] = {}
        for name, payload in fields.items():
            if old is not None and getattr(old, name) is payload and name in was:
                held[name] = was[name]  # unchanged: the same blob
                continue
            split = None if payload is None else framed(payload, self.blob_threshold)
            if split is not None:  # an input holding a big output: that output's blob, shared
                sha = digest(split[0])
                held[name] = sha
                blobs[sha] = split[0]
                refs[sha] = refs.get(sha, 0) + 1
            elif payload is not None and len(payload) > self.blob_threshold:
                sha = digest(payload)
                held[name] = sha
                blobs[sha] = payload
                refs[sha] = refs.get(sha, 0) + 1
            if name in was:
                refs[was[name]] = refs.get(was[name], 0) - 1
        return held

    def _ref_writes(
        self, refs: Mapping[str, int], blobs: Mapping[str, bytes], now: float
    ) -> list[_Write]:
        writes: list[_Write] = []
        for sha, delta in refs.items():
            if delta == 0:
                continue
            info = self._blobs.get(sha)
            if info is None:
                size = len(blobs[sha]) if sha in blobs else 0
                info = _BlobInfo(0, size, now)
            writes.append(
                (
                    codec.key("blob", sha),
                    {"refs": info.refs + delta, "size": info.size, "at": info.at},
                    {},
                )
            )
        return writes

    async def _captured(
        self,
        what: str,
        op: Callable[[], Coroutine[Any, Any, T]],
        flow: Callable[[T], bool] | None = None,
    ) -> T:
        """Run one of the memory store's transitions on the replica, capturing what it would
        write, and commit that."""
        loop_result: dict[str, T] = {}

        def attempt() -> tuple[list[_Write], dict[str, bytes], T]:
            r = self._replica
            r.captured, r.captured_queues = [], {}
            coro = op()
            try:
                coro.send(None)
            except StopIteration as stop:
                result: T = stop.value
            else:  # pragma: no cover - the memory store's methods never suspend
                coro.close()
                raise RuntimeError("the memory store suspended inside a transition")
            txns, queues = r.captured, r.captured_queues
            r.captured, r.captured_queues = [], {}
            writes, blobs = self._txn_writes(txns, queues, flow is not None and flow(result))
            loop_result["r"] = result
            return writes, blobs, result

        return await self._transact(what, attempt)

    # -- definitions ------------------------------------------------------------------------

    async def save_workflow(self, plan: WorkflowPlan) -> None:
        key = codec.key("wf", plan.fingerprint)
        value: Any = plan
        data = codec.encode(plan)
        if len(data) > MAX_VALUE:  # a plan of very many steps: its JSON is an object of its own

            async def put() -> None:
                await self._put_object(f"plan-{plan.fingerprint}", data)

            await self._hop("saving a workflow", put())
            value = _PlanRef(f"plan-{plan.fingerprint}", plan)

        def attempt() -> tuple[list[_Write], dict[str, bytes], None]:
            if key in self._revs and self._replica._workflows.get(plan.fingerprint):
                return [], {}, None
            return [(key, value, {})], {}, None

        await self._transact("saving a workflow", attempt)

    async def _read(self, what: str, op: Callable[[], Coroutine[Any, Any, T]]) -> T:
        async def run() -> T:
            await self._barrier()
            return await op()

        return await self._hop(what, run())

    async def get_workflow(self, name: str, fingerprint: str | None = None) -> WorkflowPlan | None:
        return await self._read(
            "reading a workflow", lambda: self._replica.get_workflow(name, fingerprint)
        )

    async def list_workflows(self) -> list[WorkflowPlan]:
        return await self._read("listing workflows", self._replica.list_workflows)

    async def workflow_known(self, fingerprint: str) -> bool:
        return await self._read(
            "reading a workflow", lambda: self._replica.workflow_known(fingerprint)
        )

    # -- runs -------------------------------------------------------------------------------

    async def create_run(
        self, run: RunRow, steps: Sequence[StepRow], events: Sequence[EventRow]
    ) -> tuple[RunRow, bool]:
        [result] = await self.create_runs([(run, steps, events)])
        return result

    async def create_runs(self, runs: Sequence[NewRun]) -> list[tuple[RunRow, bool]]:
        async def run_all() -> list[tuple[RunRow, bool]]:
            await self._barrier()
            r = self._replica
            taken: dict[str, RunRow] = {}
            for run, _, _ in runs:
                existing = r._runs.get(run.id) or taken.get(run.id)
                if existing is not None and existing.workflow != run.workflow:
                    raise RunConflict.taken(run.id, existing.workflow, run.workflow)
                taken.setdefault(run.id, run)
            results: dict[int, tuple[RunRow, bool]] = {}
            chunk: list[int] = []
            size = 0
            seen: set[str] = set()
            for i, (run, steps, events) in enumerate(runs):
                n = 1 + len(steps) + len(events)
                if run.id in seen:
                    continue
                seen.add(run.id)
                if chunk and size + n > self._url.batch_limit:
                    await self._create_chunk(runs, chunk, results)
                    chunk, size = [], 0
                chunk.append(i)
                size += n
            if chunk:
                await self._create_chunk(runs, chunk, results)
            out: list[tuple[RunRow, bool]] = []
            for i, (run, _, _) in enumerate(runs):
                if i in results:
                    out.append(results[i])
                else:  # the id came earlier in `runs`
                    first = dataclasses.replace(r._runs[run.id])
                    out.append((first, False))
            return out

        return await self._hop("creating runs", run_all())

    async def _create_chunk(
        self, runs: Sequence[NewRun], chunk: list[int], results: dict[int, tuple[RunRow, bool]]
    ) -> None:
        r = self._replica

        def attempt() -> tuple[list[_Write], dict[str, bytes], list[int]]:
            writes: list[_Write] = []
            blobs: dict[str, bytes] = {}
            refs: dict[str, int] = {}
            fresh: list[int] = []
            for i in chunk:
                run, steps, events = runs[i]
                existing = r._runs.get(run.id)
                if existing is not None:
                    if existing.workflow != run.workflow:
                        raise RunConflict.taken(run.id, existing.workflow, run.workflow)
                    results[i] = (dataclasses.replace(existing), False)
                    continue
                fresh.append(i)
                key = codec.key("run", run.id)
                held = self._keep(
                    key, {"input": run.input, "output": run.output}, None, blobs, refs
                )
                writes.append((key, (dataclasses.replace(run), run.created_at), held))
                copies = [dataclasses.replace(step) for step in steps]
                writes.extend(self._page_writes(copies, blobs, refs))
                writes.extend(_event_writes(events))
            writes.extend(self._ref_writes(refs, blobs, runs[chunk[0]][0].created_at))
            return writes, blobs, fresh

        for i in await self._transact("creating runs", attempt):
            results[i] = (dataclasses.replace(runs[i][0]), True)

    async def get_run(self, run_id: str, *, excerpt: int | None = None) -> RunRow | None:
        return await self._read(
            "reading a run", lambda: self._replica.get_run(run_id, excerpt=excerpt)
        )

    async def get_runs(self, run_ids: Collection[str]) -> list[RunRow]:
        return await self._read("reading runs", lambda: self._replica.get_runs(run_ids))

    async def list_runs(
        self,
        *,
        workflow: str | None,
        status: RunStatus | None,
        limit: int,
        before: tuple[float, str] | None,
        created_from: float | None = None,
        created_to: float | None = None,
        text: str | None = None,
        excerpt: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[RunRow]:
        return await self._read(
            "listing runs",
            lambda: self._replica.list_runs(
                excerpt=excerpt,
                workflow=workflow, status=status, limit=limit, before=before,
                created_from=created_from, created_to=created_to, text=text, labels=labels,
            ),
        )  # fmt: skip

    async def count_runs(
        self,
        *,
        workflow: str | None,
        status: RunStatus | None,
        created_from: float | None = None,
        created_to: float | None = None,
        text: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> int:
        return await self._read(
            "counting runs",
            lambda: self._replica.count_runs(
                workflow=workflow, status=status, created_from=created_from,
                created_to=created_to, text=text, labels=labels,
            ),
        )  # fmt: skip

    async def list_run_changes(
        self, after: tuple[float, str], limit: int
    ) -> list[tuple[float, str]]:
        return await self._read(
            "listing run changes", lambda: self._replica.list_run_changes(after, limit)
        )

    async def step_backlog(self, now: float) -> list[tuple[str, StepStatus, int, float | None]]:
        return await self._read("reading the backlog", lambda: self._replica.step_backlog(now))

    async def list_failed_steps(
        self,
        *,
        workflow: str | None,
        limit: int,
        before: tuple[float, str, str] | None,
        step: str | None = None,
        code: str | None = None,
        since: float | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[StepRow]:
        return await self._read(
            "listing failed steps",
            lambda: self._replica.list_failed_steps(
                workflow=workflow,
                limit=limit,
                before=before,
                step=step,
                code=code,
                since=since,
                labels=labels,
            ),
        )

    async def get_steps(self, run_id: str, *, excerpt: int | None = None) -> list[StepRow]:
        return await self._read(
            "reading steps", lambda: self._replica.get_steps(run_id, excerpt=excerpt)
        )

    async def get_events(self, run_id: str, after_seq: int, limit: int | None) -> list[EventRow]:
        return await self._read(
            "reading events", lambda: self._replica.get_events(run_id, after_seq, limit)
        )

    # -- workers ----------------------------------------------------------------------------

    async def claim(
        self,
        *,
        worker_id: str,
        fingerprints: Collection[str],
        limit: int,
        lease: float,
        now: float,
        queues: Collection[str] | None = None,
        aged_before: float | None = None,
        labels: Collection[str] = (),
        inputs: InputsWanted | None = None,
        code: CodeOf | None = None,
    ) -> Claims:
        return await self._captured(
            "claiming",
            lambda: self._replica.claim(
                worker_id=worker_id, fingerprints=fingerprints, limit=limit, lease=lease,
                now=now, queues=queues, aged_before=aged_before, labels=labels, inputs=inputs,
                code=code,
            ),
            flow=self._claimed_under_limits,
        )  # fmt: skip

    def _claimed_under_limits(self, claims: Claims) -> bool:
        r = self._replica
        if not claims:
            return False
        if any(q.limited for q in r._queues.values()):
            return True
        return any(
            (s := r._steps[c.run_id][c.step]).options is not None and s.options.key is not None
            for c in claims
        )

    async def complete_and_claim(
        self,
        outcomes: Sequence[Outcome],
        now: float,
        *,
        worker_id: str,
        fingerprints: Collection[str],
        limit: int,
        lease: float,
        queues: Collection[str] | None = None,
        aged_before: float | None = None,
        labels: Collection[str] = (),
        inputs: InputsWanted | None = None,
        code: CodeOf | None = None,
    ) -> tuple[CommitResult, Claims]:
        """The completions' batch, then the claim's: two commits, not one, as the replica
        applies a batch only once the server has it (a claim in the same batch would not see
        the steps the completions made ready). `readied` leaves out as many as it claimed."""
        result = await self._captured(
            "committing outcomes", lambda: self._replica.complete(outcomes, now)
        )
        later = self.clock.time()
        claims = await self._captured(
            "claiming",
            lambda: self._replica.claim(
                worker_id=worker_id, fingerprints=fingerprints, limit=limit, lease=lease,
                now=later, queues=queues, aged_before=aged_before, labels=labels, inputs=inputs,
                code=code,
            ),
            flow=self._claimed_under_limits,
        )  # fmt: skip
        result.readied = max(0, result.readied - len(claims))
        return result, claims

    async def configure_queue(
        self, name: str, concurrency: int | None, rate: Rate | None, now: float
    ) -> QueueConfig:
        def attempt() -> tuple[list[_Write], dict[str, bytes], QueueConfig]:
            old = self._replica._queues.get(name)
            config = reconfigure(old, name, concurrency, rate, now)
            return [(codec.key("queue", name), config, {})], {}, config

        return await self._transact("configuring a queue", attempt)

    async def list_queues(self) -> list[QueueConfig]:
        return await self._read("listing queues", self._replica.list_queues)

    async def step_inputs(self, wanted: Mapping[str, Collection[str]]) -> dict[str, StepInputs]:
        return await self._read("reading step inputs", lambda: self._replica.step_inputs(wanted))

    async def complete(self, outcomes: Sequence[Outcome], now: float) -> CommitResult:
        return await self._captured(
            "committing outcomes", lambda: self._replica.complete(outcomes, now)
        )

    async def heartbeat(self, leases: Sequence[Lease], lease: float, now: float) -> list[Lease]:
        def attempt() -> tuple[list[_Write], dict[str, bytes], list[Lease]]:
            r = self._replica
            lost: list[Lease] = []
            renewed: list[StepRow] = []
            for h in leases:
                step = r._steps.get(h.run_id, {}).get(h.step)
                run = r._runs.get(h.run_id)
                if (
                    step is None
                    or run is None
                    or step.status is not StepStatus.RUNNING
                    or step.lease_token != h.token
                    or run.status.terminal
                ):
                    lost.append(h)
                    continue
                renewed.append(dataclasses.replace(step, lease_expires_at=now + lease))
            return self._page_writes(renewed, {}, {}), {}, lost

        return await self._transact("heartbeating leases", attempt)

    async def release(
        self, leases: Sequence[Lease], now: float, max_recoveries: int | None
    ) -> CommitResult:
        return await self._captured(
            "releasing leases", lambda: self._replica.release(leases, now, max_recoveries)
        )

    async def admit_key(
        self, run_id: str, step: str, token: str, key: str, now: float
    ) -> CommitResult:
        return await self._captured(
            "admitting a concurrency key",
            lambda: self._replica.admit_key(run_id, step, token, key, now),
            flow=lambda result: True,
        )

    async def recover_expired(self, now: float, max_recoveries: int, limit: int) -> CommitResult:
        return await self._captured(
            "recovering expired leases",
            lambda: self._replica.recover_expired(now, max_recoveries, limit),
        )

    async def apply(self, action: Action, now: float) -> CommitResult:
        return await self._captured("an operator action", lambda: self._replica.apply(action, now))

    async def fire_timers(self, now: float, limit: int) -> CommitResult:
        return await self._captured("firing timers", lambda: self._replica.fire_timers(now, limit))

    async def durability(self) -> Durability:
        async def read() -> Durability:
            assert self._nc is not None
            info = await self._nc.jetstream(timeout=REQUEST_TIMEOUT).stream_info(self._url.stream)
            replicas = info.config.num_replicas or 1
            return durability.nats(await self._sync_setting(self._nc), replicas)

        return await self._hop("reading the server's settings", read())

    async def next_timer_at(self) -> float | None:
        return await self._read("reading timers", self._replica.next_timer_at)

    async def list_waiting(self, limit: int) -> list[StepRow]:
        return await self._read("listing waiting steps", lambda: self._replica.list_waiting(limit))

    async def next_ready_at(
        self, fingerprints: Collection[str], after: float | None = None
    ) -> float | None:
        return await self._read(
            "reading the next ready step", lambda: self._replica.next_ready_at(fingerprints, after)
        )

    # -- records ----------------------------------------------------------------------------

    async def get_record(self, collection: str, key: str) -> RecordRow | None:
        return await self._read(
            "reading a record", lambda: self._replica.get_record(collection, key)
        )

    async def put_record(self, row: RecordRow, expected_revision: int | None) -> tuple[bool, int]:
        key = codec.key("rec", row.collection, row.key)

        def attempt() -> tuple[list[_Write], dict[str, bytes], tuple[bool, int]]:
            old = self._replica._records.get((row.collection, row.key))
            last = 0 if old is None else old.revision
            revision = 0 if old is None or old.doc == TOMBSTONE else last
            if expected_revision is not None and expected_revision != revision:
                return [], {}, (False, revision)
            new = dataclasses.replace(row, revision=last + 1, run_id=None, step=None)
            return [(key, new, {})], {}, (True, last + 1)

        return await self._transact("writing a record", attempt)

    async def delete_record(
        self, collection: str, key: str, expected_revision: int | None
    ) -> tuple[bool, int]:
        k = codec.key("rec", collection, key)

        def attempt() -> tuple[list[_Write], dict[str, bytes], tuple[bool, int]]:
            old = self._replica._records.get((collection, key))
            revision = 0 if old is None or old.doc == TOMBSTONE else old.revision
            if not revision or (expected_revision is not None and expected_revision != revision):
                return [], {}, (False, revision)
            tomb = RecordRow(collection, key, TOMBSTONE, revision + 1, self.clock.time())
            return [(k, tomb, {})], {}, (True, revision)

        return await self._transact("deleting a record", attempt)

    async def purge_record_tombstones(self, older_than: float) -> int:
        def attempt() -> tuple[list[_Write], dict[str, bytes], int]:
            old = [
                (c, k)
                for (c, k), r in self._replica._records.items()
                if r.doc == TOMBSTONE and r.updated_at < older_than
            ][: self._url.batch_limit]
            return [(codec.key("rec", c, k), None, {}) for c, k in old], {}, len(old)

        return await self._transact("purging record tombstones", attempt)

    async def list_records(
        self, collection: str, prefix: str, after: str, limit: int
    ) -> list[RecordRow]:
        return await self._read(
            "listing records", lambda: self._replica.list_records(collection, prefix, after, limit)
        )

    # -- artifacts --------------------------------------------------------------------------

    async def list_artifacts(self, run_id: str) -> list[ArtifactRow]:
        return await self._read("listing artifacts", lambda: self._replica.list_artifacts(run_id))

    async def get_artifact(self, artifact_id: str) -> ArtifactRow | None:
        return await self._read(
            "reading an artifact", lambda: self._replica.get_artifact(artifact_id)
        )

    async def known_artifacts(self, artifact_ids: Collection[str]) -> set[str]:
        return await self._read(
            "reading artifacts", lambda: self._replica.known_artifacts(artifact_ids)
        )

    # -- deleting ---------------------------------------------------------------------------

    async def delete_run(self, run_id: str) -> bool:
        async def run() -> bool:
            await self._barrier()
            r = self._replica
            for _ in range(CONFLICT_RETRIES):
                found = r._runs.get(run_id)
                if found is None or not found.status.terminal:
                    return False
                run_key = codec.key("run", run_id)
                refs: dict[str, int] = {}
                rest: list[_Write] = []
                for key in self._pages.get(run_id, {}):
                    rest.append((key, None, {}))
                for name in r._steps.get(run_id, {}):
                    for sha in self._held.get(_held_id(run_id, name), {}).values():
                        refs[sha] = refs.get(sha, 0) - 1
                for key in self._event_keys.get(run_id, {}):
                    rest.append((key, None, {}))
                for artifact in r._artifacts.get(run_id, {}).values():
                    rest.append((codec.key("art", run_id, artifact.id), None, {}))
                    if artifact.path is None:
                        refs[artifact.sha256] = refs.get(artifact.sha256, 0) - 1
                for key, _, _ in [(run_key, None, {}), *rest]:
                    for sha in self._held.get(key, {}).values():
                        refs[sha] = refs.get(sha, 0) - 1
                first = [(run_key, None, {}), *self._ref_writes(refs, {}, self.clock.time())]
                try:
                    async with self._writing():
                        await self._commit(first, {})
                except _Conflict as conflict:
                    await self._catch_up(conflict.seq)
                    continue
                for i in range(
                    0, len(rest), self._url.batch_limit
                ):  # the run is gone: its rows next
                    try:
                        async with self._writing():
                            await self._commit(rest[i : i + self._url.batch_limit], {})
                    except _Conflict:
                        log.warning("NATS store: rows of deleted run %s changed meanwhile", run_id)
                return True
            raise StoreError(
                f"NATS store {self._url.shown}: deleting run {run_id} kept conflicting"
            )

        return await self._hop("deleting a run", run())

    # -- blobs ------------------------------------------------------------------------------

    async def put_blob(self, sha256: str, data: bytes, now: float) -> None:
        check_put(sha256, data)
        key = codec.key("blob", sha256)

        def attempt() -> tuple[list[_Write], dict[str, bytes], None]:
            info = self._blobs.get(sha256)
            refs = 0 if info is None else info.refs
            return [(key, {"refs": refs, "size": len(data), "at": now}, {})], {}, None

        async def run() -> None:
            await self._put_object(sha256, data)
            await self._transact("storing a blob", attempt)

        await self._hop("storing a blob", run())

    async def get_blob(self, sha256: str) -> bytes:
        check_hash(sha256)

        async def run() -> bytes:
            await self._barrier()
            if sha256 not in self._blobs:
                raise missing(sha256)
            return await self._blob_data(sha256)

        return await self._hop("reading a blob", run())

    async def blob_stats(self) -> BlobStats:
        async def run() -> BlobStats:
            await self._barrier()
            blobs = list(self._blobs.values())
            return BlobStats(len(blobs), sum(b.size for b in blobs), sum(b.refs for b in blobs))

        return await self._hop("reading blob stats", run())

    async def blob_refs(self, deltas: Mapping[str, int]) -> set[str]:
        """Add `deltas[hash]` to the reference counts of the blobs the store has, in one commit;
        the hashes found (what the other stores' transactions do, for the contract tests)."""

        def attempt() -> tuple[list[_Write], dict[str, bytes], set[str]]:
            found = {sha: d for sha, d in deltas.items() if sha in self._blobs}
            return self._ref_writes(found, {}, self.clock.time()), {}, set(found)

        return await self._transact("counting blob references", attempt)

    async def gc_blobs(self, older_than: float) -> int:
        async def run() -> int:
            await self._barrier()
            gone = 0
            for sha, info in list(self._blobs.items()):
                if info.refs > 0 or info.at >= older_than:
                    continue
                try:
                    async with self._writing():
                        await self._commit([(codec.key("blob", sha), None, {})], {})
                except _Conflict:
                    continue  # referred to meanwhile
                obs = await (await self._connected()).jetstream().object_store(self._url.objects)
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await obs.delete(sha)
                gone += 1
            return gone

        return await self._hop("collecting blobs", run())


def _page_key(run_id: str, idx: int) -> str:
    """The key of the page holding a run's step of this `idx`."""
    return codec.key("steps", run_id, str(idx // PAGE))


def _held_id(run_id: str, name: str) -> str:
    return f"{run_id}\x00{name}"


def _event_writes(events: Sequence[EventRow]) -> list[_Write]:
    """Events appended by one transaction: one key per run (`ev.<run>.<first seq>`)."""
    by_run: dict[str, list[EventRow]] = {}
    for event in events:
        by_run.setdefault(event.run_id, []).append(event)
    return [(codec.key("ev", run_id, str(evs[0].seq)), evs, {}) for run_id, evs in by_run.items()]


_ROW_TYPES: dict[str, type] = {
    "run": RunRow,
    "wf": WorkflowPlan,
    "queue": QueueConfig,
    "rec": RecordRow,
    "art": ArtifactRow,
}


def _frame(step: StepRow, field: str, threshold: int) -> bytes | None:
    """What a step's row keeps of a payload kept as a blob: nothing, or, for an input holding
    a big output, the rest around it (`core.blobs.framed`)."""
    payload = getattr(step, field)
    split = None if payload is None else framed(payload, threshold)
    return None if split is None else split[1]


def _encode(key: str, value: Any, held: dict[str, Any], threshold: int) -> bytes:
    """A KV value: {"row": the row's fields, "blobs": {field: sha256}} (payloads that are in
    blobs are left out of the row); a run also keeps when its status last changed."""
    doc: dict[str, Any] = {}
    if isinstance(value, _PlanRef):
        return orjson.dumps({"object": value.name})
    if isinstance(value, tuple):  # a run and its updated_at
        row, doc["updated"] = value
    else:
        row = value
    if held and key.startswith("steps."):  # a page: {step name: {field: sha256}}
        row = [
            dataclasses.replace(step, **{f: _frame(step, f, threshold) for f in held[step.name]})
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


def _denied(exc: BaseException) -> bool:
    return "permissions violation" in str(exc).lower()


async def _unless(event: asyncio.Event, work: Coroutine[Any, Any, None]) -> None:
    """Run `work`, or stop it as soon as `event` is set."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if event.is_set() and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return
    await task
