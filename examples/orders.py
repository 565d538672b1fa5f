"""An order pipeline: the tour of plait's step options in one realistic workflow.

    fetch ──┬──► reserve ─────────────────────┐ (after: ordering only)
            └──► charge ──► email (optional) ──┴──► finish

- `fetch` loads the order (here: made up from the id, so the example needs no database). Its
  output is a pydantic model; steps that annotate a parameter `fetch: Order` get it back validated.
- `reserve` (async) and `charge` run in parallel once `fetch` is done.
- `charge` talks to a flaky payment gateway: its first attempt always times out (it raises
  `plait.Retryable`, chosen by `ctx.attempt`, so the example is deterministic) and plait retries
  it under the step's `plait.Retry` policy.
- `email` is `optional=True`: a failure does not fail the run. Orders whose id ends in 7
  belong to customers without an email address, so their `email` step fails (`plait.Permanent`:
  no retry) and `finish` receives `None` instead, through `defaults={"email": None}`.
- `finish` needs the stock reserved but not the reservation itself: `after=["reserve"]`.
- An order id below 1 does not exist: `fetch` fails permanently and the run fails.

Run input fields are the parameters that name no step: `order_id` (required, an int) and
`options` (a pydantic model with defaults). Try it:

    plait run examples/orders.py:wf --input '{"order_id": 42}'
    plait run examples/orders.py:wf --input '{"order_id": 47, "options": {"express": true}}'
    plait runs list
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

import plait


class Line(BaseModel):
    sku: str
    quantity: int = Field(gt=0)
    unit_cents: int = Field(ge=0)


class Order(BaseModel):
    id: int
    customer: str
    email: str | None
    lines: list[Line]

    @property
    def total_cents(self) -> int:
        return sum(line.quantity * line.unit_cents for line in self.lines)


class Options(BaseModel):
    """Optional run input: `{"options": {"express": true, "notify": false}}`."""

    express: bool = False
    notify: bool = True


NO_OPTIONS = Options()


class Receipt(BaseModel):
    charge_id: str
    amount_cents: int
    attempts: int


wf = plait.Workflow("orders", version="1", retry=plait.Retry(attempts=2, delay=0.05))


@wf.step()
def fetch(order_id: int) -> Order:
    if order_id < 1:
        raise plait.Permanent(f"order {order_id} does not exist", code="order_not_found")
    return Order(
        id=order_id,
        customer=f"customer-{order_id % 100}",
        email=None if order_id % 10 == 7 else f"customer-{order_id % 100}@example.com",
        lines=[
            Line(sku="tea-earl-grey", quantity=1 + order_id % 3, unit_cents=450),
            Line(sku="mug-blue", quantity=1, unit_cents=1200),
        ],
    )


@wf.step()
async def reserve(fetch: Order) -> dict[str, int]:
    await asyncio.sleep(0.1)  # the warehouse API
    return {line.sku: line.quantity for line in fetch.lines}


@wf.step(retry=plait.Retry(attempts=4, delay=0.2, backoff=2.0, max_delay=1.0))
def charge(ctx: plait.StepContext, fetch: Order, options: Options = NO_OPTIONS) -> Receipt:
    if ctx.attempt == 1:
        raise plait.Retryable("payment gateway timed out", code="gateway_timeout")
    amount = fetch.total_cents + (990 if options.express else 0)
    ctx.log.info("charged %d cents for order %d", amount, fetch.id)
    return Receipt(charge_id=f"ch_{fetch.id:08d}", amount_cents=amount, attempts=ctx.attempt)


@wf.step(optional=True)
def email(fetch: Order, charge: Receipt, options: Options = NO_OPTIONS) -> str | None:
    if not options.notify:
        return None
    if fetch.email is None:
        raise plait.Permanent(f"customer {fetch.customer} has no email address", code="no_email")
    return f"receipt {charge.charge_id} sent to {fetch.email}"


@wf.step(after=["reserve"], defaults={"email": None})
def finish(fetch: Order, charge: Receipt, email: str | None) -> dict[str, object]:
    return {
        "order_id": fetch.id,
        "status": "confirmed",
        "charged_cents": charge.amount_cents,
        "charge_attempts": charge.attempts,
        "notified": email is not None,
    }


if __name__ == "__main__":  # python examples/orders.py: the same, from Python
    with plait.Engine("memory://") as engine:
        run = engine.start(wf, {"order_id": 42})
        engine.run_worker(until=run)
        print(run.result(timeout=30))
