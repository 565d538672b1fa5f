"""Sub-workflow calls, the worker's side: start the child run a step's `ctx.call` asks for
(once: its id is deterministic, and a start of an id that exists is that run) and say where it
is. The step's wait and wake-up are the store's (`core.calls`).

The child run is created before the step's outcome (`Outcome.call`) is committed: a worker
that dies in between leaves a child and a step whose lease expires; the step runs again, its
ctx.call finds the same child, and no second one is started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .. import _codec
from .._errors import InputError, RunConflict
from .._runtime import Runtime
from ..core.cascade import new_run
from ..core.policy import of_events, police, started_with
from ..core.queues import flow_of_run
from ..core.rows import RunRow, RunStatus, StepStatus
from ..workflow.context import CallEnd
from ..workflow.definition import Workflow

log = logging.getLogger(__name__)


class StepCalls:
    """The `Caller` of one claimed step (`StepContext._caller`): `serve` is told of each
    workflow it calls, so that this worker runs the child's steps too."""

    def __init__(
        self,
        rt: Runtime,
        run_id: str,
        step: str,
        loop: asyncio.AbstractEventLoop,
        serve: Callable[[Workflow], None],
    ) -> None:
        self.rt = rt
        self.run_id = run_id
        self.step = step
        self.loop = loop
        self._serve = serve

    async def call(self, workflow: Workflow, child_id: str, input: Any) -> CallEnd:
        if not isinstance(workflow, Workflow):
            raise TypeError(
                f"ctx.call: expected a plait.Workflow to call, got {type(workflow).__name__}"
            )
        self._serve(workflow)
        store = await self.rt.ready()
        row = await store.get_run(child_id)
        if row is None:
            row = await self._start(workflow, child_id, input)
        if row.workflow != workflow.name:
            raise RunConflict.taken(child_id, row.workflow, workflow.name)
        if (row.parent_run, row.called_by) != (self.run_id, self.step):
            raise RunConflict(
                f"run id {child_id!r} is taken by a run that step {self.step!r} of run "
                f"{self.run_id!r} did not call"
            )
        return await self._end_of(row)

    async def _start(self, workflow: Workflow, child_id: str, input: Any) -> RunRow:
        plan = await self.rt.register(workflow)
        try:
            value = workflow.validate_input({} if input is None else input)
            input_json = _codec.dumps(value)
        except _codec.EncodeError as exc:
            raise InputError(
                f"ctx.call: the input of {workflow.name!r} is not JSON: {exc}"
            ) from None
        # a run with its own approval policy gives it to the runs it calls (`core.policy`)
        store = await self.rt.ready()
        policy = of_events(await store.get_events(self.run_id, 0, 1))
        made_of = plan if policy is None else police(plan, policy, workflow.policy_subjects())
        run, steps, events = new_run(made_of, child_id, input_json, self.rt.clock.time())
        if policy is not None:
            events = started_with(events, policy)
        flow_of_run(workflow, plan, steps, value, 0)
        run.parent_run, run.called_by = self.run_id, self.step
        first = events[0]
        caller = {"parent_run": self.run_id, "called_by": self.step}
        events = [replace(first, payload={**first.payload, **caller}), *events[1:]]
        stored, created = await self.rt.starts.create_run(run, steps, events)
        if created:
            log.debug(
                "sub-workflow run started",
                extra={"run_id": child_id, "workflow": plan.name, "parent_run": self.run_id},
            )
            self.rt.work_ready.fire()
            if any(s.status is StepStatus.WAITING and s.available_at for s in steps):
                self.rt.timers_set.fire()
        return stored

    async def _end_of(self, row: RunRow) -> CallEnd:
        return await end_of(self.rt, row)


class RecordedCalls:
    """The `Caller` of a replayed step (`engine.replay`): its ctx.call reads the child runs its
    run called (the same ids), and starts none: a replay writes nothing."""

    def __init__(self, rt: Runtime, run_id: str, step: str, loop: asyncio.AbstractEventLoop):
        self.rt = rt
        self.run_id = run_id
        self.step = step
        self.loop = loop

    async def call(self, workflow: Workflow, child_id: str, input: Any) -> CallEnd:
        row = await (await self.rt.ready()).get_run(child_id)
        if row is None:
            raise RuntimeError(
                f"replay starts no run: step {self.step!r} of run {self.run_id!r} never called "
                f"workflow {getattr(workflow, 'name', workflow)!r} as run {child_id!r}"
            )
        return await end_of(self.rt, row)


async def end_of(rt: Runtime, row: RunRow) -> CallEnd:
    """Where a called run is: its output once completed; its error code (its first failed
    step's) and error once failed; "cancelled" once cancelled."""
    if row.status is RunStatus.COMPLETED:
        return CallEnd(row.status.value, _codec.loads(row.output or b"{}"))
    if row.status is RunStatus.FAILED:
        failed = [
            s
            for s in await rt.store.get_steps(row.id)
            if s.status is StepStatus.FAILED and s.error_code is not None
        ]
        failed.sort(key=lambda s: (s.finished_at or 0.0, s.idx))
        code = failed[0].error_code if failed else None
        return CallEnd(row.status.value, code=code, message=row.error)
    if row.status is RunStatus.CANCELLED:
        return CallEnd(row.status.value, code="cancelled", message=row.error)
    return CallEnd(row.status.value)
