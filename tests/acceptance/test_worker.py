"""`plait worker` as a separate process: serving runs started elsewhere, and stopping gracefully.

The test process starts runs through the Python API on the same SQLite file the worker uses.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

import plait

from .conftest import DEADLINE, Cli, Spawned, import_file, wait_for

APP = """
    import time
    from pathlib import Path

    import plait

    GO = Path(__file__).with_name("go")  # the test creates it to let `slow` finish

    wf = plait.Workflow("chores")

    @wf.step()
    def first(n: int) -> int:
        return n + 1

    @wf.step()
    def slow(ctx: plait.StepContext, first: int) -> int:
        while not GO.exists():
            ctx.check_cancelled()  # a stopping worker asks in-flight steps to stop
            time.sleep(0.01)
        return first * 10

    other = plait.Workflow("other")

    @other.step()
    def hello(name: str) -> str:
        return f"hello {name}"
"""


@pytest.fixture
def app(write_app: Callable[[str, str], Path]) -> Path:
    return write_app("chores.py", APP)


def step_status(engine: plait.Engine, run_id: str, step: str) -> str:
    return next(s.status.value for s in engine.steps(run_id) if s.name == step)


def event_types(engine: plait.Engine, run_id: str, step: str | None = None) -> list[str]:
    return [e.type for e in engine.events(run_id) if step is None or e.step == step]


def start_worker(cli: Cli, spawned: list[Spawned], *args: str) -> Spawned:
    worker = cli.spawn("worker", *args)
    spawned.append(worker)
    worker.wait_for_stderr("plait worker: serving")
    return worker


def test_worker_serves_every_workflow_of_a_file_then_stops_on_sigterm(
    cli: Cli, app: Path, engine: plait.Engine, spawned: list[Spawned]
) -> None:
    (app.parent / "go").touch()
    module = import_file(app)
    worker = start_worker(cli, spawned, str(app))
    assert "chores v1" in worker.stderr and "other v1" in worker.stderr

    chores = engine.start(module.wf, {"n": 1}, run_id="chores-1")
    hello = engine.start(module.other, {"name": "ada"}, run_id="hello-1")

    assert chores.result(timeout=DEADLINE) == {"slow": 20}
    assert hello.result(timeout=DEADLINE) == {"hello": "hello ada"}
    code = worker.stop(timeout=10)
    assert code == 0, worker.stderr
    assert "plait worker: stopped" in worker.stderr
    assert "Traceback" not in worker.stderr


def test_worker_serves_one_named_workflow(
    cli: Cli, app: Path, engine: plait.Engine, spawned: list[Spawned]
) -> None:
    worker = start_worker(cli, spawned, f"{app}:other")
    assert "other v1" in worker.stderr and "chores v1" not in worker.stderr

    module = import_file(app)
    assert engine.start(module.other, {"name": "bo"}).result(timeout=DEADLINE) == {
        "hello": "hello bo"
    }
    assert worker.stop() == 0


def test_sigterm_releases_an_in_flight_step_for_another_worker(
    cli: Cli, app: Path, engine: plait.Engine, spawned: list[Spawned]
) -> None:
    module = import_file(app)
    first = start_worker(cli, spawned, str(app), "--grace", "0.2")
    run = engine.start(module.wf, {"n": 4}, run_id="handover")
    wait_for(lambda: step_status(engine, "handover", "slow") == "running", "slow to be running")

    assert first.stop(timeout=10) == 0, first.stderr
    # the step did not finish within the grace period: its lease was handed back at once
    assert step_status(engine, "handover", "slow") == "ready"
    assert event_types(engine, "handover", "slow")[-1] == "step_released"

    (app.parent / "go").touch()
    # a default lease is 30 s: only the release lets the second worker start it this soon
    second = start_worker(cli, spawned, str(app))
    assert run.result(timeout=DEADLINE) == {"slow": 50}
    assert second.stop() == 0, second.stderr

    slow = next(s for s in engine.steps("handover") if s.name == "slow")
    assert slow.status is plait.StepStatus.DONE
    starts = [e for e in engine.events("handover") if e.type == "step_started" and e.step == "slow"]
    assert len(starts) == 2
    assert starts[0].payload["worker"] != starts[1].payload["worker"]


def test_sigterm_lets_an_in_flight_step_finish_within_grace(
    cli: Cli, app: Path, engine: plait.Engine, spawned: list[Spawned]
) -> None:
    module = import_file(app)
    worker = start_worker(cli, spawned, str(app), "--grace", "20")
    run = engine.start(module.wf, {"n": 2}, run_id="graceful")
    wait_for(lambda: step_status(engine, "graceful", "slow") == "running", "slow to be running")

    worker.signal(signal.SIGTERM)
    worker.wait_for_stderr("stopping: 1 step(s) in flight")
    (app.parent / "go").touch()

    assert worker.wait(timeout=DEADLINE) == 0, worker.stderr
    assert run.result(timeout=0.1) == {"slow": 30}
    assert "step_released" not in event_types(engine, "graceful")


def test_sigint_stops_plait_run_and_the_run_resumes_later(
    cli: Cli, app: Path, engine: plait.Engine, spawned: list[Spawned]
) -> None:
    running = cli.spawn(
        "run", f"{app}:wf", "--input", '{"n": 6}', "--run-id", "resumed", "--grace", "0.2"
    )
    spawned.append(running)
    wait_for(
        lambda: engine.list_runs().runs and step_status(engine, "resumed", "slow") == "running",
        "slow to be running",
    )

    running.signal(signal.SIGINT)
    assert running.wait() == 130, running.stderr
    assert "interrupted: run resumed is running" in running.stderr
    assert f"plait worker {app}" in running.stderr
    assert step_status(engine, "resumed", "slow") == "ready"

    (app.parent / "go").touch()
    again = cli("run", f"{app}:wf", "--input", '{"n": 6}', "--run-id", "resumed")
    assert again.code == 0, again.stderr
    assert again.json() == {"slow": 70}


def test_worker_rejects_a_file_without_workflows(
    cli: Cli, write_app: Callable[[str, str], Path]
) -> None:
    empty = write_app("empty.py", "import plait\n")
    result = cli("worker", str(empty))

    assert result.code == 2
    assert "plait: error:" in result.stderr and "defines no plait.Workflow" in result.stderr
    assert "Traceback" not in result.stderr

    missing = cli("worker", "absent.py")
    assert missing.code == 2
    assert "plait: error: file not found: absent.py" in missing.stderr


def test_worker_rejects_a_queue_name_with_spaces(cli: Cli, app: Path) -> None:
    result = cli("worker", str(app), "--queues", "emails,big jobs")

    assert result.code == 2
    assert result.stderr.strip().endswith(
        "plait: error: worker queues: invalid queue name 'big jobs': use 1-100 letters, digits "
        "or any of _ . : @ - (no spaces)"
    ), result.stderr
    assert "Traceback" not in result.stderr


def test_worker_rejects_a_label_with_spaces(cli: Cli, app: Path) -> None:
    result = cli("worker", str(app), "--labels", "gpu,big box")

    assert result.code == 2
    assert result.stderr.strip().endswith(
        "plait: error: worker labels: invalid label 'big box': use 1-100 letters, digits, '_', "
        "'.' or '-' (no spaces)"
    ), result.stderr


def test_worker_rejects_a_lease_below_a_second(cli: Cli, app: Path) -> None:
    result = cli("worker", str(app), "--lease", "0.001")

    assert result.code == 2
    assert result.stderr.strip().endswith(
        "plait: error: lease must be a number of seconds >= 1 and <= 86400 (a worker renews its "
        "leases every lease/3), got 0.001"
    ), result.stderr
    assert "Traceback" not in result.stderr
