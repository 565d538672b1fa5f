"""What a running step can see and do: `ctx: plait.StepContext`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any

logger = logging.getLogger("plait.step")


class StepCancelled(Exception):
    """Raised by `ctx.check_cancelled()` when the step's run was cancelled or its lease lost."""


class StepContext:
    """Handed to a step that declares a parameter annotated `plait.StepContext` (or named `ctx`)."""

    __slots__ = ("_cancel", "attempt", "input", "iteration", "log", "run_id", "step", "workflow")

    def __init__(
        self,
        *,
        run_id: str,
        step: str,
        workflow: str,
        attempt: int,
        run_input: Mapping[str, Any],
        iteration: int = 0,
    ) -> None:
        self.run_id = run_id
        self.step = step
        self.workflow = workflow
        self.attempt = attempt  # 1 for the first attempt
        self.iteration = iteration  # 0 on the first pass; a plait.Goto back through it adds 1
        self.input = run_input
        self._cancel = threading.Event()
        self.log = _StepLogger(logger, {"run_id": run_id, "step": step, "attempt": attempt})

    @property
    def cancelled(self) -> bool:
        """True once the worker asks this step to stop (timeout, lease lost, shutdown, cancel)."""
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise `StepCancelled` if the step should stop; call it between units of work."""
        if self._cancel.is_set():
            raise StepCancelled(f"step {self.step!r} of run {self.run_id!r} was asked to stop")

    def _request_cancel(self) -> None:
        self._cancel.set()

    def __repr__(self) -> str:
        return f"StepContext(run_id={self.run_id!r}, step={self.step!r}, attempt={self.attempt})"


class _StepLogger(logging.LoggerAdapter[logging.Logger]):
    """Stamps every record with the run id and step, as structured `extra` fields."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs
