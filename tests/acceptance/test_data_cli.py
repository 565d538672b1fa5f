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
        "plait: error: run 'waiting-1' is pending: plait runs delete deletes finished runs "
        "only; cancel it first (plait runs cancel waiting-1), or pass --force (which cancels "
        "it, then deletes)"
    )
    assert missing.code == 2 and "plait: error: no run with id 'nope'" in missing.stderr
    forced = cli("runs", "delete", "waiting-1", "--force")
    assert forced.code == 0 and forced.stdout.strip() == "run waiting-1 deleted"
    assert engine.list_runs().runs == []


BIG_APP = (
    "import plait\nwf = plait.Workflow('big')\n@wf.step\ndef make() -> str:\n"
    "    return 'x' * 70_000\n"
)


def test_gc_removes_the_blobs_of_deleted_runs_after_their_grace(
    cli: Cli, engine: plait.Engine, write_app
) -> None:
    wf = import_file(write_app("big_app.py", BIG_APP)).wf
    first, second = engine.start(wf, run_id="big-1"), engine.start(wf, run_id="big-2")
    engine.run_worker(until=[first, second], timeout=30)

    shared = cli("blobs")  # make's output, and the run output {"make": …}, of both runs
    assert shared.code == 0
    assert shared.stdout.strip() == "2 blob(s), 140,013 bytes, 4 reference(s) to them"
    assert cli("runs", "delete", "big-1").code == 0
    assert cli("runs", "delete", "big-2").code == 0

    young = cli("gc")  # the default grace (an hour) spares them
    assert young.code == 0 and young.stdout.strip() == (
        "removed 0 unreferenced blob(s) and 0 artifact file(s); left: 2 blob(s), 140,013 bytes, "
        "0 reference(s) to them"
    )
    removed = cli("gc", "--grace", "0", "--json")
    assert removed.code == 0
    assert removed.json() == {
        "removed": 2, "artifact_files": 0, "blobs": 0, "bytes": 0, "references": 0,
    }  # fmt: skip
    assert engine.blob_stats() == plait.BlobStats(0, 0, 0)


def test_gc_refuses_a_negative_grace(cli: Cli, engine: plait.Engine) -> None:
    refused = cli("gc", "--grace", "-1")
    assert refused.code == 2
    assert refused.stderr == (
        "plait: error: invalid value for '--grace': -1.0 is not in the range x>=0; see plait gc "
        "--help\n"
    )
