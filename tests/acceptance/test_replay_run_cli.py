"""`plait replay RUN --app FILE.py` without a STEP: the whole run replayed, as a user runs it
(issue 18, item 7): each step OK / DIVERGED (with the diff) / FAIL, --from, --break-at with the
process id or pdb, and the mistakes that exit 2."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import plait

from .conftest import Cli
from .test_fork_cli import BROKEN, GOOD, TRIPLED, recorded_run, shop_app


def test_a_whole_run_replays_step_by_step(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    app = shop_app(write_app, "shop_app.py", "1", GOOD)
    recorded_run(engine, app)
    events_before = len(engine.events("p1"))

    same = cli("replay", "p1", "--app", str(app))
    assert same.code == 0, same.stderr
    assert same.stdout.splitlines()[1:] == [
        "OK        fetch",
        "OK        total",
        "OK        label",
        "3 OK",
    ]

    tripled = cli("replay", "p1", "--app", str(shop_app(write_app, "tripled.py", "2", TRIPLED)))
    assert tripled.code == 1
    assert tripled.stdout.splitlines()[1:] == [
        "OK        fetch",
        "DIVERGED  total",
        "    /output/total: 4 → 12",
        "OK        label",
        "2 OK, 1 DIVERGED",
    ]
    broken = cli("replay", "p1", "--app", str(shop_app(write_app, "broken.py", "3", BROKEN)))
    assert broken.code == 1
    assert "FAIL      total  [ValueError] tax table missing" in broken.stdout
    upstream = cli("replay", "p1", "--app", str(app), "--from", "total", "--json")
    assert upstream.code == 0, upstream.stderr
    assert [(s["step"], s["result"]) for s in upstream.json()["steps"]] == [
        ("fetch", "reused"), ("total", "ok"), ("label", "ok"),
    ]  # fmt: skip
    assert len(engine.events("p1")) == events_before  # nothing written


def test_break_at_prints_the_process_id_and_waits(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    app = shop_app(write_app, "shop_app.py", "1", GOOD)
    recorded_run(engine, app)
    stopped = cli("replay", "p1", "--app", str(app), "--break-at", "label", stdin="\n")
    assert stopped.code == 0, stopped.stderr
    assert "stopped before step label: process id " in stopped.stderr
    pid = int(stopped.stderr.split("process id ")[1].split()[0])
    assert pid > 0 and pid != os.getpid()
    assert stopped.stdout.splitlines()[-1] == "3 OK"  # it went on after Enter


def test_break_at_with_pdb_shows_the_steps_input(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    app = shop_app(write_app, "shop_app.py", "1", GOOD)
    recorded_run(engine, app)
    debugged = cli(
        "replay", "p1", "--app", str(app), "--break-at", "total", "--pdb",
        stdin="p inputs['dependencies']['fetch']['output']\nc\n",
    )  # fmt: skip
    assert debugged.code == 0, debugged.stderr
    assert "stopped before step total (process id" in debugged.stderr
    assert "(Pdb) [2, 2]" in debugged.stdout
    assert debugged.stdout.splitlines()[-1] == "3 OK"


def test_whole_run_replay_mistakes_exit_2(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    app = shop_app(write_app, "shop_app.py", "1", GOOD)
    recorded_run(engine, app)
    other = write_app(
        "other_app.py", "import plait\nwf = plait.Workflow('other')\nwf.add_step('a', lambda: 1)\n"
    )
    cases = {
        ("replay", "p1", "--app", str(other)): (
            f"plait: error: {other} defines no workflow 'shop' (workflows there: other)"
        ),
        ("replay", "p1", "--app", str(app), "--from", "zz"): (
            "plait: error: cannot replay run 'p1' from step 'zz': workflow 'shop' v1 ("
        ),
        ("replay", "p1", "--app", str(app), "--break-at", "zz"): (
            "plait: error: cannot break at step 'zz': run 'p1' and workflow 'shop' v1 ("
        ),
        ("replay", "p1", "--app", str(app), "--from", "total", "--break-at", "fetch"): (
            "plait: error: cannot break at step 'fetch': it is upstream of 'total'"
        ),
        ("replay", "p1", "total", "--app", str(app), "--from", "total"): (
            "plait: error: --from, --break-at and --pdb replay a whole run: give no STEP with them"
        ),
        ("replay", "p1", "--app", str(app), "--pdb"): (
            "plait: error: --pdb enters the debugger at --break-at STEP: give --break-at"
        ),
        ("replay", "nope", "--app", str(app)): "plait: error: no run with id 'nope'",
    }
    for args, message in cases.items():
        result = cli(*args)
        assert result.code == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith(message), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
