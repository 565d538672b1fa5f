"""Engine methods for flow control: configure the limits of a queue, read them (see _queues.py).

`QueueMethods` is a mixin of `Engine`; each method is async and its blocking twin is derived by
`_portal.blocking`. A queue's configuration is stored, so every worker sharing the store obeys
it from its next claim on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import ConfigError
from .._portal import blocking
from ..core.queues import QueueConfig, check_limit, check_queue, check_rate
from ..core.rate import Rate

if TYPE_CHECKING:
    from .._portal import Broadcast, Portal
    from ..stores import Store


@dataclass(frozen=True, slots=True)
class Queue:
    """A configured queue as `engine.queues()` shows it: its limits, and the tokens its rate
    limit had when last counted (None without a rate limit)."""

    name: str
    concurrency: int | None
    rate: Rate | None
    tokens: float | None

    @classmethod
    def of(cls, q: QueueConfig) -> Queue:
        return cls(q.name, q.concurrency, q.rate, None if q.bucket is None else q.bucket.tokens)


class QueueMethods:
    """configure_queue and queues, for `Engine` (which provides the rest)."""

    if TYPE_CHECKING:
        _portal: Portal
        work_ready: Broadcast

        async def _ready(self) -> Store: ...

    async def configure_queue_async(
        self, name: str, *, concurrency: int | None = None, rate: Rate | None = None
    ) -> Queue:
        """Store the limits of queue `name` (steps choose it with `@wf.step(queue=name)`):
        `concurrency`, the most of its steps running at once across every worker; `rate`, a
        `plait.Rate` of starts. None lifts a limit. Takes effect at every worker's next claim;
        reconfiguring keeps the tokens the bucket holds (capped to the new burst)."""
        where = f"queue {name!r}" if isinstance(name, str) else "configure_queue"
        check_queue("configure_queue", name, error=ConfigError)
        limit = check_limit(where, "concurrency", concurrency, error=ConfigError)
        checked = check_rate(where, rate)
        store = await self._ready()
        queue = Queue.of(await store.configure_queue(name, limit, checked, time.time()))
        self.work_ready.fire()  # raised limits: workers held back here look again
        return queue

    configure_queue = blocking(configure_queue_async)

    async def queues_async(self) -> list[Queue]:
        """The configured queues, by name."""
        store = await self._ready()
        return [Queue.of(q) for q in await store.list_queues()]

    queues = blocking(queues_async)
