"""`plait records list|get`: the documents steps wrote, read from the command line."""

from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path

import plait

from .conftest import Cli, import_file

APP = """
import plait

wf = plait.Workflow("ledger")

@wf.step
def book(ctx: plait.StepContext, count: int) -> int:
    for i in range(count):
        ctx.record("orders", f"o-{i:02d}", {"n": i, "paid": i % 2 == 0})
    ctx.record("customers", "c 1", {"name": "Zoë"})
    return count
"""


def test_records_list_and_get(cli: Cli, engine: plait.Engine, write_app, tmp_path: Path) -> None:
    wf = import_file(write_app("ledger_app.py", APP)).wf
    engine.run_worker(until=engine.start(wf, {"count": 5}, run_id="l-1"), timeout=30)

    listed = cli("records", "list", "orders")
    assert listed.code == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["KEY", "REVISION", "UPDATED", "WRITTEN", "BY", "DOCUMENT"]
    assert [line.split()[:2] for line in lines[1:]] == [[f"o-0{i}", "1"] for i in range(5)]
    assert "l-1 / book" in lines[1] and '{"n": 0, "paid": true}' in lines[1]

    doc = cli("records", "list", "orders", "--prefix", "o-0", "--limit", "2", "--json").json()
    assert [r["key"] for r in doc["records"]] == ["o-00", "o-01"] and doc["next_after"] == "o-01"
    first = doc["records"][0]
    assert (first["doc"], first["revision"], first["run_id"], first["step"]) == (
        {"n": 0, "paid": True}, 1, "l-1", "book"
    )  # fmt: skip
    assert datetime.fromisoformat(first["updated_at"]).utcoffset() is not None

    paged = cli("records", "list", "orders", "--limit", "2")
    [hint] = [line for line in paged.stdout.splitlines() if line.startswith("more: ")]
    command = shlex.split(hint.removeprefix("more: "))
    assert command == ["plait", "records", "list", "orders", "--limit", "2", "--after", "o-01"]
    second = cli(*command[1:])
    assert [line.split()[0] for line in second.stdout.splitlines()[1:3]] == ["o-02", "o-03"]

    got = cli("records", "get", "customers", "c 1")
    assert got.code == 0, got.stderr
    assert got.stdout == '{\n  "name": "Zoë"\n}\n'
    assert got.stderr == "customers c 1: revision 1\n"
    as_json = cli("records", "get", "orders", "o-03", "--json").json()
    assert as_json == {
        "collection": "orders", "key": "o-03", "doc": {"n": 3, "paid": False}, "revision": 1,
    }  # fmt: skip
    assert cli("records", "list", "orders", "--prefix", "x").stdout == (
        "no records in orders with keys starting 'x'\n"
    )


def test_records_mistakes_exit_2_with_one_line(cli: Cli, engine: plait.Engine) -> None:
    engine.workflows()  # the database exists, with no records
    cases = {
        ("get", "orders", "o-1"): (
            "no record 'o-1' in collection 'orders'; see plait records list orders"
        ),
        ("list", "9lives"): (
            "invalid collection name '9lives': a collection name is 1-100 letters, digits, "
            "'_', '.' or '-', starting with a letter"
        ),
        ("list", "plait.workers"): "collection name 'plait.workers' is reserved",
        ("list", "orders", "--limit", "0"): (
            "invalid value for '--limit': 0 is not in the range 1<=x<=1000; see plait records "
            "list --help"
        ),
    }
    for args, message in cases.items():
        result = cli("records", *args)
        assert result.code == 2, (args, result.stderr)
        assert result.stderr.startswith(f"plait: error: {message}"), (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and result.stdout == ""


def test_records_never_create_a_database(cli: Cli, tmp_path: Path) -> None:
    result = cli("records", "list", "orders", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert result.code == 2
    assert "plait: error: no plait database at" in result.stderr
    assert not (tmp_path / "none.db").exists()
