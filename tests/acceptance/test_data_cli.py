"""`plait runs delete`, as a user runs it."""

from __future__ import annotations

from pathlib import Path

import plait

from .conftest import Cli, import_file

APP = "import plait\nwf = plait.Workflow('quick')\n@wf.step\ndef only() -> int:\n    return 1\n"


def test_runs_delete_deletes_a_finished_run_and_refuses_an_unfinished_one(
    cli: Cli, engine: plait.Engine, write_app
) -> None:
    app: Path = write_app("quick_app.py", APP)
    wf = import_file(app).wf
    done = engine.start(wf, run_id="done-1")
    engine.run_worker(until=done, timeout=30)
    engine.start(wf, run_id="waiting-1")

    deleted = cli("runs", "delete", "done-1")
    refused = cli("runs", "delete", "waiting-1")
    missing = cli("runs", "delete", "nope")

    assert deleted.code == 0 and deleted.stdout.strip() == "run done-1 deleted"
    assert refused.code == 2 and refused.stderr.strip() == (
        "plait: error: run 'waiting-1' is pending: delete_run deletes finished runs only. "
        "Cancel it first, or pass force=True (which cancels it, then deletes)."
    )
    assert missing.code == 2 and "plait: error: no run with id 'nope'" in missing.stderr
    forced = cli("runs", "delete", "waiting-1", "--force")
    assert forced.code == 0 and forced.stdout.strip() == "run waiting-1 deleted"
    assert engine.list_runs().runs == []
