"""SQLite files written by earlier versions of plait open with today's code (issue 20, item 5).

tests/testing/databases/schema-N.db was written by the plait whose schema version was N
(`make.py`, with that version's checkout on PYTHONPATH): run "done" finished, run "waiting"
started and never worked on. Today's code must migrate each file to the current schema, read
the finished run as it was written (its outputs, blobs included), and finish the unfinished one
with today's worker. A new schema version adds its file here when it is released."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

import plait
from plait.stores.sqlite_files import SCHEMA_VERSION
from tests.testing.databases.flow import expected, wf

FILES = sorted(Path(__file__).with_name("databases").glob("schema-*.db"))


def version_of(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(
            db.execute("SELECT value FROM plait_meta WHERE key = 'schema_version'").fetchone()[0]
        )


def test_files_of_several_earlier_versions_are_kept() -> None:
    versions = [version_of(f) for f in FILES]
    assert versions == [int(f.stem.split("-")[1]) for f in FILES]
    assert len(versions) >= 4 and max(versions) < SCHEMA_VERSION


@pytest.mark.parametrize("recorded", FILES, ids=lambda f: f.stem)
def test_an_earlier_file_migrates_and_its_runs_read_and_finish(
    recorded: Path, tmp_path: Path
) -> None:
    path = tmp_path / "kept.db"
    shutil.copy(recorded, path)  # the kept file itself is never written
    with plait.Engine(f"sqlite:///{path}") as engine:
        done = engine.get_run("done")
        assert done.status is plait.RunStatus.COMPLETED
        assert done.output == {"total": expected(3)}
        outputs = {s.name: s.output for s in engine.steps("done")}
        assert outputs["count"] == 3
        assert outputs["fetch"]["blob"] == "x" * 70_000  # a blob in the later versions
        assert version_of(path) == SCHEMA_VERSION  # migrated on open

        engine.register(wf)
        engine.run_worker(until=["waiting"], timeout=60)
        waiting = engine.get_run("waiting")
        assert (waiting.status, waiting.output) == (
            plait.RunStatus.COMPLETED,
            {"total": expected(5)},
        )
        [check] = [c for c in engine.doctor() if c.name == "store"]
        assert check.status == "ok"
