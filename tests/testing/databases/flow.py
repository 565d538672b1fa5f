"""The workflow whose SQLite files plait's CI keeps from earlier schema versions
(tests/testing/databases/*.db, made by `make.py` with the plait of that version). Written with
the API every version had (Workflow, step, data dependencies by parameter name), so that one
file serves them all: today's code must open each file, migrate it, read its finished run as
it was written, and finish its unfinished one. Never edit a step's code: a run recorded by an
earlier version is served only while its steps' code is the same."""

from __future__ import annotations

from typing import Any

import plait

wf = plait.Workflow("kept")


@wf.step
def fetch(n: int) -> dict[str, Any]:
    return {"n": n, "items": [f"item-{i}" for i in range(n)], "blob": "x" * 70_000}


@wf.step
def count(fetch: dict[str, Any]) -> int:
    return len(fetch["items"])


@wf.step
def total(fetch: dict[str, Any], count: int) -> dict[str, Any]:
    return {"n": fetch["n"], "count": count, "blob_len": len(fetch["blob"])}


def expected(n: int) -> dict[str, Any]:
    return {"n": n, "count": n, "blob_len": 70_000}
