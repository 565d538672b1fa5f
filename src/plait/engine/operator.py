"""Engine methods of the operator's actions on a run: cancel, pause, resume, retry, each a
transition of `_actions.py` applied in one store transaction.

`ActionMethods` is a mixin of `Engine`; each method is async and its blocking twin is derived by
`_portal.blocking`.
"""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import InputError, RunStateError
from .._portal import blocking
from ..core import actions
from .views import Run

if TYPE_CHECKING:
    from .._portal import Portal
    from ..core.rows import CommitResult, RunRow
    from ..core.txn import Transition
    from ..stores import Store


class ActionMethods:
    """Cancel, pause, resume and retry, for `Engine` (which provides the rest)."""

    if TYPE_CHECKING:
        _portal: Portal

        async def _ready(self) -> Store: ...
        async def _run_row(self, run_id: str) -> RunRow: ...
        def _committed(self, result: CommitResult) -> None: ...

    async def cancel_async(
        self, run_id: str, reason: str | None = None, *, by: str | None = None
    ) -> Run:
        """Cancel a run (terminal): its waiting steps end `cancelled` at once, its running steps
        are interrupted (async handlers are cancelled; sync ones see `ctx.cancelled`) and what
        they report schedules nothing. Cancelling a cancelled run changes nothing.
        Raises RunNotFound, or RunStateError for a run that has completed or failed."""
        if reason is not None and not isinstance(reason, str):
            raise InputError(f"reason must be a string, got {type(reason).__name__}")
        await self._run_row(run_id)  # RunNotFound, with the usual message
        actor = who(by)
        result = await self._act(actions.cancel, run_id, reason=reason, by=actor)
        self._committed(result)
        return Run.from_row(await self._run_row(run_id))

    cancel = blocking(cancel_async)

    async def pause_async(self, run_id: str, *, by: str | None = None) -> Run:
        """Dispatch nothing new of this run; its steps in flight finish (retries included), then
        it is `paused`. Pausing a pausing or paused run changes nothing; RunStateError for a run
        that has ended."""
        await self._run_row(run_id)
        await self._act(actions.pause, run_id, by=who(by))
        return Run.from_row(await self._run_row(run_id))

    pause = blocking(pause_async)

    async def resume_async(self, run_id: str, *, by: str | None = None) -> Run:
        """Dispatch a paused (or pausing) run again, with what became ready meanwhile.
        Resuming a running run changes nothing; RunStateError for a run that has ended."""
        await self._run_row(run_id)
        result = await self._act(actions.resume, run_id, by=who(by))
        self._committed(result)
        return Run.from_row(await self._run_row(run_id))

    resume = blocking(resume_async)

    async def retry_async(self, run_id: str, step: str, *, by: str | None = None) -> Run:
        """Run a failed step again with a fresh attempt budget; the dependents its failure
        skipped wait for it again, and the run runs again. RunStateError for a step that is not
        failed or a cancelled run (and an unknown step)."""
        if not isinstance(step, str):
            raise InputError(f"step must be a step name, got {type(step).__name__}")
        await self._run_row(run_id)
        result = await self._act(actions.retry, run_id, step_name=step, by=who(by))
        self._committed(result)
        return Run.from_row(await self._run_row(run_id))

    retry = blocking(retry_async)

    async def _act(self, action: Callable[..., Transition], run_id: str, **options: Any) -> Any:
        """Apply an operator action in one store transaction; its refusal is RunStateError."""
        store = await self._ready()
        result = await store.apply(lambda txn: action(txn, run_id, **options), time.time())
        if result.refusal is not None:
            raise RunStateError(result.refusal)
        return result


def who(by: str | None) -> str:
    """Who acts, as given (checked), or this process's user@host."""
    if by is None:
        return operator()
    if not isinstance(by, str) or not by.strip() or len(by) > 200:
        raise InputError(f"by must be a non-empty string of at most 200 characters, got {by!r}")
    return by


def operator() -> str:
    """Who acts, for the run's log: user@host of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
