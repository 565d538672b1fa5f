"""Actions the declarative tests' workflow files call (registered on import)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

import pydantic

import plait

CALLS: list[tuple[str, Any]] = []


@plait.action("test.fetch")
def fetch(order_id: int) -> dict[str, Any]:
    return {"id": order_id, "total": order_id * 10, "items": ["a", "b", "c"]}


@plait.action("test.charge")
def charge(amount: float, currency: str = "EUR") -> dict[str, Any]:
    return {"charged": amount, "currency": currency}


@plait.action("test.echo")
def echo(value: Any = None) -> Any:
    return value


@plait.action("test.async_double")
async def async_double(n: int) -> int:
    await asyncio.sleep(0)
    return n * 2


@plait.action("test.flaky")
def flaky(ctx: plait.StepContext, key: str) -> str:
    """Fails on its first attempt."""
    CALLS.append(("flaky", key))
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return f"ok after {ctx.attempt}"


@plait.action("test.fail")
def fail(message: str = "boom") -> None:
    raise plait.Permanent(message)


@plait.action("test.count")
def count(ctx: plait.StepContext, n: int) -> int:
    """n + 1: a loop's body."""
    return n + 1 + ctx.iteration


def shout(text: str) -> str:
    """Named by import path (not registered)."""
    return text.upper()


NOT_A_FUNCTION = 42


ACTIVE = {"now": 0, "most": 0}
_LOCK = threading.Lock()


@plait.action("test.track")
def track(x: int) -> int:
    """Counts how many calls overlap (ACTIVE["most"]), then returns x * 10."""
    with _LOCK:
        ACTIVE["now"] += 1
        ACTIVE["most"] = max(ACTIVE["most"], ACTIVE["now"])
    time.sleep(0.02)  # long enough for uncapped items to overlap
    with _LOCK:
        ACTIVE["now"] -= 1
    return x * 10


class Quote(pydantic.BaseModel):
    price: float
    currency: str


@dataclasses.dataclass
class Order:
    id: int
    quote: Quote
    note: str | None = None


@plait.action("test.order")
def order(order_id: int) -> Order:
    return Order(order_id, Quote(price=9.5, currency="EUR"))


@plait.action("test.charge_limited")
def charge_limited(amount: float) -> dict[str, Any]:
    """Declines amounts over 100 (code `declined`)."""
    if amount > 100:
        raise plait.Permanent(f"over the limit: {amount}", code="declined")
    return {"charged": amount, "currency": "EUR"}


@plait.action("test.item")
def item(ctx: plait.StepContext, item: str) -> str:
    """ "fail" fails; "slow" runs until cancelled (at most 20 s); anything else is done."""
    if item == "fail":
        raise plait.Permanent("item failed")
    if item == "slow":
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not ctx.cancelled:
            time.sleep(0.02)
    return f"did {item}"
