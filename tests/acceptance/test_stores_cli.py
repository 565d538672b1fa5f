"""Opening stores from the command line: a malformed URL gets the same message from every command
(the URL is parsed first, in one place), and an unknown option is told every option the URL
accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

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
