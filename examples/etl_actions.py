"""The actions of examples/etl.yaml: plain Python functions, registered under the names the
file's steps call. Their typed parameters are what a step's `with:` must give; plait validates
the values when the step runs. The extract is a stand-in for a real source: it makes `limit`
rows from the source's name, so the example runs anywhere."""

from __future__ import annotations

from typing import Any

import plait


@plait.action("etl.extract")
def extract(source: str, limit: int = 100) -> list[dict[str, Any]]:
    """Read up to `limit` rows from `source`."""
    return [{"id": i, "name": f"{source}-{i}", "amount": i * 10} for i in range(1, limit + 1)]


@plait.action("etl.transform")
def transform(row: dict[str, Any], rate: float) -> dict[str, Any]:
    """Clean one row: its name upper-cased, its amount converted at `rate`."""
    return {"id": row["id"], "name": row["name"].upper(), "amount": round(row["amount"] * rate, 2)}


@plait.action("etl.load")
def load(rows: list[dict[str, Any]], table: str) -> dict[str, Any]:
    """Write the rows to `table` (here: count and sum them)."""
    return {"table": table, "rows": len(rows), "total": round(sum(r["amount"] for r in rows), 2)}


@plait.action("etl.report")
def report(summary: dict[str, Any] | None) -> str:
    """One line for the team's channel."""
    if summary is None:
        return "nothing loaded"
    return f"loaded {summary['rows']} rows into {summary['table']} (total {summary['total']})"


@plait.action("etl.summarise")
def summarise(runs: list[dict[str, Any]]) -> str:
    """One line for the outputs of several runs of examples/etl.yaml (examples/etl_nightly.yaml)."""
    lines = [run.get("report") or "nothing loaded" for run in runs]
    return f"{len(runs)} source(s): " + "; ".join(lines)
