"""Engine methods over the worker registry (see _registry.py): the workers, and who can run what.

`WorkerMethods` is a mixin of `Engine`; each method is async and its blocking twin is derived by
`_portal.blocking`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .._errors import InputError, WorkflowNotFound
from .._portal import blocking
from ..worker.registry import Topology, WorkerInfo, read_workers, topology

if TYPE_CHECKING:
    from .._portal import Portal
    from ..stores import Store
    from ..workflow.definition import Workflow


class WorkerMethods:
    """workers and topology, for `Engine` (which provides the rest)."""

    if TYPE_CHECKING:
        _portal: Portal
        url: str

        async def _ready(self) -> Store: ...

    async def workers_async(self, *, include_dead: bool = False) -> list[WorkerInfo]:
        """The live workers sharing this store, by id (any process, any host). With
        `include_dead`, also the workers that died (their registration expired without a
        graceful stop) and are not yet forgotten (an hour later)."""
        if not isinstance(include_dead, bool):
            raise InputError(f"include_dead must be True or False, got {include_dead!r}")
        store = await self._ready()
        return await read_workers(store, time.time(), include_dead=include_dead)

    workers = blocking(workers_async)

    async def topology_async(
        self, workflow: Workflow | str, *, fingerprint: str | None = None
    ) -> Topology:
        """Which live workers can run which steps of a workflow version: for each step, the
        workers that serve its fingerprint, its queue and its target, or why none can.
        `workflow`: a Workflow (that version), or a name (its latest registered version, or the
        version of `fingerprint`)."""
        from ..workflow.definition import Workflow

        store = await self._ready()
        if isinstance(workflow, Workflow):
            plan = workflow.plan()
        elif isinstance(workflow, str):
            found = await store.get_workflow(workflow, fingerprint)
            if found is None:
                version = "" if fingerprint is None else f" with fingerprint {fingerprint!r}"
                raise WorkflowNotFound(
                    f"topology: no workflow {workflow!r}{version} is registered in {self.url}; "
                    "see plait workflows"
                )
            plan = found
        else:
            raise WorkflowNotFound(
                f"expected a plait.Workflow or a workflow name, got {workflow!r}"
            )
        return topology(plan, await read_workers(store, time.time()))

    topology = blocking(topology_async)
