"""What a store transaction written as a *program* (`_programs.py`) yields: `(FETCH, sql,
params)` → its rows, `(EXECUTE, sql, params)` → its row count, `(EXECUTE_MANY, sql, rows)` →
None, and `(LARGE, "", None)` → None before statements that send a parameter of more than
LARGE_BYTES: a driver that cannot send one in the mode it runs the transaction in (psycopg's
pipeline mode hangs on messages of tens of MB, psycopg issue #685) runs the transaction again
in another. Kept apart so that the modules programs are built from (`_blobs_sql.py`) share it."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")

FETCH, EXECUTE, EXECUTE_MANY, LARGE = 0, 1, 2, 3
LARGE_BYTES = 1 << 20
Op = tuple[int, str, Any]
Program = Generator[Op, Any, T]
