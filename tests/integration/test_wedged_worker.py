"""Handlers that misbehave must not wedge a real worker process (issue 21, items 1 and 3).

- A handler that raises what is not an `Exception` (a CancelledError it caused itself,
  GeneratorExit, a BaseException subclass) fails its attempt with its class as the code, and its
  slot is freed: a `plait worker --concurrency 1` goes on to the next step.
- A worker whose every slot is held by a handler that ignores its cancellation (async) or
  `ctx.cancelled` (sync) still stops on SIGTERM: grace, then release, then exit.
- A SIGTERM that the kernel delivers to a handler's thread rather than the main one still stops
  the worker (its main thread waits in slices, so Python runs the handler).
- A step that wedges every worker that takes it is handed back by each stopping worker; those
  hand-backs count toward `max_recoveries`, so it ends `failed` (`abandoned`) instead of
  poisoning workers forever.
- A sync step that overstays its timeout keeps its thread, but the next step still gets a thread
  and its whole timeout; the worker says in its log that a thread is stuck, naming step and run.

Each test waits on conditions with deadlines and stops its workers with SIGTERM. SQLite and
PostgreSQL (skipped without a server, except under CI=true).
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
from tests.integration._support import fresh_store_url, load_app, wait_for

APP = Path(__file__).with_name("wedge_app.py")
DEADLINE = 30.0

app = load_app(APP)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_store_url(request.param, tmp_path, "plait_w_") as url:
        yield url


@pytest.fixture
def engine(url: str) -> Iterator[plait.Engine]:
    with plait.Engine(url) as engine:
        yield engine


class Worker:
    """One worker process, its stderr in a file, stopped (or killed) at the end of the test."""

    def __init__(self, tmp_path: Path, cmd: list[str], name: str) -> None:
        self.log = tmp_path / f"{name}.log"
        self.go = tmp_path / "go"
        self.started = tmp_path / "started"
        env = {
            **os.environ,
            app.GO_ENV: str(self.go),
            app.STARTED_ENV: str(self.started),
            "PYTHONUNBUFFERED": "1",
        }
        with self.log.open("wb") as err:
            self.popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)

    def text(self) -> str:
        return self.log.read_text()

    def wait_started(self, marker: str) -> None:
        wait_for(self.text, lambda t: marker in t, f"worker prints {marker!r}", self.text, DEADLINE)

    def stop(self, timeout: float = DEADLINE) -> int:
        """SIGTERM, then wait; a worker still alive at the deadline is a failure (and killed)."""
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"the worker ignored SIGTERM for {timeout}s\n{self.text()}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.kill()


def plait_worker(
    workers: list[Worker], tmp_path: Path, url: str, target: str, *args: str
) -> Worker:
    """`python -m plait worker wedge_app.py:TARGET`, ready to claim."""
    cmd = [sys.executable, "-m", "plait", "worker", f"{APP}:{target}", "--db", url, *args]
    w = Worker(tmp_path, cmd, f"worker{len(workers)}")
    workers.append(w)
    w.wait_started("plait worker: serving")
    return w


def steps(engine: plait.Engine, run_id: str) -> dict[str, plait.Step]:
    return {s.name: s for s in engine.steps(run_id)}


def status(engine: plait.Engine, run_id: str, step: str) -> str:
    return steps(engine, run_id)[step].status.value


def test_handlers_raising_base_exceptions_fail_and_free_their_slot(
    url: str, engine: plait.Engine, tmp_path: Path, workers: list[Worker]
) -> None:
    worker = plait_worker(workers, tmp_path, url, "rude", "--concurrency", "1")
    run = engine.start(app.rude, run_id="rude-1")

    # one slot: each wedging handler used to keep it, and the run never ended
    ended = wait_for(
        lambda: engine.get_run(run.id).status,
        lambda s: s.terminal,
        "the run to end",
        worker.text,
        DEADLINE,
    )
    assert ended is plait.RunStatus.FAILED
    found = steps(engine, run.id)
    expected = {
        "cancelled_future": "CancelledError",
        "generator_exit": "GeneratorExit",
        "odd": "Odd",
        "sync_base": "BaseException",
        "sync_cancelled": "CancelledError",
    }
    for name, code in expected.items():
        step = found[name]
        assert step.status is plait.StepStatus.FAILED, (name, step.status)
        assert step.error is not None and step.error.code == code, (name, step.error)
        assert step.error.message.startswith(f"handler raised {code}"), step.error.message
        assert step.attempts == 1, name  # not retried, like KeyboardInterrupt and SystemExit
    assert found["after"].output == "still serving"
    exit_error = found["generator_exit"].error
    assert exit_error is not None
    assert exit_error.message == "handler raised GeneratorExit: leaked from a generator"

    assert worker.stop() == 0, worker.text()
    assert "Traceback" not in worker.text()


@pytest.mark.parametrize("workflow", ["deaf_async", "deaf_sync"])
def test_sigterm_stops_a_worker_whose_every_slot_is_wedged(
    url: str, engine: plait.Engine, tmp_path: Path, workers: list[Worker], workflow: str
) -> None:
    worker = plait_worker(workers, tmp_path, url, workflow, "--concurrency", "1", "--grace", "0.3")
    run = engine.start(getattr(app, workflow), run_id=f"{workflow}-1")
    wait_for(
        lambda: status(engine, run.id, "stuck"),
        lambda s: s == "running",
        "stuck to be running",
        worker.text,
        DEADLINE,
    )

    stopped_at = time.monotonic()
    assert worker.stop(timeout=15) == 0, worker.text()
    # grace (0.3 s), a moment for the cancelled handler, release: not a wait for the handler
    assert time.monotonic() - stopped_at < 10, worker.text()
    assert status(engine, run.id, "stuck") == "ready"
    assert [e.type for e in engine.events(run.id) if e.step == "stuck"][-1] == "step_released"
    assert "plait worker: stopped" in worker.text()
    if workflow == "deaf_async":
        assert "step 'stuck' (run 'deaf_async-1') did not stop when cancelled" in worker.text()


def test_sigterm_stops_a_worker_whichever_thread_the_kernel_gives_it_to(
    url: str, engine: plait.Engine, tmp_path: Path, workers: list[Worker]
) -> None:
    # the step sends SIGTERM to its own thread: the worker's main thread must still act on it
    run = engine.start(app.self_term, run_id="self-term")
    cmd = [sys.executable, str(APP), url, "2"]
    worker = Worker(tmp_path, cmd, "self_term")
    workers.append(worker)
    code = worker.popen.wait(timeout=DEADLINE)  # no signal from here: it stops by itself
    assert code == 0, worker.text()
    # the graceful stop: past the grace period the step is handed back to other workers
    assert status(engine, run.id, "terminate") == "ready"
    assert [e.type for e in engine.events(run.id) if e.step == "terminate"][-1] == "step_released"


def test_a_step_that_wedges_every_worker_fails_after_max_recoveries(
    url: str, engine: plait.Engine, tmp_path: Path, workers: list[Worker]
) -> None:
    max_recoveries = 2
    run = engine.start(app.deaf_sync, run_id="poison")
    started = tmp_path / "started"  # each stuck handler appends its pid
    for i in range(max_recoveries + 1):
        cmd = [sys.executable, str(APP), url, str(max_recoveries)]
        worker = Worker(tmp_path, cmd, f"script{i}")
        workers.append(worker)
        # its handler has started (a claim not yet started is handed back uncounted)
        pid = str(worker.popen.pid)
        wait_for(
            lambda: started.read_text().split() if started.exists() else [],
            lambda pids: pid in pids,  # noqa: B023 (read within the iteration)
            f"worker {i} to start the step's handler",
            worker.text,
            DEADLINE,
        )
        assert status(engine, run.id, "stuck") == "running"
        assert worker.stop(timeout=15) == 0, worker.text()

    step = steps(engine, run.id)["stuck"]
    assert step.status is plait.StepStatus.FAILED
    assert step.error is not None and step.error.code == "abandoned"
    assert step.error.message == (
        "step 'stuck' ended 3 attempts without an outcome (max_recoveries=2), the last when a "
        "stopping worker released it: it may be killing or hanging its worker"
    )
    assert engine.get_run(run.id).status is plait.RunStatus.FAILED
    types = [e.type for e in engine.events(run.id) if e.step == "stuck"]
    assert types.count("step_released") == max_recoveries
    assert types[-1] == "step_failed"


def test_a_timed_out_sync_step_does_not_starve_the_next_one(
    url: str, engine: plait.Engine, tmp_path: Path, workers: list[Worker]
) -> None:
    worker = plait_worker(workers, tmp_path, url, "threads", "--concurrency", "1")
    run = engine.start(app.threads, run_id="starved")
    wait_for(
        lambda: status(engine, run.id, "next_in_line"),
        lambda s: s in ("done", "failed"),
        "next_in_line to end",
        worker.text,
        DEADLINE,
    )
    found = steps(engine, run.id)
    assert found["overstays"].error is not None and found["overstays"].error.code == "timeout"
    # it got a thread at once and its whole timeout: it ran, on its first attempt
    assert found["next_in_line"].status is plait.StepStatus.DONE, found["next_in_line"].error
    assert found["next_in_line"].attempts == 1
    stuck = [line for line in worker.text().splitlines() if "is stuck" in line]
    assert len(stuck) == 1, worker.text()
    assert "step 'overstays' (run 'starved')" in stuck[0]

    worker.go.touch()  # the overstaying handler returns; its thread is free again
    wait_for(worker.text, lambda t: "returned" in t, "the stuck thread returns", worker.text,
             DEADLINE)  # fmt: skip
    assert worker.stop() == 0, worker.text()
