"""The SQLite store: plait's default, embedded, no server. One file holds every run.

URLs:
    sqlite:///relative/path.db           relative to the current directory
    sqlite:////absolute/path.db          four slashes: an absolute path
    sqlite:///plait.db?synchronous=normal

Options (query string):
    synchronous=full    (default) every commit is on disk before it returns: a committed outcome
                        survives a crash of the process *and* a power loss or OS crash.
    synchronous=normal  faster commits; in WAL mode the database stays consistent, but the last
                        commits before a power loss or OS crash may be lost (a process crash loses
                        nothing). The lost outcomes are re-run: steps run at least once.
                        (With full, claims and heartbeats already commit this way: losing a lease
                        in a power loss loses nothing, as its worker died with the machine.)
    busy_timeout=10     seconds a transaction waits for another process's write lock.
    blob_threshold=N    payloads longer than N bytes (default 65536) are stored once, as blobs
                        named by their SHA-256 (`core.blobs`).
    artifacts=FOLDER    where artifact files go (default: the database's path + `.artifacts`),
                        or `database`; the engine's option (`data.artifacts`), ignored here.

Several processes may share one file (workers on one machine): the database runs in WAL mode,
write transactions take the write lock up front (`BEGIN IMMEDIATE`) and wait for it up to
`busy_timeout`. Do not put the file on a network filesystem. There is no push between processes:
a worker waiting for work done elsewhere reads `PRAGMA data_version` (`change_counter`), and
claims (a write) only when another connection has committed (the worker's idle wait).

Inside a process, one sqlite3 connection is used from one dedicated thread; every async method runs
a synchronous function there, so calls are serialised and never block the event loop. A thread
that may block (a sync `start()` or `result()`) makes its calls on the connection itself instead
(`direct`, capability "direct"), taking the lock the store thread takes for each call: that
saves four crossings between threads (caller, loop, store thread, loop, caller), which cost
more than the work of a start.

Transitions are decided by the state machine (`core`): a transaction loads the rows a transition
names, and writes what it changed in one batch (executemany), so a completion costs in
proportion to the step's dependents, never to the size of its run. `complete()` commits many
outcomes in one transaction (group commit): with synchronous=full that is one fsync per batch,
not one per step.

Opening checks the file before writing anything: a file that is not SQLite, or a SQLite database
with tables but no `plait_meta`, or a plait database of a newer schema version, is refused with
SchemaVersionError and left byte-for-byte untouched. An older plait database is migrated in one
transaction by the numbered scripts in `sql/migrations/`. With `create=False` a file that holds
no plait database yet is refused ("no plait database at PATH") and SQLite opens it `mode=rw`, so
it never creates one.

Read-only (`read_only=True`; the CLI's reading commands): the file is opened with `mode=ro`, so
SQLite itself refuses any write, and nothing is switched or created: no WAL switch, no schema, no
migration (an older database is refused with SchemaVersionError: a read-only open cannot migrate
it). A write operation raises StoreError before reaching SQLite. A WAL database is read through
its index, the -shm file: SQLite creates it (and an empty -wal) if the directory lets it, and a
read-only connection cannot remove them. A copy in a directory nobody may write (a backup) whose
file holds every commit (no -wal file, or an empty one) is read with `immutable=1`, which takes
no lock and creates nothing; one with a -wal file but no -shm is refused, saying what to copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import pathname2url

from .._errors import SchemaVersionError, StoreError
from .._portal import run_to_end
from ..core import durability
from ..core.durability import Durability, in_memory
from .sql import programs
from .sql.ops import (
    EXECUTE,
    EXECUTE_ALL,
    EXECUTE_MANY,
    FETCH,
    READ_BLOBS,
    WRITE_BLOB,
    Program,
    Row,
)
from .sql.queries import SQLITE, Queries
from .sql.store import SQLStore, Wakes
from .sqlite_files import (
    SCHEMA_VERSION,
    checked_version,
    install_schema,
    missing,
    older,
    unreadable_log,
)
from .sqlite_files import check_file as _check_file
from .sqlite_files import parse_url as _parse_url

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SQLiteStore(SQLStore):
    capabilities: frozenset[str] = frozenset({"change_counter", "direct"})

    def __init__(self, url: str, *, create: bool = True, read_only: bool = False) -> None:
        """`create=False`: `open()` refuses a file that does not hold a plait database yet.
        `read_only`: open an existing database for reading only (see the module docstring)."""
        self.url = url
        self.path, self.synchronous, self.busy_timeout, self.blob_threshold = _parse_url(url)
        self.read_only = read_only
        self.create = create and not read_only
        self._queries = Queries.of(SQLITE)
        self._programs = programs.Programs(self._queries, self.blob_threshold)
        self._conn: sqlite3.Connection | None = None
        self._executor: _StoreThread | None = None
        self._synchronous_now = self.synchronous
        self._connection_lock = threading.Lock()  # held by whichever thread uses the connection
        self._direct = threading.local()  # `here`: this thread is in `direct`, making its calls

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"

    # -- lifecycle

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = _StoreThread("plait-sqlite", self._connection_lock)
        try:
            await self._call(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def subscribe(
        self,
        *,
        ready: Callable[[], None],
        ended: Callable[[], None],
        cancelled: Callable[[], None],
        live: Callable[[bool], None],
    ) -> None:
        """No push: other processes' changes are seen by looking (`change_counter`)."""

    async def change_counter(self) -> int:
        """SQLite's `PRAGMA data_version` on this store's connection: it moves when another
        connection commits to the file, and not for this one's commits. A read (no write lock),
        so that workers waiting for work elsewhere look with it instead of claiming
        (the worker's idle wait). Meaningful only on one connection: there is one per store."""
        counter: int = await self._call(self._data_version)
        return counter

    async def durability(self) -> Durability:
        mode: str = await self._call(self._journal_mode)
        if self.path == ":memory:":
            return in_memory()
        return durability.sqlite(self.synchronous, mode)

    def _journal_mode(self) -> str:
        try:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._error("reading the journal mode", exc) from exc

    async def close(self) -> None:
        if self._executor is None:
            return
        try:
            await self._call(self._close)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- the store thread: everything below runs there ------------------------------------------

    async def _transact(
        self,
        what: str,
        program: Callable[[], Program[T]],
        *,
        write: bool = True,
        lease_only: bool = False,
        wakes: Wakes[T] | None = None,  # nobody to wake: other processes poll
        unique_is_taken: bool = False,  # its create_runs counts inserted runs
    ) -> T:
        if write and self.read_only:
            raise StoreError(
                f"SQLite store {self.path} is open read-only: {what} would write to it"
            )
        result: T = await self._call(self._run_sync, what, program(), write, lease_only)
        return result

    async def _fetch(self, query: str, params: Mapping[str, Any]) -> list[Any]:
        rows: list[Any] = await self._call(self._fetch_sync, query, params)
        return rows

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError(f"SQLite store {self.path}: the store is not open (call open() first)")
        if getattr(self._direct, "here", False):  # in `direct`: the call is made right here
            with self._connection_lock:
                return fn(*args)
        return await self._executor.call(fn, *args)

    def direct(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run `call()`, a coroutine of this store's methods, on the caller's thread, blocking
        until it is done: it never waits for the store thread, as each of its calls runs here,
        under the connection's lock (`CallsDirect`). The lock is the call's, not the
        coroutine's: starts on other threads queue for a shared commit meanwhile."""
        if self._executor is None:
            raise StoreError(f"SQLite store {self.path}: the store is not open (call open() first)")
        if getattr(self._direct, "here", False):  # a direct call inside one
            return run_to_end(call())
        self._direct.here = True
        try:
            return run_to_end(call())
        finally:
            self._direct.here = False

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"SQLite store {self.path}: the store is not open (call open() first)")
        return self._conn

    def _error(self, what: str, exc: BaseException) -> StoreError:
        detail = str(exc) or type(exc).__name__
        if "locked" in detail or "busy" in detail:
            detail += (
                f" (another process held the write lock longer than busy_timeout={self.busy_timeout:g}s;"
                " raise it with ?busy_timeout=…)"
            )
        return StoreError(f"SQLite store {self.path}: {what} failed: {detail}")

    @contextmanager
    def _transaction(
        self, what: str, *, write: bool = True, lease_only: bool = False
    ) -> Iterator[sqlite3.Connection]:
        """One transaction: BEGIN IMMEDIATE for writes (take the write lock first, so a
        read-then-write never fails half-way on a lock upgrade), a plain BEGIN for reads.

        `lease_only` transactions (claims, heartbeats) commit without their own fsync: WAL
        frames are appended in order and the next durable commit syncs them too, so a power loss
        can only lose the latest leases, together with the workers that held them (all of them,
        on one machine); their steps are then simply claimable again."""
        db = self._db
        try:
            synchronous = (
                "NORMAL" if lease_only and self.synchronous == "FULL" else self.synchronous
            )
            if synchronous != self._synchronous_now:
                db.execute(f"PRAGMA synchronous = {synchronous}")
                self._synchronous_now = synchronous
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            raise self._error(what, exc) from exc
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    logger.exception("SQLite store %s: rollback failed", self.path)
            if isinstance(exc, sqlite3.Error):
                raise self._error(what, exc) from exc
            raise

    def _fetch_sync(self, query: str, params: Mapping[str, Any]) -> list[Any]:
        try:
            return self._db.execute(self._queries[query], params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(query.replace("_", " "), exc) from exc

    # -- opening, schema, migrations

    def _open(self) -> None:
        _check_file(self.path, create=self.create, read_only=self.read_only)
        if self.read_only:
            db = self._connect_read_only()
        else:  # mode=rw: SQLite itself never creates the file that was just found to exist
            db = self._connect(self.path if self.create else f"{self._uri}?mode=rw")
        try:
            self._prepare(db)
        except BaseException:
            db.close()
            raise
        self._conn = db

    @property
    def _uri(self) -> str:
        return f"file:{pathname2url(self.path)}"

    def _connect(self, target: str) -> sqlite3.Connection:
        try:
            return sqlite3.connect(
                target,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,  # one thread at a time: the connection's lock
                uri=target.startswith("file:"),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc

    def _connect_read_only(self) -> sqlite3.Connection:
        """`mode=ro`: SQLite refuses every write. A WAL database needs its -shm file (the log's
        index), which SQLite creates if the directory lets it; when neither is possible (a copy
        in a directory nobody may write) and the file holds every commit (no -wal, or an empty
        one), `immutable=1` reads the file alone, taking no lock and creating nothing."""
        db = self._connect(f"{self._uri}?mode=ro")
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_CANTOPEN:
                return db  # _prepare meets it again, and says what it means
            db.close()
        log = Path(f"{self.path}-wal")
        if log.exists() and log.stat().st_size > 0:
            raise unreadable_log(self.path)
        return self._connect(f"{self._uri}?immutable=1")

    def _prepare(self, db: sqlite3.Connection) -> None:
        q = self._queries
        try:
            version = checked_version(db, self.path, q)  # reads only: refuse before any write
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) not in (
                sqlite3.SQLITE_NOTADB,
                sqlite3.SQLITE_CORRUPT,
            ):
                raise self._error("opening", exc) from exc
            raise SchemaVersionError(
                f"{self.path} is not a plait database: SQLite cannot read it ({exc}); "
                "it was left untouched"
            ) from exc
        if version is None and not self.create:
            raise missing(self.path)
        if self.read_only and version is not None and version < SCHEMA_VERSION:
            raise older(self.path, version)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if self.read_only:
                return  # no WAL switch, no schema: nothing is written
            if self.path != ":memory:":
                mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(
                        f"SQLite store {self.path}: cannot switch to WAL mode (got {mode})"
                    )
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            self._synchronous_now = self.synchronous
            db.execute(f"PRAGMA cache_size = {CACHE_SIZE}")
            db.execute("BEGIN IMMEDIATE")
            try:
                install_schema(db, self.path, q)  # checked again, now under the write lock
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error("opening", exc) from exc

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _data_version(self) -> int:
        try:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._error("reading the change counter", exc) from exc

    def _run_sync(self, what: str, program: Program[T], write: bool, lease_only: bool) -> T:
        with self._transaction(what, write=write, lease_only=lease_only) as db:
            return run_sync(db, program)


CACHE_SIZE = -16384  # PRAGMA cache_size: 16 MiB of pages (and the OS caches the file)
PASS_THROUGH_BYTES = 4 << 20  # a blob from this size on passes through a smaller page cache
PASSING_CACHE = -2048  # PRAGMA cache_size meanwhile: 2 MiB


class _StoreThread:
    """The store's one thread: it runs calls in the order they come, and hands each result to
    its caller's loop. Like `loop.run_in_executor` on a one-thread pool, without its per-call
    machinery (a concurrent Future chained to an asyncio one): a start spent a tenth of its
    time crossing there and back."""

    def __init__(self, name: str, lock: threading.Lock) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = lock  # the connection's: `SQLiteStore.direct` callers take it too
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[T]] = loop.create_future()
        self._calls.put((loop, future, fn, args))
        # the result comes in a box emptied here: the loop's handle that wakes this task holds
        # the future until the task's step ends, and must not hold a 50 MB payload meanwhile
        return (await future).pop()

    def shutdown(self, wait: bool = True) -> None:
        """End the thread once the calls queued before have run."""
        self._calls.put(None)
        if wait:
            self._thread.join()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            _answer(call, self._lock)
            del call  # hold nothing while waiting (a 50 MB payload the call read or wrote)


_Call = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[list[Any]]", Callable[..., Any], tuple[Any, ...]
]


def _answer(call: _Call, lock: threading.Lock) -> None:
    loop, future, fn, args = call
    try:
        with lock:
            result, error = fn(*args), None
    except BaseException as exc:  # the caller's to handle, whatever it is
        result, error = None, exc
    with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[list[Any]], result: Any, error: BaseException | None) -> None:
    if future.done():  # its caller stopped waiting (cancelled)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result([result])


def run_sync(db: sqlite3.Connection, program: Program[T]) -> T:
    """Drive a program on a sqlite3 connection, inside the caller's transaction."""
    result: Any = None
    try:
        while True:
            kind, sql, params = program.send(result)
            if kind == FETCH:
                result = db.execute(sql, params).fetchall()
            elif kind == EXECUTE:
                result = db.execute(sql, params).rowcount
            elif kind == EXECUTE_MANY:
                db.executemany(sql, params)
                result = None
            elif kind == EXECUTE_ALL:
                result = db.executemany(sql, params).rowcount
            elif kind == WRITE_BLOB:
                _write_blob(db, sql, params)
                result = None
            elif kind == READ_BLOBS:
                result = _read_blobs(db, sql, params)
            else:  # LARGE: SQLite takes any size as it comes
                result = None
    except StopIteration as stop:
        value: T = stop.value
        return value


def _write_blob(db: sqlite3.Connection, sql: str, params: Mapping[str, Any]) -> None:
    """Insert a blob's row with a zeroblob (`sql` returns its rowid) and write the data into
    it, in place: sqlite3 would copy a bound parameter, and SQLite the row it builds."""
    data: bytes = params["data"]
    with _passing_through(db, len(data)):
        for (rowid,) in db.execute(sql, params).fetchall():
            if data:
                with db.blobopen("blobs", "data", rowid) as blob:
                    blob.write(data)


def _read_blobs(db: sqlite3.Connection, sql: str, params: Mapping[str, Any]) -> list[Row]:
    """(hash, data, size) of the blobs `sql` names as (hash, rowid, size): each one's data, or
    its first `excerpt` bytes, read in place into the one bytes object returned (a selected
    column is built in SQLite's memory, then copied by sqlite3; an excerpt, the whole blob)."""
    excerpt: int | None = params.get("excerpt")
    found: list[Row] = []
    for sha256, rowid, size in db.execute(sql, params).fetchall():
        data = b""
        if size and excerpt != 0:
            length = size if excerpt is None else min(size, excerpt)
            with (
                _passing_through(db, length),
                db.blobopen("blobs", "data", rowid, readonly=True) as blob,
            ):
                data = blob.read(length)
        found.append((sha256, data, size))
    return found


@contextmanager
def _passing_through(db: sqlite3.Connection, size: int) -> Iterator[None]:
    """While a large blob's pages pass through, the page cache keeps a few MB, not 16: they
    would fill it with pages no transition reads (a 50 MB payload adding the whole cache to
    the process), and push out the steps' pages."""
    if size < PASS_THROUGH_BYTES:
        yield
        return
    kept = db.execute("PRAGMA cache_size").fetchone()[0]
    db.execute(f"PRAGMA cache_size = {PASSING_CACHE}")
    try:
        yield
    finally:
        db.execute(f"PRAGMA cache_size = {int(kept)}")
