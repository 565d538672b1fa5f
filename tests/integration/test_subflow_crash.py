"""A sub-workflow across a crash (issue 19, item 6), with real processes on SQLite: the worker
is SIGKILLed while the parent's step waits for its child and the child's step runs; another
worker takes the child's step over once its lease expires, the child's end readies the parent's
step, and the run completes with one child run, never a second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import plait
from tests.integration._support import load_app, stop_workers, wait_for

APP = Path(__file__).with_name("subflow_app.py")
DEADLINE = 60.0

app = load_app(APP)


def spawn(url: str, tmp: Path, index: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", "from plait.cli import main; main()", "worker", str(APP)]
    cmd += ["--db", url, "--lease", "1", "--grace", "1", "--log-level", "warning"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", app.RELEASE_ENV: str(tmp / "release")}
    with (tmp / f"worker{index}.err").open("wb") as err:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)


def test_a_killed_worker_leaves_one_child_and_the_run_completes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plait.db'}"

    def diagnose() -> str:
        return "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("worker*.err"))

    workers: list[subprocess.Popen[bytes]] = []
    with plait.Engine(url) as engine:
        handle = engine.start(app.parent, {"n": 21}, run_id="p")
        try:
            workers.append(spawn(url, tmp_path, 0))

            def child_step() -> plait.Step | None:
                try:
                    return next(iter(engine.steps("p.call.0.1")))
                except plait.RunNotFound:  # not started yet
                    return None

            wait_for(
                child_step,
                lambda s: s is not None and s.status is plait.StepStatus.RUNNING,
                "the child's step to run",
                diagnose,
                DEADLINE,
            )
            wait_for(
                lambda: next(iter(engine.steps("p"))).calling,
                lambda child: child == "p.call.0.1",
                "the parent's step to wait for its child",
                diagnose,
                DEADLINE,
            )
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            (tmp_path / "release").touch()
            workers.append(spawn(url, tmp_path, 1))
            wait_for(
                lambda: engine.get_run("p").status,
                lambda s: s.terminal,
                "the run to end",
                diagnose,
                DEADLINE,
            )
        finally:
            stop_workers(workers)
        assert handle.result(timeout=1) == {"call": 42}
        assert [r.id for r in engine.list_runs(workflow="subflow-child").runs] == ["p.call.0.1"]
        events = [e.type for e in engine.events("p.call.0.1")]
        assert "step_lease_expired" in events and events.count("step_completed") == 1
