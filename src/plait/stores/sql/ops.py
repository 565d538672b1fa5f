"""What a store transaction written as a *program* (`_programs.py`) yields: `(FETCH, sql,
params)` → its rows, `(EXECUTE, sql, params)` → its row count, `(EXECUTE_MANY, sql, rows)` →
None, and `(LARGE, "", None)` → None before statements that send a parameter of more than
LARGE_BYTES: a driver that cannot send one in the mode it runs the transaction in (psycopg's
pipeline mode hangs on messages of tens of MB, psycopg issue #685) runs the transaction again
in another. Kept apart so that the modules programs are built from (`_blobs_sql.py`) share it."""

from __future__ import annotations

import sqlite3
from collections.abc import Generator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

FETCH, EXECUTE, EXECUTE_MANY, LARGE = 0, 1, 2, 3
LARGE_BYTES = 1 << 20
Op = tuple[int, str, Any]
Program = Generator[Op, Any, T]


def run_sync(db: sqlite3.Connection, program: Program[T]) -> T:
    """Drive a program on a sqlite3 connection, inside the caller's transaction."""
    result: Any = None
    try:
        while True:
            kind, sql, params = program.send(result)
            if kind == FETCH:
                result = db.execute(sql, params).fetchall()
            elif kind == EXECUTE:
                result = db.execute(sql, params).rowcount
            elif kind == EXECUTE_MANY:
                db.executemany(sql, params)
                result = None
            else:  # LARGE: SQLite takes any size as it comes
                result = None
    except StopIteration as stop:
        value: T = stop.value
        return value


def fetch_rows(query: str, params: Mapping[str, Any]) -> Program[list[Any]]:
    """A program of one query, returning its rows."""
    rows: list[Any] = yield (FETCH, query, params)
    return rows


def execute_one(query: str, params: Mapping[str, Any]) -> Program[int]:
    """A program of one statement, returning its row count."""
    count: int = yield (EXECUTE, query, params)
    return count
