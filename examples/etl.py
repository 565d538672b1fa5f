"""examples/etl.yaml written in Python: the same steps, options and outputs. A test runs both
and compares their outputs and events.

    plait run examples/etl.py --input '{"source": "shop"}'
"""

from __future__ import annotations

from typing import Any

import etl_actions as actions

import plait

wf = plait.Workflow("etl", version="1", retry=plait.Retry(attempts=2, delay=1))

MAX_PARALLEL = 4


@wf.step(timeout=30)
def extract(source: str, limit: int = 5) -> list[dict[str, Any]]:
    return actions.extract(source=source, limit=limit)


@wf.task(name="transform.item")
def transform_item(args: dict[str, Any]) -> dict[str, Any]:
    return actions.transform(**args)


@wf.step()
def transform(
    ctx: plait.StepContext, extract: list[dict[str, Any]], rate: float = 1.1
) -> list[plait.Handle]:
    handles: list[plait.Handle] = []
    for i, row in enumerate(extract):  # at most MAX_PARALLEL at a time: each after the 4th before
        after = [handles[i - MAX_PARALLEL]] if i >= MAX_PARALLEL else []
        handles.append(ctx.spawn("transform.item", input={"row": row, "rate": rate}, after=after))
    return handles


@wf.step(
    when=lambda transform: len(transform) > 0,
    retry=plait.Retry(attempts=5, delay=2, backoff=2, max_delay=60),
)
def load(transform: list[dict[str, Any]], source: str) -> dict[str, Any]:
    return actions.load(rows=transform, table=f"sales_{source.lower()}")


@wf.step(optional=True, defaults={"load": None})
def report(load: dict[str, Any] | None) -> str:
    return actions.report(summary=load)
