"""`plait states …`: workflow-state documents from the command line."""

from __future__ import annotations

import shlex
from datetime import datetime

import plait

from .conftest import Cli


def test_states_create_change_show_list_delete(cli: Cli, engine: plait.Engine) -> None:
    engine.workflows()  # the database exists
    made = cli(
        "states", "create", "orders", "o-1", "received",
        "--context", '{"total": 9}', "--max-iterations", "2", "--json",
    )  # fmt: skip
    assert made.code == 0, made.stderr
    doc = made.json()
    assert {k: doc[k] for k in ("collection", "id", "revision", "phase", "iteration")} == {
        "collection": "orders", "id": "o-1", "revision": 1, "phase": "received", "iteration": 0,
    }  # fmt: skip
    assert (doc["max_iterations"], doc["context"], doc["error"]) == (2, {"total": 9}, None)
    assert doc["completed_at"] is None
    assert datetime.fromisoformat(doc["created_at"]).utcoffset() is not None

    moved = cli("states", "transition", "orders", "o-1", "paying", "--expected-revision", "1")
    assert moved.code == 0, moved.stderr
    lines = moved.stdout.splitlines()
    assert lines[0] == "orders o-1: revision 2"
    assert lines[1].split() == ["phase", "paying"]
    assert lines[2].split() == ["iteration", "0", "(max", "2)"]
    assert lines[-1].split() == ["context", '{"total":', "9}"]

    assert cli("states", "increment", "orders", "o-1", "--json").json()["iteration"] == 1
    failed = cli("states", "fail", "orders", "o-1", "card declined", "--json").json()
    assert (failed["phase"], failed["error"], failed["revision"]) == ("failed", "card declined", 4)
    assert failed["completed_at"] is not None
    shown = cli("states", "show", "orders", "o-1", "--json").json()
    assert shown == failed

    for i in range(3):
        cli("states", "create", "orders", f"p-{i}", "waiting")
    assert cli("states", "complete", "orders", "p-1").code == 0

    listed = cli("states", "list", "orders")
    rows = listed.stdout.splitlines()
    assert rows[0].split() == ["ID", "PHASE", "ITERATION", "REVISION", "UPDATED", "ERROR", "/", "CONTEXT"]  # fmt: skip
    assert [r.split()[:4] for r in rows[1:]] == [
        ["o-1", "failed", "1/2", "4"],
        ["p-0", "waiting", "0", "1"],
        ["p-1", "completed", "0", "2"],
        ["p-2", "waiting", "0", "1"],
    ]
    waiting = cli("states", "list", "orders", "--phase", "waiting", "--limit", "1")
    [hint] = [line for line in waiting.stdout.splitlines() if line.startswith("more: ")]
    command = shlex.split(hint.removeprefix("more: "))
    assert command == [
        "plait", "states", "list", "orders", "--phase", "waiting", "--limit", "1", "--after", "p-0",
    ]  # fmt: skip
    page = cli(*command[1:], "--json").json()
    assert [s["id"] for s in page["states"]] == ["p-2"] and page["next_after"] is None

    deleted = cli("states", "delete", "orders", "p-2", "--expected-revision", "1")
    assert deleted.code == 0 and deleted.stderr == "deleted state p-2 of orders\n"
    assert cli("states", "list", "orders", "--phase", "nothing").stdout == (
        "no states in orders in phase 'nothing'\n"
    )
    assert engine.states("orders").get("p-2") is None


def test_states_mistakes_exit_2_with_one_line(cli: Cli, engine: plait.Engine) -> None:
    engine.states("orders").create("o-1", "received", max_iterations=0)
    engine.states("orders").create("done", "x")
    engine.states("orders").complete("done")
    cases = {
        ("show", "orders", "nope"): (
            "no state 'nope' in collection 'orders'; see plait states list orders"
        ),
        ("transition", "orders", "nope", "x"): "no state 'nope' in collection 'orders'",
        ("transition", "orders", "o-1", "bad phase"): "invalid phase 'bad phase'",
        ("transition", "orders", "o-1", "completed"): "phase 'completed' ends a state document",
        ("transition", "orders", "o-1", "x", "--expected-revision", "5"): (
            "state 'o-1' of collection 'orders' is at revision 1, but the write expected revision 5"
        ),
        ("increment", "orders", "o-1"): (
            "state 'o-1' of collection 'orders' is at iteration 0 of max_iterations 0"
        ),
        ("complete", "orders", "done"): "state 'done' of collection 'orders' has ended",
        ("create", "orders", "o-1"): "state 'o-1' of collection 'orders' is at revision 1",
        ("create", "orders", "o-2", "--context", "[1]"): (
            "a state's context must be a JSON object (a dict), got list"
        ),
        ("create", "orders", "o-2", "--context", "{nope"): "--context is not valid JSON",
        ("list", "9lives"): "invalid collection name '9lives'",
        ("list", "plait.workers"): "collection name 'plait.workers' is reserved",
        ("delete", "orders", "nope"): "no state 'nope' in collection 'orders'",
    }
    for args, message in cases.items():
        result = cli("states", *args)
        assert result.code == 2, (args, result.stderr)
        assert result.stderr.startswith(f"plait: error: {message}"), (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and result.stdout == ""
    assert engine.states("orders").get("o-1").revision == 1  # type: ignore[union-attr]
