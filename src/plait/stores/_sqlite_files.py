"""Opening a SQLite store safely: its URL, and the checks made before anything is written."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from .._errors import SchemaVersionError, StoreError

_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def parse_url(url: str) -> tuple[str, str, float]:
    """(path, synchronous pragma, busy timeout in seconds) of a sqlite:// URL."""
    prefix = "sqlite://"
    if not url.startswith(prefix):
        raise StoreError(f"not a SQLite store URL: {url!r} (expected sqlite:///path.db)")
    rest, _, query = url[len(prefix) :].partition("?")
    if not rest.startswith("/") or rest == "/":
        raise StoreError(
            f"SQLite store URL {url!r} has no path: use sqlite:///relative.db or sqlite:////absolute.db"
        )
    path = unquote(rest[1:])
    synchronous, busy_timeout = "FULL", 10.0
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "synchronous":
            if value.lower() not in _SYNCHRONOUS:
                raise StoreError(
                    f"SQLite store URL {url!r}: synchronous={value!r} is not one of "
                    f"{sorted(_SYNCHRONOUS)}"
                )
            synchronous = _SYNCHRONOUS[value.lower()]
        elif key == "busy_timeout":
            try:
                busy_timeout = float(value)
            except ValueError:
                busy_timeout = -1.0
            if not busy_timeout >= 0:
                raise StoreError(
                    f"SQLite store URL {url!r}: busy_timeout={value!r} is not a number of seconds"
                )
        else:
            raise StoreError(
                f"SQLite store URL {url!r}: unknown option {key!r} (known: synchronous, busy_timeout)"
            )
    return path, synchronous, busy_timeout


def check_file(path: str) -> None:
    """Refuse, before SQLite touches anything, a path that cannot hold a plait database."""
    if path == ":memory:":
        return
    target = Path(path)
    directory = target.absolute().parent
    if not directory.exists():
        raise StoreError(f"cannot open SQLite store {path}: directory {directory} does not exist")
    if not directory.is_dir():
        raise StoreError(f"cannot open SQLite store {path}: {directory} is not a directory")
    if target.exists():
        if not target.is_file():
            raise StoreError(f"cannot open SQLite store {path}: it is not a regular file")
        try:
            with target.open("rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise StoreError(f"cannot open SQLite store {path}: {exc.strerror or exc}") from exc
        if head and head != SQLITE_MAGIC:
            raise SchemaVersionError(
                f"{path} is not a plait database: it is not a SQLite file; it was left untouched. "
                "Point plait at another file."
            )
        if not os.access(target, os.R_OK | os.W_OK):
            raise StoreError(
                f"cannot open SQLite store {path}: the file is not readable and writable"
            )
    # WAL mode needs to create the -wal and -shm files beside the database
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreError(f"cannot open SQLite store {path}: directory {directory} is not writable")
