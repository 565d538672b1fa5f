"""The NATS JetStream store: worker processes share one NATS server (or cluster), no database.

URL: `nats://host:4222[,host2:4222]?namespace=NAME` (options: `stores.nats_setup`).

This module holds the connection, the consumer that keeps the replica current, the conflict
loop and the Store operations. The replica itself is `stores.nats_replica`; what a transaction
writes, and the atomic batch that publishes it, `stores.nats_commit`; key names and values,
`stores.nats_codec`.

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
import contextlib
import dataclasses
import io
import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
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
from ..core.blobs import BlobStats, check_hash, check_put, missing
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
from ..core.txn import Action
from . import nats_codec as codec
from .nats_commit import (
    KV_OP,
    REQUEST_TIMEOUT,
    WRITER,
    Conflict,
    Write,
    encode,
    event_writes,
    keep,
    page_writes,
    publish,
    ref_writes,
    txn_writes,
)
from .nats_replica import PlanRef, Replica, decode, held_id
from .nats_setup import NatsURL, check_server, describe, parse_url, probe
from .protocol import InputsWanted, NewRun

log = logging.getLogger(__name__)

T = TypeVar("T")

STORE_MARK = "plait-store"  # the stream metadata key that says a bucket is a plait store's
STORE_FORMAT = "1"
CONFLICT_RETRIES = 50
BLOB_CHUNK = 512 * 1024  # bytes per message of a blob in the Object Store (nats-py: 128 KiB)
# the longest payload kept in its row (longer ones are blobs): a page of steps, with an output
# and an input each, must fit in one message of at most the server's max_payload
MIN_PAYLOAD = 1024 * 1024
MAX_VALUE = 768 * 1024  # a workflow plan longer than this is kept in the Object Store
MAX_INLINE = 16 * 1024
CATCH_UP_TIMEOUT = 30.0
RECONNECT_WAIT = 3.0  # seconds a call waits for a connection that is being re-established


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
        self._replica = Replica()
        self._applied = 0  # the stream sequence the consumer has delivered up to
        self._progress: asyncio.Event | None = None
        self._write_lock: asyncio.Lock | None = None
        self._local_blobs: Mapping[str, bytes] = {}  # the blobs of the commit under way
        # the writes of the commit under way: key → (its message's bytes, the value, its blobs)
        self._in_flight: dict[str, tuple[bytes, Any, dict[str, Any]]] = {}
        self._sub: Any = None
        self._on_live: Callable[[bool], None] = lambda live: None
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
        r = self._replica
        r.on_ready, r.on_ended, r.on_cancelled, self._on_live = ready, ended, cancelled, live

    def subscribe_events(self, events: Callable[[Collection[str] | None], None]) -> None:
        self._replica.on_events = events

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
            self._replica.wake_all()

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
            op = msg.headers.get(KV_OP) if msg.headers else None
            # our own commit may be delivered before its acknowledgement: not news to us
            remote = not msg.headers or msg.headers.get(WRITER) != self._writer
            deleted = op is not None or not msg.data
            if self._replica.revs.get(key, 0) < seq:
                if deleted:
                    self._replica.apply_key(key, None, {}, seq, remote=remote)
                elif not remote and (mine := self._in_flight.get(key)) and mine[0] == msg.data:
                    # our own message, delivered before the commit's ack: the row it was made
                    # of, as the ack would apply it (no decoding, no blob to put back)
                    self._replica.apply_key(key, mine[1], mine[2], seq, remote=False)
                else:
                    row, held = decode(key, msg.data)
                    if isinstance(row, PlanRef):
                        plan = codec.decode(WorkflowPlan, await self._blob_data(row.name))
                        row = PlanRef(row.name, plan)
                    if held:
                        row = await self._replica.resolved(row, held, self._blob_data)
                    self._replica.apply_key(key, row, held, seq, remote=remote)
        except Exception:
            log.exception("NATS store %s: cannot apply key %s", self._url.shown, key)
        self._applied = max(self._applied, seq)
        if self._progress is not None:
            self._progress.set()

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

    # -- committing -------------------------------------------------------------------------

    async def _commit(self, writes: Sequence[Write], blobs: Mapping[str, bytes]) -> None:
        """Publish `writes` as one atomic batch, each expecting the revision of its key the
        replica had when the transaction was decided (when this is called), and apply them to the replica once acknowledged. Conflict if one of
        the keys moved on; StoreError if the batch is over the server's limit."""
        if not writes:
            return
        # the revisions the transaction was decided on: taken now, before anything awaits (a
        # key another process writes meanwhile reaches the replica, and must be a conflict)
        expected = {key: self._replica.revs.get(key, 0) for key, _, _ in writes}
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
            b"" if value is None else encode(key, value, held, self.blob_threshold)
            for key, value, held in writes
        ]
        for (key, _, _), data in zip(writes, encoded, strict=True):
            if len(data) > nc.max_payload - 1024:
                raise StoreError(
                    f"NATS store {self._url.shown}: the value of {key} is {len(data)} bytes, over "
                    f"the server's max_payload of {nc.max_payload} bytes; nothing was written"
                )
        for sha, payload in blobs.items():
            if sha not in self._replica.blob_info:
                await self._put_object(sha, payload)
        self._local_blobs = blobs  # our messages may be delivered before the ack: no fetch
        self._in_flight = {
            key: (data, value, held)
            for (key, value, held), data in zip(writes, encoded, strict=True)
        }
        try:
            first = await publish(nc, self._url, self._writer, expected, writes, encoded)
            for i, (key, value, held) in enumerate(writes):
                self._replica.apply_key(key, value, held, first + i, remote=False)
        finally:
            self._local_blobs = {}
            self._in_flight = {}

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
        self, what: str, attempt: Callable[[], tuple[list[Write], dict[str, bytes], T]]
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
                except Conflict as conflict:
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

    async def _captured(
        self,
        what: str,
        op: Callable[[], Coroutine[Any, Any, T]],
        flow: Callable[[T], bool] | None = None,
    ) -> T:
        """Run one of the memory store's transitions on the replica, capturing what it would
        write, and commit that."""
        loop_result: dict[str, T] = {}

        def attempt() -> tuple[list[Write], dict[str, bytes], T]:
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
            writes, blobs = txn_writes(
                r, txns, queues, flow is not None and flow(result), self.blob_threshold
            )
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
            value = PlanRef(f"plan-{plan.fingerprint}", plan)

        def attempt() -> tuple[list[Write], dict[str, bytes], None]:
            if key in self._replica.revs and self._replica._workflows.get(plan.fingerprint):
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

        def attempt() -> tuple[list[Write], dict[str, bytes], list[int]]:
            writes: list[Write] = []
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
                fields = {"input": run.input, "output": run.output}
                held = keep(r, key, fields, None, blobs, refs, self.blob_threshold)
                writes.append((key, (dataclasses.replace(run), run.created_at), held))
                copies = [dataclasses.replace(step) for step in steps]
                writes.extend(page_writes(self._replica, copies, blobs, refs, self.blob_threshold))
                writes.extend(event_writes(events))
            writes.extend(ref_writes(self._replica, refs, blobs, runs[chunk[0]][0].created_at))
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
        def attempt() -> tuple[list[Write], dict[str, bytes], QueueConfig]:
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
        def attempt() -> tuple[list[Write], dict[str, bytes], list[Lease]]:
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
            return page_writes(self._replica, renewed, {}, {}, self.blob_threshold), {}, lost

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

        def attempt() -> tuple[list[Write], dict[str, bytes], tuple[bool, int]]:
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

        def attempt() -> tuple[list[Write], dict[str, bytes], tuple[bool, int]]:
            old = self._replica._records.get((collection, key))
            revision = 0 if old is None or old.doc == TOMBSTONE else old.revision
            if not revision or (expected_revision is not None and expected_revision != revision):
                return [], {}, (False, revision)
            tomb = RecordRow(collection, key, TOMBSTONE, revision + 1, self.clock.time())
            return [(k, tomb, {})], {}, (True, revision)

        return await self._transact("deleting a record", attempt)

    async def purge_record_tombstones(self, older_than: float) -> int:
        def attempt() -> tuple[list[Write], dict[str, bytes], int]:
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
                rest: list[Write] = []
                for key in self._replica.pages.get(run_id, {}):
                    rest.append((key, None, {}))
                for name in r._steps.get(run_id, {}):
                    for sha in self._replica.held.get(held_id(run_id, name), {}).values():
                        refs[sha] = refs.get(sha, 0) - 1
                for key in self._replica.event_keys.get(run_id, {}):
                    rest.append((key, None, {}))
                for artifact in r._artifacts.get(run_id, {}).values():
                    rest.append((codec.key("art", run_id, artifact.id), None, {}))
                    if artifact.path is None:
                        refs[artifact.sha256] = refs.get(artifact.sha256, 0) - 1
                for key, _, _ in [(run_key, None, {}), *rest]:
                    for sha in self._replica.held.get(key, {}).values():
                        refs[sha] = refs.get(sha, 0) - 1
                first = [
                    (run_key, None, {}),
                    *ref_writes(self._replica, refs, {}, self.clock.time()),
                ]
                try:
                    async with self._writing():
                        await self._commit(first, {})
                except Conflict as conflict:
                    await self._catch_up(conflict.seq)
                    continue
                for i in range(
                    0, len(rest), self._url.batch_limit
                ):  # the run is gone: its rows next
                    try:
                        async with self._writing():
                            await self._commit(rest[i : i + self._url.batch_limit], {})
                    except Conflict:
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

        def attempt() -> tuple[list[Write], dict[str, bytes], None]:
            info = self._replica.blob_info.get(sha256)
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
            if sha256 not in self._replica.blob_info:
                raise missing(sha256)
            return await self._blob_data(sha256)

        return await self._hop("reading a blob", run())

    async def blob_stats(self) -> BlobStats:
        async def run() -> BlobStats:
            await self._barrier()
            blobs = list(self._replica.blob_info.values())
            return BlobStats(len(blobs), sum(b.size for b in blobs), sum(b.refs for b in blobs))

        return await self._hop("reading blob stats", run())

    async def blob_refs(self, deltas: Mapping[str, int]) -> set[str]:
        """Add `deltas[hash]` to the reference counts of the blobs the store has, in one commit;
        the hashes found (what the other stores' transactions do, for the contract tests)."""

        def attempt() -> tuple[list[Write], dict[str, bytes], set[str]]:
            found = {sha: d for sha, d in deltas.items() if sha in self._replica.blob_info}
            return ref_writes(self._replica, found, {}, self.clock.time()), {}, set(found)

        return await self._transact("counting blob references", attempt)

    async def gc_blobs(self, older_than: float) -> int:
        async def run() -> int:
            await self._barrier()
            gone = 0
            for sha, info in list(self._replica.blob_info.items()):
                if info.refs > 0 or info.at >= older_than:
                    continue
                try:
                    async with self._writing():
                        await self._commit([(codec.key("blob", sha), None, {})], {})
                except Conflict:
                    continue  # referred to meanwhile
                obs = await (await self._connected()).jetstream().object_store(self._url.objects)
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await obs.delete(sha)
                gone += 1
            return gone

        return await self._hop("collecting blobs", run())


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
