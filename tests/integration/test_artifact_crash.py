"""A worker SIGKILLed after its step saved an artifact, before the step's success committed:
the step runs again on another worker, the run lists the second attempt's artifact only, and the
killed attempt's file is swept by gc (real processes; SQLite, and PostgreSQL with a folder)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import plait
from plait.data.artifacts import FolderStorage
from tests import postgres_server
from tests.integration._support import load_app, wait_for

APP = Path(__file__).with_name("artifact_app.py")
SCHEMA_PREFIX = "plait_ia_"
DEADLINE = 60.0

app = load_app(APP)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":  # the default folder, next to the database file
        yield f"sqlite:///{tmp_path / 'crash.db'}"
        return
    base = postgres_server.require_server_url()
    url = postgres_server.fresh_schema_url(base, SCHEMA_PREFIX)
    try:
        yield f"{url}&artifacts={tmp_path / 'shared'}"
    finally:
        schema = url.rsplit("schema=", 1)[-1]
        assert schema.startswith(SCHEMA_PREFIX), url
        postgres_server.drop_schemas(base, schema)


def test_a_killed_attempts_artifact_is_never_listed_and_gc_removes_its_file(
    store_url: str, tmp_path: Path
) -> None:
    marker, go = tmp_path / "marker", tmp_path / "go"
    with plait.Engine(store_url) as engine:
        handle = engine.start(app.wf, {"marker": str(marker), "go": str(go)}, run_id="r1")
        assert isinstance(engine.artifact_storage, FolderStorage)
        root = engine.artifact_storage.root

    def worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(APP), store_url, "r1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def lines() -> list[str]:
        return marker.read_text().splitlines() if marker.exists() else []

    first = worker()
    try:
        wait_for(lines, lambda found: len(found) == 1, "the first attempt saved", str, DEADLINE)
    finally:
        first.kill()
        first.wait(DEADLINE)
    go.touch()
    second = worker()
    try:
        assert second.wait(DEADLINE) == 0, second.stderr.read() if second.stderr else ""
    finally:
        if second.poll() is None:
            second.kill()
    killed_id, finished_id = (line.split()[1] for line in lines())

    with plait.Engine(store_url) as engine:
        assert handle.id == "r1" and engine.get_run("r1").status is plait.RunStatus.COMPLETED
        [artifact] = engine.artifacts("r1")
        assert artifact.id == finished_id != killed_id
        with engine.open_artifact(artifact.id) as f:
            assert f.read() == b"r1" * 1000
        objects = root / "objects"
        assert sorted(p.name for p in objects.rglob("*") if p.is_file()) == sorted(
            [killed_id, finished_id]
        )
        assert engine.gc_artifacts(grace=0) == 1
        assert [p.name for p in objects.rglob("*") if p.is_file()] == [finished_id]
        with pytest.raises(plait.ArtifactNotFound):
            engine.open_artifact(killed_id)
