"""Session state across worker processes (SQLite and PostgreSQL): parallel steps of one run,
completed by different processes, each append to one list; every append lands (each success's
changes are applied to the state as it is at its commit, under the run row's lock), and the
last `set` to commit wins."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import plait
from tests.integration._support import fresh_store_url, load_app, stop_workers, wait_for

APP = Path(__file__).with_name("state_app.py")
SCHEMA_PREFIX = "plait_s_"
DEADLINE = 90.0

app = load_app(APP)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_store_url(request.param, tmp_path, SCHEMA_PREFIX) as url:
        yield url


def spawn(url: str, tmp: Path, index: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", "from plait.cli import main; main()", "worker", str(APP)]
    cmd += ["--db", url, "--concurrency", "4", "--grace", "5", "--log-level", "warning"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (tmp / f"worker{index}.err").open("wb") as err:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)


def test_parallel_appends_from_several_processes_all_land(url: str, tmp_path: Path) -> None:
    workers: list[subprocess.Popen[bytes]] = []
    with plait.Engine(url) as engine:
        engine.register(app.wf)
        try:
            workers = [spawn(url, tmp_path, i) for i in range(3)]
            handle = engine.start(app.wf, {}, run_id="parts-1")

            def diagnose() -> str:
                return "\n".join(
                    p.read_text(errors="replace") for p in sorted(tmp_path.glob("worker*.err"))
                )

            wait_for(
                lambda: engine.get_run(handle.id).status,
                lambda s: s.terminal,
                "the run to end",
                diagnose,
                DEADLINE,
            )
            assert handle.result(timeout=1) == {"join": list(range(app.PARTS))}
        finally:
            stop_workers(workers)
        state = engine.get_run("parts-1").state
        changes = [e for e in engine.events("parts-1") if e.type == "state_changed"]
        appended = [e.payload["value"] for e in changes if e.payload["key"] == "parts"]
        assert sorted(state["parts"]) == list(range(app.PARTS))
        assert state["parts"] == appended  # in commit order: the log says the same
        sets = [e.payload["value"] for e in changes if e.payload["key"] == "last"]
        assert state["last"] == sets[-1]
        assert len(state["pids"]) == app.PARTS
