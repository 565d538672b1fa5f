"""The SQLite store's schema, migrations, URL and file checks, and the shared query layer."""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

import plait
from plait.core.cascade import FAN_OUT_CHUNK, new_run
from plait.core.rows import RecordRow
from plait.stores import sqlite_files
from plait.stores.sql import queries as _sql
from plait.stores.sql import rows
from plait.stores.sql.ops import Program
from plait.stores.sql.programs import Programs, SQLTxn
from plait.stores.sqlite import SQLiteStore
from plait.stores.sqlite_files import SCHEMA_VERSION
from plait.testing.contract.helpers import NOW, claim_one, ok, plan_of, start, statuses
from tests.unwritable import unwritable

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def url_of(path: Path, options: str = "") -> str:
    return f"sqlite:///{path}" + (f"?{options}" if options else "")


def open_and_close(url: str) -> None:
    async def go() -> None:
        store = SQLiteStore(url)
        await store.open()
        await store.close()

    run(go())


def normalized_schema(path: Path) -> list[tuple[str, str, str, str]]:
    """sqlite_master without comments and layout: (type, name, table, sql)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        ).fetchall()
    finally:
        db.close()

    def normal(sql: str) -> str:
        sql = re.sub(r"--[^\n]*", " ", sql)
        sql = re.sub(r"\s+", " ", sql)
        return re.sub(r"\s*([(),=])\s*", r"\1", sql).strip().lower()

    return sorted((t, n, tbl, normal(sql)) for t, n, tbl, sql in rows)


def snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    siblings = sorted(p.name for p in path.parent.iterdir())
    return path.read_bytes(), path.stat().st_mtime_ns, siblings


# -- schema and migrations -----------------------------------------------------------------------


def test_fresh_schema_equals_migrations_replayed(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    open_and_close(url_of(fresh))
    replayed = tmp_path / "replayed.db"
    db = sqlite3.connect(replayed, isolation_level=None)
    for _version, script in _sql.migrations():
        for statement in _sql.split_statements(script):
            db.execute(statement)
    db.close()

    assert normalized_schema(fresh) == normalized_schema(replayed)
    tables = {n for t, n, _, _ in normalized_schema(fresh) if t == "table"}
    assert tables == {
        "plait_meta", "workflows", "runs", "run_labels", "steps", "events", "queues", "records",
        "blobs", "artifacts",
    }  # fmt: skip
    check = sqlite3.connect(fresh)
    version = check.execute("SELECT value FROM plait_meta WHERE key = 'schema_version'").fetchone()
    check.close()
    assert version == (str(SCHEMA_VERSION),)
    assert len(_sql.migrations()) == SCHEMA_VERSION


def test_a_version_1_database_keeps_its_runs_when_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in _sql.split_statements(_sql.migrations()[0][1]):
        db.execute(statement)
    db.execute("INSERT INTO plait_meta VALUES ('schema_version', '1')")
    db.execute(
        "INSERT INTO runs (id, workflow, version, fingerprint, status, input, sinks, unfinished,"
        " failures, next_seq, created_at) VALUES ('r1', 'wf', '1', 'fp', 'running', x'7b7d',"
        " '[\"a\"]', 1, 0, 2, 1.0)"
    )
    db.execute(
        "INSERT INTO steps (run_id, name, idx, status, unmet, dependents, optional, priority,"
        " attempt, recoveries) VALUES ('r1', 'a', 0, 'ready', 0, '[]', 0, 0, 0, 0)"
    )
    db.close()

    async def read() -> tuple[Any, Any]:
        store = SQLiteStore(url_of(path))
        await store.open()
        try:
            return await store.get_run("r1"), await store.get_steps("r1")
        finally:
            await store.close()

    run_row, steps = run(read())
    assert run_row is not None and run_row.status == "running" and run_row.deadline is None
    assert run_row.parent_run is None and run_row.forked_from is None
    assert [(s.name, s.status, s.options, s.reused_from, s.iteration) for s in steps] == [
        ("a", "ready", None, None, 0)
    ]
    fresh = tmp_path / "fresh.db"
    open_and_close(url_of(fresh))
    assert normalized_schema(path) == normalized_schema(fresh)


def test_schema_has_the_hot_path_indexes(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    open_and_close(url_of(path))
    indexes = {n: sql for t, n, _, sql in normalized_schema(path) if t == "index"}
    assert "where status='ready'" in indexes["steps_ready"]
    assert "(priority desc,available_at)" in indexes["steps_ready"]
    assert "where status='running'" in indexes["steps_leases"]
    assert "(created_at,id)" in indexes["runs_created"]
    assert "(workflow,status,created_at,id)" in indexes["runs_workflow_status"]


def test_an_older_database_is_migrated_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    open_and_close(url_of(path))  # a database at the current version
    nxt = SCHEMA_VERSION + 1
    newer = [
        *_sql.migrations(),
        (nxt, "ALTER TABLE runs ADD COLUMN note TEXT;\nCREATE INDEX runs_note ON runs (note);\n"),
    ]
    monkeypatch.setattr(_sql, "migrations", lambda: newer)
    monkeypatch.setattr(sqlite_files, "SCHEMA_VERSION", nxt)

    open_and_close(url_of(path))

    db = sqlite3.connect(path)
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    version = db.execute("SELECT value FROM plait_meta WHERE key = 'schema_version'").fetchone()
    db.close()
    assert columns[-1] == "note" and version == (str(nxt),)


def test_a_failing_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    open_and_close(url_of(path))
    before = normalized_schema(path)
    nxt = SCHEMA_VERSION + 1
    broken = [
        *_sql.migrations(),
        (nxt, "ALTER TABLE runs ADD COLUMN note TEXT;\nALTER TABLE nowhere ADD COLUMN x TEXT;\n"),
    ]
    monkeypatch.setattr(_sql, "migrations", lambda: broken)
    monkeypatch.setattr(sqlite_files, "SCHEMA_VERSION", nxt)

    with pytest.raises(plait.StoreError, match="no such table: nowhere") as info:
        open_and_close(url_of(path))

    assert str(path) in str(info.value)
    assert normalized_schema(path) == before
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM plait_meta").fetchone() == (str(SCHEMA_VERSION),)
    db.close()


def test_many_stores_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    url = url_of(tmp_path / "race.db")
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            open_and_close(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(_sql.migrations()) == SCHEMA_VERSION


def test_database_runs_in_wal_mode_with_the_chosen_synchronous(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    store = SQLiteStore(url_of(path, "synchronous=normal&busy_timeout=2.5"))
    assert (store.synchronous, store.busy_timeout) == ("NORMAL", 2.5)
    assert SQLiteStore(url_of(path)).synchronous == "FULL"  # the default
    open_and_close(url_of(path))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


# -- files that are not plait's are refused, untouched -------------------------------------------


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 200)
    before = snapshot(path)

    with pytest.raises(plait.SchemaVersionError) as info:
        open_and_close(url_of(path))

    message = str(info.value)
    assert str(path) in message and "not a plait database" in message
    assert "not a SQLite file" in message and "untouched" in message
    assert snapshot(path) == before


def test_a_damaged_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)
    before = snapshot(path)

    with pytest.raises(plait.SchemaVersionError, match="not a plait database") as info:
        open_and_close(url_of(path))

    assert str(path) in str(info.value)
    assert snapshot(path) == before


def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    db.execute("INSERT INTO customers (name) VALUES ('ada')")
    db.commit()
    db.close()
    before = snapshot(path)

    with pytest.raises(plait.SchemaVersionError) as info:
        open_and_close(url_of(path))

    message = str(info.value)
    assert str(path) in message and "not a plait database" in message
    assert "customers, orders" in message and "untouched" in message
    assert snapshot(path) == before  # no WAL switch, no -wal or -shm file left behind


def test_a_newer_plait_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    open_and_close(url_of(path))
    db = sqlite3.connect(path)
    db.execute("UPDATE plait_meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    before = snapshot(path)

    with pytest.raises(plait.SchemaVersionError) as info:
        open_and_close(url_of(path))

    message = str(info.value)
    assert str(path) in message and "99" in message and f"version {SCHEMA_VERSION}" in message
    assert "upgrade plait" in message and "untouched" in message
    assert snapshot(path) == before


def test_an_empty_file_becomes_a_plait_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    open_and_close(url_of(path))
    assert {n for t, n, _, _ in normalized_schema(path) if t == "table"} >= {"runs", "steps"}


def test_without_create_a_missing_or_empty_file_is_refused_and_nothing_is_made(
    tmp_path: Path,
) -> None:
    absent, empty = tmp_path / "absent.db", tmp_path / "empty.db"
    empty.touch()
    for path in (absent, empty):
        store = SQLiteStore(url_of(path), create=False)
        with pytest.raises(plait.StoreError) as info:
            run(store.open())
        assert not isinstance(info.value, plait.SchemaVersionError)
        assert str(info.value) == f"no plait database at {path}; a worker or `plait run` creates it"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    assert empty.read_bytes() == b""


def test_without_create_an_existing_database_opens(tmp_path: Path) -> None:
    path = tmp_path / "plait.db"
    open_and_close(url_of(path))

    async def go() -> list[Any]:
        store = SQLiteStore(url_of(path), create=False)
        await store.open()
        try:
            return await store.list_workflows()
        finally:
            await store.close()

    assert run(go()) == []


# -- read-only: a backup copy is read without a write ---------------------------------------------


def backup_source(path: Path) -> plait.Engine:
    """An open engine on a new database at `path` holding workflow `w` and run `r1` (its last
    commits still in the -wal file while the engine is open)."""
    wf = plait.Workflow("w")

    @wf.step()
    def one(n: int) -> int:
        return n

    engine = plait.Engine(url_of(path))
    engine.start(wf, {"n": 1}, run_id="r1")
    return engine


def copy_files(source: Path, into: Path, suffixes: tuple[str, ...]) -> Path:
    into.mkdir()
    for suffix in suffixes:
        shutil.copyfile(f"{source}{suffix}", into / f"{source.name}{suffix}")
    return into / source.name


def read_only(path: Path) -> SQLiteStore:
    return SQLiteStore(url_of(path), read_only=True)


@pytest.mark.parametrize(
    "suffixes", [("",), ("", "-wal", "-shm")], ids=["checkpointed", "with-wal-and-shm"]
)
def test_a_copy_nobody_may_write_is_read_and_left_untouched(
    tmp_path: Path, suffixes: tuple[str, ...]
) -> None:
    source = tmp_path / "live" / "plait.db"
    source.parent.mkdir()
    engine = backup_source(source)
    try:
        if suffixes == ("",):
            engine.close()  # the last connection checkpoints the log into the file, and removes it
        copy = copy_files(source, tmp_path / "backup", suffixes)
    finally:
        engine.close()
    assert sorted(p.name for p in copy.parent.iterdir()) == sorted(f"plait.db{s}" for s in suffixes)
    before = snapshot(copy)

    async def read() -> tuple[Any, Any, str]:
        store = read_only(copy)
        await store.open()
        try:
            with pytest.raises(plait.StoreError) as refused:
                await store.put_record(RecordRow("c", "k", b"{}", 0, 1.0), None)
            return await store.list_workflows(), await store.get_run("r1"), str(refused.value)
        finally:
            await store.close()

    with unwritable(copy.parent):
        workflows, run_row, refused = run(read())
    assert [w.name for w in workflows] == ["w"]
    assert run_row is not None and run_row.id == "r1"
    assert refused == (
        f"SQLite store {copy} is open read-only: write record 'k' of 'c' would write to it"
    )
    assert snapshot(copy) == before


def test_a_copy_with_a_log_but_no_index_is_refused_untouched(tmp_path: Path) -> None:
    source = tmp_path / "live" / "plait.db"
    source.parent.mkdir()
    engine = backup_source(source)
    try:
        copy = copy_files(source, tmp_path / "backup", ("", "-wal"))
    finally:
        engine.close()
    before = snapshot(copy)
    with unwritable(copy.parent), pytest.raises(plait.StoreError) as info:
        run(read_only(copy).open())
    assert str(info.value) == (
        f"cannot read SQLite store {copy} read-only: its write-ahead log {copy}-wal holds "
        f"commits that SQLite reads only with {copy}-shm beside it, or in a directory where it "
        "may create that file; copy the database and its -wal file to a writable directory"
    )
    assert snapshot(copy) == before


def test_read_only_cannot_migrate_an_older_database_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in _sql.split_statements(_sql.migrations()[0][1]):
        db.execute(statement)
    db.execute("INSERT INTO plait_meta VALUES ('schema_version', '1')")
    db.close()
    before = snapshot(path)
    with pytest.raises(plait.SchemaVersionError) as info:
        run(read_only(path).open())
    assert str(info.value) == (
        f"{path} has plait schema version 1, older than this plait's (version "
        f"{SCHEMA_VERSION}): reading it needs a migration, which a read-only open cannot make; "
        "open it read-write once (a worker or `plait run` migrates it), or read it with the "
        "plait that wrote it. It was left untouched."
    )
    assert snapshot(path) == before


def test_read_only_refuses_what_is_not_a_plait_database_untouched(tmp_path: Path) -> None:
    notes, shop, absent = tmp_path / "notes.db", tmp_path / "shop.db", tmp_path / "absent.db"
    notes.write_text("these are my notes\n" * 100)
    db = sqlite3.connect(shop)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    db.commit()
    db.close()
    before = [snapshot(notes), snapshot(shop)]
    cases = [
        (notes, f"{notes} is not a plait database: it is not a SQLite file"),
        (shop, f"{shop} is not a plait database: it holds other tables (customers)"),
        (absent, f"no plait database at {absent}; a worker or `plait run` creates it"),
    ]
    for path, message in cases:
        with pytest.raises(plait.StoreError) as info:
            run(read_only(path).open())
        assert str(info.value).startswith(message)
    assert [snapshot(notes), snapshot(shop)] == before
    assert not absent.exists()


# -- paths and URLs ------------------------------------------------------------------------------


def test_a_missing_directory_is_a_store_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "plait.db"
    with pytest.raises(plait.StoreError) as info:
        open_and_close(url_of(path))
    assert not isinstance(info.value, plait.SchemaVersionError)
    assert str(path) in str(info.value) and "does not exist" in str(info.value)
    assert not (tmp_path / "no").exists()


def test_a_directory_that_is_a_file_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    path = blocker / "plait.db"
    with pytest.raises(plait.StoreError) as info:
        open_and_close(url_of(path))
    assert str(path) in str(info.value) and "is not a directory" in str(info.value)


def test_a_directory_in_place_of_the_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "adir.db"
    path.mkdir()
    with pytest.raises(plait.StoreError, match="not a regular file") as info:
        open_and_close(url_of(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://x/y", "not a SQLite store URL"),
        ("sqlite://", "has no path"),
        ("sqlite:///", "has no path"),
        ("sqlite:///a.db?synchronous=sometimes", "synchronous='sometimes' is not one of"),
        ("sqlite:///a.db?busy_timeout=soon", "busy_timeout='soon' is not a number"),
        ("sqlite:///a.db?journal=delete", "unknown option 'journal'"),
    ],
)
def test_bad_urls_are_store_errors(url: str, problem: str) -> None:
    with pytest.raises(plait.StoreError) as info:
        SQLiteStore(url)
    assert problem in str(info.value)


def test_relative_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert SQLiteStore("sqlite:///rel/x.db").path == "rel/x.db"
    assert SQLiteStore("sqlite:////abs/x.db").path == "/abs/x.db"
    assert SQLiteStore("sqlite:///my%20runs.db").path == "my runs.db"
    open_and_close("sqlite:///here.db")
    assert (tmp_path / "here.db").is_file()


# -- errors while running ------------------------------------------------------------------------


def test_use_before_open_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(url_of(tmp_path / "p.db"))
    with pytest.raises(plait.StoreError, match="not open"):
        run(store.get_run("r1"))


def test_unexpected_sqlite_errors_become_store_errors_with_context(tmp_path: Path) -> None:
    path = tmp_path / "p.db"

    async def go() -> None:
        store = SQLiteStore(url_of(path))
        await store.open()
        try:
            db = sqlite3.connect(path)
            db.execute("DROP TABLE events")
            db.commit()
            db.close()
            with pytest.raises(plait.StoreError) as info:
                await store.get_events("r1", 0, None)
            assert str(path) in str(info.value) and "no such table: events" in str(info.value)
        finally:
            await store.close()

    run(go())


def test_a_held_write_lock_times_out_as_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    wf = plait.Workflow("locked")
    wf.add_step("a", lambda: None)
    plan = wf.plan()

    async def go() -> None:
        store = SQLiteStore(url_of(path, "busy_timeout=0.2"))
        await store.open()
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(plait.StoreError) as info:
                await store.create_run(*new_run(plan, "r1", b"{}", 1.0))
            message = str(info.value)
            assert str(path) in message and "locked" in message and "busy_timeout" in message
            blocker.execute("ROLLBACK")
            _, created = await store.create_run(*new_run(plan, "r1", b"{}", 1.0))
            assert created  # the failed attempt left nothing behind
        finally:
            blocker.close()
            await store.close()

    run(go())


# -- the query layer -----------------------------------------------------------------------------


def test_every_query_has_a_description_and_parses() -> None:
    files = _sql.query_files()
    assert "schema.sql" not in files and {"claims.sql", "runs.sql", "steps.sql"} <= set(files)
    blocks = _sql.parse_query_files(files)
    marked = sum(
        len(re.findall(r"^-- (?:name|fragment):", text, re.MULTILINE)) for text in files.values()
    )
    assert len(blocks) == marked > 20
    for query in blocks.values():
        assert query.description and not query.description.startswith(("name:", "fragment:"))
        assert not query.sql.startswith("--")
    queries = _sql.Queries(_sql.SQLITE)
    db = sqlite3.connect(":memory:")
    for statement in _sql.split_statements(_sql.read_sql("schema.sql")):
        db.execute(statement)
    for name in queries.names():  # every query compiles against the schema
        assert "/*include" not in queries[name]
        db.execute("EXPLAIN " + queries[name], dict.fromkeys(re.findall(r":(\w+)", queries[name])))
    db.close()


def test_each_dialect_override_follows_its_common_text_and_every_fragment_is_used() -> None:
    files = _sql.query_files()
    blocks = _sql.parse_query_files(files)
    for file, text in files.items():
        keys = list(_sql.parse_queries(text))
        for before, (name, dialect) in zip([None, *keys], keys, strict=False):
            if dialect is not None and (name, None) in blocks:
                assert before == (name, None), f"{file}: {name} [{dialect}] is not after its text"
    included = {m for text in files.values() for m in re.findall(r"/\*include (\w+)\*/", text)}
    fragments = {name for (name, _), q in blocks.items() if q.fragment}
    assert fragments == included and {"claimable", "dispatchable"} <= fragments


def test_the_column_fragments_follow_the_fields_of_the_rows() -> None:
    blocks = _sql.parse_query_files(_sql.query_files())

    def columns(fragment: str) -> tuple[str, ...]:
        text = blocks[(fragment, None)].sql
        return tuple(c.strip().removeprefix("s.") for c in text.split(","))

    assert columns("step_columns") == rows.STEP_ROW_COLUMNS
    assert columns("run_columns") == rows.RUN_ROW_COLUMNS
    assert rows.STEP_ROW_COLUMNS[rows.STEP_OUTPUT_BLOB] == "output_blob"
    assert rows.RUN_ROW_COLUMNS[rows.RUN_INPUT_BLOB] == "input_blob"


def test_fragments_are_included_as_each_dialect_writes_them() -> None:
    text = """
-- fragment: active
-- A live thing.
t.state = 'live'

-- fragment: listed
-- Of the listed ids.
t.id IN (SELECT value FROM json_each(:id_list))

-- fragment: listed [postgres]
-- Of the listed ids.
t.id = ANY(:id_list)

-- fragment: wanted
-- A live thing of the listed ids (a fragment including fragments).
/*include active*/ AND /*include listed*/

-- name: wanted_things
-- The wanted things.
SELECT a FROM t WHERE /*include wanted*/ AND t.a > :a /*for update of t*/;
"""
    sqlite_q = _sql.Queries(_sql.SQLITE, {"things.sql": text})
    postgres_q = _sql.Queries(_sql.POSTGRES, {"things.sql": text})
    assert sqlite_q["wanted_things"] == (
        "SELECT a FROM t WHERE t.state = 'live' AND t.id IN (SELECT value FROM json_each(:id_list))"
        " AND t.a > :a /*for update of t*/"
    )
    assert postgres_q.locked("wanted_things") == (
        "SELECT a FROM t WHERE t.state = 'live' AND t.id = ANY(%(id_list)s) AND t.a > %(a)s"
        " for update of t"
    )
    assert sqlite_q.names() == ["wanted_things"]  # a fragment is no query
    assert list(sqlite_q.descriptions) == ["wanted_things"]
    with pytest.raises(KeyError, match="wanted"):
        sqlite_q["wanted"]
    missing = "-- name: q\n-- A query.\nSELECT 1 WHERE /*include nowhere*/;\n"
    with pytest.raises(ValueError, match="'q' includes 'nowhere', which is no fragment"):
        _sql.Queries(_sql.SQLITE, {"q.sql": missing})
    loop = (
        "-- fragment: a\n-- A.\n/*include b*/\n-- fragment: b\n-- B.\n/*include a*/\n"
        "-- name: q\n-- A query.\nSELECT 1 WHERE /*include a*/;\n"
    )
    with pytest.raises(ValueError, match="fragment 'a' includes itself"):
        _sql.Queries(_sql.SQLITE, {"q.sql": loop})


def test_a_name_is_defined_in_one_query_file_only() -> None:
    one = "-- name: get_thing\n-- Read a thing.\nSELECT 1;\n"
    other = "-- name: other\n-- Another.\nSELECT 2;\n\n-- name: get_thing\n-- Again.\nSELECT 3;\n"
    twice = re.escape("'get_thing' is defined twice: in one.sql and in two.sql")
    with pytest.raises(ValueError, match=twice):
        _sql.Queries(_sql.SQLITE, {"one.sql": one, "two.sql": other})
    fragment = "-- fragment: get_thing\n-- A piece.\nx = 1\n"
    with pytest.raises(ValueError, match="'get_thing' is defined twice"):
        _sql.parse_query_files({"one.sql": one, "two.sql": fragment})
    both = {"one.sql": one, "two.sql": other.replace("get_thing", "get_thing [postgres]")}
    assert _sql.Queries(_sql.POSTGRES, both)["get_thing"] == "SELECT 3"  # an override: allowed


def test_dialects_convert_parameters_and_take_overrides() -> None:
    text = """
-- name: get_thing
-- Read a thing.
SELECT a::text, '50%' FROM t WHERE id = :id AND b IN (SELECT value FROM json_each(:b_list));

-- name: get_thing [postgres]
-- Read a thing, the PostgreSQL way.
SELECT a::text, '50%' FROM t WHERE id = :id AND b = ANY(:b_list);

-- name: plain
-- No override.
SELECT :x
"""
    sqlite_q = _sql.Queries(_sql.SQLITE, {"test.sql": text})
    postgres_q = _sql.Queries(_sql.POSTGRES, {"test.sql": text})
    assert "json_each(:b_list)" in sqlite_q["get_thing"]
    assert postgres_q["get_thing"] == (
        "SELECT a::text, '50%%' FROM t WHERE id = %(id)s AND b = ANY(%(b_list)s)"
    )
    assert postgres_q["plain"] == "SELECT %(x)s"
    assert _sql.SQLITE.list_param(["a", "b"]) == '["a","b"]'
    assert _sql.POSTGRES.list_param(("a", "b")) == '["a","b"]'  # read with jsonb functions
    with pytest.raises(KeyError, match="nothing"):
        sqlite_q["nothing"]


def test_row_locks_and_binary_columns_follow_the_dialect() -> None:
    text = """
-- name: load
-- Load a row for a transition.
SELECT a FROM t JOIN u ON u.id = t.id WHERE t.id = :id /*for update of t*/;

-- name: unmarked
-- A plain read.
SELECT a FROM t;
"""
    sqlite_q = _sql.Queries(_sql.SQLITE, {"test.sql": text})
    postgres_q = _sql.Queries(_sql.POSTGRES, {"test.sql": text})
    assert sqlite_q.locked("load") == sqlite_q["load"]  # BEGIN IMMEDIATE already serialises
    assert postgres_q.locked("load").endswith("WHERE t.id = %(id)s for update of t")
    assert "/*for update of t*/" in postgres_q["load"]  # a plain read takes no lock
    assert postgres_q.locked("load", skip_locked=True).endswith("for update of t skip locked")
    assert sqlite_q.locked("load", skip_locked=True) == sqlite_q["load"]
    with pytest.raises(ValueError, match="no /\\*for update\\*/ marker"):
        postgres_q.locked("unmarked")
    ddl = "CREATE TABLE t (a BLOB NOT NULL, blobs TEXT, b BLOB);"
    assert _sql.SQLITE.ddl(ddl) == ddl
    assert _sql.POSTGRES.ddl(ddl) == "CREATE TABLE t (a BYTEA NOT NULL, blobs TEXT, b BYTEA);"


def test_query_files_reject_bad_blocks() -> None:
    sqlite_q = _sql.Queries(_sql.SQLITE, {"test.sql": "-- name: a\n-- One.\nSELECT 1;\n"})
    with pytest.raises(KeyError, match="nothing"):
        sqlite_q["nothing"]
    with pytest.raises(ValueError, match="description"):
        _sql.parse_queries("-- name: bare\nSELECT 1;\n")
    with pytest.raises(ValueError, match="defined twice"):
        _sql.parse_queries("-- name: a\n-- One.\nSELECT 1;\n-- name: a\n-- Two.\nSELECT 2;\n")


def test_a_big_fan_out_is_readied_a_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completion never holds a fan-out's dependents all at once: each chunk is written and
    forgotten (`Need.release`); all of them are ready, in the one commit."""
    width = 2 * FAN_OUT_CHUNK + 100
    held: list[int] = []
    write = Programs.write

    def counting(self: Programs, txn: SQLTxn, *, runs: bool = True) -> Program[None]:
        held.append(len(txn.steps))
        return write(self, txn, runs=runs)

    monkeypatch.setattr(Programs, "write", counting)
    plan = plan_of("wide", ("root", [], {}), *((f"l{i}", ["root"], {}) for i in range(width)))

    async def go() -> dict[str, Any]:
        store = SQLiteStore(url_of(tmp_path / "f.db"))
        await store.open()
        try:
            await start(store, plan, "r")
            root = await claim_one(store, plan, "root")
            held.clear()
            result = await store.complete([ok(root)], NOW)
            assert result.accepted == [True] and result.readied == width
            return await statuses(store, "r")
        finally:
            await store.close()

    found = run(go())
    assert held and max(held) <= FAN_OUT_CHUNK + 1
    assert found == {"root": "done", **{f"l{i}": "ready" for i in range(width)}}


def test_a_run_is_written_once_a_transaction_and_with_its_counters_alone_while_it_runs(
    tmp_path: Path,
) -> None:
    """A complete-and-claim that ends a step and claims the next of the same run writes that
    run once (the claim uses the row the completion loaded), with its counters alone: its
    status did not change, so no index and no `updated_at`; the claim that starts the run and
    the completion that ends it write the whole row, `updated_at` included (the change feed)."""
    plan = plan_of("c", ("a", [], {}), ("b", ["a"], {}))
    sent: list[str] = []

    async def go() -> list[list[str]]:
        store = SQLiteStore(url_of(tmp_path / "f.db"))
        await store.open()
        writes: list[list[str]] = []

        def runs_written() -> list[str]:
            found = [" ".join(s.split()[:4]) for s in sent if s.startswith("UPDATE runs")]
            sent.clear()
            return found

        try:
            await start(store, plan, "r")
            store._db.set_trace_callback(sent.append)
            a = await claim_one(store, plan, "a", now=NOW + 1)
            writes.append(runs_written())
            kwargs: dict[str, Any] = {"worker_id": "w", "fingerprints": [plan.fingerprint]}
            _, claims = await store.complete_and_claim(
                [ok(a)], NOW + 2, limit=4, lease=30.0, **kwargs
            )
            assert [c.step for c in claims] == ["b"]
            writes.append(runs_written())
            await store.complete([ok(claims[0])], NOW + 3)
            writes.append(runs_written())
            changes = await store.list_run_changes((0.0, ""), 10)
            assert changes == [(NOW + 3, "r")]  # the end, the latest change of its status
            return writes
        finally:
            await store.close()

    started, handed_off, ended = run(go())
    assert started == ["UPDATE runs SET status"]
    assert handed_off == ["UPDATE runs SET unfinished"]
    assert ended == ["UPDATE runs SET status"]
