"""The workflow whose runs plait's CI keeps recorded (tests/testing/histories/): every later
version of plait must replay them on this code (test_histories.py). It touches what a step can
do: run-input fields, data and after dependencies, a default, a when= condition, an approval
gate, a signal, spawned tasks gathered, records and artifacts.

Record a run of this release (kept; never rewritten by a later one):

    PYTHONPATH=src python -m tests.testing.recorded tests/testing/histories/orders-<version>.json
"""

from __future__ import annotations

import sys
from typing import Any

import plait
from plait import testing


def orders() -> plait.Workflow:
    wf = plait.Workflow("orders", version="1")

    @wf.step()
    def fetch(order_id: int, items: list[str]) -> dict[str, Any]:
        return {"id": order_id, "items": items, "amount": 10 * len(items)}

    @wf.task()
    def price(item: str) -> int:
        return 3 * len(item)

    @wf.step()
    def prices(fetch: dict[str, Any], ctx: plait.StepContext) -> list[Any]:
        return ctx.map(price, fetch["items"])

    @wf.step(when=lambda fetch: fetch["amount"] > 100)
    def fraud_check(fetch: dict[str, Any]) -> bool:
        return False

    @wf.step(approval=True, defaults={"fraud_check": True})
    def review(fetch: dict[str, Any], fraud_check: bool) -> dict[str, Any]:
        return {"approved": fraud_check, "order": fetch["id"]}

    @wf.step()
    def charge(
        fetch: dict[str, Any], prices: list[int], review: dict[str, Any], ctx: plait.StepContext
    ) -> dict[str, Any]:
        total = sum(prices)
        ctx.record("ledger", f"order-{fetch['id']}", {"total": total})
        ctx.save_artifact("receipt.txt", f"order {fetch['id']}: {total}".encode())
        return {"total": total, "currency": "EUR"}

    wf.signal("shipped", after=["charge"])

    @wf.step(after=["shipped"])
    def notify(charge: dict[str, Any], shipped: dict[str, Any], email: str = "a@b.c") -> str:
        return f"{email}: {charge['total']} {charge['currency']} via {shipped['carrier']}"

    return wf


INPUT = {"order_id": 42, "items": ["tea", "scones", "jam"]}


def record(path: str) -> None:
    with plait.Engine("memory://") as engine:
        result = testing.run(
            orders(),
            INPUT,
            approve={"review": True},
            signals={"shipped": {"carrier": "post"}},
            engine=engine,
            run_id="orders-42",
        )
        testing.assert_completed(result)
        testing.export_run(engine, result.id, path)


if __name__ == "__main__":
    record(sys.argv[1])
