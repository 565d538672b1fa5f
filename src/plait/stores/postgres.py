"""The PostgreSQL store: worker processes on many machines share one database, with no other server.

URL: a libpq URL plus plait's own options, which are taken out before it reaches libpq:

    postgresql://user:password@host:5432/dbname
    postgresql://user@host/dbname?schema=plait&pool_size=10&sslmode=require

    schema=NAME     where plait's tables live (default `public`); created if missing, so one
                    database can hold several independent plait stores (not with
                    `create=False` or `read_only=True`: "no plait store in schema NAME of …").
    pool_size=N     connections this process may open (default 10).
    blob_threshold=N  payloads longer than N bytes (default 65536) are stored once, as blobs
                    named by their SHA-256 (`core.blobs`).
    artifacts=FOLDER  where artifact files go (default `database`: blobs); the engine's option
                    (`data.artifacts`), never passed to libpq.
    Any other option goes to libpq; one it does not know is refused at open, naming these.

What the store does, and why:
- One query layer with SQLite: the statements are the query files of `stores/sql/`, with
  `[postgres]` overrides, and every transaction is a program (`stores.sql.programs`) that both
  stores run. So the state machine, the order rows are loaded and locked in, and what is written
  are the same.
- Claims take ready steps with `FOR UPDATE SKIP LOCKED`: workers never wait for one another's
  candidates. Every other transaction locks the run row first (in id order), then its steps, so
  concurrent transactions queue instead of deadlocking; a deadlock or serialization failure that
  slips through anyway is retried. Completions are fenced by the lease token.
- Push wake-ups: a transaction that makes steps ready, ends runs, or ends a running step of a
  queue with a concurrency limit or with a concurrency key ("freed": a claim held back by that
  limit may now succeed) sends NOTIFY on the store's channel (delivered at commit); every process LISTENs on one extra connection and wakes its
  workers and `result()` waiters. While that connection is down, the engine polls instead.
  A transaction that appends events sends one more, `events RUN_ID …` (just `events` when the
  list would be long), which wakes the watchers of those runs (`Engine.watch`).
- Read-only (`read_only=True`; the CLI's reading commands): no schema creation or migration (an
  older schema is refused: SchemaVersionError), every session is `default_transaction_read_only`
  (the server refuses a write), and a write operation is refused before it is sent.
- Faults: a lost connection is retried once on a fresh one (every program is safe to repeat:
  outcomes are fenced, starts are idempotent), then reported as StoreError; the worker backs off
  and tries again, and the pool reconnects when the server is back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, nullcontext
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .._errors import StoreError
from .._portal import Portal
from ..core import durability
from ..core.durability import Durability
from .postgres_setup import (
    SCHEMA_VERSION,
    check_schema,
    connect_error,
    describe,
    older,
    parse_url,
    schema_statements,
)
from .sql import programs
from .sql.ops import EXECUTE, EXECUTE_ALL, FETCH, LARGE, READ_BLOBS, WRITE_BLOB, Program, fetch
from .sql.queries import POSTGRES, Queries
from .sql.rows import EVENT_COLUMNS
from .sql.store import SQLStore, Wakes

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[tuple[Any, ...]]

RECONNECT_TIMEOUT = 5.0  # seconds the pool keeps retrying a lost connection by itself
ACQUIRE_TIMEOUT = 10.0  # seconds to wait for a pooled connection before reporting the store down
CONFLICT_RETRIES = 8  # deadlock / serialization failure: the transaction is simply run again
# the connection is gone (server restarted, network, or the session was ended for idling in
# a transaction while this process was frozen): try once more on a fresh one
_LOST = (psycopg.OperationalError, pg_errors.IdleInTransactionSessionTimeout)
IDLE_IN_TRANSACTION_TIMEOUT_MS = 10_000
LOCK_TIMEOUT_MS = 5_000
_RETRYABLE = (
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
    pg_errors.LockNotAvailable,
)
EVENTS_NOTE = "events"
# run ids named in one `events` notification at most; a longer list wakes every watcher instead
EVENTS_NOTE_MAX = 1000


def _nothing() -> None:
    return None


class _SendLarge(Exception):
    """A program in pipeline mode is about to send a large parameter, which psycopg's pipeline
    mode can hang on (psycopg issue #685, seen from about 20 MB): run it again without."""


class PostgresStore(SQLStore):
    capabilities: frozenset[str] = frozenset({"push", "push_events"})
    _count_new_runs = False  # a start travels in one round trip (`Programs.create_runs`)

    def __init__(self, url: str, *, create: bool = True, read_only: bool = False) -> None:
        """`create=False`: `open()` refuses a schema without plait's tables (or no schema).
        `read_only`: open an existing store for reading only: nothing is created or migrated,
        every session is `default_transaction_read_only`, and a write is refused at once."""
        self.url = url
        self._url = parse_url(url)
        self.read_only = read_only
        self.create = create and not read_only
        self._queries = Queries.of(POSTGRES)
        self.blob_threshold = self._url.blob_threshold
        self._programs = programs.Programs(self._queries, self.blob_threshold)
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._listener: asyncio.Task[None] | None = None
        # The pool and the listener live on the store's own loop thread, as the SQLite store's
        # connection lives on its own thread: callers on any loop (an Engine's sync methods use
        # its portal, async ones the caller's loop) hop there, and a caller's loop that blocks
        # holds up no one else.
        self._thread = Portal(name="plait-postgres")
        self._on_ready: Callable[[], None] = _nothing
        self._on_ended: Callable[[], None] = _nothing
        self._on_cancelled: Callable[[], None] = _nothing
        self._on_live: Callable[[bool], None] = lambda live: None
        self._on_events: Callable[[Collection[str] | None], None] = lambda run_ids: None
        # Our transactions last milliseconds. A session idle inside one for longer belongs to a
        # frozen or partitioned process: the server ends it, so its row locks do not hold up
        # every other worker; and a lock wait that long is given up and retried.
        self._session_setup = sql.SQL(
            "SET search_path TO {}; SET idle_in_transaction_session_timeout = {};"
            " SET lock_timeout = {}; SET default_transaction_read_only = {}"
        ).format(
            sql.Identifier(self._url.schema),
            sql.Literal(f"{IDLE_IN_TRANSACTION_TIMEOUT_MS}ms"),
            sql.Literal(f"{LOCK_TIMEOUT_MS}ms"),
            sql.Literal("on" if read_only else "off"),
        )

    def __repr__(self) -> str:
        return f"PostgresStore({self._url.shown!r})"

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
        """Call `events(run_ids)` when transactions (of any process) append to these runs'
        logs; `events(None)` when which is not known (a notification may have been missed)."""
        self._on_events = events

    # -- lifecycle

    async def _hop(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the store's loop thread (at once if already there)."""
        if self._thread.running_here():
            return await work
        return await asyncio.wrap_future(self._thread.submit(work))

    async def open(self) -> None:
        try:
            await self._hop(self._open())
        except BaseException:
            if self._pool is None:
                self._thread.close()  # started for nothing
            raise

    async def _open(self) -> None:
        if self._pool is not None:
            return
        await self._prepare_schema()
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._url.conninfo,
            min_size=1,
            max_size=self._url.pool_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            open=False,
            name=f"plait-{self._url.schema}",
            # after an outage, try again soon and then on demand: psycopg_pool's default backs
            # off for minutes, leaving the store unusable long after the server is back
            reconnect_timeout=RECONNECT_TIMEOUT,
        )
        try:
            await pool.open(wait=True, timeout=ACQUIRE_TIMEOUT)
        except PoolTimeout as exc:
            await pool.close()
            raise connect_error(self._url.shown, exc) from None
        self._pool = pool
        self._listener = asyncio.create_task(self._listen(), name="plait-postgres-listen")

    async def close(self) -> None:
        if self._pool is None:
            return
        await self._hop(self._close())
        self._thread.close()

    async def _close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _configure(self, conn: Conn) -> None:
        await conn.execute(self._session_setup)

    async def _prepare_schema(self) -> None:
        """Create the schema, or migrate it, once across processes (advisory lock); refuse a
        schema that is not plait's or is newer than this code, leaving it untouched."""
        where = f"PostgreSQL store {self._url.shown} (schema {self._url.schema})"
        try:
            conn = await psycopg.AsyncConnection.connect(self._url.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise connect_error(self._url.shown, exc) from None
        try:
            async with conn:
                await self._configure(conn)
                async with conn.transaction():
                    if not self.read_only:
                        lock = f"plait schema {self._url.schema}"
                        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))
                    version = await self._schema_version(conn, where)
                    if version == SCHEMA_VERSION:
                        return
                    if version is None and not self.create:
                        raise StoreError(
                            f"no plait store in schema {self._url.schema} of {self._url.shown}; "
                            "a worker or `plait run` creates it"
                        )
                    if version is not None and self.read_only:
                        raise older(where, version)
                    await conn.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                            sql.Identifier(self._url.schema)
                        )
                    )
                    for statement in schema_statements(version):
                        await conn.execute(statement)
                    await conn.execute(
                        self._queries["set_schema_version"], {"version": str(SCHEMA_VERSION)}
                    )
                log.info("%s: schema at version %d", where, SCHEMA_VERSION)
        except StoreError:
            raise
        except pg_errors.InsufficientPrivilege as exc:
            raise StoreError(
                f"{where}: permission denied while creating plait's tables: {describe(exc)}"
            ) from None
        except psycopg.Error as exc:
            raise StoreError(f"{where}: preparing the schema failed: {describe(exc)}") from None

    async def _schema_version(self, conn: Conn, where: str) -> int | None:
        cur = await conn.execute(self._queries["user_tables"])
        tables = {row[0] for row in await cur.fetchall()}
        raw = None
        if "plait_meta" in tables:
            cur = await conn.execute(self._queries["get_schema_version"])
            row = await cur.fetchone()
            raw = None if row is None else str(row[0])
        return check_schema(where, tables, raw)

    # -- running programs ---------------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[Conn]:
        if self._pool is None:
            raise StoreError(
                f"PostgreSQL store {self._url.shown}: the store is not open (call open() first)"
            )
        try:
            async with self._pool.connection(timeout=ACQUIRE_TIMEOUT) as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreError(
                f"PostgreSQL store {self._url.shown}: {what} failed: no connection to the server "
                f"within {ACQUIRE_TIMEOUT:g}s ({describe(exc)})"
            ) from None

    async def _transact(
        self,
        what: str,
        program: Callable[[], Program[T]],
        *,
        write: bool = True,
        lease_only: bool = False,
        wakes: Wakes[T] | None = None,
        unique_is_taken: bool = False,
    ) -> T:
        """Run a program in one transaction, sending its notifications with the commit.

        A deadlock or serialization failure runs it again; so does a connection lost on the
        way (once: a pooled connection may have died with a server restart). Every program is
        safe to repeat: outcomes are fenced by their lease, runs are created once by id."""
        if write and self.read_only:
            raise StoreError(
                f"PostgreSQL store {self._url.shown} is open read-only: {what} would write to it"
            )
        if not self._thread.running_here():
            return await self._hop(
                self._transact(
                    what, program, write=write, wakes=wakes, unique_is_taken=unique_is_taken
                )
            )
        conflicts = lost = 0
        pipelined = True
        while True:
            try:
                async with self._connection(what) as conn:
                    if not write:
                        return await _drive(conn, program())
                    # Pipeline mode: statements whose results nobody waits for (BEGIN, the
                    # writes, NOTIFY, COMMIT) travel together, so a transaction costs a round
                    # trip per read, not per statement, and holds its row locks that much less.
                    # A transaction that sends a large payload (a blob) runs without it.
                    appended = _Appended(self._programs.insert_event)
                    async with (
                        conn.pipeline() if pipelined else nullcontext() as pipeline,
                        conn.transaction(),
                    ):
                        result = await _drive(conn, program(), pipeline, appended)
                        notes = list(wakes(result)) if wakes is not None else []
                        if appended.runs:
                            notes.append(appended.note())
                        for note in notes:
                            await conn.execute(
                                "SELECT pg_notify(%s, %s)", (self._url.channel, note)
                            )
                    return result
            except _SendLarge:
                pipelined = False  # rolled back before it sent the payload: again, plainly
            except pg_errors.UniqueViolation as exc:
                if unique_is_taken:  # a hopeful create_runs met a run id taken: rolled back
                    raise programs.RunsTaken from None
                raise self._error(what, exc) from None
            except _RETRYABLE as exc:
                conflicts += 1
                if conflicts > CONFLICT_RETRIES:
                    raise self._error(what, exc) from None
                log.debug("PostgreSQL store: %s hit %s; running it again", what, exc.sqlstate)
                await asyncio.sleep(random.uniform(0, 0.005 * conflicts))
            except _LOST as exc:
                lost += 1
                if lost > 1:
                    raise self._error(what, exc) from None
                log.warning(
                    "PostgreSQL store %s: %s lost its connection (%s); trying a fresh one",
                    self._url.shown, what, describe(exc),
                )  # fmt: skip
            except psycopg.Error as exc:
                raise self._error(what, exc) from None

    async def _fetch(self, query: str, params: Mapping[str, Any]) -> list[Any]:
        sql_text = self._queries[query]
        what = query.replace("_", " ")
        return await self._transact(what, lambda: fetch(sql_text, params), write=False)

    async def durability(self) -> Durability:
        rows = await self._fetch("durability_settings", {})
        return durability.postgres({str(name): str(value) for name, value in rows})

    def _error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"PostgreSQL store {self._url.shown}: {what} failed: {describe(exc)}")

    # -- push wake-ups ------------------------------------------------------------------------

    async def _listen(self) -> None:
        """LISTEN on one dedicated connection for the life of the store, reconnecting with
        backoff. Each (re)connection wakes everyone once: a notification may have been missed."""
        listen = sql.SQL("LISTEN {}").format(sql.Identifier(self._url.channel))
        backoff = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url.conninfo,
                    autocommit=True,
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                )
                async with conn:
                    await conn.execute(listen)
                    if backoff > 0.1:
                        log.info("PostgreSQL store %s: notifications restored", self._url.shown)
                    backoff = 0.1
                    self._on_live(True)
                    self._on_ready()
                    self._on_ended()
                    self._on_cancelled()
                    self._on_events(None)
                    async for note in conn.notifies():
                        if note.payload in ("ready", "freed"):  # a claim may succeed now
                            self._on_ready()
                        elif note.payload == "ended":
                            self._on_ended()
                        elif note.payload == "cancelled":
                            self._on_cancelled()
                        elif note.payload.startswith(EVENTS_NOTE):
                            self._on_events(note.payload.split()[1:] or None)
            except asyncio.CancelledError:
                self._on_live(False)
                raise
            except Exception as exc:  # the server went away, or refused us: poll meanwhile
                log.warning(
                    "PostgreSQL store %s: notification connection lost (%s); polling until it "
                    "is back, next try in %.1fs",
                    self._url.shown, describe(exc), backoff,
                )  # fmt: skip
            self._on_live(False)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


_RUN_ID = EVENT_COLUMNS.index("run_id")
_FLOATS = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _array(column: Sequence[Any]) -> Any:
    """One column of a write's rows as the text of a PostgreSQL array, which the statement
    casts (`CAST(:status AS text[])`): built with a few string methods per value, where
    psycopg's generic list adaptation looks up an adapter and escapes with a regular
    expression per element (a third of a worker's CPU with 4 processes on W1, py-spy).
    Elements are quoted and escaped as the array syntax says (backslash, double quote);
    bytes go as bytea's hex form. A column with any other type goes as a list, as before."""
    parts = []
    for value in column:
        if value is None:
            parts.append("NULL")
        elif isinstance(value, str):
            parts.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif isinstance(value, bool):
            parts.append("t" if value else "f")
        elif isinstance(value, int):
            parts.append(str(value))
        elif isinstance(value, float):
            parts.append("NaN" if value != value else _FLOATS.get(value) or repr(value))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            parts.append('"\\\\x' + bytes(value).hex() + '"')  # "\\x…": bytea's hex input
        else:
            return list(column)
    return "{" + ",".join(parts) + "}"


class _Appended:
    """The runs a transaction appends events to, for its one `events` notification."""

    def __init__(self, insert_event: str) -> None:
        self.insert_event = insert_event
        self.runs: set[str] = set()

    def saw(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        if query == self.insert_event:
            self.runs.update(row[_RUN_ID] for row in rows)

    def note(self) -> str:
        named = " ".join(sorted(self.runs))
        if len(named) > EVENTS_NOTE_MAX or any(" " in r for r in self.runs):
            return EVENTS_NOTE  # too many to name: every watcher looks
        return f"{EVENTS_NOTE} {named}"


async def _drive(
    conn: Conn,
    program: Program[T],
    pipeline: psycopg.AsyncPipeline | None = None,
    appended: _Appended | None = None,
) -> T:
    """Run a program's statements on a connection (inside the caller's transaction, if any).
    In pipeline mode a row count is known only once the server has answered: sync for it.
    The runs it appends events to are added to `appended`."""
    result: Any = None
    async with conn.cursor() as cur:
        try:
            while True:
                kind, query, params = program.send(result)
                if kind == FETCH:
                    await cur.execute(query, params)
                    result = await cur.fetchall()
                elif kind == READ_BLOBS:  # bytea in binary: as stored, not as hex text twice
                    await cur.execute(query, params, binary=True)  # as long, then decoded
                    result = await cur.fetchall()
                elif kind in (EXECUTE, WRITE_BLOB):
                    await cur.execute(query, params)
                    if pipeline is not None:
                        await pipeline.sync()
                    result = cur.rowcount
                elif kind == LARGE:
                    if pipeline is not None:
                        raise _SendLarge
                    result = None
                else:  # the [postgres] text of a write takes one array per column
                    if appended is not None:
                        appended.saw(query, params)
                    result = 0 if kind == EXECUTE_ALL else None
                    if params:
                        columns = [_array(column) for column in zip(*params, strict=True)]
                        await cur.execute(query, columns)
                        if kind == EXECUTE_ALL:  # its count decides what comes next
                            if pipeline is not None:
                                await pipeline.sync()
                            result = cur.rowcount
        except StopIteration as stop:
            value: T = stop.value
            return value
