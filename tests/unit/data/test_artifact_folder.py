"""The pure parts of artifacts: the folder's paths (ids only, never names), its sweep, and the
store URL's artifacts= option."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

import plait
from plait.core.rows import ArtifactRow
from plait.data.artifacts import (
    DatabaseStorage,
    FolderStorage,
    split_url,
    storage_for,
    sweep_artifacts,
)


def row(artifact_id: str, path: str | None, size: int = 3) -> ArtifactRow:
    return ArtifactRow(artifact_id, "run", "step", "x.txt", size, "0" * 64, "text/plain", path)


def test_files_are_named_by_id_under_objects(tmp_path: Path) -> None:
    folder = FolderStorage(tmp_path / "arts")
    path, size, sha256, kept = folder.put("ab" + "0" * 30, b"abc", "../../name/is/ignored")
    assert path == f"objects/ab/ab{'0' * 30}" and size == 3 and kept is None
    assert sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert (tmp_path / "arts" / path).read_bytes() == b"abc"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["ab" + "0" * 30]
    with pytest.raises(ValueError) as caught:
        folder.put("../x", b"abc", "x")
    assert str(caught.value) == "not an artifact id: '../x'"


def test_a_stored_path_leading_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = FolderStorage(tmp_path / "arts")
    (tmp_path / "secret").write_bytes(b"abc")
    for path in ("../secret", "objects/../../secret", "/etc/passwd", "."):
        with pytest.raises(plait.ArtifactNotFound) as caught:
            folder.open(row("a" * 32, path))
        assert str(caught.value) == (
            f"artifact {'a' * 32} ('x.txt'): its stored path {path!r} leads out of the artifact "
            f"folder {str(tmp_path / 'arts')!r}; it was not opened"
        )
    folder.remove([row("a" * 32, "../secret")])  # refused quietly: nothing outside is deleted
    assert (tmp_path / "secret").exists()


def test_the_sweep_removes_old_unreferenced_files_only(tmp_path: Path) -> None:
    folder = FolderStorage(tmp_path)
    kept, orphan, young = "a" * 32, "b" * 32, "c" * 32
    for artifact_id in (kept, orphan, young):
        folder.put(artifact_id, b"abc", "x")
    interrupted = tmp_path / "tmp" / f"{'d' * 32}.part"
    interrupted.write_bytes(b"half")
    foreign = tmp_path / "objects" / "README"
    foreign.write_bytes(b"not ours")
    old = 1_000_000.0
    for artifact_id in (kept, orphan):
        os.utime(tmp_path / "objects" / artifact_id[:2] / artifact_id, (old, old))
    os.utime(interrupted, (old, old))
    asked: list[list[str]] = []

    async def referenced(ids: list[str]) -> set[str]:
        asked.append(ids)
        return {kept} & set(ids)

    removed = asyncio.run(sweep_artifacts(tmp_path, referenced, grace=60, now=old + 3600))
    assert removed == 2  # the orphan and the interrupted copy
    assert asked == [[kept, orphan]]  # the young file was not even looked up
    left = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted([kept, young, "README"])


def test_the_artifacts_option_is_taken_out_of_the_url(tmp_path: Path) -> None:
    assert split_url("sqlite:///p.db?synchronous=normal&artifacts=%2Fa%20b") == (
        "sqlite:///p.db?synchronous=normal",
        "/a b",
    )
    assert split_url("memory://?artifacts=database") == ("memory://", "database")
    assert split_url("sqlite:///p.db") == ("sqlite:///p.db", None)
    assert isinstance(storage_for("memory://", None), DatabaseStorage)
    assert isinstance(storage_for("sqlite:///p.db", "database"), DatabaseStorage)
    folder = storage_for("postgresql://h/db", str(tmp_path / "shared"))
    assert isinstance(folder, FolderStorage) and folder.root == tmp_path / "shared"
    relative = storage_for("sqlite:///data/p.db", None)
    assert isinstance(relative, FolderStorage)
    assert relative.root == Path.cwd() / "data" / "p.db.artifacts"  # fixed when the engine starts


def test_empty_content_is_an_artifact_of_zero_bytes(tmp_path: Path) -> None:
    empty_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    for storage in (FolderStorage(tmp_path), DatabaseStorage()):
        for content in (b"", bytearray(), memoryview(b"")):
            path, size, sha256, kept = storage.put("e" * 32, content, "empty")
            assert (size, sha256) == (0, empty_sha)
            saved = dataclasses.replace(row("e" * 32, path, size=0), sha256=empty_sha, data=kept)
            with storage.open(saved) as opened:
                assert opened.read() == b""
