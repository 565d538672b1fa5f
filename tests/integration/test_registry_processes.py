"""The worker registry across real processes (issue 6, part 6).

Two `plait worker` processes (lease 1.5 s: they heartbeat every 0.5 s) register; one is killed
with SIGKILL (no graceful stop, so nothing deregisters it) and ages out of `engine.workers()`
once its registration expires, while the other stays live; `--all` still shows the dead one.
Then a SIGTERM stops the other, which leaves the registry at once.

Runs on SQLite and on PostgreSQL (skipped without a server, except under CI=true).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import plait
from tests.integration._support import fresh_store_url, wait_for

APP = """
import plait

wf = plait.Workflow("report")

@wf.step
def build(region: str) -> str:
    return region
"""
DEADLINE = 60.0
LEASE = 1.5


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_store_url(request.param, tmp_path, "plait_r_") as url:
        yield url


def test_a_killed_worker_ages_out_while_a_live_one_stays(url: str, tmp_path: Path) -> None:
    app = tmp_path / "report.py"
    app.write_text(APP)
    engine = plait.Engine(url)
    workers: dict[int, subprocess.Popen[bytes]] = {}
    try:
        engine.workers()  # creates the store before the workers race to
        for i in range(2):
            cmd = [
                sys.executable,
                "-c",
                "from plait.cli import main; main()",
                "worker",
                str(app),
            ]
            cmd += ["--db", url, "--lease", str(LEASE), "--labels", f"n{i}"]
            with (tmp_path / f"w{i}.log").open("wb") as err:
                p = subprocess.Popen(cmd, stdout=err, stderr=err, env={**os.environ})
            workers[p.pid] = p

        def logs() -> str:
            return "\n".join((tmp_path / f"w{i}.log").read_text() for i in range(2))

        def live() -> dict[int, plait.WorkerInfo]:
            return {w.pid: w for w in engine.workers()}

        wait_for(live, lambda found: set(found) == set(workers), "both register", logs, DEADLINE)
        victim, survivor = sorted(workers)
        workers[victim].kill()  # SIGKILL: its registration is left to expire
        workers[victim].wait()
        killed_at = time.time()
        found = wait_for(live, lambda found: victim not in found, "the dead one ages out", logs,
                         DEADLINE)  # fmt: skip
        assert list(found) == [survivor]
        # it aged out by expiring (a lease after its last heartbeat), not earlier
        [dead] = [w for w in engine.workers(include_dead=True) if w.pid == victim]
        assert not dead.live and dead.expires_at <= time.time()
        assert dead.expires_at > killed_at - LEASE
        assert found[survivor].live and found[survivor].heartbeat_at > dead.heartbeat_at
        # the survivor keeps heartbeating: still live well after its first lease
        wait_for(live, lambda f: survivor in f and f[survivor].heartbeat_at > killed_at + LEASE,
                 "the survivor heartbeats", logs, DEADLINE)  # fmt: skip
        workers[survivor].send_signal(signal.SIGTERM)  # graceful: it deregisters
        assert workers[survivor].wait(timeout=30) == 0
        assert [w.pid for w in engine.workers(include_dead=True)] == [victim]
    finally:
        for p in workers.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        engine.close()
