"""The actions of examples/refund.yaml: stand-ins for a payments service, so that the example
runs anywhere."""

from __future__ import annotations

from typing import Any

import plait


@plait.action("orders.lookup")
def lookup(order_id: int) -> dict[str, Any]:
    """The order to refund (here: made from its id)."""
    return {"order_id": order_id, "customer": f"customer-{order_id}", "paid": order_id * 10}


@plait.action("payments.refund")
def refund(order_id: int, amount: float, reason: str) -> dict[str, Any]:
    """Pay `amount` back for the order."""
    return {"order_id": order_id, "refunded": amount, "reason": reason}


@plait.action("payments.close_account")
def close_account(customer: str) -> dict[str, Any]:
    """Close the customer's account: never meant to run from this workflow."""
    return {"closed": customer}


@plait.action("mail.send")
def send(to: str, text: str) -> dict[str, Any]:
    """Tell the customer (here: say what would be sent)."""
    return {"to": to, "text": text}
