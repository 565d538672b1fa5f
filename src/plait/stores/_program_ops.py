"""What a store transaction written as a *program* (`_programs.py`) yields: `(FETCH, sql,
params)` → its rows, `(EXECUTE, sql, params)` → its row count, `(EXECUTE_MANY, sql, rows)` →
None. Kept apart so that the modules programs are built from (`_blobs_sql.py`) share them."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")

FETCH, EXECUTE, EXECUTE_MANY = 0, 1, 2
Op = tuple[int, str, Any]
Program = Generator[Op, Any, T]
