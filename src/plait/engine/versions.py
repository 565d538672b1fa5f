"""Workflow versions (issue 17): the versions registered, each with its code digests, its runs in
flight and the live workers that serve it; what changed between two versions; and which version
a fork of a run uses (its own while a live worker serves it, else the newest one served)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .._errors import InputError, RunStateError, WorkflowNotFound
from .._runtime import Runtime
from ..core import identity
from ..core.policy import of_events, police
from ..core.queues import resolve_key
from ..core.rows import RunRow, RunStatus, WorkflowPlan
from ..core.upgrade import MOVED_MEANWHILE, Fit, fit, move
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


async def served_fingerprints(store: Store, now: float) -> dict[str, list[str]]:
    """{fingerprint: ids of the workers live at `now` that serve it}."""
    served: dict[str, list[str]] = {}
    for worker in await read_workers(store, now, include_dead=False):
        for wf in worker.workflows:
            served.setdefault(wf.fingerprint, []).append(worker.id)
    return served


async def workflows(rt: Runtime) -> list[WorkflowInfo]:
    store = await rt.ready()
    plans = await store.list_workflows()
    served = await served_fingerprints(store, rt.clock.time())
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
    served = set(await served_fingerprints(store, rt.clock.time())) | set(local)
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


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What `upgrade` did (or, with dry_run, would do) to one run: `status` is "upgraded",
    "would upgrade", "unchanged" (already on that version) or "refused" (`reason` says why);
    `added`, `dropped` and `changed` name the steps that moving it adds, drops, or changes
    (dependencies or options of steps not yet started)."""

    run_id: str
    status: str
    from_fingerprint: str
    to_fingerprint: str
    reason: str | None = None
    added: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "from_fingerprint": self.from_fingerprint,
            "to_fingerprint": self.to_fingerprint,
            "reason": self.reason,
            "added": list(self.added),
            "dropped": list(self.dropped),
            "changed": list(self.changed),
        }


async def upgrade(
    rt: Runtime,
    run_id: str | None,
    workflow: str | None,
    to: Workflow,
    dry_run: bool,
    by: str,
    labels: Mapping[str, str] | None = None,
) -> list[Upgrade]:
    if not isinstance(to, Workflow):
        raise InputError(f"to must be a plait.Workflow, got {type(to).__name__}")
    if not isinstance(dry_run, bool):
        raise InputError(f"dry_run must be True or False, got {dry_run!r}")
    if (run_id is None) == (workflow is None):
        raise InputError("upgrade takes a run id or workflow=NAME (every run in flight), not both")
    if workflow is not None and not isinstance(workflow, str):
        raise InputError(f"workflow must be a workflow name, got {type(workflow).__name__}")
    wanted = identity.check_labels("upgrade", labels)
    if wanted and workflow is None:
        raise InputError("upgrade takes labels with workflow=NAME (to select runs), not a run id")
    if workflow is not None and workflow != to.name:
        raise InputError(
            f"cannot upgrade runs of workflow {workflow!r} to the graph of workflow {to.name!r}"
        )
    store = await rt.ready()
    if run_id is not None:
        runs = [await rt.run_row(run_id)]
        if runs[0].workflow != to.name:
            raise InputError(
                f"cannot upgrade run {run_id!r} of workflow {runs[0].workflow!r} to the graph "
                f"of workflow {to.name!r}"
            )
    else:
        assert workflow is not None
        if await store.get_workflow(workflow) is None:
            raise WorkflowNotFound(f"no workflow {workflow!r} is registered in this store")
        found = [r for r in await in_flight(store, workflow) if identity.matches(r.labels, wanted)]
        runs = sorted(found, key=lambda r: (r.created_at, r.id))
    new = to.plan() if dry_run else await rt.register(to)
    if dry_run and to.fingerprint not in rt.workflows:
        await rt.check_version(store, new)  # refused as a registration would be
    done: list[Upgrade] = []
    for run in runs:
        done.append(await _upgrade_one(rt, store, run, to, new, dry_run, by))
    return done


MOVE_TRIES = 5  # a run a worker changes between the decision and the move: decided again


async def _upgrade_one(
    rt: Runtime, store: Store, run: RunRow, to: Workflow, new: WorkflowPlan, dry_run: bool,
    by: str,
) -> Upgrade:  # fmt: skip
    def report(status: str, found: Fit | None = None, reason: str | None = None) -> Upgrade:
        return Upgrade(
            run.id, status, run.fingerprint, new.fingerprint, reason,
            *((tuple(found.added), tuple(found.dropped), tuple(found.changed)) if found else ()),
        )  # fmt: skip

    if run.fingerprint == new.fingerprint:
        return report("unchanged")
    old = await store.get_workflow(run.workflow, run.fingerprint)
    # a run with its own approval policy keeps it on the new version: both plans are read
    # with it, as the run's rows were made (`core.policy`)
    policy = of_events(await store.get_events(run.id, 0, 1))
    if policy is not None:
        subjects = to.policy_subjects()
        new = police(new, policy, subjects)
        old = None if old is None else police(old, policy, subjects)
    first = run
    for _ in range(MOVE_TRIES):
        current = await store.get_run(first.id, excerpt=16) or first  # as it is now
        if current.fingerprint != first.fingerprint:  # another upgrade moved it meanwhile
            if current.fingerprint == new.fingerprint:
                return report("unchanged")
            return report("refused", None, f"run {run.id!r} {MOVED_MEANWHILE} to another version")
        run = current
        found = fit(run, await store.get_steps(run.id), old, new)
        if found.reason is not None:
            return report("refused", found, found.reason)
        try:
            keys = await _keys(rt, run, to, new, found)
        except InputError as exc:  # its input gives no key to a step the move makes
            return report("refused", found, str(exc))
        if dry_run:
            return report("would upgrade", found)
        try:
            await rt.apply(move, run.id, old=old, new=new, by=by, expected=found, keys=keys)
        except RunStateError as exc:  # a worker changed the run meanwhile: decide again
            if MOVED_MEANWHILE not in str(exc):
                return report("refused", found, str(exc))
            continue
        return report("upgraded", found)
    return report("refused", None, f"run {run.id!r} {MOVED_MEANWHILE} {MOVE_TRIES} times")


async def _keys(
    rt: Runtime, run: RunRow, to: Workflow, new: WorkflowPlan, found: Fit
) -> dict[str, str]:
    """The concurrency keys, resolved from the run's input, of the steps a move (re)makes."""
    planned = {s.name: s for s in new.steps}
    keyed = [
        name
        for name in (*found.added, *found.changed)
        if (o := planned[name].options) is not None and o.key_limit and not o.key_from_outputs
    ]
    if not keyed:
        return {}
    value = orjson.loads((await rt.run_row(run.id)).input)
    return {
        name: resolve_key(f"workflow {new.name!r}, step {name!r}", to[name].concurrency_key, value)
        for name in keyed
    }
