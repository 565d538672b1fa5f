"""Opening stores from the command line: a malformed URL gets the same message from every command
(the URL is parsed first, in one place), and an unknown option is told every option the URL
accepts; the commands that read or act on runs never create a store: a missing SQLite file or
PostgreSQL schema is named, and nothing is created; the commands that read open the store
read-only, so a backup copy that nobody may write is read, and left as it was."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from plait.stores.sql.queries import migrations, split_statements
from tests import postgres_server
from tests.unwritable import unwritable

from .conftest import EXAMPLES, Cli

ORDERS = str(EXAMPLES / "orders.py")

# Every command that opens a store the user names, with arguments that would do something.
RUN_COMMANDS = [
    ["run", f"{ORDERS}:wf", "--input", '{"order_id": 1}'],
    ["worker", ORDERS],
]
READ_COMMANDS = [
    ["runs", "list"],
    ["runs", "show", "r1"],
    ["runs", "events", "r1"],
    ["runs", "diff", "r1", "r2"],
    ["runs", "waiting"],
    ["runs", "watch", "r1"],
    ["workflows"],
    ["workers"],
    ["topology", "orders"],
    ["queues", "list"],
    ["schedules", "list"],
    ["artifacts", "list", "r1"],
    ["artifacts", "get", "a1"],
    ["blobs"],
    ["replay", "r1", "fetch", "--app", ORDERS],
]
WRITE_COMMANDS = [
    ["runs", "cancel", "r1"],
    ["runs", "pause", "r1"],
    ["runs", "resume", "r1"],
    ["runs", "retry", "r1", "fetch"],
    ["runs", "resume-failed", "r1"],
    ["runs", "approve", "r1", "fetch"],
    ["runs", "reject", "r1", "fetch"],
    ["runs", "signal", "r1", "fetch", "{}"],
    ["runs", "fork", "r1", "fetch"],
    ["runs", "delete", "r1"],
    ["gc"],
    ["artifacts", "gc"],
    ["schedules", "pause", "s1"],
    ["schedules", "resume", "s1"],
    ["schedules", "delete", "s1"],
]


def name(command: list[str]) -> str:
    return " ".join(
        command[:2] if command[0] in ("runs", "artifacts", "schedules") else command[:1]
    )


def test_a_malformed_url_gets_the_same_message_from_every_command(cli: Cli, tmp_path: Path) -> None:
    message = (
        "SQLite store URL 'sqlite://bad.db' has no path: use sqlite:///relative.db or "
        "sqlite:////absolute.db"
    )
    commands = RUN_COMMANDS + READ_COMMANDS + WRITE_COMMANDS
    results = cli.many([[*command, "--db", "sqlite://bad.db"] for command in commands])
    for command, result in zip(commands, results, strict=True):
        assert (name(command), result.code, result.stderr) == (
            name(command), 2, f"plait: error: {message}\n",
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "sqlite:///bad.db?synchronous=sometimes",
            "SQLite store URL 'sqlite:///bad.db?synchronous=sometimes': synchronous='sometimes' "
            "is not one of ['full', 'normal']",
        ),
        (
            "sqlite:///bad.db?journal=delete",
            "SQLite store URL 'sqlite:///bad.db?journal=delete': unknown option 'journal' "
            "(known: synchronous, busy_timeout, blob_threshold, artifacts)",
        ),
        (
            "memory://?journal=delete",
            "memory store URL 'memory://?journal=delete': unknown option 'journal' (known: "
            "blob_threshold, artifacts)",
        ),
    ],
    ids=["bad-value", "unknown-option", "memory-unknown-option"],
)
def test_a_bad_option_gets_the_same_message_from_reading_and_running(
    cli: Cli, tmp_path: Path, url: str, message: str
) -> None:
    for command in [RUN_COMMANDS[0], ["runs", "list"], ["runs", "cancel", "r1"]]:
        result = cli(*command, "--db", url)
        assert (name(command), result.code, result.stderr) == (
            name(command), 2, f"plait: error: {message}\n",
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_every_option_the_message_lists_is_accepted(cli: Cli, tmp_path: Path) -> None:
    options = "synchronous=normal&busy_timeout=1&blob_threshold=10&artifacts=database"
    assert cli(*RUN_COMMANDS[0], "--db", f"sqlite:///ok.db?{options}").code == 0
    listed = cli("runs", "list", "--db", f"sqlite:///ok.db?{options}")
    assert (listed.code, listed.stderr) == (0, "")
    assert "orders" in listed.stdout
    memory = cli(*RUN_COMMANDS[0], "--db", "memory://?blob_threshold=10&artifacts=database")
    assert (memory.code, memory.stderr.count("error")) == (0, 0)


# -- a store that does not exist is never created by reading or acting on runs -----------------


@pytest.fixture
def pg_base() -> str:
    return postgres_server.require_server_url()


@pytest.fixture
def pg_url(pg_base: str) -> Iterator[str]:
    """A schema name nobody has created (dropped after the test, should a command create it)."""
    url = postgres_server.fresh_schema_url(pg_base, "plait_a_")
    yield url
    postgres_server.drop_schemas(pg_base, url.rsplit("schema=", 1)[-1])


def schema_exists(base: str, name: str) -> bool:
    with postgres_server.connect(base) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone()
    return found is not None


def test_no_command_creates_a_postgres_schema_it_was_told_to_read(
    cli: Cli, pg_base: str, pg_url: str
) -> None:
    schema = pg_url.rsplit("schema=", 1)[-1]
    message = (
        f"plait: error: no plait store in schema {schema} of {pg_url}; a worker or `plait run` "
        "creates it\n"
    )
    commands = READ_COMMANDS + WRITE_COMMANDS
    results = cli.many([[*command, "--db", pg_url] for command in commands])
    for command, result in zip(commands, results, strict=True):
        assert (name(command), result.code, result.stderr) == (name(command), 2, message)
    assert not schema_exists(pg_base, schema)  # none of them created it


def test_a_postgres_schema_without_plait_tables_is_not_a_store(
    cli: Cli, pg_base: str, pg_url: str
) -> None:
    schema = pg_url.rsplit("schema=", 1)[-1]
    with psycopg.connect(pg_base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {}.customers (id int)").format(sql.Identifier(schema)))
    for command in (["runs", "list"], ["runs", "cancel", "r1"]):
        result = cli(*command, "--db", pg_url)
        assert (result.code, result.stderr) == (
            2,
            f"plait: error: no plait store in schema {schema} of {pg_url}; a worker or `plait "
            "run` creates it\n",
        )
    with psycopg.connect(pg_base) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    assert tables == [("customers",)]


def test_no_command_creates_a_sqlite_database_it_was_told_to_read(cli: Cli, tmp_path: Path) -> None:
    commands = READ_COMMANDS + WRITE_COMMANDS
    results = cli.many([[*command, "--db", "sqlite:///absent.db"] for command in commands])
    for command, result in zip(commands, results, strict=True):
        assert (name(command), result.code, result.stderr) == (
            name(command), 2,
            "plait: error: no plait database at absent.db; a worker or `plait run` creates it\n",
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# -- reading commands open the store read-only ---------------------------------------------------

BACKUP_APP = """
import plait

wf = plait.Workflow("backup")


@wf.step()
def make(ctx: plait.StepContext, n: int) -> dict:
    ctx.save_artifact("n.txt", str(n).encode())
    return {"n": n, "pad": "x" * 100_000}  # over the blob threshold: a blob
"""


def test_every_reading_command_reads_a_backup_nobody_may_write(
    cli: Cli, tmp_path: Path, write_app: Callable[[str, str], Path]
) -> None:
    app = write_app("app.py", BACKUP_APP)
    (tmp_path / "live").mkdir()
    live = f"sqlite:///{tmp_path / 'live' / 'plait.db'}?artifacts=database"
    for run_id, n in (("r1", "3"), ("r2", "4")):
        made = cli("run", f"{app}:wf", "--input", f'{{"n": {n}}}', "--run-id", run_id, "--db", live)
        assert made.code == 0, made.stderr
    added = cli("schedules", "add", "nightly", f"{app}:wf", "--cron", "0 2 * * *", "--input",
                '{"n": 1}', "--db", live)  # fmt: skip
    assert added.code == 0, added.stderr
    [artifact] = cli("artifacts", "list", "r1", "--json", "--db", live).json()
    # the copy: every process has closed the database, so the file holds every commit
    (tmp_path / "backup").mkdir()
    copy = tmp_path / "backup" / "plait.db"
    copy.write_bytes((tmp_path / "live" / "plait.db").read_bytes())
    before = (copy.read_bytes(), sorted(p.name for p in copy.parent.iterdir()))
    backup = f"sqlite:///{copy}?artifacts=database"
    commands = [
        (["runs", "list"], "r1"),
        (["runs", "show", "r1"], "completed"),
        (["runs", "events", "r1"], "step_completed"),
        (["runs", "diff", "r1", "r2"], "make"),
        (["runs", "waiting"], ""),
        (["runs", "watch", "r1"], "run_completed"),
        (["workflows"], "backup"),
        (["workers"], ""),
        (["topology", "backup"], "make"),
        (["queues", "list"], ""),
        (["schedules", "list"], "nightly"),
        (["artifacts", "list", "r1"], "n.txt"),
        (["artifacts", "get", artifact["id"]], "3"),
        (["blobs"], "blob(s)"),
        (["replay", "r1", "make", "--app", str(app)], "make"),
    ]
    assert {name(c) for c, _ in commands} == {name(c) for c in READ_COMMANDS}
    with unwritable(copy.parent):
        results = cli.many([[*command, "--db", backup] for command, _ in commands])
        for (command, shown), result in zip(commands, results, strict=True):
            assert (name(command), result.code) == (name(command), 0), result.stderr
            assert "error" not in result.stderr and "Traceback" not in result.stderr
            assert shown in result.stdout, (name(command), result.stdout)
    assert (copy.read_bytes(), sorted(p.name for p in copy.parent.iterdir())) == before


def test_reading_an_older_or_foreign_database_says_why_and_changes_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    older, shop = tmp_path / "older.db", tmp_path / "shop.db"
    db = sqlite3.connect(older, isolation_level=None)
    for statement in split_statements(migrations()[0][1]):
        db.execute(statement)
    db.execute("INSERT INTO plait_meta VALUES ('schema_version', '1')")
    db.close()
    db = sqlite3.connect(shop, isolation_level=None)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    db.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = cli("runs", "list", "--db", f"sqlite:///{older}")
    assert (result.code, result.stderr) == (
        2,
        f"plait: error: {older} has plait schema version 1, older than this plait's (version "
        f"{len(migrations())}): reading it needs a migration, which a read-only open cannot "
        "make; open it read-write once (a worker or `plait run` migrates it), or read it with "
        "the plait that wrote it. It was left untouched.\n",
    )
    result = cli("workflows", "--db", f"sqlite:///{shop}")
    assert (result.code, result.stderr) == (
        2,
        f"plait: error: {shop} is not a plait database: it holds other tables (customers) and "
        "no plait_meta table; it was left untouched. Point plait at another database.\n",
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
