"""One elected scheduler across worker processes, and takeover when it dies (issue 5).

Two `plait worker` processes (lease 1.5 s, which is also the scheduler's election lease) serve
an app with a yearly schedule. The test moves the schedule's next tick to "now" (by writing its
stored document, as a real tick would make the test slow), sees the tick's run started once,
with its deterministic id, by the elected worker, kills that worker (SIGKILL: no resignation),
moves the tick again, and sees the other worker take the election over and start it. The log
line "started run" follows the run's creation, so the test waits for it before the kill.

Runs on SQLite and on PostgreSQL (skipped without a server, except under CI=true).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import plait
from plait.core.cron import tick_id
from plait.core.rows import RecordRow
from plait.engine.schedules import LEASES, SCHEDULER, SCHEDULES
from tests.integration._support import fresh_store_url, load_app, stop_workers, wait_for

APP = """
import plait

wf = plait.Workflow("report")

@wf.step
def build(region: str) -> str:
    return region
"""
DEADLINE = 60.0
# The test moves the ticks by hand. A cron with a tick during the test (every minute) would have
# a late leader start that tick too, and a moved tick in the same whole second would share its
# run id, so "started" would be seen before any takeover.
NEVER_NOW = "0 0 1 1 *"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_store_url(request.param, tmp_path, "plait_s_") as url:
        yield url


def leader(engine: plait.Engine) -> int | None:
    """The pid of the elected scheduler's worker (its id is host:pid:suffix), if any."""
    row = engine._portal.call(engine.store.get_record(LEASES, SCHEDULER))
    return None if row is None else int(orjson.loads(row.doc)["holder"].split(":")[1])


def move_tick(engine: plait.Engine, at: float) -> None:
    """Make the schedule's next tick `at` (what the cron would do a minute later)."""
    row = engine._portal.call(engine.store.get_record(SCHEDULES, "often"))
    assert row is not None
    doc = {**orjson.loads(row.doc), "next_at": at}
    moved = RecordRow(SCHEDULES, "often", orjson.dumps(doc), 0, time.time())
    engine._portal.call(engine.store.put_record(moved, None))


def test_one_scheduler_is_elected_and_another_takes_over(url: str, tmp_path: Path) -> None:
    app = tmp_path / "report.py"
    app.write_text(APP)
    engine = plait.Engine(url)
    workers: dict[int, subprocess.Popen[bytes]] = {}
    log_of: dict[int, Path] = {}
    try:
        engine.schedule("often", load_app(app).wf, cron=NEVER_NOW, input={"region": "eu"})
        for i in range(2):
            cmd = [
                sys.executable,
                "-c",
                "from plait.cli import main; main()",
                "worker",
                str(app),
            ]
            cmd += ["--db", url, "--lease", "1.5", "--log-level", "info"]
            with (tmp_path / f"w{i}.log").open("wb") as err:
                p = subprocess.Popen(cmd, stdout=err, stderr=err, env={**os.environ})
            workers[p.pid], log_of[p.pid] = p, tmp_path / f"w{i}.log"

        def logs() -> str:
            return "\n".join((tmp_path / f"w{i}.log").read_text() for i in range(2))

        def started(run_id: str) -> bool:
            try:
                engine.get_run(run_id)
            except plait.RunNotFound:
                return False
            return True

        def logged_start(run_id: str) -> int:
            return logs().count(f"started run {run_id}")

        first = time.time() + 0.5
        move_tick(engine, first)
        run_id = tick_id("often", first)
        wait_for(lambda: started(run_id), bool, f"run {run_id} started", logs, DEADLINE, 0.1)
        # its starter logs it just after storing it: a kill in between would lose the line
        wait_for(lambda: logged_start(run_id), bool, f"{run_id} logged", logs, DEADLINE, 0.1)
        elected = wait_for(lambda: leader(engine), lambda p: p in workers, "a leader", logs, 5)
        assert engine.get_run(run_id).status is not plait.RunStatus.FAILED
        workers[elected].kill()  # no resignation: the lease must expire
        workers[elected].wait()
        second = max(time.time() + 0.5, first + 2)  # run ids name whole seconds: another one
        move_tick(engine, second)
        run_id = tick_id("often", second)
        wait_for(lambda: started(run_id), bool, f"run {run_id} started", logs, DEADLINE, 0.1)
        survivor = next(p for p in workers if p != elected)
        # the survivor took the election over and created the run (only a creator says so)
        said = f"started run {run_id}"
        wait_for(lambda: said in log_of[survivor].read_text(), bool, said, logs, DEADLINE, 0.1)
        assert leader(engine) == survivor
        # one process logs that it started the tick: the one that created its run
        assert logged_start(tick_id("often", first)) == 1
    finally:
        stop_workers(workers.values())
        engine.close()
