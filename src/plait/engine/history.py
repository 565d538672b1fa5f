"""Engine methods that look back at recorded runs: fork, diff and replay (DESIGN §3.3).

`ForkMethods` is a mixin of `Engine`; like the rest of the Engine, each method is async and its
blocking twin is derived by `_portal.blocking`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from .. import _codec
from .._errors import InputError, RunConflict, RunStateError, WorkflowNotFound
from .._portal import blocking
from ..core.diff import diff_runs
from ..core.fork import fork_run, plan_fork
from ..core.queues import flow_of_run
from ..workflow.definition import Workflow
from .operator import who
from .replay import Replay, replay_step

if TYPE_CHECKING:
    from .._portal import Broadcast, Portal
    from ..core.rows import RunRow, WorkflowPlan
    from ..stores import Store
    from .engine import Engine, RunHandle

log = logging.getLogger(__name__)


class ForkMethods:
    """Fork, diff and replay, for `Engine` (which provides what is declared here)."""

    if TYPE_CHECKING:
        url: str
        store: Store
        _portal: Portal
        _latest: dict[str, Workflow]

        work_ready: Broadcast

        async def _run_row(self, run_id: str) -> RunRow: ...

        async def _plan_and_input(
            self, workflow: Workflow | str, value: Any
        ) -> tuple[WorkflowPlan, Any]: ...

    # -- fork -----------------------------------------------------------------------------------

    async def fork_async(
        self,
        run_id: str,
        from_step: str,
        input: Any = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        new_run_id: str | None = None,
        by: str | None = None,
    ) -> RunHandle:
        """Start a new run that reuses what run `run_id` recorded, re-running `from_step` and
        everything downstream of it.

        Every other step's recorded output is reused, not only those of the direct dependencies
        of `from_step`: such a step is `done` from the start, with `reused_from` naming the run
        that computed it. A step that did not end `done` in the parent cannot be reused and runs
        again, and so does everything downstream of it. The fork runs on the newest version of
        the workflow: the one last registered with this Engine, else the newest in the store.

        `input`: the new run input, validated like `start`'s (None keeps the parent's input).
        `overrides`: {step: output} replacing the recorded output of reused steps.
        `new_run_id`: the fork's id (forking again with the same id, parent and step returns
        that fork). `by`: who forks, for the log (default user@host).

        Raises RunNotFound; InputError (nothing written) when `from_step` is not in the
        workflow, the newest version lacks a step whose output would be reused, an override
        names a step that is not reused or is not JSON, or the input does not fit; RunConflict
        when `new_run_id` is taken by another run."""
        from .engine import RUN_ID_RE, RunHandle, _new_run_id

        if not isinstance(from_step, str):
            raise InputError(f"from_step must be a step name, got {type(from_step).__name__}")
        if overrides is not None and not isinstance(overrides, Mapping):
            raise InputError(
                f"overrides must map step names to outputs, got {type(overrides).__name__}"
            )
        if new_run_id is not None and (
            not isinstance(new_run_id, str) or not RUN_ID_RE.match(new_run_id)
        ):
            raise InputError(
                f"invalid run id {new_run_id!r}: use 1-200 letters, digits or any of _ . : @ -"
            )
        actor = who(by)
        parent = await self._run_row(run_id)
        if input is None:
            try:
                plan, value = await self._plan_and_input(
                    parent.workflow, _codec.loads(parent.input)
                )
            except InputError as exc:
                raise InputError(
                    f"cannot fork run {run_id!r} with its own input: {exc}; pass input="
                ) from None
        else:
            plan, value = await self._plan_and_input(parent.workflow, input)
        try:
            input_json = _codec.dumps(value)
        except _codec.EncodeError as exc:
            raise InputError(f"run input of {plan.name!r} is not JSON: {exc}") from None
        store = self.store
        parent_plan = await store.get_workflow(parent.workflow, parent.fingerprint)
        fork = plan_fork(plan, run_id, await store.get_steps(run_id), parent_plan, from_step)
        encoded: dict[str, bytes] = {}
        for name, output in (overrides or {}).items():
            if not isinstance(name, str):
                raise InputError(f"overrides must be keyed by step name, got {name!r}")
            try:
                encoded[name] = _codec.dumps(output)
            except _codec.EncodeError as exc:
                raise InputError(f"override of step {name!r} is not JSON: {exc}") from None
        fork_id = new_run_id or _new_run_id()
        run, steps, events = fork_run(
            plan,
            parent,
            fork,
            run_id=fork_id,
            input_json=input_json,
            overrides=encoded,
            by=actor,
            now=time.time(),
        )
        flow_of_run(self._latest.get(plan.name), plan, steps, value, 0)  # concurrency keys
        stored, created = await store.create_run(run, steps, events)
        if not created and (stored.parent_run, stored.forked_from) != (run_id, from_step):
            raise RunConflict(
                f"run id {fork_id!r} is already used by another run; choose another new_run_id"
            )
        if created:
            log.debug(
                "run forked",
                extra={"run_id": fork_id, "parent_run": run_id, "from_step": from_step},
            )
            self.work_ready.fire()
        return RunHandle(cast("Engine", self), fork_id)

    fork = blocking(fork_async)

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

    async def replay_async(
        self, run_id: str, step: str, *, workflow: Workflow | None = None
    ) -> Replay:
        """Run the current code of one step in this process with the inputs the run recorded
        (its input, its dependencies' outputs), without writing anything to the store; return
        the new result next to the recorded one and their differences. The code is `workflow`
        if given (it is not registered: nothing is written), else the newest version of the
        run's workflow registered with this Engine (WorkflowNotFound if none).
        A handler that raises is reported in the result (`status` "failed", `error`).

        Raises RunNotFound; InputError for a step that the run or the current code lacks, or
        whose current code needs a step the run does not have; RunStateError while one of its
        dependencies has not ended."""
        if not isinstance(step, str):
            raise InputError(f"step must be a step name, got {type(step).__name__}")
        row = await self._run_row(run_id)
        if workflow is not None:
            if not isinstance(workflow, Workflow):
                raise InputError(
                    f"workflow must be a plait.Workflow, got {type(workflow).__name__}"
                )
            if workflow.name != row.workflow:
                raise InputError(
                    f"cannot replay run {run_id!r} with workflow {workflow.name!r}: "
                    f"the run is of workflow {row.workflow!r}"
                )
            workflow.plan()  # raises DefinitionError
        else:
            workflow = self._latest.get(row.workflow)
        if workflow is None:
            raise WorkflowNotFound(
                f"cannot replay run {run_id!r}: no version of workflow {row.workflow!r} is "
                "registered in this process; replay runs the code you have now, so register it "
                "first (engine.register(wf)) or pass it (replay(..., workflow=wf))"
            )
        rows = {r.name: r for r in await self.store.get_steps(run_id)}
        recorded = rows.get(step)
        if recorded is not None and recorded.task is not None:  # a spawned step: its task
            task = workflow.task_of(recorded.task)
            if task is None:
                raise InputError(
                    f"cannot replay step {step!r}: it runs task {recorded.task!r}, which workflow "
                    f"{workflow.name!r} v{workflow.version} ({workflow.fingerprint}) does not have"
                )
            definition = task
        elif step not in workflow:
            raise InputError(
                f"cannot replay step {step!r}: workflow {workflow.name!r} "
                f"v{workflow.version} ({workflow.fingerprint}) has no such step; "
                f"its steps: {', '.join(s.name for s in workflow.steps)}"
            )
        elif recorded is None:
            raise InputError(f"cannot replay step {step!r}: run {run_id!r} has no such step")
        else:
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
