"""Artifacts: files a step saves (`ctx.save_artifact`), visible once the step succeeded.

    ref = ctx.save_artifact("report.pdf", "/tmp/report.pdf")       # a path: copied in chunks
    ref = ctx.save_artifact("rows.csv", text.encode(), metadata={"rows": 10})
    for a in engine.artifacts(run_id): print(a.name, a.size, a.uri)
    with engine.open_artifact(a.id) as f: data = f.read()

Where the bytes go (`ArtifactStorage`), chosen by the store URL's `artifacts=` option:

- a folder (`FolderStorage`): SQLite's default is `<database file>.artifacts/`; any store takes
  `?artifacts=/shared/folder`. The bytes are written when the handler saves them, into
  `tmp/<id>.part`, then renamed to `objects/<id[:2]>/<id>`: the name is the artifact's id, a
  random hex string plait makes, so names from users never reach a path. One file per saved
  artifact (no sharing between artifacts), so deleting a run deletes its files at once, without
  racing an attempt that saves the same bytes.
- the database (`DatabaseStorage`): PostgreSQL's and the memory store's default, `?artifacts=
  database` on SQLite. The bytes are held by the handler's context and written as the
  content-addressed blob of their sha256 (`core.blobs`; one reference per artifact, so identical
  artifacts share one blob), in the transaction that records the step's success; deleting the
  run drops the references and `engine.gc` removes blobs left with none.

Either way the row (name, size, sha256, …) is written in the success transaction only: a failed
attempt's row never exists, and its folder file, unreferenced, is removed by `sweep_artifacts`
(`engine.gc_artifacts`, and `engine.gc`) once older than the grace period. Reading checks size and sha256, so a
truncated or altered file is an error (ArtifactNotFound, saying so), never short data.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import mimetypes
import os
import re
import secrets
import stat
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlencode

from .. import _codec
from .._errors import ArtifactNotFound, ConfigError, InputError
from ..core.blobs import ARTIFACT_GRACE
from ..core.rows import ArtifactRow

NAME_LIMIT = 255
METADATA_LIMIT = 64 * 1024  # bytes of JSON
CHUNK = 1024 * 1024
DATABASE = "database"  # the `artifacts=` value that keeps bytes in the store
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][\w.+\-]*/[A-Za-z0-9][\w.+\-]*(\s*;.*)?")
_OBJECT_NAME = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """What `ctx.save_artifact` returns. `uri`: `file://…` for a file in the artifact folder,
    `plait-artifact:<id>` for bytes kept in the database (read them with `open_artifact`)."""

    id: str
    name: str
    size: int
    sha256: str
    content_type: str
    uri: str


@dataclass(frozen=True, slots=True)
class Artifact(ArtifactRef):
    """An artifact of a run (`engine.artifacts(run_id)`): its ref, and who saved it when."""

    run_id: str = ""
    step: str = ""
    metadata: dict[str, Any] | None = None
    created_at: float = 0.0


# -- checks of what users pass -------------------------------------------------------------------


def check_name(name: object) -> str:
    """The artifact name, or InputError saying what a name may be."""
    if not isinstance(name, str):
        raise InputError(f"an artifact name must be a string, got {type(name).__name__} {name!r}")
    shown = name if len(name) <= 80 else name[:80] + "…"
    problem = None
    if not name:
        problem = "it is empty"
    elif len(name) > NAME_LIMIT:
        problem = f"it has {len(name)} characters"
    elif name in (".", ".."):
        problem = "it is a relative directory"
    elif "/" in name or "\\" in name:
        problem = "it contains a path separator"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "it contains a control character (NUL, newline, …)"
    if problem is not None:
        raise InputError(
            f"invalid artifact name {shown!r}: {problem}. An artifact name is 1-{NAME_LIMIT} "
            "characters without '/', '\\' or control characters, and not '.' or '..'"
        )
    return name


def check_content_type(content_type: object, name: str) -> str:
    """The content type (guessed from the name when None), or InputError."""
    if content_type is None:
        guessed, _ = mimetypes.guess_type(name, strict=False)
        return guessed or "application/octet-stream"
    if (
        not isinstance(content_type, str)
        or len(content_type) > NAME_LIMIT
        or not _CONTENT_TYPE.fullmatch(content_type)
        or any(ord(c) < 32 for c in content_type)
    ):
        raise InputError(
            f"artifact {name!r}: invalid content_type {content_type!r}: expected a media type "
            "such as 'text/csv' or 'application/json; charset=utf-8', or None to guess it "
            "from the name"
        )
    return content_type


def encode_metadata(metadata: object, name: str) -> bytes | None:
    """Metadata as JSON bytes (None stays None), or InputError: a JSON object of at most 64 KiB."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise InputError(
            f"artifact {name!r}: metadata must be a dict with string keys (a JSON object), "
            f"got {type(metadata).__name__}"
        )
    try:
        encoded = _codec.dumps(metadata)
    except _codec.EncodeError as exc:
        raise InputError(f"artifact {name!r}: metadata is not JSON: {exc}") from None
    if len(encoded) > METADATA_LIMIT:
        raise InputError(
            f"artifact {name!r}: metadata is {len(encoded)} bytes of JSON, more than the "
            f"{METADATA_LIMIT} allowed; save large data as an artifact of its own"
        )
    return encoded


def _source_file(source: str | os.PathLike[str], name: str) -> Path:
    path = Path(source)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(
            f"artifact {name!r}: no such file {str(path)!r} (a str is a path to a file; "
            "to save text itself, pass text.encode())"
        ) from None
    except OSError as exc:
        raise InputError(f"artifact {name!r}: cannot read {str(path)!r}: {exc}") from None
    if not stat.S_ISREG(mode):
        raise InputError(
            f"artifact {name!r}: {str(path)!r} is not a regular file (a directory, a device…); "
            "save files one by one"
        )
    return path


Content = bytes | bytearray | memoryview | str | os.PathLike[str]


def _chunks(data: Content, name: str) -> tuple[Callable[[], bytes | None], Callable[[], None]]:
    """A reader of the content, chunk by chunk (None at the end), and its closer."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data).cast("B")
        offsets = iter(range(0, max(len(view), 1), CHUNK))

        def next_view() -> bytes | None:
            start = next(offsets, None)
            return None if start is None else bytes(view[start : start + CHUNK])

        return next_view, lambda: None
    if isinstance(data, str | os.PathLike):
        path = _source_file(data, name)
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise InputError(f"artifact {name!r}: cannot read {str(path)!r}: {exc}") from None
        return lambda: handle.read(CHUNK) or None, handle.close
    raise InputError(
        f"artifact {name!r}: data must be bytes (or bytearray, memoryview) or the path of a "
        f"file (str or os.PathLike), got {type(data).__name__}; to save text, pass text.encode()"
    )


# -- where the bytes go ---------------------------------------------------------------------------


def new_artifact_id() -> str:
    return secrets.token_hex(16)


class ArtifactStorage:
    """Writes the bytes of a saved artifact (before its row exists) and reads them back."""

    def put(
        self, artifact_id: str, data: Content, name: str
    ) -> tuple[str | None, int, str, bytes | None]:
        """Store the content: (folder path or None, size, sha256, bytes to keep in the row)."""
        raise NotImplementedError

    def uri(self, row: ArtifactRow) -> str:
        return f"plait-artifact:{row.id}"

    def open(self, row: ArtifactRow) -> BinaryIO:
        """The artifact's bytes, checked against its size and sha256."""
        if row.path is not None:
            raise ArtifactNotFound(
                f"artifact {row.id} ({row.name!r}) is a file in an artifact folder, but this "
                "engine keeps artifacts in the database: open it with the store URL's "
                "artifacts= option naming that folder"
            )
        data = row.data if row.data is not None else b""
        _verify(row, len(data), hashlib.sha256(data).hexdigest(), "its stored bytes")
        return io.BytesIO(data)

    def remove(self, rows: Collection[ArtifactRow]) -> None:
        """Remove the bytes of deleted rows (the database's went with the rows)."""

    async def sweep(
        self, referenced: Callable[[list[str]], Awaitable[set[str]]], grace: float = ARTIFACT_GRACE
    ) -> int:
        """Remove bytes no row references, older than `grace` seconds; how many were removed."""
        return 0  # the database's bytes live and die with their rows


class DatabaseStorage(ArtifactStorage):
    """Bytes kept in the artifact's row: held by the step's context until its success commits."""

    def put(
        self, artifact_id: str, data: Content, name: str
    ) -> tuple[str | None, int, str, bytes | None]:
        if isinstance(data, bytes):  # kept as it is: no copy
            return None, len(data), hashlib.sha256(data).hexdigest(), data
        read, close = _chunks(data, name)
        digest, buffer = hashlib.sha256(), bytearray()
        try:
            while (chunk := read()) is not None:
                digest.update(chunk)
                buffer += chunk
        finally:
            close()
        return None, len(buffer), digest.hexdigest(), bytes(buffer)

    def __repr__(self) -> str:
        return "DatabaseStorage()"


class FolderStorage(ArtifactStorage):
    """Bytes in files under `root`: `objects/<id[:2]>/<id>`, written through `tmp/<id>.part`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(root))

    def __repr__(self) -> str:
        return f"FolderStorage({str(self.root)!r})"

    def _object(self, artifact_id: str) -> tuple[str, Path]:
        if not _OBJECT_NAME.fullmatch(artifact_id):  # ids are ours; never a user's string
            raise ValueError(f"not an artifact id: {artifact_id!r}")
        relative = f"objects/{artifact_id[:2]}/{artifact_id}"
        return relative, self.root / relative

    def put(
        self, artifact_id: str, data: Content, name: str
    ) -> tuple[str | None, int, str, bytes | None]:
        read, close = _chunks(data, name)
        relative, target = self._object(artifact_id)
        staging = self.root / "tmp" / f"{artifact_id}.part"
        try:
            staging.parent.mkdir(parents=True, exist_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            digest, size = hashlib.sha256(), 0
            with staging.open("xb") as out:
                while (chunk := read()) is not None:
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(staging, target)
        except OSError as exc:
            staging.unlink(missing_ok=True)
            raise InputError(
                f"artifact {name!r}: cannot write it to the artifact folder {str(self.root)!r}: "
                f"{exc}"
            ) from None
        finally:
            close()
        return relative, size, digest.hexdigest(), None

    def uri(self, row: ArtifactRow) -> str:
        try:
            return self._inside(row).as_uri() if row.path is not None else super().uri(row)
        except ArtifactNotFound:  # a row altered by hand: listed, but never opened
            return super().uri(row)

    def _inside(self, row: ArtifactRow) -> Path:
        """The row's file, refused if its path would lead out of the folder."""
        assert row.path is not None
        path = Path(os.path.normpath(self.root / row.path))
        if os.path.commonpath([self.root, path]) != str(self.root) or path == self.root:
            raise ArtifactNotFound(
                f"artifact {row.id} ({row.name!r}): its stored path {row.path!r} leads out of "
                f"the artifact folder {str(self.root)!r}; it was not opened"
            )
        return path

    def open(self, row: ArtifactRow) -> BinaryIO:
        if row.path is None:
            return super().open(row)
        path = self._inside(row)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise ArtifactNotFound(
                f"artifact {row.id} ({row.name!r}): its file {str(path)!r} is missing from the "
                "artifact folder (deleted by hand, or a different folder is configured)"
            ) from None
        except OSError as exc:
            raise ArtifactNotFound(
                f"artifact {row.id} ({row.name!r}): cannot read {str(path)!r}: {exc}"
            ) from None
        try:
            size = os.fstat(handle.fileno()).st_size
            if size != row.size:
                _verify(row, size, "", f"its file {str(path)!r}")
            digest = hashlib.sha256()
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
            _verify(row, size, digest.hexdigest(), f"its file {str(path)!r}")
            handle.seek(0)
        except BaseException:
            handle.close()
            raise
        return handle

    def remove(self, rows: Collection[ArtifactRow]) -> None:
        for row in rows:
            if row.path is not None:
                with contextlib.suppress(OSError, ArtifactNotFound):  # else: the next sweep
                    self._inside(row).unlink(missing_ok=True)

    async def sweep(
        self, referenced: Callable[[list[str]], Awaitable[set[str]]], grace: float = ARTIFACT_GRACE
    ) -> int:
        return await sweep_artifacts(self.root, referenced, grace)


def _verify(row: ArtifactRow, size: int, sha256: str, what: str) -> None:
    if size != row.size:
        raise ArtifactNotFound(
            f"artifact {row.id} ({row.name!r}) is damaged: {what} has {size} bytes, but "
            f"{row.size} were saved (truncated or altered); nothing was returned"
        )
    if sha256 != row.sha256:
        raise ArtifactNotFound(
            f"artifact {row.id} ({row.name!r}) is damaged: the sha256 of {what} is {sha256}, "
            f"but {row.sha256} was saved (altered); nothing was returned"
        )


async def sweep_artifacts(
    root: Path,
    referenced: Callable[[list[str]], Awaitable[set[str]]],
    grace: float = ARTIFACT_GRACE,
    now: float | None = None,
) -> int:
    """Remove the files of an artifact folder that no artifact row references (failed attempts,
    deleted runs, interrupted writes), if last modified more than `grace` seconds ago: a younger
    one may belong to an attempt still running. `referenced(ids)` says which ids have a row.
    Returns the number of files removed."""
    now = time.time() if now is None else now
    removed = 0
    for folder, unreferenced in (("tmp", _tmp_candidates), ("objects", _object_candidates)):
        base = root / folder
        if not base.is_dir():
            continue
        old: dict[str, Path] = {}
        for path, artifact_id in unreferenced(base):
            try:
                if now - path.lstat().st_mtime >= grace:
                    old[artifact_id] = path
            except FileNotFoundError:
                continue
        ids = sorted(old)
        keep: set[str] = set()
        for start in range(0, len(ids), 500):
            keep |= await referenced(ids[start : start + 500]) if folder == "objects" else set()
        for artifact_id, path in old.items():
            if artifact_id not in keep:
                try:
                    path.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def _tmp_candidates(base: Path) -> list[tuple[Path, str]]:
    return [(p, p.name) for p in base.iterdir() if p.is_file()]


def _object_candidates(base: Path) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for shard in base.iterdir():
        if shard.is_dir() and not shard.is_symlink():
            found.extend((p, p.name) for p in shard.iterdir() if _OBJECT_NAME.fullmatch(p.name))
    return found


# -- configuration: the store URL's `artifacts=` option -------------------------------------------


def split_url(url: Any) -> tuple[Any, str | None]:
    """(the URL without its `artifacts=` option, the option's value or None)."""
    if not isinstance(url, str) or "artifacts=" not in url:
        return url, None
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    values = [v for k, v in pairs if k == "artifacts"]
    if not values:
        return url, None
    if len(values) > 1 or not values[0]:
        raise ConfigError(  # not the URL itself: it may hold a password
            f"the store URL's artifacts= option must be given once, with a folder path or "
            f"'{DATABASE}'"
        )
    rest = urlencode([(k, v) for k, v in pairs if k != "artifacts"])
    return (f"{base}?{rest}" if rest else base), values[0]


def storage_for(url: Any, option: str | None) -> ArtifactStorage:
    """Where a store of this URL keeps artifacts: the option, or the store's default."""
    if option == DATABASE:
        return DatabaseStorage()
    if option is not None:
        return FolderStorage(option)
    if isinstance(url, str) and url.startswith("sqlite://"):
        from ..stores.sqlite_files import parse_url

        path = parse_url(url)[0]
        if path != ":memory:":
            return FolderStorage(path + ".artifacts")
    return DatabaseStorage()


def to_artifact(row: ArtifactRow, storage: ArtifactStorage) -> Artifact:
    return Artifact(
        id=row.id,
        name=row.name,
        size=row.size,
        sha256=row.sha256,
        content_type=row.content_type,
        uri=storage.uri(row),
        run_id=row.run_id,
        step=row.step,
        metadata=None if row.metadata is None else _codec.loads(row.metadata),
        created_at=row.created_at,
    )
