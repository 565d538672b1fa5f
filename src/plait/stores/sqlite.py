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

Several processes may share one file (workers on one machine): the database runs in WAL mode,
write transactions take the write lock up front (`BEGIN IMMEDIATE`) and wait for it up to
`busy_timeout`. Do not put the file on a network filesystem.

Inside a process, one sqlite3 connection is used from one dedicated thread; every async method runs
a synchronous function there, so calls are serialised and never block the event loop. Transitions
are decided by `plait._transitions`: a transaction loads the rows a transition names, and writes
what it changed in one batch (executemany), so a completion costs in proportion to the step's
dependents, never to the size of its run. `complete()` commits many outcomes in one transaction
(group commit): with synchronous=full that is one fsync per batch, not one per step.

Opening checks the file before writing anything: a file that is not SQLite, or a SQLite database
with tables but no `plait_meta`, or a plait database of a newer schema version, is refused with
SchemaVersionError and left byte-for-byte untouched. An older plait database is migrated in one
transaction by the numbered scripts in `sql/migrations/`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import secrets
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from .._errors import SchemaVersionError, StoreError
from .._records import (
    Claim,
    CommitResult,
    Held,
    NewEvent,
    Outcome,
    RunRow,
    RunStatus,
    StepInputs,
    StepRow,
    StepStatus,
    WorkflowPlan,
)
from .._transitions import Need, StepKey, Txn, claim, complete, drive, recover, release
from . import _sql
from ._sqlite_files import check_file as _check_file
from ._sqlite_files import checked_version, install_schema
from ._sqlite_files import parse_url as _parse_url

logger = logging.getLogger(__name__)

T = TypeVar("T")

_NO_LIMIT = 2**62
_STATUS = {s.value: s for s in StepStatus}


class _Txn(Txn):
    """A transaction that remembers the payloads it loaded, to write back only changed ones."""

    def __init__(self, now: float) -> None:
        super().__init__(now)
        self.step_outputs: dict[StepKey, bytes | None] = {}
        self.run_outputs: dict[str, bytes | None] = {}


class SQLiteStore:
    capabilities: frozenset[str] = frozenset()

    def __init__(self, url: str) -> None:
        self.url = url
        self.path, self.synchronous, self.busy_timeout = _parse_url(url)
        self._queries = q = _sql.Queries.of(_sql.SQLITE)
        # the hot path binds tuples: cheaper to build and to bind than dicts
        self._insert_step = q.positional("insert_step", _sql.STEP_COLUMNS)
        self._insert_event = q.positional("insert_event", _sql.EVENT_COLUMNS)
        self._update_step = q.positional("update_step", _sql.UPDATE_STEP)
        self._update_step_output = q.positional("update_step_output", _sql.UPDATE_STEP_OUTPUT)
        self._update_run = q.positional("update_run", _sql.UPDATE_RUN)
        self._update_run_output = q.positional("update_run_output", _sql.UPDATE_RUN_OUTPUT)
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._synchronous_now = self.synchronous

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"

    # -- lifecycle

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plait-sqlite")
        try:
            await self._call(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        if self._executor is None:
            return
        try:
            await self._call(self._close)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- definitions

    async def save_workflow(self, plan: WorkflowPlan) -> None:
        params = {
            "fingerprint": plan.fingerprint,
            "name": plan.name,
            "version": plan.version,
            "created_at": plan.created_at,
            "plan": _sql.plan_to_json(plan),
        }
        await self._call(self._execute_write, "save workflow", "save_workflow", params)

    async def get_workflow(self, name: str, fingerprint: str | None = None) -> WorkflowPlan | None:
        if fingerprint is None:
            rows = await self._call(self._fetch, "get_latest_workflow", {"name": name})
        else:
            params = {"name": name, "fingerprint": fingerprint}
            rows = await self._call(self._fetch, "get_workflow", params)
        return _sql.plan_from_json(rows[0][0]) if rows else None

    async def list_workflows(self) -> list[WorkflowPlan]:
        rows = await self._call(self._fetch, "list_workflows", {})
        return [_sql.plan_from_json(row[0]) for row in rows]

    # -- runs

    async def create_run(
        self, run: RunRow, steps: Sequence[StepRow], events: Sequence[NewEvent]
    ) -> tuple[RunRow, bool]:
        return await self._call(self._create_run, run, steps, events)

    async def get_run(self, run_id: str) -> RunRow | None:
        rows = await self._call(self._fetch, "get_run", {"id": run_id})
        return _sql.run_from_row(rows[0]) if rows else None

    async def list_runs(
        self,
        *,
        workflow: str | None,
        status: RunStatus | None,
        limit: int,
        before: tuple[float, str] | None,
    ) -> list[RunRow]:
        params: dict[str, Any] = {
            "workflow": workflow,
            "status": status.value if status is not None else None,
            "limit": limit,
            "before_at": before[0] if before is not None else None,
            "before_id": before[1] if before is not None else None,
        }
        if workflow is None:
            query = "list_runs"
        elif status is None:
            query = "list_runs_of_workflow"
        else:
            query = "list_runs_of_workflow_status"
        rows = await self._call(self._fetch, query, params)
        return [_sql.run_from_row(row) for row in rows]

    async def get_steps(self, run_id: str) -> list[StepRow]:
        rows = await self._call(self._fetch, "get_steps", {"run_id": run_id})
        return [_sql.step_from_row(row) for row in rows]

    async def get_events(self, run_id: str, after_seq: int, limit: int | None) -> list[NewEvent]:
        params = {
            "run_id": run_id,
            "after_seq": after_seq,
            "limit": _NO_LIMIT if limit is None else limit,
        }
        rows = await self._call(self._fetch, "get_events", params)
        return [_sql.event_from_row(row) for row in rows]

    # -- workers

    async def claim(
        self, *, worker_id: str, fingerprints: Collection[str], limit: int, lease: float, now: float
    ) -> list[Claim]:
        if not fingerprints or limit <= 0:
            return []
        return await self._call(self._claim, worker_id, list(fingerprints), limit, lease, now)

    async def step_inputs(self, wanted: Mapping[str, Collection[str]]) -> dict[str, StepInputs]:
        if not wanted:
            return {}
        return await self._call(self._step_inputs, {k: list(v) for k, v in wanted.items()})

    async def complete(self, outcomes: Sequence[Outcome], now: float) -> CommitResult:
        if not outcomes:
            return CommitResult()
        return await self._call(self._complete, list(outcomes), now)

    async def heartbeat(self, held: Sequence[Held], lease: float, now: float) -> list[Held]:
        if not held:
            return []
        return await self._call(self._heartbeat, list(held), now + lease)

    async def release(self, held: Sequence[Held], now: float) -> CommitResult:
        if not held:
            return CommitResult()
        return await self._call(self._release, list(held), now)

    async def recover_expired(self, now: float, max_recoveries: int, limit: int) -> CommitResult:
        return await self._call(self._recover_expired, now, max_recoveries, limit)

    async def next_ready_at(self, fingerprints: Collection[str]) -> float | None:
        if not fingerprints:
            return None
        params = {"fingerprint_list": self._queries.dialect.list_param(fingerprints)}
        rows = await self._call(self._fetch, "next_ready_at", params)
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    # -- the store thread: everything below runs there ------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError(f"SQLite store {self.path}: the store is not open (call open() first)")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

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

    def _fetch(self, query: str, params: Mapping[str, Any]) -> list[Any]:
        try:
            return self._db.execute(self._queries[query], params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(query.replace("_", " "), exc) from exc

    def _execute_write(self, what: str, query: str, params: Mapping[str, Any]) -> None:
        with self._transaction(what) as db:
            db.execute(self._queries[query], params)

    # -- opening, schema, migrations

    def _open(self) -> None:
        _check_file(self.path)
        try:
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=True
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        try:
            self._prepare(db)
        except BaseException:
            db.close()
            raise
        self._conn = db

    def _prepare(self, db: sqlite3.Connection) -> None:
        q = self._queries
        try:
            checked_version(db, self.path, q)  # reads only: refuse before any write
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
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if self.path != ":memory:":
                mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(
                        f"SQLite store {self.path}: cannot switch to WAL mode (got {mode})"
                    )
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            self._synchronous_now = self.synchronous
            db.execute("PRAGMA cache_size = -65536")
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

    # -- runs

    def _create_run(
        self, run: RunRow, steps: Sequence[StepRow], events: Sequence[NewEvent]
    ) -> tuple[RunRow, bool]:
        q = self._queries
        with self._transaction(f"create run {run.id!r}") as db:
            if db.execute(q["insert_run"], _sql.run_insert_params(run)).rowcount == 0:
                row = db.execute(q["get_run"], {"id": run.id}).fetchone()
                return _sql.run_from_row(row), False
            db.executemany(self._insert_step, map(_sql.step_insert_row, steps))
            db.executemany(self._insert_event, map(_sql.event_row, events))
        return dataclasses.replace(run), True

    # -- workers

    def _claim(
        self, worker_id: str, fingerprints: list[str], limit: int, lease: float, now: float
    ) -> list[Claim]:
        q = self._queries
        with self._transaction("claim", lease_only=True) as db:
            params = {
                "now": now,
                "fingerprint_list": q.dialect.list_param(fingerprints),
                "limit": limit,
            }
            rows = db.execute(q["claim_candidates"], params).fetchall()
            if not rows:
                return []
            txn = _Txn(now)
            keys = []
            for row in rows:
                step = _sql.step_from_row(row)
                self._add_step(txn, step)
                keys.append((step.run_id, step.name))
            self._load_runs(txn, {run_id for run_id, _ in keys})
            for run_id, name in keys:
                token = secrets.token_hex(16)
                transition = claim(txn, run_id, name, token=token, worker_id=worker_id, lease=lease)
                drive(transition, self._load, txn)
            self._write(txn)
        return txn.claims

    def _step_inputs(self, wanted: dict[str, list[str]]) -> dict[str, StepInputs]:
        q = self._queries
        with self._transaction("read step inputs", write=False) as db:
            ids = q.dialect.list_param(wanted)
            inputs = {
                row[0]: bytes(row[1]) for row in db.execute(q["get_run_inputs"], {"id_list": ids})
            }
            keys = [[run_id, name] for run_id, names in wanted.items() for name in names]
            ends: dict[str, dict[str, tuple[StepStatus, bytes | None]]] = {r: {} for r in inputs}
            if keys:
                params = {"key_list": q.dialect.list_param(keys)}
                for run_id, name, status, output in db.execute(q["get_step_ends_by_key"], params):
                    if run_id in ends:
                        ends[run_id][name] = (
                            _STATUS[status],
                            None if output is None else bytes(output),
                        )
        return {run_id: StepInputs(inputs[run_id], ends[run_id]) for run_id in inputs}

    def _complete(self, outcomes: list[Outcome], now: float) -> CommitResult:
        with self._transaction("complete"):
            txn = _Txn(now)
            self._preload(txn, outcomes)
            for outcome in outcomes:
                drive(complete(txn, outcome), self._load, txn)
            self._write(txn)
        return txn.result

    def _heartbeat(self, held: list[Held], expires: float) -> list[Held]:
        extend = self._queries["extend_lease"]
        lost = []
        with self._transaction("heartbeat", lease_only=True) as db:
            for h in held:
                params = {
                    "run_id": h.run_id,
                    "name": h.step,
                    "token": h.token,
                    "lease_expires_at": expires,
                }
                if db.execute(extend, params).rowcount == 0:
                    lost.append(h)
        return lost

    def _release(self, held: list[Held], now: float) -> CommitResult:
        with self._transaction("release"):
            txn = _Txn(now)
            self._preload_keys(txn, [(h.run_id, h.step) for h in held])
            for h in held:
                drive(release(txn, h.run_id, h.step, h.token), self._load, txn)
            self._write(txn)
        return txn.result

    def _recover_expired(self, now: float, max_recoveries: int, limit: int) -> CommitResult:
        q = self._queries
        with self._transaction("recover expired leases") as db:
            txn = _Txn(now)
            if limit <= 0:
                return txn.result
            keys = [
                (r[0], r[1]) for r in db.execute(q["expired_leases"], {"now": now, "limit": limit})
            ]
            if not keys:
                return txn.result
            self._preload_keys(txn, keys)
            for run_id, name in keys:
                drive(recover(txn, run_id, name, max_recoveries), self._load, txn)
            self._write(txn)
        return txn.result

    # -- loading rows into a transaction, and writing it

    def _add_step(self, txn: _Txn, step: StepRow) -> None:
        key = (step.run_id, step.name)
        if key not in txn.steps:
            txn.steps[key] = step
            txn.step_outputs[key] = step.output

    def _load_runs(self, txn: _Txn, run_ids: Iterable[str]) -> None:
        missing = [r for r in run_ids if r not in txn.runs]
        if not missing:
            return
        q = self._queries
        if len(missing) == 1:
            rows = self._db.execute(q["get_run"], {"id": missing[0]}).fetchall()
        else:
            rows = self._db.execute(
                q["get_runs"], {"id_list": q.dialect.list_param(missing)}
            ).fetchall()
        for row in rows:
            run = _sql.run_from_row(row)
            txn.runs[run.id] = run
            txn.run_outputs[run.id] = run.output

    def _load_keys(self, txn: _Txn, keys: Collection[tuple[str, str]]) -> list[StepRow]:
        q = self._queries
        missing = [[r, n] for r, n in keys if (r, n) not in txn.steps]
        if not missing:
            return []
        params = {"key_list": q.dialect.list_param(missing)}
        loaded = [
            _sql.step_from_row(row) for row in self._db.execute(q["get_steps_by_key"], params)
        ]
        for step in loaded:
            self._add_step(txn, step)
        return loaded

    def _preload_keys(self, txn: _Txn, keys: list[tuple[str, str]]) -> None:
        self._load_runs(txn, {run_id for run_id, _ in keys})
        self._load_keys(txn, keys)

    def _preload(self, txn: _Txn, outcomes: list[Outcome]) -> None:
        """Load in three batched reads what a group of completions will need: the runs, the
        steps, and the dependents of the steps that will end (a transition loads the rest)."""
        keys = [(o.run_id, o.step) for o in outcomes]
        self._preload_keys(txn, keys)
        dependents: dict[tuple[str, str], None] = {}
        for outcome in outcomes:
            step = txn.steps.get((outcome.run_id, outcome.step))
            if (
                step is not None
                and step.dependents
                and step.status is StepStatus.RUNNING
                and step.lease_token == outcome.token
                and (outcome.succeeded or outcome.retry_at is None)
            ):
                for edge in step.dependents:
                    dependents[(outcome.run_id, edge.target)] = None
        if dependents:
            self._load_keys(txn, dependents)

    def _load(self, txn: Txn, need: Need) -> None:
        """Load what a transition asked for: the run and the named steps (one query each)."""
        assert isinstance(txn, _Txn)
        q = self._queries
        db = self._db
        self._load_runs(txn, (need.run_id,))
        if not need.steps:
            return
        if len(need.steps) == 1:
            rows = db.execute(q["get_step"], {"run_id": need.run_id, "name": need.steps[0]})
        else:
            params = {"run_id": need.run_id, "name_list": q.dialect.list_param(need.steps)}
            rows = db.execute(q["get_steps_named"], params)
        for row in rows:
            self._add_step(txn, _sql.step_from_row(row))

    def _write(self, txn: _Txn) -> None:
        """Write what the transaction changed: mutable columns only, payloads only if changed."""
        self._write_changed(
            txn.changed_steps, txn.step_outputs, _sql.step_update_row, _sql.step_update_output_row,
            self._update_step, self._update_step_output,
        )  # fmt: skip
        self._write_changed(
            txn.changed_runs, txn.run_outputs, _sql.run_update_row, _sql.run_update_output_row,
            self._update_run, self._update_run_output,
        )  # fmt: skip
        if txn.events:
            self._db.executemany(self._insert_event, map(_sql.event_row, txn.events))

    def _write_changed(
        self,
        changed: Mapping[Any, Any],
        loaded_outputs: Mapping[Any, bytes | None],
        row: Callable[[Any], tuple[Any, ...]],
        row_with_output: Callable[[Any], tuple[Any, ...]],
        update: str,
        update_with_output: str,
    ) -> None:
        # An output still the very object loaded from the database was not changed: skip it.
        plain: list[tuple[Any, ...]] = []
        with_output: list[tuple[Any, ...]] = []
        for key, record in changed.items():
            if key in loaded_outputs and loaded_outputs[key] is record.output:
                plain.append(row(record))
            else:
                with_output.append(row_with_output(record))
        if plain:
            self._db.executemany(update, plain)
        if with_output:
            self._db.executemany(update_with_output, with_output)
