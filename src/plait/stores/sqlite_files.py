"""Opening a SQLite store safely: its URL, the checks made before anything is written, and
creating or migrating the schema."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from .._errors import SchemaVersionError, StoreError
from ..core.blobs import DEFAULT_THRESHOLD, THRESHOLD_OPTION, parse_threshold
from .sql import queries as sql
from .sql.queries import Queries, check_schema, read_sql, split_statements

logger = logging.getLogger("plait.stores.sqlite")

SCHEMA_VERSION = len(sql.migrations())

_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
# every option of a sqlite:// URL; `artifacts` is the engine's (where artifact files go)
OPTIONS = ("synchronous", "busy_timeout", THRESHOLD_OPTION, "artifacts")


def parse_url(url: str) -> tuple[str, str, float, int]:
    """(path, synchronous pragma, busy timeout in seconds, blob threshold) of a sqlite:// URL."""
    prefix = "sqlite://"
    if not url.startswith(prefix):
        raise StoreError(f"not a SQLite store URL: {url!r} (expected sqlite:///path.db)")
    rest, _, query = url[len(prefix) :].partition("?")
    if not rest.startswith("/") or rest == "/":
        raise StoreError(
            f"SQLite store URL {url!r} has no path: use sqlite:///relative.db or sqlite:////absolute.db"
        )
    path = unquote(rest[1:])
    synchronous, busy_timeout, blob_threshold = "FULL", 10.0, DEFAULT_THRESHOLD
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
        elif key == THRESHOLD_OPTION:
            blob_threshold = parse_threshold(value, url)
        elif key != "artifacts":  # the engine's, checked there
            raise StoreError(
                f"SQLite store URL {url!r}: unknown option {key!r} (known: {', '.join(OPTIONS)})"
            )
    return path, synchronous, busy_timeout, blob_threshold


def missing(path: str) -> StoreError:
    return StoreError(f"no plait database at {path}; a worker or `plait run` creates it")


def check_file(path: str, *, create: bool = True, read_only: bool = False) -> None:
    """Refuse, before SQLite touches anything, a path that cannot hold a plait database (or,
    unless `create`, does not hold one yet; `read_only`: that cannot be read)."""
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
        if read_only:
            return  # readable: it was just read; the directory may be read-only too
        if not os.access(target, os.R_OK | os.W_OK):
            raise StoreError(
                f"cannot open SQLite store {path}: the file is not readable and writable"
            )
    elif not create or read_only:
        raise missing(path)
    # WAL mode needs to create the -wal and -shm files beside the database
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreError(f"cannot open SQLite store {path}: directory {directory} is not writable")


def checked_version(db: sqlite3.Connection, path: str, queries: Queries) -> int | None:
    """The plait schema version of an open database, None if it is empty. Refuses a database
    that is not plait's or is newer than this code. Reads only."""
    tables = {row[0] for row in db.execute(queries["user_tables"])}
    version = None
    if "plait_meta" in tables:
        row = db.execute(queries["get_schema_version"]).fetchone()
        version = None if row is None else str(row[0])
    return check_schema(path, tables, version, current=SCHEMA_VERSION)


def older(path: str, version: int) -> SchemaVersionError:
    return sql.cannot_migrate(path, version, current=SCHEMA_VERSION)


def unreadable_log(path: str) -> StoreError:
    return StoreError(
        f"cannot read SQLite store {path} read-only: its write-ahead log {path}-wal holds "
        f"commits that SQLite reads only with {path}-shm beside it, or in a directory where it "
        "may create that file; copy the database and its -wal file to a writable directory"
    )


def install_schema(db: sqlite3.Connection, path: str, queries: Queries) -> None:
    """Create the schema, or apply the missing migrations, inside the caller's transaction."""
    version = checked_version(db, path, queries)
    if version is None:
        for statement in split_statements(read_sql("schema.sql")):
            db.execute(statement)
        logger.info("SQLite store %s: created schema version %d", path, SCHEMA_VERSION)
    elif version < SCHEMA_VERSION:
        for number, script in sql.migrations()[version:]:  # patched by the migration tests
            for statement in split_statements(script):
                db.execute(statement)
            logger.info("SQLite store %s: applied migration %04d", path, number)
    if version != SCHEMA_VERSION:
        db.execute(queries["set_schema_version"], {"version": str(SCHEMA_VERSION)})
