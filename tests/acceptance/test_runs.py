"""`plait runs list|show|events` and `plait workflows`, in JSON and as tables."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import EXAMPLES, Cli

ORDERS = str(EXAMPLES / "orders.py")
STEPS = ["fetch", "reserve", "charge", "email", "finish"]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A database with order-1 and order-2 completed and order-0 failed (created in that order).

    Shared by the tests of this module that only read it.
    """
    tmp = tmp_path_factory.mktemp("filled")
    cli = Cli(tmp, f"sqlite:///{tmp / 'runs.db'}")
    for order in (1, 2, 0):
        result = cli(
            "run",
            f"{ORDERS}:wf",
            "--input",
            f'{{"order_id": {order}}}',
            "--run-id",
            f"order-{order}",
        )
        assert result.code == (1 if order == 0 else 0), result.stderr
    return cli


THREE_RUNS = ["order-0", "order-2", "order-1"]  # newest first


def test_runs_list_json(filled: Cli) -> None:
    page = filled("runs", "list", "--json").json()

    assert [r["id"] for r in page["runs"]] == THREE_RUNS
    assert page["next_cursor"] is None
    by_id = {r["id"]: r for r in page["runs"]}
    assert by_id["order-1"]["status"] == "completed"
    assert by_id["order-1"]["workflow"] == "orders"
    assert by_id["order-1"]["input"] == {"order_id": 1}
    assert by_id["order-1"]["output"]["finish"]["order_id"] == 1
    assert by_id["order-1"]["duration"] > 0
    assert by_id["order-0"]["status"] == "failed"
    assert by_id["order-0"]["output"] is None


def test_runs_list_filters_and_pages(filled: Cli) -> None:
    failed = filled("runs", "list", "--status", "failed", "--json").json()
    assert [r["id"] for r in failed["runs"]] == ["order-0"]
    assert filled("runs", "list", "--workflow", "nope", "--json").json()["runs"] == []

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        args = ["runs", "list", "--limit", "2", "--json"] + (["--cursor", cursor] if cursor else [])
        page = filled(*args).json()
        assert len(page["runs"]) <= 2
        seen += [r["id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == THREE_RUNS


def test_runs_list_table(filled: Cli) -> None:
    result = filled("runs", "list")

    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RUN", "WORKFLOW", "VERSION", "STATUS", "CREATED", "DURATION"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(THREE_RUNS)
    assert rows["order-1"][1:4] == ["orders", "1", "completed"]
    assert rows["order-0"][3] == "failed"

    paged = filled("runs", "list", "--limit", "1")
    assert "more: plait runs list --limit 1 --cursor " in paged.stdout


def test_runs_list_paging_hint_keeps_the_options(filled: Cli, tmp_path: Path) -> None:
    # the same database through a folder whose name needs quoting in a shell
    folder = tmp_path / "it's runs"
    folder.symlink_to(filled.cwd)
    db = f"sqlite:///{folder / 'runs.db'}"
    first = filled("runs", "list", "--workflow", "orders", "--status", "completed", "--limit", "1",
                   "--db", db)  # fmt: skip
    assert first.code == 0, first.stderr
    [hint] = [line for line in first.stdout.splitlines() if line.startswith("more: ")]
    command = shlex.split(hint.removeprefix("more: "))
    cursor = command[-1]
    assert command == [
        "plait", "runs", "list", "--workflow", "orders", "--status", "completed", "--limit", "1",
        "--db", db, "--cursor", cursor,
    ]  # fmt: skip

    second = filled(*command[1:])
    assert second.code == 0, second.stderr
    listed = [line.split()[0] for line in first.stdout.splitlines()[1:2]]
    listed += [line.split()[0] for line in second.stdout.splitlines()[1:2]]
    assert listed == ["order-2", "order-1"]  # the completed runs, newest first

    plain = filled("runs", "list", "--limit", "2")  # PLAIT_DB, from the environment, applies
    [hint] = [line for line in plain.stdout.splitlines() if line.startswith("more: ")]
    assert shlex.split(hint.removeprefix("more: "))[:5] == [
        "plait", "runs", "list", "--limit", "2"
    ]  # fmt: skip
    assert "--db" not in hint


def test_runs_show_json_matches_the_run(filled: Cli) -> None:
    shown = filled("runs", "show", "order-1", "--json").json()

    assert shown["run"]["id"] == "order-1"
    assert shown["run"]["status"] == "completed"
    assert [s["name"] for s in shown["steps"]] == STEPS
    steps = {s["name"]: s for s in shown["steps"]}
    assert all(s["status"] == "done" for s in steps.values())
    assert steps["charge"]["attempts"] == 2
    assert steps["fetch"]["attempts"] == 1
    assert steps["reserve"]["duration"] >= 0.1  # it sleeps 0.1 s
    assert steps["finish"]["output"] == shown["run"]["output"]["finish"]
    assert shown["counts"]["done"] == 5
    assert shown["blockers"] == {}
    assert shown["duration"] > 0


def test_runs_show_failed_run(filled: Cli) -> None:
    shown = filled("runs", "show", "order-0", "--json").json()
    steps = {s["name"]: s for s in shown["steps"]}

    assert steps["fetch"]["status"] == "failed"
    assert steps["fetch"]["error"] == {
        "code": "order_not_found",
        "message": "order 0 does not exist",
    }
    assert steps["finish"]["status"] == "skipped"
    assert "fetch" in steps["finish"]["skip_reason"]

    table = filled("runs", "show", "order-0")
    assert table.code == 0, table.stderr
    assert "[order_not_found] order 0 does not exist" in table.stdout
    fetch_row = next(line for line in table.stdout.splitlines() if line.split()[:1] == ["fetch"])
    assert fetch_row.split()[1:3] == ["failed", "1"]


def test_runs_show_says_where_the_tracebacks_are(filled: Cli) -> None:
    failed = filled("runs", "show", "order-0").stdout.splitlines()
    retried = filled("runs", "show", "order-1").stdout.splitlines()  # charge failed once

    assert failed[-1] == "tracebacks: plait runs show order-0 --step STEP (failed attempts: fetch)"
    assert retried[-1] == (
        "tracebacks: plait runs show order-1 --step STEP (failed attempts: charge)"
    )


def test_runs_show_step_prints_the_tracebacks(filled: Cli) -> None:
    failed = filled("runs", "show", "order-0", "--step", "fetch")
    assert failed.code == 0, failed.stderr
    lines = failed.stdout.splitlines()
    assert lines[0] == "step fetch of run order-0  failed"
    assert "error     [order_not_found] order 0 does not exist" in lines
    assert 'input     {"order_id": 0}' in lines  # what the failed attempt received
    at = next(i for i, line in enumerate(lines) if line.startswith("attempt 1 failed at "))
    assert lines[at].endswith(": [order_not_found] order 0 does not exist")
    assert lines[at + 1] == "Traceback (most recent call last):"
    assert 'orders.py", line' in failed.stdout and ", in fetch" in failed.stdout
    assert lines[-1] == "plait._errors.Permanent: order 0 does not exist"

    retried = filled("runs", "show", "order-1", "--step", "charge", "--json").json()
    assert (retried["name"], retried["status"], retried["attempts"]) == ("charge", "done", 2)
    assert isinstance(retried["input"], dict) and retried["input"]  # its arguments
    [first] = retried["failures"]
    assert (first["attempt"], first["code"], first["retried"]) == (1, "gateway_timeout", True)
    assert first["traceback"].startswith("Traceback (most recent call last):")
    assert first["traceback"].rstrip().endswith("payment gateway timed out")

    skipped = filled("runs", "show", "order-0", "--step", "finish").stdout.splitlines()
    assert "skipped   dependency 'fetch' failed" in skipped and skipped[-1] == "never ran"

    unknown = filled("runs", "show", "order-0", "--step", "nope")
    assert unknown.code == 2
    assert unknown.stderr.strip() == (
        "plait: error: run 'order-0' has no step 'nope'; see plait runs show order-0"
    )


def test_runs_show_blockers_of_an_unfinished_run(
    cli: Cli, write_app: Callable[[str, str], Path]
) -> None:
    app = write_app(
        "slow.py",
        """
        import asyncio
        import plait

        wf = plait.Workflow("slow")

        @wf.step()
        async def nap() -> str:
            await asyncio.sleep(30)
            return "rested"

        @wf.step()
        def wake(nap: str) -> str:
            return nap
        """,
    )
    assert cli("run", f"{app}:wf", "--run-id", "r", "--timeout", "0.3", "--grace", "0").code == 1

    shown = cli("runs", "show", "r", "--json").json()
    assert shown["blockers"]["wake"] == ["nap (ready)"]
    assert shown["blockers"]["nap"][0].startswith("no live worker serves this fingerprint")
    table = cli("runs", "show", "r")
    assert "waits on nap (ready)" in table.stdout


def test_runs_events_json(filled: Cli) -> None:
    events: list[dict[str, Any]] = filled("runs", "events", "order-1", "--json").json()

    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "run_started"
    assert events[0]["payload"]["workflow"] == "orders"
    assert events[-1]["type"] == "run_completed"
    retry = [e for e in events if e["type"] == "step_retrying"]
    assert [(e["step"], e["payload"]["code"]) for e in retry] == [("charge", "gateway_timeout")]
    completed = [e["step"] for e in events if e["type"] == "step_completed"]
    assert sorted(completed) == sorted(STEPS)

    later = filled("runs", "events", "order-1", "--after", "3", "--json").json()
    assert later == events[3:]
    assert filled("runs", "events", "order-1", "--after", str(len(events)), "--json").json() == []


def test_runs_events_table(filled: Cli) -> None:
    result = filled("runs", "events", "order-1")

    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "TYPE", "STEP", "DETAIL"]
    seq, time, zone, kind = lines[1].split()[0:4]
    assert (seq, kind) == ("1", "run_started") and len(time) == len("12:34:56.789") and zone
    assert any("step_retrying" in line and "code=gateway_timeout" in line for line in lines)
    assert "Traceback" not in result.stdout  # kept for --json


def test_workflows(filled: Cli) -> None:
    listed = filled("workflows", "--json").json()

    assert len(listed) == 1
    (info,) = listed
    assert info["name"] == "orders"
    assert info["version"] == "1"
    assert info["steps"] == STEPS
    assert len(info["fingerprint"]) == 16
    shown = filled("runs", "show", "order-1", "--json").json()
    assert shown["run"]["fingerprint"] == info["fingerprint"]

    table = filled("workflows")
    assert table.stdout.splitlines()[1].split()[:3] == ["orders", "1", info["fingerprint"]]


@pytest.mark.parametrize(
    "command",
    [["runs", "show", "nope"], ["runs", "show", "nope", "--json"], ["runs", "events", "nope"]],
    ids=["show", "show-json", "events"],
)
def test_unknown_run_id_exits_2(filled: Cli, command: list[str]) -> None:
    result = filled(*command)

    assert result.code == 2
    assert "plait: error: no run with id 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_reading_a_missing_database_exits_2(cli: Cli, tmp_path: Path) -> None:
    result = cli("runs", "list", "--db", "sqlite:///absent.db")

    assert result.code == 2
    assert "plait: error: no plait database at absent.db" in result.stderr
    assert not (tmp_path / "absent.db").exists()


def test_invalid_cursor_and_status_exit_2(filled: Cli) -> None:
    bad_cursor = filled("runs", "list", "--cursor", "garbage")
    assert bad_cursor.code == 2
    assert bad_cursor.stderr.strip() == (
        "plait: error: invalid --cursor 'garbage': pass the cursor a previous page printed "
        "(its 'more:' line, or next_cursor with --json)"
    )

    bad_status = filled("runs", "list", "--status", "sleeping")
    assert bad_status.code == 2
    assert "'sleeping' is not one of" in bad_status.stderr


def test_empty_database(cli: Cli, engine: Any) -> None:
    assert engine.workflows() == []  # creates the (empty) database
    assert cli("runs", "list").stdout.strip() == "no runs"
    assert cli("runs", "list", "--json").json() == {"runs": [], "next_cursor": None}
    assert cli("workflows", "--json").json() == []
