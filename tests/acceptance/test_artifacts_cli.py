"""`plait artifacts list|get`, as a user runs it, on artifacts a worker process saved."""

from __future__ import annotations

import hashlib
from pathlib import Path

import plait

from .conftest import Cli, import_file

APP = """
import plait
wf = plait.Workflow("report")

@wf.step
def render(ctx: plait.StepContext) -> str:
    ctx.save_artifact("summary.txt", b"total: 42\\n", metadata={"lines": 1})
    return ctx.save_artifact("table.csv", b"a,b\\n1,2\\n").id
"""


def test_artifacts_list_and_get(cli: Cli, engine: plait.Engine, write_app, tmp_path: Path) -> None:
    app: Path = write_app("report_app.py", APP)
    done = cli("run", f"{app}:wf", "--input", "{}", "--run-id", "report-1")
    assert done.code == 0, done.stderr
    [summary, table] = engine.artifacts("report-1")

    listed = cli("artifacts", "list", "report-1")
    assert listed.code == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        f"{summary.id}  render  summary.txt  10 bytes  text/plain",
        f"{table.id}  render  table.csv  8 bytes  text/csv",
    ]
    as_json = cli("artifacts", "list", "report-1", "--json").json()
    assert [(a["name"], a["size"], a["metadata"]) for a in as_json] == [
        ("summary.txt", 10, {"lines": 1}),
        ("table.csv", 8, None),
    ]
    assert as_json[0]["sha256"] == hashlib.sha256(b"total: 42\n").hexdigest()
    assert as_json[0]["uri"] == summary.uri and summary.uri.startswith("file://")

    printed = cli("artifacts", "get", summary.id)
    assert printed.code == 0 and printed.stdout == "total: 42\n"
    saved = cli("artifacts", "get", table.id, "-o", "out/table.csv")
    assert saved.code == 2  # the folder does not exist: nothing is created for it
    assert "plait: error: cannot write 'out/table.csv'" in saved.stderr
    saved = cli("artifacts", "get", table.id, "-o", "table.csv")
    assert saved.code == 0 and saved.stderr.strip() == "wrote 8 bytes to table.csv"
    assert (tmp_path / "table.csv").read_bytes() == b"a,b\n1,2\n"

    none = cli("artifacts", "list", "nope")
    assert none.code == 2 and "plait: error: no run with id 'nope'" in none.stderr
    unknown = cli("artifacts", "get", "f" * 32)
    assert unknown.code == 2 and f"plait: error: no artifact with id {'f' * 32!r}" in (
        unknown.stderr
    )


def test_artifacts_get_refuses_a_truncated_file_and_writes_nothing(
    cli: Cli, engine: plait.Engine, write_app, tmp_path: Path
) -> None:
    wf = import_file(write_app("report_app.py", APP)).wf
    handle = engine.start(wf, run_id="report-2")
    engine.run_worker(until=handle, timeout=30)
    [_, table] = engine.artifacts("report-2")
    path = Path(table.uri.removeprefix("file://"))
    path.write_bytes(b"a,b\n")

    damaged = cli("artifacts", "get", table.id, "-o", "table.csv")
    assert damaged.code == 2
    assert damaged.stderr.strip() == (
        f"plait: error: artifact {table.id} ('table.csv') is damaged: its file {str(path)!r} "
        "has 4 bytes, but 8 were saved (truncated or altered); nothing was returned"
    )
    assert not (tmp_path / "table.csv").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".table")] == []


def test_artifacts_gc_removes_a_failed_attempts_file(
    cli: Cli, engine: plait.Engine, write_app, tmp_path: Path
) -> None:
    app = write_app(
        "failing_app.py",
        "import plait\nwf = plait.Workflow('failing')\n@wf.step\n"
        "def broken(ctx: plait.StepContext) -> None:\n"
        "    ctx.save_artifact('partial.bin', b'x' * 10)\n    raise RuntimeError('boom')\n",
    )
    failed = cli("run", f"{app}:wf", "--input", "{}", "--run-id", "failing-1")
    assert failed.code == 1
    objects = tmp_path / "runs.db.artifacts" / "objects"
    assert len([p for p in objects.rglob("*") if p.is_file()]) == 1

    kept = cli("artifacts", "gc")  # younger than the default grace: kept
    assert kept.code == 0 and kept.stdout.strip() == "removed 0 unreferenced artifact file(s)"
    swept = cli("gc", "--grace", "0")  # plait gc: blobs and artifact files
    assert swept.code == 0 and swept.stdout.strip() == (
        "removed 0 unreferenced blob(s) and 1 artifact file(s); left: 0 blob(s), 0 bytes, "
        "0 reference(s) to them"
    )
    again = cli("artifacts", "gc", "--grace", "0")
    assert again.code == 0 and again.stdout.strip() == "removed 0 unreferenced artifact file(s)"
    assert [p for p in objects.rglob("*") if p.is_file()] == []
    assert cli("artifacts", "list", "failing-1").stdout.strip() == "run failing-1 has no artifacts"
