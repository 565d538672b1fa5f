"""`plait schedules list|add|pause|resume|delete`, as a user runs them, and their errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import plait

from .conftest import Cli

APP = """
    import plait

    wf = plait.Workflow("report")

    @wf.step
    def build(region: str) -> str:
        return region
"""


def test_add_list_pause_resume_delete(
    cli: Cli, write_app: Callable[[str, str], Path], engine: plait.Engine
) -> None:
    app = write_app("report.py", APP)
    added = cli(
        "schedules", "add", "nightly", str(app), "--cron", "0 2 * * *",
        "--input", '{"region": "eu"}', "--timezone", "Europe/Paris", "--catch-up", "run_once",
    )  # fmt: skip
    assert added.code == 0, added.stderr
    assert added.stdout.startswith("nightly  report  '0 2 * * *' Europe/Paris  catch-up run_once")
    listed = cli("schedules", "list", "--json")
    assert listed.code == 0, listed.stderr
    [doc] = json.loads(listed.stdout)
    assert (doc["name"], doc["input"], doc["paused"]) == ("nightly", {"region": "eu"}, False)
    assert doc["next_at"].endswith(":00:00+00:00")  # 02:00 in Paris is 01:00 or 00:00 UTC
    assert "paused" in cli("schedules", "pause", "nightly").stdout
    assert engine.get_schedule("nightly").paused
    assert "next " in cli("schedules", "resume", "nightly").stdout
    deleted = cli("schedules", "delete", "nightly")
    assert (deleted.code, deleted.stdout.strip()) == (0, "schedule nightly deleted")
    assert cli("schedules", "list").stdout.strip() == "no schedules"


def test_bad_schedules_exit_2_with_one_line(
    cli: Cli, write_app: Callable[[str, str], Path], engine: plait.Engine
) -> None:
    engine.schedules()  # the database exists
    app = write_app("report.py", APP)
    region = ["--input", '{"region": "eu"}']
    cases = [
        (
            ["add", "s", str(app), "--cron", "0 25 * * *", *region],
            "plait: error: invalid cron expression '0 25 * * *': hour value 25 is out of range "
            "0-23",
        ),
        (
            ["add", "s", str(app), "--cron", "@daily", "--timezone", "Moon/Base", *region],
            "plait: error: unknown timezone 'Moon/Base': use an IANA name such as "
            "'Europe/Paris' or 'UTC'",
        ),
        (
            ["add", "my report", str(app), "--cron", "@daily", *region],
            "plait: error: invalid schedule name 'my report': use 1-100 letters, digits, '_', "
            "'.' or '-', starting with a letter or digit (no spaces)",
        ),
        (["pause", "ghost"], "plait: error: no schedule named 'ghost'; see plait schedules list"),
        (["delete", "ghost"], "plait: error: no schedule named 'ghost'; see plait schedules list"),
    ]
    for args, message in cases:
        result = cli("schedules", *args)
        assert result.code == 2, (args, result.stderr)
        assert result.stderr.strip() == message
