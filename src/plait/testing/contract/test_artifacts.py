"""Artifacts on every store, in both storages (a folder, the database): saved with the step's
success only, listed with every field, read back checked, swept when unreferenced, deleted with
their run; bad names and data refused with a clear message, nothing written outside the folder."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plait
from plait.data.artifacts import FolderStorage


@pytest.fixture(params=["folder", "database"])
def storage(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def artifact_url(store_url: str, storage: str, tmp_path: Path) -> str:
    option = str(tmp_path / "arts") if storage == "folder" else "database"
    return f"{store_url}{'&' if '?' in store_url else '?'}artifacts={option}"


@pytest.fixture
def engine(artifact_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(artifact_url, lease=5.0) as eng:
        yield eng


def run(engine: plait.Engine, wf: plait.Workflow, data: dict[str, Any] | None = None) -> Any:
    handle = engine.start(wf, data or {})
    engine.run_worker(until=handle, timeout=60, concurrency=4)
    return handle


def read(engine: plait.Engine, artifact_id: str) -> bytes:
    with engine.open_artifact(artifact_id) as f:
        return f.read()


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def folder_of(engine: plait.Engine) -> Path:
    assert isinstance(engine.artifact_storage, FolderStorage)
    return engine.artifact_storage.root


def test_saved_artifacts_are_listed_with_every_field_after_success(
    engine: plait.Engine, storage: str, tmp_path: Path
) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(bytes(range(256)) * 9000)  # 2.3 MB: copied in chunks
    wf = plait.Workflow("reports")
    refs: dict[str, Any] = {}

    @wf.step
    def sync_step(ctx: plait.StepContext) -> str:
        refs["csv"] = ctx.save_artifact("rows.csv", b"a,b\n1,2\n", metadata={"rows": 1})
        refs["big"] = ctx.save_artifact("big.bin", source)  # an os.PathLike
        return "ok"

    @wf.step
    async def async_step(ctx: plait.StepContext, sync_step: str) -> str:
        refs["json"] = await ctx.save_artifact_async(
            "out", bytearray(b'{"x": 1}'), content_type="application/json"
        )
        refs["path"] = ctx.save_artifact("copy.bin", str(source))  # a str path, sync in async
        return "ok"

    handle = run(engine, wf)
    assert handle.result() == {"async_step": "ok"}

    listed = engine.artifacts(handle.id)
    assert [(a.step, a.name) for a in listed] == [
        ("sync_step", "rows.csv"),
        ("sync_step", "big.bin"),
        ("async_step", "out"),
        ("async_step", "copy.bin"),
    ]
    by_name = {a.name: a for a in listed}
    csv = by_name["rows.csv"]
    assert csv.id == refs["csv"].id and csv.uri == refs["csv"].uri
    assert csv.size == 8 and csv.sha256 == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert csv.content_type == "text/csv"  # guessed from the name
    assert csv.metadata == {"rows": 1} and csv.run_id == handle.id
    assert by_name["out"].content_type == "application/json"
    assert by_name["big.bin"].content_type == "application/octet-stream"
    for a in listed:  # the ref returned to the handler is the listed artifact
        ref = refs[{"rows.csv": "csv", "big.bin": "big", "out": "json", "copy.bin": "path"}[a.name]]
        assert (ref.id, ref.name, ref.size, ref.sha256, ref.content_type, ref.uri) == (
            a.id, a.name, a.size, a.sha256, a.content_type, a.uri,
        )  # fmt: skip
    # the bytes round-trip
    assert read(engine, csv.id) == b"a,b\n1,2\n"
    assert read(engine, by_name["big.bin"].id) == source.read_bytes()
    assert read(engine, by_name["copy.bin"].id) == source.read_bytes()
    assert read(engine, by_name["out"].id) == b'{"x": 1}'
    if storage == "folder":
        root = folder_of(engine)
        assert csv.uri == (root / "objects" / csv.id[:2] / csv.id).as_uri()
        assert len(files(root / "objects")) == 4 and not files(root / "tmp")
    else:
        assert csv.uri == f"plait-artifact:{csv.id}"
        assert not (tmp_path / "arts").exists()


def test_a_failed_attempt_leaves_nothing_after_gc(
    engine: plait.Engine, storage: str, tmp_path: Path
) -> None:
    wf = plait.Workflow("fails")

    @wf.step
    def broken(ctx: plait.StepContext) -> None:
        ctx.save_artifact("partial.txt", b"half done")
        raise RuntimeError("boom")

    handle = run(engine, wf)
    assert engine.get_run(handle.id).status is plait.RunStatus.FAILED
    assert engine.artifacts(handle.id) == []
    if storage == "folder":
        root = folder_of(engine)
        assert len(files(root / "objects")) == 1  # written by the attempt, referenced by nothing
        assert engine.gc_artifacts() == 0  # younger than the default grace (a day)
        assert engine.gc_artifacts(grace=0) == 1
        assert files(root) == []
    else:
        assert engine.gc_artifacts(grace=0) == 0  # nothing ever reached the database


def test_a_running_attempts_bytes_younger_than_the_grace_survive_gc(
    engine: plait.Engine, storage: str
) -> None:
    wf = plait.Workflow("slow")
    saved, release = threading.Event(), threading.Event()

    @wf.step
    def slow(ctx: plait.StepContext) -> str:
        ref = ctx.save_artifact("model.bin", b"weights" * 1000)
        saved.set()
        assert release.wait(30)
        return ref.id

    handle = engine.start(wf, {})
    worker = threading.Thread(target=engine.run_worker, kwargs={"until": handle, "timeout": 60})
    worker.start()
    try:
        assert saved.wait(30)
        assert engine.gc_artifacts(grace=60) == 0  # the running attempt's file is kept
    finally:
        release.set()
        worker.join(60)
    artifact_id = handle.result(timeout=30)["slow"]
    assert read(engine, artifact_id) == b"weights" * 1000
    assert engine.gc_artifacts(grace=0) == 0  # referenced now: never swept
    assert read(engine, artifact_id) == b"weights" * 1000


def test_a_retried_step_keeps_the_successful_attempts_artifacts_only(
    engine: plait.Engine, storage: str
) -> None:
    wf = plait.Workflow("retried", retry=plait.Retry(attempts=3, delay=0.01))

    @wf.step
    def flaky(ctx: plait.StepContext) -> int:
        ctx.save_artifact("log.txt", f"attempt {ctx.attempt}".encode())
        if ctx.attempt < 3:
            raise RuntimeError("not yet")
        return ctx.attempt

    handle = run(engine, wf)
    assert handle.result() == {"flaky": 3}
    [artifact] = engine.artifacts(handle.id)
    assert (artifact.name, artifact.step) == ("log.txt", "flaky")
    assert read(engine, artifact.id) == b"attempt 3"
    if storage == "folder":
        root = folder_of(engine)
        assert len(files(root / "objects")) == 3
        assert engine.gc_artifacts(grace=0) == 2  # the failed attempts' files
        assert files(root / "objects") == [root / "objects" / artifact.id[:2] / artifact.id]
    assert read(engine, artifact.id) == b"attempt 3"


def test_delete_run_removes_its_artifacts(engine: plait.Engine, storage: str) -> None:
    wf = plait.Workflow("deleted")

    @wf.step
    def make(ctx: plait.StepContext) -> str:
        return ctx.save_artifact("a.txt", ctx.run_id.encode()).id

    gone, kept = run(engine, wf), run(engine, wf)
    gone_id, kept_id = gone.result()["make"], kept.result()["make"]

    engine.delete_run(gone.id)

    with pytest.raises(plait.RunNotFound):
        engine.artifacts(gone.id)
    with pytest.raises(plait.ArtifactNotFound) as caught:
        engine.open_artifact(gone_id)
    assert str(caught.value) == f"no artifact with id {gone_id!r} in {engine.url}"
    assert read(engine, kept_id) == kept.id.encode()  # another run's stay
    assert [a.id for a in engine.artifacts(kept.id)] == [kept_id]
    if storage == "folder":  # its file went at once, not at the next gc
        assert files(folder_of(engine) / "objects") == [
            folder_of(engine) / "objects" / kept_id[:2] / kept_id
        ]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("..", "it is a relative directory"),
        ("../escape.txt", "it contains a path separator"),
        ("/etc/passwd", "it contains a path separator"),
        ("a\\..\\b", "it contains a path separator"),
        ("nul\x00byte", "it contains a control character (NUL, newline, …)"),
        ("x" * 300, "it has 300 characters"),
        ("", "it is empty"),
    ],
)
def test_bad_names_fail_the_step_and_write_nothing_anywhere(
    engine: plait.Engine, storage: str, tmp_path: Path, name: str, problem: str
) -> None:
    wf = plait.Workflow("bad_name")

    @wf.step
    def save(ctx: plait.StepContext) -> None:
        ctx.save_artifact(name, b"payload")

    before = files(tmp_path)
    handle = run(engine, wf)
    [step] = engine.steps(handle.id)
    assert step.error is not None and step.error.code == "InputError"
    shown = name if len(name) <= 80 else name[:80] + "…"
    assert step.error.message == (
        f"invalid artifact name {shown!r}: {problem}. An artifact name is 1-255 characters "
        "without '/', '\\' or control characters, and not '.' or '..'"
    )
    assert engine.artifacts(handle.id) == []
    written = [p for p in files(tmp_path) if p not in before and "plait.db" not in p.name]
    assert written == []  # no artifact file, inside the folder or out


def test_bad_data_content_type_and_metadata_are_refused(
    engine: plait.Engine, storage: str, tmp_path: Path
) -> None:
    wf = plait.Workflow("bad_input")
    errors: list[str] = []
    directory = tmp_path / "a_dir"
    directory.mkdir()

    @wf.step
    def save(ctx: plait.StepContext) -> int:
        attempts: list[tuple[Any, dict[str, Any]]] = [
            (str(tmp_path / "missing.txt"), {}),
            (directory, {}),
            ("some text", {}),
            (42, {}),
            (b"x", {"content_type": "not a type"}),
            (b"x", {"content_type": 5}),
            (b"x", {"metadata": ["not", "an", "object"]}),
            (b"x", {"metadata": {"k": object()}}),
            (b"x", {"metadata": {1: "non-string key"}}),
        ]
        for data, options in attempts:
            try:
                ctx.save_artifact("f.txt", data, **options)
            except plait.InputError as exc:
                errors.append(str(exc))
        ctx.save_artifact("f.txt", b"first")  # the name was never taken by a refused save
        try:
            ctx.save_artifact("f.txt", b"again")
        except plait.InputError as exc:
            errors.append(str(exc))
        return len(errors)

    handle = run(engine, wf)
    assert handle.result() == {"save": 10}
    missing = str(tmp_path / "missing.txt")
    assert errors[0] == (
        f"artifact 'f.txt': no such file {missing!r} (a str is a path to a file; to save text "
        "itself, pass text.encode())"
    )
    assert errors[1] == (
        f"artifact 'f.txt': {str(directory)!r} is not a regular file (a directory, a device…); "
        "save files one by one"
    )
    assert errors[2].startswith("artifact 'f.txt': no such file 'some text'")
    assert errors[3] == (
        "artifact 'f.txt': data must be bytes (or bytearray, memoryview) or the path of a file "
        "(str or os.PathLike), got int; to save text, pass text.encode()"
    )
    type_error = (
        "artifact 'f.txt': invalid content_type {!r}: expected a media type such as 'text/csv' "
        "or 'application/json; charset=utf-8', or None to guess it from the name"
    )
    assert errors[4] == type_error.format("not a type")
    assert errors[5] == type_error.format(5)
    assert errors[6] == (
        "artifact 'f.txt': metadata must be a dict with string keys (a JSON object), got list"
    )
    assert errors[7].startswith("artifact 'f.txt': metadata is not JSON: ")
    assert errors[8] == (
        "artifact 'f.txt': metadata must be a dict with string keys (a JSON object), got dict"
    )
    assert errors[9] == (
        "artifact 'f.txt' was already saved by this attempt of step 'save': an attempt saves "
        "each name once (choose another name)"
    )
    [artifact] = engine.artifacts(handle.id)
    assert read(engine, artifact.id) == b"first"
    if storage == "folder":
        assert len(files(folder_of(engine))) == 1  # refused saves wrote nothing, not even tmp


def test_unknown_and_invalid_artifact_ids(engine: plait.Engine) -> None:
    with pytest.raises(plait.ArtifactNotFound) as caught:
        engine.open_artifact("0" * 32)
    assert str(caught.value) == f"no artifact with id {'0' * 32!r} in {engine.url}"
    with pytest.raises(plait.InputError) as invalid:
        engine.open_artifact(7)  # type: ignore[arg-type]  # the error under test
    assert str(invalid.value) == "an artifact id must be a string, got int 7"
    with pytest.raises(plait.RunNotFound):
        engine.artifacts("no-such-run")
    with pytest.raises(plait.InputError) as grace:
        engine.gc_artifacts(grace=-1)
    assert str(grace.value) == "grace must be a number of seconds >= 0, got -1"


def saved_file(engine: plait.Engine, content: bytes) -> tuple[str, Path]:
    wf = plait.Workflow("damaged")

    @wf.step
    def make(ctx: plait.StepContext) -> str:
        return ctx.save_artifact("data.bin", content).id

    artifact_id = run(engine, wf).result()["make"]
    return artifact_id, folder_of(engine) / "objects" / artifact_id[:2] / artifact_id


@pytest.mark.parametrize("storage", ["folder"])
def test_a_truncated_or_altered_file_is_an_error_not_short_data(
    engine: plait.Engine, storage: str
) -> None:
    artifact_id, path = saved_file(engine, b"0123456789")
    path.write_bytes(b"01234")
    with pytest.raises(plait.ArtifactNotFound) as truncated:
        engine.open_artifact(artifact_id)
    assert str(truncated.value) == (
        f"artifact {artifact_id} ('data.bin') is damaged: its file {str(path)!r} has 5 bytes, "
        "but 10 were saved (truncated or altered); nothing was returned"
    )
    path.write_bytes(b"0123456780")  # same size, one byte changed
    with pytest.raises(plait.ArtifactNotFound) as altered:
        engine.open_artifact(artifact_id)
    wrong = hashlib.sha256(b"0123456780").hexdigest()
    right = hashlib.sha256(b"0123456789").hexdigest()
    assert str(altered.value) == (
        f"artifact {artifact_id} ('data.bin') is damaged: the sha256 of its file {str(path)!r} "
        f"is {wrong}, but {right} was saved (altered); nothing was returned"
    )
    path.unlink()
    with pytest.raises(plait.ArtifactNotFound) as missing:
        engine.open_artifact(artifact_id)
    assert str(missing.value) == (
        f"artifact {artifact_id} ('data.bin'): its file {str(path)!r} is missing from the "
        "artifact folder (deleted by hand, or a different folder is configured)"
    )


def test_the_default_storage_of_each_store(store_url: str, tmp_path: Path) -> None:
    with plait.Engine(store_url) as engine:
        wf = plait.Workflow("defaults")

        @wf.step
        def make(ctx: plait.StepContext) -> str:
            return ctx.save_artifact("a.txt", b"abc").uri

        uri = run(engine, wf).result()["make"]
        if store_url.startswith("sqlite://"):  # a folder next to the database file
            root = tmp_path / "plait.db.artifacts"
            assert folder_of(engine) == root
            assert uri.startswith((root / "objects").as_uri() + "/")
        else:  # PostgreSQL and memory: in the store
            assert uri.startswith("plait-artifact:")


def test_the_artifacts_option_is_checked(store_url: str) -> None:
    sep = "&" if "?" in store_url else "?"
    for bad in (f"{store_url}{sep}artifacts=", f"{store_url}{sep}artifacts=a&artifacts=b"):
        with pytest.raises(plait.ConfigError) as caught:
            plait.Engine(bad)
        assert str(caught.value) == (
            "the store URL's artifacts= option must be given once, with a folder path or 'database'"
        )


def test_artifacts_kept_in_the_database_are_blobs_shared_and_counted(
    store_url: str, tmp_path: Path
) -> None:
    sep = "&" if "?" in store_url else "?"
    with plait.Engine(f"{store_url}{sep}artifacts=database") as engine:
        wf = plait.Workflow("shared_blobs", retry=plait.Retry(attempts=2, delay=0.01))

        @wf.step
        def make(ctx: plait.StepContext) -> str:
            ref = ctx.save_artifact("same.bin", b"identical bytes" * 100)
            ctx.save_artifact("small.txt", b"")  # an empty one is a blob too
            if ctx.attempt == 1:
                raise RuntimeError("the first attempt's bytes never reach the store")
            return ref.id

        before = engine.blob_stats()
        one, two = run(engine, wf), run(engine, wf)
        stats = engine.blob_stats()
        assert (stats.blobs - before.blobs, stats.references - before.references) == (2, 4)
        assert read(engine, one.result()["make"]) == b"identical bytes" * 100

        engine.delete_run(one.id)
        assert engine.blob_stats().references - before.references == 2
        assert engine.gc(grace=0) == 0  # still referenced by the other run
        assert read(engine, two.result()["make"]) == b"identical bytes" * 100

        engine.delete_run(two.id)
        assert engine.gc(grace=0) == 2
        assert engine.blob_stats() == before


def test_engine_gc_sweeps_artifact_files_too(store_url: str, tmp_path: Path) -> None:
    sep = "&" if "?" in store_url else "?"
    with plait.Engine(f"{store_url}{sep}artifacts={tmp_path / 'arts'}") as engine:
        wf = plait.Workflow("gc_both")

        @wf.step
        def broken(ctx: plait.StepContext) -> None:
            ctx.save_artifact("partial.bin", b"x")
            raise RuntimeError("boom")

        run(engine, wf)
        assert len(files(tmp_path / "arts" / "objects")) == 1
        engine.gc()  # younger than the grace
        assert len(files(tmp_path / "arts" / "objects")) == 1
        assert engine.gc(grace=0) == 0  # blobs removed: none; the file went too
        assert files(tmp_path / "arts") == []


def test_a_missing_blob_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}?artifacts=database"
    with plait.Engine(url) as engine:
        wf = plait.Workflow("lost_blob")

        @wf.step
        def make(ctx: plait.StepContext) -> str:
            return ctx.save_artifact("a.bin", b"abc").id

        artifact_id = run(engine, wf).result()["make"]
    sha256 = hashlib.sha256(b"abc").hexdigest()
    with sqlite3.connect(tmp_path / "p.db") as db:
        assert db.execute("DELETE FROM blobs WHERE sha256 = ?", (sha256,)).rowcount == 1
    with plait.Engine(url) as engine, pytest.raises(plait.ArtifactNotFound) as caught:
        engine.open_artifact(artifact_id)
    assert str(caught.value) == (
        f"artifact {artifact_id} ('a.bin'): its bytes, blob {sha256}, are missing from the "
        "store's blob table"
    )
