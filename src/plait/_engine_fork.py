"""Engine methods that look back at recorded runs: fork, diff and replay (DESIGN §3.3).

`ForkMethods` is a mixin of `Engine`; like the rest of the Engine, each method is async and its
blocking twin is derived by `_portal.blocking`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from ._diff import diff_runs
from ._errors import InputError, RunStateError, WorkflowNotFound
from ._portal import blocking
from ._replay import Replay, replay_step

if TYPE_CHECKING:
    from ._definition import Workflow
    from ._engine import Engine
    from ._portal import Portal
    from ._records import RunRow
    from .stores import Store

log = logging.getLogger(__name__)


class ForkMethods:
    """Fork, diff and replay, for `Engine` (which provides what is declared here)."""

    if TYPE_CHECKING:
        url: str
        store: Store
        _portal: Portal
        _latest: dict[str, Workflow]

        async def _run_row(self, run_id: str) -> RunRow: ...

    # -- diff -----------------------------------------------------------------------------------

    async def diff_async(self, run_a: str, run_b: str) -> dict[str, dict[str, Any]]:
        """Compare two runs step by step: {step: {"status": ..., "diff": ...}}.

        "status" is "same", "changed", "only_a" or "only_b". For "changed", "diff" lists where
        the step's records differ, as JSON Pointer entries over its status, output and error:
        {"path": "/output/items/0/price", "op": "changed", "a": 1, "b": 2}, or "op": "added"
        (only "b") / "removed" (only "a"). "diff" is [] for "same" and None for a step that only
        one run has. Raises RunNotFound."""
        for value in (run_a, run_b):
            if not isinstance(value, str):
                raise InputError(f"run ids must be strings, got {type(value).__name__}")
        await self._run_row(run_a)
        await self._run_row(run_b)
        steps_a = await self.store.get_steps(run_a)
        steps_b = await self.store.get_steps(run_b)
        return diff_runs(steps_a, steps_b)

    diff = blocking(diff_async)

    # -- replay ---------------------------------------------------------------------------------

    async def replay_async(self, run_id: str, step: str) -> Replay:
        """Run the current code of one step in this process with the inputs the run recorded
        (its input, its dependencies' outputs), without writing anything to the store; return
        the new result next to the recorded one and their differences. The code is the newest
        version of the run's workflow registered with this Engine (WorkflowNotFound if none).
        A handler that raises is reported in the result (`status` "failed", `error`).

        Raises RunNotFound; InputError for a step that the run or the current code lacks, or
        whose current code needs a step the run does not have; RunStateError while one of its
        dependencies has not ended."""
        if not isinstance(step, str):
            raise InputError(f"step must be a step name, got {type(step).__name__}")
        row = await self._run_row(run_id)
        workflow = self._latest.get(row.workflow)
        if workflow is None:
            raise WorkflowNotFound(
                f"cannot replay run {run_id!r}: no version of workflow {row.workflow!r} is "
                "registered in this process; replay runs the code you have now, so register it "
                "first (engine.register(wf), or plait replay --app FILE.py)"
            )
        if step not in workflow:
            raise InputError(
                f"cannot replay step {step!r}: workflow {workflow.name!r} "
                f"v{workflow.version} ({workflow.fingerprint}) has no such step; "
                f"its steps: {', '.join(s.name for s in workflow.steps)}"
            )
        rows = {r.name: r for r in await self.store.get_steps(run_id)}
        recorded = rows.get(step)
        if recorded is None:
            raise InputError(f"cannot replay step {step!r}: run {run_id!r} has no such step")
        definition = workflow[step]
        deps = definition.data_deps
        absent = [d for d in deps if d not in rows]
        if absent:
            raise InputError(
                f"cannot replay step {step!r} of run {run_id!r}: its current code needs the "
                f"output of {_names(absent)}, which the run does not have"
            )
        unended = [d for d in deps if not rows[d].status.terminal]
        if unended:
            states = ", ".join(f"{d!r} ({rows[d].status.value})" for d in unended)
            raise RunStateError(
                f"cannot replay step {step!r} of run {run_id!r}: its dependencies have not "
                f"all ended: {states}"
            )
        inputs = (await self.store.step_inputs({run_id: deps}))[run_id]
        log.debug("replaying step", extra={"run_id": run_id, "step": step})
        return await replay_step(
            cast("Engine", self), workflow, definition, recorded, inputs, row.fingerprint
        )

    replay = blocking(replay_async)


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)
