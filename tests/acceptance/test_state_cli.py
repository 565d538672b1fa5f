"""`plait runs show`: a run's session state and its history (one line per change, with its step)."""

from __future__ import annotations

import plait

from .conftest import Cli, import_file

APP = """
import plait

wf = plait.Workflow("tally")

@wf.step
def count(ctx: plait.StepContext) -> None:
    ctx.state.set("total", 2)
    ctx.state.append("seen", "count")

@wf.step(after=["count"])
def check(ctx: plait.StepContext) -> None:
    ctx.state.append("seen", "check")
"""


def test_runs_show_prints_the_state_and_its_history(
    cli: Cli, engine: plait.Engine, write_app
) -> None:
    wf = import_file(write_app("tally_app.py", APP)).wf
    engine.run_worker(until=engine.start(wf, {}, run_id="t-1"), timeout=30)

    shown = cli("runs", "show", "t-1")
    assert shown.code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert 'state     {"total": 2, "seen": ["count", "check"]}' in lines
    history = lines[lines.index(next(line for line in lines if line.split()[:1] == ["SEQ"])) + 1 :]
    assert [line.split() for line in history] == [
        [str(n), step, op, key, value]
        for n, step, op, key, value in [
            (3, "count", "set", "total", "2"),
            (4, "count", "append", "seen", '"count"'),
            (7, "check", "append", "seen", '"check"'),
        ]
    ]

    doc = cli("runs", "show", "t-1", "--json").json()
    assert doc["run"]["state"] == {"total": 2, "seen": ["count", "check"]}
    assert [(c["step"], c["op"], c["key"], c["value"]) for c in doc["state_history"]] == [
        ("count", "set", "total", 2), ("count", "append", "seen", "count"),
        ("check", "append", "seen", "check"),
    ]  # fmt: skip
