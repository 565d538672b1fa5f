"""Spawned steps as a user sees them on the command line: `plait run` of an app that fans out
at run time, and `plait runs show` listing what was spawned."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .conftest import Cli

APP = """
import plait

wf = plait.Workflow("thumbs")

@wf.task
def resize(size: int) -> int:
    return size // 2

@wf.step
def thumbnails(ctx, count: int) -> list:
    return ctx.map(resize, [100 + i for i in range(count)])

@wf.step
def report(thumbnails: list) -> int:
    return sum(thumbnails)
"""


def test_a_fan_out_spawned_at_run_time_runs_and_shows(
    cli: Cli, write_app: Callable[[str, str], Path]
) -> None:
    app = write_app("thumbs_app.py", APP)

    ran = cli("run", f"{app}:wf", "--input", '{"count": 25}', "--run-id", "t1")

    assert ran.code == 0, ran.stderr
    assert ran.json() == {"report": sum((100 + i) // 2 for i in range(25))}
    assert "run t1 of thumbs v1 (2 steps) in " in ran.stderr
    assert "] thumbnails spawned 25 steps\n" in ran.stderr  # why the total grows to 27
    assert "[26/27] thumbnails done: the steps it spawned have ended\n" in ran.stderr
    assert "done in -" not in ran.stderr
    shown = cli("runs", "show", "t1")
    assert shown.code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(
        "thumbnails/resize-0" in line and "spawned: task resize" in line for line in lines
    ), shown.stdout
    assert not any("thumbnails/resize-20" in line for line in lines)  # 20 are listed …
    assert "… and 5 more steps spawned by thumbnails (5 done)" in shown.stdout  # … the rest counted
    doc = cli("runs", "show", "t1", "--json").json()
    kids = [s for s in doc["steps"] if s["parent"] == "thumbnails"]
    assert len(kids) == 25 and {s["task"] for s in kids} == {"resize"}
