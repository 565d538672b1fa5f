"""Workflow versions (issue 17): the versions registered, each with its code digests, its runs in
flight and the live workers that serve it; what changed between two versions; and which version
a fork of a run uses (its own while a live worker serves it, else the newest one served)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

from .._errors import InputError, WorkflowNotFound
from .._runtime import Runtime
from ..core.rows import RunRow, RunStatus, WorkflowPlan
from ..core.versions import PlanDiff, diff_plans
from ..stores import Store
from ..worker.registry import read_workers
from ..workflow.definition import Workflow
from .views import WorkflowInfo

IN_FLIGHT = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSING, RunStatus.PAUSED)
PAGE = 1000


async def in_flight(store: Store, workflow: str | None) -> list[RunRow]:
    """The runs not yet ended (of one workflow, or of all), newest first."""
    found: list[RunRow] = []
    for status in IN_FLIGHT:
        before: tuple[float, str] | None = None
        while True:
            page = await store.list_runs(
                workflow=workflow, status=status, limit=PAGE, before=before, excerpt=16
            )
            found.extend(page)
            if len(page) < PAGE:
                break
            before = (page[-1].created_at, page[-1].id)
    return found


async def served_fingerprints(store: Store) -> dict[str, list[str]]:
    """{fingerprint: ids of the live workers that serve it}."""
    served: dict[str, list[str]] = {}
    for worker in await read_workers(store, time.time(), include_dead=False):
        for wf in worker.workflows:
            served.setdefault(wf.fingerprint, []).append(worker.id)
    return served


async def workflows(rt: Runtime) -> list[WorkflowInfo]:
    store = await rt.ready()
    plans = await store.list_workflows()
    served = await served_fingerprints(store)
    runs = Counter(r.fingerprint for r in await in_flight(store, None)) if plans else Counter()
    return [
        WorkflowInfo.from_plan(
            p, runs_in_flight=runs[p.fingerprint], workers=tuple(served.get(p.fingerprint, ()))
        )
        for p in plans
    ]


def _choose(plans: Iterable[WorkflowPlan], name: str, version: str) -> WorkflowPlan:
    """A version of `name` named by its version string or its fingerprint (the newest
    registered of that version string)."""
    of_name = [p for p in plans if p.name == name]
    if not of_name:
        raise WorkflowNotFound(f"no workflow {name!r} is registered in this store")
    by_fp = [p for p in of_name if p.fingerprint == version]
    found = by_fp or [p for p in of_name if p.version == version]
    if not found:
        known = ", ".join(f"{p.version} ({p.fingerprint})" for p in of_name)
        raise InputError(f"workflow {name!r} has no version {version!r}; its versions: {known}")
    return found[-1]


async def diff(rt: Runtime, name: str, a: str, b: str) -> PlanDiff:
    for what, value in (("name", name), ("version a", a), ("version b", b)):
        if not isinstance(value, str):
            raise InputError(f"{what} must be a string, got {type(value).__name__}")
    store = await rt.ready()
    plans = await store.list_workflows()  # in registration order
    return diff_plans(_choose(plans, name, a), _choose(plans, name, b))


async def version_for_fork(
    rt: Runtime, run: RunRow, fingerprint: str | None
) -> tuple[WorkflowPlan, Workflow | None]:
    """The version a fork of `run` runs on, and the Workflow of this process that has it (if
    any): the one of `fingerprint` if given; else the run's own while a live worker (or this
    process) serves it; else the newest version served; else the newest registered (which
    no worker serves yet: the fork waits for one)."""
    store = await rt.ready()
    local = {fp: wf for wf in rt.workflows.all() for fp in wf.fingerprints}
    if fingerprint is not None:
        if not isinstance(fingerprint, str):
            raise InputError(f"fingerprint must be a string, got {type(fingerprint).__name__}")
        chosen = await store.get_workflow(run.workflow, fingerprint)
        if chosen is None:
            known = [p for p in await store.list_workflows() if p.name == run.workflow]
            listed = ", ".join(f"{p.version} ({p.fingerprint})" for p in known) or "none"
            raise WorkflowNotFound(
                f"workflow {run.workflow!r} has no version of fingerprint {fingerprint!r}; "
                f"its versions: {listed}"
            )
        return chosen, local.get(chosen.fingerprint)
    served = set(await served_fingerprints(store)) | set(local)
    if run.fingerprint in served:
        own = await store.get_workflow(run.workflow, run.fingerprint)
        if own is not None:
            return own, local.get(own.fingerprint)
    plans = [p for p in await store.list_workflows() if p.name == run.workflow]
    newest_served = [p for p in plans if p.fingerprint in served]
    if not plans:
        raise WorkflowNotFound(f"no version of workflow {run.workflow!r} is registered")
    chosen = (newest_served or plans)[-1]
    return chosen, local.get(chosen.fingerprint)
