"""Opening stores from the command line: a malformed URL gets the same message from every command
(the URL is parsed first, in one place), and an unknown option is told every option the URL
accepts; the commands that read or act on runs never create a store: a missing SQLite file or
PostgreSQL schema is named, and nothing is created."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests import postgres_server

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
    ["artifacts", "get", "a1", "-o", "-"],
    ["blobs"],
    ["replay", "r1", "fetch", "--app", ORDERS],
]
WRITE_COMMANDS = [
    ["runs", "cancel", "r1"],
    ["runs", "pause", "r1"],
    ["runs", "resume", "r1"],
    ["runs", "retry", "r1", "fetch"],
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
    for command in RUN_COMMANDS + READ_COMMANDS + WRITE_COMMANDS:
        result = cli(*command, "--db", "sqlite://bad.db")
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
    for command in READ_COMMANDS + WRITE_COMMANDS:
        result = cli(*command, "--db", pg_url)
        assert (name(command), result.code, result.stderr) == (name(command), 2, message)
        assert not schema_exists(pg_base, schema), name(command)


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
    for command in READ_COMMANDS + WRITE_COMMANDS:
        result = cli(*command, "--db", "sqlite:///absent.db")
        assert (name(command), result.code, result.stderr) == (
            name(command), 2,
            "plait: error: no plait database at absent.db; a worker or `plait run` creates it\n",
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []
