"""Flow control: configure the limits of a queue, read them (the policy: `core.claiming`).

A queue's configuration is stored, so every worker sharing the store obeys it from its next
claim on.
"""

from __future__ import annotations

from .._errors import ConfigError
from .._runtime import Runtime
from ..core.queues import check_limit, check_queue, check_rate
from ..core.rate import Rate
from .views import Queue


async def configure_queue(
    rt: Runtime, name: str, concurrency: int | None, rate: Rate | None
) -> Queue:
    where = f"queue {name!r}" if isinstance(name, str) else "configure_queue"
    check_queue("configure_queue", name, error=ConfigError)
    limit = check_limit(where, "concurrency", concurrency, error=ConfigError)
    checked = check_rate(where, rate)
    store = await rt.ready()
    queue = Queue.of(await store.configure_queue(name, limit, checked, rt.clock.time()))
    rt.work_ready.fire()  # raised limits: workers held back here look again
    return queue


async def queues(rt: Runtime) -> list[Queue]:
    store = await rt.ready()
    return [Queue.of(q) for q in await store.list_queues()]
