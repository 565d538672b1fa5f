"""The statements a SQL program yields, and what each is sent back: typed, so that mypy knows.

A store transaction written as a *program* (`stores.sql.programs`) is a generator that yields
the statements it wants run and is sent back their results. It yields them through these
helpers, each a one-statement program typed by what the driver sends back:

    rows = yield from fetch(sql, params)          # list[Row]: the rows a query returned
    count = yield from execute(sql, params)       # int: the rows a statement changed
    yield from execute_many(sql, rows)            # once per row (PostgreSQL: once, with arrays)
    count = yield from execute_all(sql, rows)     # the same, and the rows it changed in all
    yield from large()                            # a parameter of more than LARGE_BYTES follows
    yield from write_blob(sql, params)            # insert a blob's row, then write its data
    found = yield from read_blobs(sql, params)    # list[(hash, data, size)]: blobs' data read

`large()` comes before statements that send a parameter of more than LARGE_BYTES: a driver that
cannot send one in the mode it runs the transaction in (psycopg's pipeline mode hangs on messages
of tens of MB, psycopg issue #685) runs the transaction again in another.

What travels between a program and its driver is an `Op`, a plain `(kind, sql, params)` tuple:
the drivers (the SQLite store's `run_sync`, the PostgreSQL store's `_drive`) dispatch on its kind.
Blobs have their own two kinds, so that a driver can move their data without copying it:
SQLite binds a parameter by copying it, and builds a row (and returns a column) in memory
before Python copies it again, so a 50 MB payload would be held three or four times; its
driver inserts a blob's row with a `zeroblob` and writes the data in place, and reads data
(or only its first bytes) with incremental blob I/O (`Connection.blobopen`). PostgreSQL's
driver runs the same ops as plain statements (its SQL binds `:data` and cuts excerpts with
`substring`).

A helper costs one small generator per statement, next to the statement itself (microseconds).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

FETCH, EXECUTE, EXECUTE_MANY, LARGE, EXECUTE_ALL, WRITE_BLOB, READ_BLOBS = 0, 1, 2, 3, 4, 5, 6
LARGE_BYTES = 1 << 20
Row = tuple[Any, ...]  # a row as both drivers return it
Op = tuple[int, str, Any]  # (kind, sql, params): what a program yields to its driver
Program = Generator[Op, Any, T]  # a store transaction (or a part of one) returning T


def fetch(sql: str, params: Mapping[str, Any]) -> Program[list[Row]]:
    """Run a query; its rows."""
    rows: list[Row] = yield (FETCH, sql, params)
    return rows


def execute(sql: str, params: Mapping[str, Any]) -> Program[int]:
    """Run a statement; the number of rows it changed."""
    count: int = yield (EXECUTE, sql, params)
    return count


def execute_many(sql: str, rows: Sequence[Sequence[Any]]) -> Program[None]:
    """Run a statement for each of `rows` (positional parameters): a batch of writes that
    nothing waits for the result of."""
    yield (EXECUTE_MANY, sql, rows)


def execute_all(sql: str, rows: Sequence[Sequence[Any]]) -> Program[int]:
    """`execute_many`, and the number of rows the statement changed in all (a driver that
    pipelines writes waits for it: use it where the count decides what comes next)."""
    count: int = yield (EXECUTE_ALL, sql, rows)
    return count


def large() -> Program[None]:
    """Say that the next statements send a parameter of more than LARGE_BYTES."""
    yield (LARGE, "", None)


def write_blob(sql: str, params: Mapping[str, Any]) -> Program[None]:
    """Insert (or count) a blob and write its data, `params["data"]`. On SQLite `sql` inserts a
    zeroblob of `:size` and returns the row's rowid, and the driver writes the data into it in
    place; on PostgreSQL it is an ordinary statement binding `:data`."""
    yield (WRITE_BLOB, sql, params)


def read_blobs(sql: str, params: Mapping[str, Any]) -> Program[list[Row]]:
    """Rows of (hash, data, size) of the blobs a query names, the data cut to
    `params["excerpt"]` bytes unless that is None. On SQLite the query returns (hash, rowid,
    size) and the driver reads each blob's data (or its first bytes only) in place; on
    PostgreSQL it returns the data itself (`substring` cuts it on the server)."""
    rows: list[Row] = yield (READ_BLOBS, sql, params)
    return rows
