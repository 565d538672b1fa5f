"""Actions the suite's workflow files call (registered on import, by `imports:`)."""

from __future__ import annotations

from typing import Any

import plait


@plait.action("contract.fetch")
def fetch(order_id: int) -> dict[str, Any]:
    return {"id": order_id, "total": order_id * 10, "items": ["a", "b", "c"]}


@plait.action("contract.charge")
def charge(amount: float, currency: str = "EUR") -> dict[str, Any]:
    return {"charged": amount, "currency": currency}
