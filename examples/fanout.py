"""A generated graph: one step per region, built in a loop with `add_step`, then a merge.

    prepare ──┬──► count_eu ───┐
              ├──► count_us ───┤
              ├──► count_apac ─┼──► merge
              └──► …          ─┘

`add_step(name, fn, deps=[...])` is the programmatic twin of `@wf.step`: `deps` are data
dependencies, passed to the parameter of that name or, as here, collected by `**counts`. Each
region counts concurrently (the handlers are async); `merge` sums what they found.

    plait run examples/fanout.py:wf --input '{"day": "2024-05-01"}'
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import plait

REGIONS = ("eu", "us", "apac", "latam", "africa", "mena")

wf = plait.Workflow("regional-report", version="1", retry=plait.Retry(attempts=3, delay=0.1))


def prepare(day: str) -> dict[str, str]:
    """Decide what every region counts (here: just the day, normalised)."""
    return {"day": day.strip()}


def counter(region: str) -> Callable[[dict[str, str]], Awaitable[dict[str, Any]]]:
    """The handler of one region's step (a closure: same code, a different region)."""

    async def count(prepare: dict[str, str]) -> dict[str, Any]:
        await asyncio.sleep(0.05)  # the region's database
        digest = hashlib.sha256(f"{region}/{prepare['day']}".encode()).digest()
        return {"region": region, "orders": int.from_bytes(digest[:2], "big") % 1000}

    return count


def merge(**counts: dict[str, Any]) -> dict[str, Any]:
    by_region = {c["region"]: c["orders"] for c in counts.values()}
    return {"total": sum(by_region.values()), "by_region": by_region}


wf.add_step("prepare", prepare)
for region in REGIONS:
    wf.add_step(f"count_{region}", counter(region), deps=["prepare"])
wf.add_step("merge", merge, deps=[f"count_{region}" for region in REGIONS])
