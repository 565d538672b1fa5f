"""`plait runs watch ID`: a run's events printed as they are committed, until the run ends."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

import plait

from .conftest import Cli, Spawned, import_file, wait_for

# `first` waits until the test creates the file named by $WATCH_RELEASE: while it waits, the run
# cannot end, so whatever the watcher has printed by then was printed live.
APP = """
    import os
    import time
    from pathlib import Path

    import plait

    wf = plait.Workflow("watched")


    @wf.step()
    def first(n: int) -> int:
        release = Path(os.environ["WATCH_RELEASE"])
        deadline = time.monotonic() + 60
        while not release.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("never released")
            time.sleep(0.01)
        return n


    @wf.step()
    def second(first: int) -> int:
        if first < 0:
            raise plait.Permanent("negative")
        return first + 1
"""


def lines_with(spawned: Spawned, *words: str) -> list[str]:
    return [line for line in spawned.out if all(w in line.split() for w in words)]


def start(write_app: Callable[[str, str], Path], engine: plait.Engine, run_id: str, n: int) -> Path:
    app = write_app("watched.py", APP)
    engine.start(import_file(app).wf, {"n": n}, run_id=run_id)
    return app


def test_runs_watch_prints_events_live_and_exits_0_when_the_run_ends(
    cli: Cli,
    engine: plait.Engine,
    write_app: Callable[[str, str], Path],
    spawned: list[Spawned],
    tmp_path: Path,
) -> None:
    app = start(write_app, engine, "r1", 1)
    release = tmp_path / "release"
    cli.env["WATCH_RELEASE"] = str(release)
    watch = cli.spawn("runs", "watch", "r1")
    spawned.append(watch)
    wait_for(lambda: lines_with(watch, "1", "run_started"), "run_started printed")
    worker = cli.spawn("worker", str(app))
    spawned.append(worker)

    wait_for(lambda: lines_with(watch, "2", "step_started", "first"), "step_started printed")
    assert watch.proc.poll() is None  # still watching: the run cannot end before the release
    release.touch()

    assert watch.wait() == 0, watch.stderr
    worker.stop()
    log = engine.events("r1")
    rows = [line.split()[:4] for line in watch.out[1:]]  # TIME is a time and its zone
    assert watch.out[0].split() == ["SEQ", "TIME", "TYPE", "STEP", "DETAIL"]
    assert [(int(seq), kind) for seq, _, _, kind in rows] == [(e.seq, e.type) for e in log]
    assert log[-1].type == "run_completed"
    assert watch.stderr.strip() == "run r1 completed"


def test_runs_watch_json_after_and_exit_status(
    cli: Cli,
    engine: plait.Engine,
    write_app: Callable[[str, str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start(write_app, engine, "bad", -1)
    (tmp_path / "release").touch()
    monkeypatch.setenv("WATCH_RELEASE", str(tmp_path / "release"))
    engine.run_worker(until="bad", timeout=30)

    result = cli("runs", "watch", "bad", "--after", "2", "--json", "--exit-status")

    assert result.code == 1, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    log = engine.events("bad")
    assert [(d["seq"], d["type"], d["step"]) for d in docs] == [
        (e.seq, e.type, e.step) for e in log[2:]
    ]
    assert docs[-1]["type"] == "run_failed"
    assert result.stderr.startswith("run bad failed: step 'second' failed")
    assert cli("runs", "watch", "bad", "--after", "2", "--json").code == 0


def test_runs_watch_of_an_unknown_run_is_a_clear_error(cli: Cli, engine: plait.Engine) -> None:
    engine.workflows()  # creates the database

    result = cli("runs", "watch", "ghost")

    assert result.code == 2
    assert result.stderr.strip() == f"plait: error: no run with id 'ghost' in {cli.db}"


def test_ctrl_c_stops_watching_cleanly(
    cli: Cli,
    engine: plait.Engine,
    write_app: Callable[[str, str], Path],
    spawned: list[Spawned],
) -> None:
    start(write_app, engine, "idle", 1)  # no worker: it never ends
    watch = cli.spawn("runs", "watch", "idle")
    spawned.append(watch)
    wait_for(lambda: lines_with(watch, "1", "run_started"), "run_started printed")

    watch.signal(signal.SIGINT)

    assert watch.wait() == 130
    assert "Traceback" not in watch.stderr
    assert watch.stderr.strip() == "interrupted: stopped watching run idle"
