"""Engine methods for steps that wait on the outside world: approvals and signals (DESIGN §3.3).

`GateMethods` is a mixin of `Engine`; each method is async and its blocking twin is derived by
`_portal.blocking`. The decisions are transitions of `gates.py`, applied in one store
transaction each; a refused one raises RunStateError and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _codec
from .._errors import InputError
from .._portal import blocking
from ..core import gates
from .operator import who
from .views import Step, Waiting

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._portal import Portal
    from ..core.rows import CommitResult, RunRow
    from ..core.txn import Transition
    from ..stores import Store


class GateMethods:
    """Approve, reject, signal and list what waits, for `Engine` (which provides the rest)."""

    if TYPE_CHECKING:
        _portal: Portal

        async def _ready(self) -> Store: ...
        async def _run_row(self, run_id: str) -> RunRow: ...
        async def _act(
            self, action: Callable[..., Transition], run_id: str, **options: Any
        ) -> CommitResult: ...
        def _committed(self, result: CommitResult) -> None: ...
        async def steps_async(self, run_id: str) -> list[Step]: ...

    async def approve_async(
        self, run_id: str, step: str, *, by: str | None = None, note: str | None = None
    ) -> Step:
        """Let a waiting approval gate run: it becomes ready (after its delay, if any).
        RunStateError if the step is not waiting (already decided, not reached yet, or its run
        was cancelled) or is not an approval gate."""

        _check_text("note", note)
        await self._decide(gates.approve, run_id, step, by=who(by), note=note)
        return await self._step(run_id, step)

    approve = blocking(approve_async)

    async def reject_async(
        self, run_id: str, step: str, *, reason: str | None = None, by: str | None = None
    ) -> Step:
        """Fail a waiting approval gate with code `rejected`; its dependents are skipped as for
        any failure (unless they have defaults), and `retry` would ask for approval again."""

        _check_text("reason", reason)
        await self._decide(gates.reject, run_id, step, by=who(by), reason=reason)
        return await self._step(run_id, step)

    reject = blocking(reject_async)

    async def signal_async(
        self, run_id: str, name: str, payload: Any = None, *, by: str | None = None
    ) -> bool:
        """Deliver `payload` (JSON) to the signal step `name` of a run: the step is done with it
        as soon as it is reached (at once if it is waiting). Returns True if this delivery
        counts, False if an earlier one already did (it is logged as ignored)."""

        try:
            data = _codec.dumps(payload)
        except _codec.EncodeError as exc:
            raise InputError(f"signal payload for {name!r} is not JSON: {exc}") from None
        result = await self._decide(gates.signal, run_id, name, payload=data, by=who(by))
        return bool(result.accepted and result.accepted[0])

    signal = blocking(signal_async)

    async def list_waiting_async(self, *, limit: int = 100) -> list[Waiting]:
        """Steps waiting for a decision or a signal, across runs, the longest waiting first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InputError(f"limit must be a positive integer, got {limit!r}")
        store = await self._ready()
        rows = await store.list_waiting(limit)
        runs = {r.id: r for r in await store.get_runs({row.run_id for row in rows})}
        return [Waiting.from_row(row, runs[row.run_id].workflow) for row in rows]

    list_waiting = blocking(list_waiting_async)

    async def _decide(
        self, action: Callable[..., Transition], run_id: str, step: str, **options: Any
    ) -> CommitResult:
        if not isinstance(step, str):
            raise InputError(f"step must be a step name, got {type(step).__name__}")
        await self._run_row(run_id)  # RunNotFound, with the usual message
        result = await self._act(action, run_id, name=step, **options)
        self._committed(result)
        return result

    async def _step(self, run_id: str, name: str) -> Step:
        return next(s for s in await self.steps_async(run_id) if s.name == name)


def _check_text(what: str, value: object) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > 2000):
        raise InputError(f"{what} must be a string of at most 2000 characters, got {value!r:.80}")
