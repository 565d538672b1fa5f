"""`plait runs cancel`, as a user runs it: on a run that a worker process is executing."""

from __future__ import annotations

import json
from pathlib import Path

import plait

from .conftest import Cli, import_file, wait_for

APP = """
import time
import plait

wf = plait.Workflow("long")

@wf.step
def wait_for_cancel(ctx: plait.StepContext) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.01)

@wf.step
def after(wait_for_cancel: None) -> str:
    return "never"
"""


def test_cancel_a_running_run_from_the_command_line(
    cli: Cli, engine: plait.Engine, write_app, spawned: list
) -> None:
    app: Path = write_app("long_app.py", APP)
    wf = import_file(app).wf
    handle = engine.start(wf, run_id="long-1")
    worker = cli.spawn("worker", str(app), "--concurrency", "2")
    spawned.append(worker)
    wait_for(
        lambda: engine.get_run(handle.id).status is plait.RunStatus.RUNNING, "the step to start"
    )

    result = cli("runs", "cancel", "long-1", "--reason", "not needed", "--by", "alice")

    assert result.code == 0, result.stderr
    assert result.stdout == "run long-1 cancelled: not needed\n"
    wait_for(
        lambda: {s.status for s in engine.steps(handle.id)} == {plait.StepStatus.CANCELLED},
        "the running step to be interrupted",
    )
    events = cli("runs", "events", "long-1", "--json").json()
    cancelled = [e for e in events if e["type"] == "run_cancelled"]
    assert cancelled[0]["payload"]["by"] == "alice"
    assert cancelled[0]["payload"]["reason"] == "not needed"

    again = cli("runs", "cancel", "long-1", "--json")  # idempotent
    assert again.code == 0 and again.json()["status"] == "cancelled"


def test_cancel_errors_exit_2_with_one_line(cli: Cli, engine: plait.Engine, write_app) -> None:
    app: Path = write_app(
        "quick_app.py",
        "import plait\nwf = plait.Workflow('quick')\n@wf.step\ndef only() -> int:\n    return 1\n",
    )
    wf = import_file(app).wf
    handle = engine.start(wf, run_id="quick-1")
    engine.run_worker(until=handle, timeout=30)

    done = cli("runs", "cancel", "quick-1")
    missing = cli("runs", "cancel", "nope")

    assert done.code == 2 and done.stdout == ""
    assert done.stderr.strip() == (
        "plait: error: run 'quick-1' is completed: it cannot be cancelled "
        "(cancel is allowed while a run is pending, running, pausing, paused)"
    )
    assert missing.code == 2 and "plait: error: no run with id 'nope'" in missing.stderr
    assert "Traceback" not in done.stderr + missing.stderr


FLAKY = """
import os
import plait

wf = plait.Workflow("flaky")

@wf.step
def first() -> int:
    if not os.path.exists(os.path.join(os.path.dirname(__file__), "fixed")):
        raise plait.Permanent("not fixed yet")
    return 1

@wf.step
def second(first: int) -> int:
    return first + 1
"""


def test_pause_resume_and_retry_from_the_command_line(
    cli: Cli, engine: plait.Engine, write_app, tmp_path: Path
) -> None:
    app: Path = write_app("flaky_app.py", FLAKY)
    wf = import_file(app).wf
    engine.start(wf, run_id="waiting-1")

    assert cli("runs", "pause", "waiting-1").stdout == "run waiting-1 paused\n"
    assert cli("runs", "resume", "waiting-1", "--json").json()["status"] == "pending"

    failed = cli("run", f"{app}:wf", "--run-id", "flaky-1")
    assert failed.code == 1
    retry_early = cli("runs", "retry", "flaky-1", "second")
    assert retry_early.code == 2
    assert retry_early.stderr.strip() == (
        "plait: error: step 'second' of run 'flaky-1' is skipped: only a failed step can be retried"
    )
    (app.parent / "fixed").write_text("yes")
    retried = cli("runs", "retry", "flaky-1", "first", "--by", "bob")
    assert retried.code == 0, retried.stderr
    assert retried.stdout == "run flaky-1 running\n"
    engine.run_worker(until="flaky-1", workflows=[wf], timeout=30)
    assert engine.get_run("flaky-1").output == {"second": 2}
    paused_done = cli("runs", "pause", "flaky-1")
    assert paused_done.code == 2 and "is completed: it cannot be paused" in paused_done.stderr


def test_resume_failed_from_the_command_line(
    cli: Cli, engine: plait.Engine, write_app, tmp_path: Path
) -> None:
    app: Path = write_app("flaky_again_app.py", FLAKY)
    wf = import_file(app).wf

    failed = cli("run", f"{app}:wf", "--run-id", "flaky-2")
    assert failed.code == 1
    missing = cli("runs", "resume-failed", "nothing")
    assert missing.code == 2 and "plait: error: no run with id 'nothing'" in missing.stderr
    (app.parent / "fixed").write_text("yes")
    resumed = cli("runs", "resume-failed", "flaky-2", "--by", "bob")
    assert resumed.code == 0, resumed.stderr
    assert resumed.stdout == "run flaky-2 running\n"
    again = cli("runs", "resume-failed", "flaky-2")
    assert again.code == 2
    assert again.stderr.strip() == (
        "plait: error: run 'flaky-2' is running: only a failed or cancelled run can be resumed "
        "this way (it has not ended)"
    )
    engine.run_worker(until="flaky-2", workflows=[wf], timeout=30)
    assert engine.get_run("flaky-2").output == {"second": 2}


def test_annotate_a_run_and_see_it_in_events_and_watch(cli: Cli, engine: plait.Engine) -> None:
    wf = plait.Workflow("noted")
    wf.add_step("a", lambda n: n)
    run = engine.start(wf, {"n": 1}, run_id="noted-1")
    engine.run_worker(until=run, timeout=30)

    done = cli("runs", "annotate", "noted-1", "review", '{"ok": true}', "--by", "eve")
    assert done.code == 0, done.stderr
    assert done.stdout == "event user.review appended to run noted-1\n"
    as_json = cli("runs", "annotate", "noted-1", "audit", "--json")
    assert as_json.code == 0 and as_json.json() == {"run_id": "noted-1", "type": "user.audit"}
    table = cli("runs", "events", "noted-1").stdout
    assert "user.review" in table and "by=eve" in table and 'data={"ok": true}' in table
    watched = cli("runs", "watch", "noted-1", "--json")
    assert [json.loads(line)["type"] for line in watched.stdout.splitlines()][-2:] == [
        "user.review",
        "user.audit",
    ]

    before = len(engine.events("noted-1"))
    bad = cli("runs", "annotate", "noted-1", "no good")
    assert bad.code == 2 and "an event type is 1-64 letters" in bad.stderr
    ghost = cli("runs", "annotate", "ghost", "x")
    assert ghost.code == 2 and "no run with id 'ghost'" in ghost.stderr
    assert len(engine.events("noted-1")) == before
