"""What only the PostgreSQL store has: its schema and migrations, clear errors at open, push
wake-ups, retries of lost connections, and many pools working one database at once.

The shared behaviour is in test_store.py and test_engine.py, run on PostgreSQL like on the others.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import plait
from plait.core.cascade import new_run
from plait.core.rows import Outcome, RecordRow, StepStatus
from plait.stores import open_store
from plait.stores import postgres as postgres_module
from plait.stores.postgres import PostgresStore
from plait.stores.postgres_setup import (
    SCHEMA_VERSION,
    hide_password,
    parse_url,
    schema_statements,
)
from plait.stores.sql.ops import execute
from plait.stores.sql.queries import POSTGRES, Queries
from plait.testing.contract.helpers import NOW, chain, claim, ok, plan_of, start
from tests import postgres_server

PREFIX = "plait_p_"


@pytest.fixture
def base() -> str:
    return postgres_server.require_server_url()


@pytest.fixture
def schemas(base: str) -> Iterator[list[str]]:
    """Schema names a test may use; each is dropped afterwards (by exact name)."""
    names: list[str] = []
    yield names
    with psycopg.connect(base, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def schema_url(base: str, schemas: list[str]) -> str:
    name = PREFIX + f"{len(schemas)}_{time.time_ns():x}"
    schemas.append(name)
    return f"{base}?schema={name}"


def describe_schema(base: str, schema: str) -> list[tuple[Any, ...]]:
    """Columns, indexes and constraints of a schema, without its name."""
    with psycopg.connect(base) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, ordinal_position, data_type, is_nullable,"
            " column_default FROM information_schema.columns WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        indexes = conn.execute(
            "SELECT tablename, indexname, replace(indexdef, %s, '') FROM pg_indexes"
            " WHERE schemaname = %s",
            (f"{schema}.", schema),
        ).fetchall()
        constraints = conn.execute(
            "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
            " JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
    return sorted(("column", *c) for c in columns) + sorted(
        [("index", *i) for i in indexes] + [("constraint", *c) for c in constraints]
    )


async def open_close(url: str) -> None:
    store = open_store(url)
    await store.open()
    await store.close()


# -- schema -------------------------------------------------------------------------------------


async def test_fresh_schema_equals_migrations_replayed(base: str, schemas: list[str]) -> None:
    fresh = schema_url(base, schemas)
    await open_close(fresh)
    migrated = schema_url(base, schemas)
    # every numbered migration replayed on an empty schema, as an old store is brought up to date
    with psycopg.connect(base, autocommit=True) as conn:
        quoted = sql.Identifier(schemas[1])
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(quoted))
        conn.execute(sql.SQL("SET search_path TO {}").format(quoted))
        with conn.transaction():
            for statement in schema_statements(0):
                conn.execute(statement)  # type: ignore[call-overload]
            conn.execute(
                "INSERT INTO plait_meta VALUES ('schema_version', %s)", (str(SCHEMA_VERSION),)
            )
    await open_close(migrated)
    described = describe_schema(base, schemas[0])
    assert described == describe_schema(base, schemas[1])
    assert {row[1] for row in described if row[0] == "column"} >= {"runs", "steps", "events"}
    with psycopg.connect(base) as conn:
        for name in schemas:
            version = conn.execute(
                sql.SQL("SELECT value FROM {}.plait_meta").format(sql.Identifier(name))
            ).fetchone()
            assert version == (str(SCHEMA_VERSION),)


async def test_every_query_compiles_against_the_schema(base: str, schemas: list[str]) -> None:
    """The PostgreSQL text of every query (its overrides and fragments included) is planned
    against a fresh schema (EXPLAIN: nothing is run)."""
    url = schema_url(base, schemas)
    await open_close(url)
    queries = Queries(POSTGRES)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schemas[0])))
        for name in queries.names():
            text = queries[name]
            assert "/*include" not in text
            params = dict.fromkeys(re.findall(r"%\((\w+)\)s", text))
            conn.execute(f"EXPLAIN {text}", params)  # type: ignore[call-overload]  # the query files' text


async def test_payload_columns_are_bytea(base: str, schemas: list[str]) -> None:
    await open_close(schema_url(base, schemas))
    with psycopg.connect(base) as conn:
        types = dict(
            conn.execute(
                "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = %s AND column_name IN ('input', 'output', 'gather')",
                (schemas[0],),
            ).fetchall()
        )
    assert types == {
        "runs.input": "bytea",
        "runs.output": "bytea",
        "steps.output": "bytea",
        "steps.input": "bytea",
        "steps.gather": "bytea",
    }


async def test_processes_opening_together_create_the_schema_once(
    base: str, schemas: list[str]
) -> None:
    url = schema_url(base, schemas)
    await asyncio.gather(*(open_close(url) for _ in range(4)))
    with psycopg.connect(base) as conn:
        rows = conn.execute(
            sql.SQL("SELECT key, value FROM {}.plait_meta").format(sql.Identifier(schemas[0]))
        ).fetchall()
    assert rows == [("schema_version", str(SCHEMA_VERSION))]


# -- bad input: clear errors at open, nothing written -------------------------------------------


def test_bad_urls_are_refused_when_the_engine_is_made() -> None:
    with pytest.raises(plait.StoreError, match=r"schema='Bad-Name' is not a valid schema name"):
        plait.Engine("postgresql://u@127.0.0.1/db?schema=Bad-Name")
    with pytest.raises(plait.StoreError, match=r"schema='x;drop' is not a valid schema name"):
        plait.Engine("postgresql://u@127.0.0.1/db?schema=x;drop")
    with pytest.raises(plait.StoreError, match=r"pool_size='0' is not a number of connections"):
        plait.Engine("postgresql://u@127.0.0.1/db?pool_size=0")
    with pytest.raises(plait.StoreError, match=r"unsupported store URL 'mysql://x'"):
        plait.Engine("mysql://x")


def test_passwords_never_appear_in_messages() -> None:
    assert hide_password("postgresql://bob:s3cret@h:5/db?x=1") == "postgresql://bob:***@h:5/db?x=1"
    parsed = parse_url("postgresql://bob:s3cret@h/db?schema=plait&sslmode=disable")
    assert "s3cret" not in parsed.shown
    assert parsed.schema == "plait"
    assert "schema" not in parsed.conninfo and "sslmode=disable" in parsed.conninfo
    with pytest.raises(plait.StoreError) as caught:
        plait.Engine("postgresql://bob:s3cret@127.0.0.1/db?schema=Bad")
    assert "s3cret" not in str(caught.value) and "bob:***@" in str(caught.value)


async def test_nothing_listening_is_a_clear_error() -> None:
    store = open_store("postgresql://postgres:pw@127.0.0.1:1/postgres")
    with pytest.raises(plait.StoreError) as caught:
        await store.open()
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL store postgresql://postgres:***@")
    assert "Connection refused" in message and "is PostgreSQL running" in message
    assert "pw@" not in message


async def test_a_missing_database_or_role_is_named(base: str) -> None:
    parts = base.rsplit("/", 1)[0]
    with pytest.raises(plait.StoreError, match=r'database "plait_no_such_db" does not exist'):
        await open_close(f"{parts}/plait_no_such_db")
    no_role = base.replace("postgres@", "plait_no_such_role@", 1)
    with pytest.raises(plait.StoreError, match=r'role "plait_no_such_role" does not exist'):
        await open_close(no_role)


async def test_an_unknown_option_is_told_every_option_the_url_accepts(base: str) -> None:
    with pytest.raises(plait.StoreError) as caught:
        await open_close(f"{base}?journal=delete")
    assert str(caught.value).endswith(
        'invalid URI query parameter: "journal" (plait\'s own options are schema, pool_size, '
        "blob_threshold, artifacts; the others go to libpq, which knows sslmode, "
        "connect_timeout, application_name, …)"
    )
    assert parse_url(f"{base}?artifacts=database").conninfo == parse_url(base).conninfo


async def test_without_create_a_schema_without_plait_is_refused_and_not_made(
    base: str, schemas: list[str]
) -> None:
    url = schema_url(base, schemas)
    for _ in range(2):  # no schema; then a schema with another application's table
        with pytest.raises(plait.StoreError) as caught:
            await open_store(url, create=False).open()
        assert not isinstance(caught.value, plait.SchemaVersionError)
        assert str(caught.value) == (
            f"no plait store in schema {schemas[0]} of {url}; a worker or `plait run` creates it"
        )
        with psycopg.connect(base, autocommit=True) as conn:
            quoted = sql.Identifier(schemas[0])
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(quoted))
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.customers (id int)").format(quoted))
    assert [row[1:] for row in describe_schema(base, schemas[0])] == [
        ("customers", "id", 1, "integer", "YES", None)
    ]
    await open_close(url)  # created by a store that may
    store = open_store(url, create=False)
    await store.open()
    try:
        assert await store.list_workflows() == []
    finally:
        await store.close()


async def test_read_only_reads_and_writes_nothing(base: str, schemas: list[str]) -> None:
    url = schema_url(base, schemas)
    wf = plait.Workflow("w")

    @wf.step()
    def one(n: int) -> int:
        return n

    async with plait.Engine(url) as engine:
        await engine.start_async(wf, {"n": 1}, run_id="r1")
    before = describe_schema(base, schemas[0])
    store = open_store(url, read_only=True)
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        assert [w.name for w in await store.list_workflows()] == ["w"]
        run_row = await store.get_run("r1")
        assert run_row is not None and run_row.status == "pending"
        with pytest.raises(plait.StoreError) as refused:
            await store.put_record(RecordRow("c", "k", b"{}", 0, 1.0), None)
        assert str(refused.value) == (
            f"PostgreSQL store {url} is open read-only: write record 'k' of 'c' would write to it"
        )
        # and should a write slip through as a read, the server refuses it
        with pytest.raises(plait.StoreError, match="cannot execute DELETE in a read-only"):
            await store._transact("sneak", lambda: execute("DELETE FROM runs", {}), write=False)
    finally:
        await store.close()
    assert describe_schema(base, schemas[0]) == before
    async with plait.Engine(url) as engine:
        assert [r.id for r in (await engine.list_runs_async()).runs] == ["r1"]


async def test_read_only_refuses_a_missing_or_older_schema_untouched(
    base: str, schemas: list[str]
) -> None:
    url = schema_url(base, schemas)
    with pytest.raises(plait.StoreError) as missing:
        await open_store(url, read_only=True).open()
    assert str(missing.value) == (
        f"no plait store in schema {schemas[0]} of {url}; a worker or `plait run` creates it"
    )
    with psycopg.connect(base) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schemas[0],)
        ).fetchone()
    assert found is None
    await open_close(url)
    quoted = sql.Identifier(schemas[0])
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("UPDATE {}.plait_meta SET value = '1'").format(quoted))
    before = describe_schema(base, schemas[0])
    with pytest.raises(plait.SchemaVersionError) as info:
        await open_store(url, read_only=True).open()
    assert str(info.value) == (
        f"PostgreSQL store {url} (schema {schemas[0]}) has plait schema version 1, older than "
        f"this plait's (version {SCHEMA_VERSION}): reading it needs a migration, which a "
        "read-only open cannot make; open it read-write once (a worker or `plait run` migrates "
        "it), or read it with the plait that wrote it. It was left untouched."
    )
    assert describe_schema(base, schemas[0]) == before
    with psycopg.connect(base) as conn:
        version = conn.execute(sql.SQL("SELECT value FROM {}.plait_meta").format(quoted)).fetchone()
    assert version == ("1",)


async def test_a_newer_schema_is_refused_untouched(base: str, schemas: list[str]) -> None:
    url = schema_url(base, schemas)
    await open_close(url)
    quoted = sql.Identifier(schemas[0])
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("UPDATE {}.plait_meta SET value = '999'").format(quoted))
    before = describe_schema(base, schemas[0])
    with pytest.raises(plait.SchemaVersionError, match=r"schema version 999, newer than this"):
        await open_close(url)
    assert describe_schema(base, schemas[0]) == before


async def test_tables_of_another_application_are_not_taken(base: str, schemas: list[str]) -> None:
    url = schema_url(base, schemas)
    quoted = sql.Identifier(schemas[0])
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(quoted))
        conn.execute(sql.SQL("CREATE TABLE {}.runs (id int)").format(quoted))
        conn.execute(sql.SQL("CREATE TABLE {}.customers (id int)").format(quoted))
    with pytest.raises(
        plait.SchemaVersionError, match=r"already has tables named runs .*\?schema="
    ):
        await open_close(url)
    with psycopg.connect(base) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schemas[0],),
        ).fetchall()
    assert sorted(tables) == [("customers",), ("runs",)]


async def test_other_tables_in_the_schema_are_shared_with(base: str, schemas: list[str]) -> None:
    url = schema_url(base, schemas)
    quoted = sql.Identifier(schemas[0])
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(quoted))
        conn.execute(sql.SQL("CREATE TABLE {}.customers (id int)").format(quoted))
    await open_close(url)
    with psycopg.connect(base) as conn:
        count = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
            (schemas[0],),
        ).fetchone()
    assert count == (11,)  # customers + plait's ten


async def test_permission_denied_creating_the_schema_is_explained(
    base: str, schemas: list[str]
) -> None:
    role = "plait_test_limited"
    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC, {}").format(
                sql.Identifier(conn.info.dbname), sql.Identifier(role)
            )
        )
    url = schema_url(base, schemas).replace("postgres@", f"{role}@", 1)
    with pytest.raises(plait.StoreError, match=r"permission denied .*grant the user CREATE"):
        await open_close(url)
    with psycopg.connect(base) as conn:
        created = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schemas[0],)
        ).fetchone()
    assert created is None


# -- push wake-ups ------------------------------------------------------------------------------


def test_a_waiter_is_woken_by_another_process_finishing_the_run(
    base: str, schemas: list[str]
) -> None:
    """The run ends in another engine (its own connections, as another process has): only a
    notification can end the wait at once, as the waiter's next look is seconds away."""
    url = schema_url(base, schemas)
    wf = plait.Workflow("pushed")

    @wf.step
    def only() -> int:
        return 7

    with (
        plait.Engine(url, sweep_interval=60) as waiter,
        plait.Engine(url, sweep_interval=60) as worker,
    ):
        waiter.register(wf)
        worker.register(wf)
        deadline = time.monotonic() + 10
        while not (waiter._rt.push_live and worker._rt.push_live):
            assert time.monotonic() < deadline, "the LISTEN connections did not come up"
            time.sleep(0.01)
        handle = waiter.start(wf)
        result: dict[str, Any] = {}

        def wait() -> None:
            result.update(handle.result(timeout=30))

        waiting = threading.Thread(target=wait)
        waiting.start()
        # let the waiter back off: its next look at the store is now seconds away
        time.sleep(3.0)
        worker.run_worker(until=handle, timeout=30)
        t0 = time.monotonic()
        waiting.join(timeout=30)
        woken_after = time.monotonic() - t0
    assert result == {"only": 7}
    assert woken_after < 0.5


def test_an_idle_worker_is_woken_by_a_start_elsewhere(base: str, schemas: list[str]) -> None:
    url = schema_url(base, schemas)
    wf = plait.Workflow("woken")

    @wf.step
    def only() -> str:
        return "ran"

    with (
        plait.Engine(url, sweep_interval=60) as serving,
        plait.Engine(url, sweep_interval=60) as starting,
    ):
        serving.register(wf)
        starting.register(wf)

        worker = threading.Thread(target=lambda: serving.run_worker(timeout=60, grace=1))
        worker.start()
        deadline = time.monotonic() + 10
        while not serving._rt.push_live:
            assert time.monotonic() < deadline, "the LISTEN connection did not come up"
            time.sleep(0.01)
        time.sleep(0.5)  # let the worker go idle: its next look would be a minute away
        t0 = time.monotonic()
        handle = starting.start(wf)
        assert handle.result(timeout=10) == {"only": "ran"}
        elapsed = time.monotonic() - t0
        serving.stop_workers()
        worker.join(timeout=30)
    assert elapsed < 10.0  # woken by the notification: the worker's next look was a minute away


# -- lost connections ---------------------------------------------------------------------------


async def test_a_connection_lost_inside_a_completion_is_retried_once(
    base: str, schemas: list[str]
) -> None:
    store = open_store(schema_url(base, schemas))
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        plan = chain("lost", 2)
        await start(store, plan, "r1")
        [c] = await claim(store, [plan])
        original = store._programs.complete
        calls = 0

        def dying(outcomes: Any, now: float) -> Any:
            nonlocal calls
            calls += 1
            result = yield from original(outcomes, now)
            if calls == 1:  # the server drops this connection before the commit
                yield (0, "SELECT pg_terminate_backend(pg_backend_pid())", {})
            return result

        store._programs.complete = dying  # type: ignore[method-assign]
        result = await store.complete([ok(c)], NOW + 1)
        assert calls == 2 and result.accepted == [True]
        events = await store.get_events("r1", 0, None)
        assert [e.type for e in events].count("step_completed") == 1
        steps = {s.name: s for s in await store.get_steps("r1")}
        assert steps["s0"].status is StepStatus.DONE
        assert steps["s1"].status is StepStatus.READY
    finally:
        await store.close()


async def test_an_outcome_resent_after_a_lost_reply_is_recorded_once(
    base: str, schemas: list[str]
) -> None:
    """The commit went through but its reply was lost: the worker sends the same batch again."""
    store = open_store(schema_url(base, schemas))
    await store.open()
    try:
        plan = chain("resent", 1)
        await start(store, plan, "r1")
        [c] = await claim(store, [plan])
        outcome = Outcome(c.run_id, c.step, c.token, output=b'"first"')
        first = await store.complete([outcome], NOW + 1)
        again = await store.complete([outcome], NOW + 2)
        assert first.accepted == [True] and again.accepted == [False]
        events = await store.get_events("r1", 0, None)
        types = [e.type for e in events]
        assert types.count("step_completed") == 1 and types.count("run_completed") == 1
        assert types[-1] == "step_outcome_ignored"
        [step] = await store.get_steps("r1")
        assert step.output == b'"first"'
    finally:
        await store.close()


# -- many pools on one database -----------------------------------------------------------------


async def test_pools_racing_over_chains_and_fan_ins_never_deadlock(
    base: str, schemas: list[str]
) -> None:
    """Four stores (four pools) claim and complete over shared runs at once: every step ends
    once, event numbers have no gaps, and no transaction is lost to a deadlock."""
    url = schema_url(base, schemas)
    plan = plan_of(
        "mixed",
        ("root", [], {}),
        *[(f"m{i}", ["root"], {}) for i in range(12)],
        ("join", [f"m{i}" for i in range(12)], {}),
        ("tail", ["join"], {}),
    )
    setup = open_store(url)
    await setup.open()
    for r in range(8):
        await start(setup, plan, f"r{r}")
    completed: list[tuple[str, str]] = []

    async def work(name: str) -> None:
        store = open_store(url)
        await store.open()
        try:
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < 1.0:
                got = await claim(store, [plan], limit=6, worker=name)
                if not got:
                    await asyncio.sleep(0.01)
                    continue
                idle_since = time.monotonic()
                result = await store.complete([ok(c) for c in got], NOW)
                assert result.accepted == [True] * len(got)
                completed.extend((c.run_id, c.step) for c in got)
        finally:
            await store.close()

    await asyncio.gather(*(work(f"w{i}") for i in range(4)))
    counts = Counter(completed)
    assert len(counts) == 8 * 15 and max(counts.values()) == 1
    for r in range(8):
        run_row = await setup.get_run(f"r{r}")
        assert run_row is not None and run_row.status.value == "completed"
        seqs = [e.seq for e in await setup.get_events(f"r{r}", 0, None)]
        assert seqs == list(range(1, len(seqs) + 1))
    await setup.close()


async def test_new_run_rows_round_trip_bytes(base: str, schemas: list[str]) -> None:
    store = open_store(schema_url(base, schemas))
    await store.open()
    try:
        plan = chain("bytes", 1)
        row, steps, events = new_run(plan, "r1", b'{"k":"\\u00e9\\u0000"}', NOW)
        await store.create_run(row, steps, events)
        got = await store.get_run("r1")
        assert got is not None and got.input == b'{"k":"\\u00e9\\u0000"}'
    finally:
        await store.close()


async def test_a_frozen_session_holding_locks_does_not_stall_the_others(
    base: str, schemas: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker frozen inside a transaction (SIGSTOP, a partition) holds its row locks; the
    server ends its session after a while, and the others' lock waits give up and retry."""
    monkeypatch.setattr(postgres_module, "IDLE_IN_TRANSACTION_TIMEOUT_MS", 1000)
    monkeypatch.setattr(postgres_module, "LOCK_TIMEOUT_MS", 300)
    url = schema_url(base, schemas)
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        plan = chain("frozen", 2)
        await start(store, plan, "r1")
        [c] = await claim(store, [plan])
        frozen = await psycopg.AsyncConnection.connect(
            base, autocommit=True, options=f"-c search_path={schemas[0]}"
        )
        await frozen.execute(store._session_setup)  # a plait session, like the pool's
        await frozen.execute("BEGIN")
        await frozen.execute("SELECT * FROM runs WHERE id = 'r1' FOR UPDATE")
        t0 = time.monotonic()
        result = await store.complete([ok(c)], NOW + 1)
        waited = time.monotonic() - t0
        assert result.accepted == [True]
        assert 0.9 < waited < 5.0  # held up until the server ended the frozen session
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
            await frozen.execute("SELECT 1")
        await frozen.close()
        steps = {s.name: s.status for s in await store.get_steps("r1")}
        assert steps == {"s0": StepStatus.DONE, "s1": StepStatus.READY}
    finally:
        await store.close()


def test_write_columns_travel_as_array_text_the_server_reads_back_exactly(base: str) -> None:
    """A bulk write's columns go as the text of arrays (`postgres._array`, not psycopg's list
    adaptation): every awkward value comes back as it was, whatever the element type."""
    texts = ['a "quoted" \\ back\\slash', "", "NULL", "{a}, b", "ünï\u2603", " x ", None]
    blobs = [b"", b'\x00\xff\\"', None, bytes(range(256))]
    floats = [0.1, 1e300, -2.5e-300, float("inf"), float("-inf"), 1796679806.8094451, None]
    ints = [0, -1, 2**31 - 1, None]
    for column, cast in ((texts, "text[]"), (blobs, "bytea[]"), (floats, "float8[]"),
                         (ints, "int[]"), ([True, False, None], "boolean[]")):  # fmt: skip
        encoded = postgres_module._array(column)
        assert isinstance(encoded, str)
        with psycopg.connect(base) as conn:
            query = sql.SQL("SELECT CAST(%s AS {})").format(sql.SQL(cast))
            (back,) = conn.execute(query, (encoded,)).fetchone() or (None,)
        assert back == column, cast
    nan = postgres_module._array([float("nan")])
    with psycopg.connect(base) as conn:
        (back,) = conn.execute("SELECT CAST(%s AS float8[])", (nan,)).fetchone() or (None,)
    assert back[0] != back[0]  # NaN
    # a value of another type: the column goes as a list, adapted by psycopg as before
    assert postgres_module._array(["a", [1, 2]]) == ["a", [1, 2]]


async def test_under_a_workers_settings_a_bulk_step_write_probes_by_key(
    base: str, schemas: list[str]
) -> None:
    """The steps a commit changes are found by their key (an index probe per row), not by
    hashing the whole table, which the planner prefers for a small or fresh table."""
    store = open_store(schema_url(base, schemas))
    await store.open()
    try:
        plan = chain("probe", 3)
        for r in range(300):
            await store.create_run(*new_run(plan, f"r{r}", b"{}", NOW))
    finally:
        await store.close()
    queries = Queries.of(POSTGRES)
    session = queries["claim_session"]
    update = queries["update_step"]
    keys = [f"r{r}" for r in range(0, 300, 3)]
    params = {
        name: postgres_module._array([None] * len(keys))
        for name in re.findall(r"%\((\w+)\)s", update)
    }
    params["run_id"], params["name"] = (
        postgres_module._array(keys),
        postgres_module._array(["s1"] * len(keys)),
    )
    with psycopg.connect(base) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schemas[-1])))
        conn.execute(session)
        plan_text = "\n".join(r[0] for r in conn.execute("EXPLAIN " + update, params).fetchall())
    assert "Hash Join" not in plan_text and "steps_pkey" in plan_text, plan_text
