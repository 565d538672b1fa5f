"""Workers: serving workflows in this process, and the worker registry seen from outside (the
live workers, and who can run what)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from .._errors import InputError, WorkflowNotFound
from .._portal import result
from .._runtime import Runtime
from ..core.topology import Topology, WorkerInfo, topology
from ..worker.registry import read_workers
from ..worker.worker import Worker
from ..workflow.definition import Workflow
from ..workflow.options import wait_limit
from .schedules import Scheduler


async def worker_for(rt: Runtime, workflows: Sequence[Workflow] | None, **options: Any) -> Worker:
    """A worker of the given workflows (registered first), else of every workflow registered
    in this process; it runs this process's share of the elected scheduler."""
    for wf in workflows or ():
        await rt.register(wf)
    await rt.ready()
    served = list(workflows) if workflows else rt.workflows.all()
    return Worker(
        rt, served, scheduler=lambda holder: Scheduler(rt, holder, ttl=rt.lease), **options
    )


async def serve(
    rt: Runtime,
    *,
    until: set[str] | None,
    timeout: float | None,
    workflows: Sequence[Workflow] | None,
    handle_signals: bool,
    **options: Any,
) -> None:
    wait_limit("run_worker", "timeout", timeout)
    worker = await worker_for(rt, workflows, **options)
    await worker.run(until=until, timeout=timeout, handle_signals=handle_signals)


def serve_blocking(
    rt: Runtime,
    *,
    until: set[str] | None,
    timeout: float | None,
    workflows: Sequence[Workflow] | None,
    **options: Any,
) -> None:
    """Run a worker on the portal's loop; SIGTERM / Ctrl-C in the main thread stop it."""
    wait_limit("run_worker", "timeout", timeout)
    portal = rt.portal
    worker = portal.call(worker_for(rt, workflows, **options))
    in_main = threading.current_thread() is threading.main_thread()
    previous = None
    if in_main:  # before the worker claims anything: a SIGTERM from then on stops it
        previous = signal.signal(signal.SIGTERM, lambda *_: portal.call_soon(worker.stop))
    future = portal.submit(worker.run(until=until, timeout=timeout, handle_signals=False))
    try:
        while True:
            try:
                result(future)  # in slices: the handler runs even if another thread got it
                return
            except KeyboardInterrupt:
                portal.call_soon(worker.stop)  # graceful; a second Ctrl-C waits again
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def stop_workers(rt: Runtime) -> None:
    for worker in list(rt.workers):
        worker.stop_threadsafe()


async def workers(rt: Runtime, include_dead: bool) -> list[WorkerInfo]:
    if not isinstance(include_dead, bool):
        raise InputError(f"include_dead must be True or False, got {include_dead!r}")
    store = await rt.ready()
    return await read_workers(store, rt.clock.time(), include_dead=include_dead)


async def topology_of(rt: Runtime, workflow: Workflow | str, fingerprint: str | None) -> Topology:
    store = await rt.ready()
    if isinstance(workflow, Workflow):
        plan = workflow.plan()
    elif isinstance(workflow, str):
        found = await store.get_workflow(workflow, fingerprint)
        if found is None:
            version = "" if fingerprint is None else f" with fingerprint {fingerprint!r}"
            raise WorkflowNotFound(
                f"topology: no workflow {workflow!r}{version} is registered in {rt.url}; "
                "see plait workflows"
            )
        plan = found
    else:
        raise WorkflowNotFound(f"expected a plait.Workflow or a workflow name, got {workflow!r}")
    return topology(plan, await read_workers(store, rt.clock.time()))


def run_ids(until: Iterable[Any] | Any) -> set[str] | None:
    """The run ids `until=` names: a handle, an id, or several (handles have an `id`)."""
    if until is None:
        return None
    if isinstance(until, str) or hasattr(until, "id"):
        until = [until]
    return {u if isinstance(u, str) else u.id for u in until}
