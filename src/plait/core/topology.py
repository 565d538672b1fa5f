"""Who can run what: the workers registered in the store, and which steps of a workflow
version they can take. Pure: the registrations are read by the worker registry
(`worker.registry`), which keeps them.

- `topology(plan, workers)`: for each step of a workflow version, the live workers that can run
  it (they serve its fingerprint, its queue, and its target label);
- `registry_blockers(...)`: for `inspect`, a ready step that no live worker can take says why:
  "no live worker serves this fingerprint" / "…this queue" / "…this target".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from .placement import describe, may_run
from .queues import queue_of
from .rows import RecordRow, RunRow, RunStatus, StepRow, StepStatus, WorkflowPlan

WORKERS = "plait.workers"  # reserved records collection: one document per registered worker


class ServedWorkflow(NamedTuple):
    """A workflow version a worker serves."""

    name: str
    version: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A registered worker, as `engine.workers()` shows it. Times are epoch seconds.

    `queues` is None for a worker that serves every queue. A worker is live until
    `expires_at` (its lease after its last heartbeat): `live` says whether it is now."""

    id: str
    host: str
    pid: int
    labels: tuple[str, ...]
    queues: tuple[str, ...] | None
    workflows: tuple[ServedWorkflow, ...]
    concurrency: int
    started_at: float
    heartbeat_at: float
    expires_at: float

    @property
    def live(self) -> bool:
        return self.is_live(time.time())

    def is_live(self, now: float) -> bool:
        return self.expires_at > now

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(w.fingerprint for w in self.workflows)

    def serves_queue(self, queue: str) -> bool:
        return self.queues is None or queue in self.queues

    def as_dict(self) -> dict[str, Any]:
        """Its JSON form (also what the registry stores, but for `id`, the document's key)."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "labels": list(self.labels),
            "queues": None if self.queues is None else list(self.queues),
            "workflows": [w._asdict() for w in self.workflows],
            "concurrency": self.concurrency,
            "started_at": self.started_at,
            "heartbeat_at": self.heartbeat_at,
            "expires_at": self.expires_at,
        }

    def doc(self) -> bytes:
        d = self.as_dict()
        del d["id"]
        return orjson.dumps(d)

    @classmethod
    def of(cls, row: RecordRow) -> WorkerInfo:
        d = orjson.loads(row.doc)
        queues = d.get("queues")
        return cls(
            id=row.key,
            host=d.get("host", ""),
            pid=d.get("pid", 0),
            labels=tuple(d.get("labels", ())),
            queues=None if queues is None else tuple(queues),
            workflows=tuple(
                ServedWorkflow(w["name"], w["version"], w["fingerprint"])
                for w in d.get("workflows", ())
            ),
            concurrency=d.get("concurrency", 0),
            started_at=d.get("started_at", 0.0),
            heartbeat_at=d.get("heartbeat_at", 0.0),
            expires_at=d["expires_at"],
        )


def _able(
    workers: Sequence[WorkerInfo],
    fingerprint: str,
    version: str,
    queue: str,
    target: str | None,
    accepts: Callable[[WorkerInfo], bool],
    need: str,
) -> tuple[list[WorkerInfo], str | None]:
    """The workers that can run a step (they serve its fingerprint, its queue, and accept its
    target), or none and why, in words."""
    serving = [w for w in workers if fingerprint in w.fingerprints]
    if not serving:
        return [], (
            f"no live worker serves this fingerprint ({version}, {fingerprint}): start a worker "
            "with this version of the workflow"
        )
    in_queue = [w for w in serving if w.serves_queue(queue)]
    if not in_queue:
        return [], (
            f"no live worker serves this queue ({queue!r}): {_serve(serving)} the fingerprint, "
            "with --queues that leave it out"
        )
    able = [w for w in in_queue if accepts(w)]
    if target is not None and not able:
        return [], (
            f"no live worker serves this target: it needs {need}; {_serve(in_queue)} the "
            "fingerprint and queue"
        )
    return able, None


def _accepting(
    target: str | None, colocated: str | None = None, hosts: frozenset[str] | None = None
) -> Callable[[WorkerInfo], bool]:
    """Does a worker accept a step of this target? (`colocated`: the worker that ran the step a
    "=step" target names; `hosts`, in a topology, the workers that can run that step.)"""
    if hosts is not None:
        return lambda w: w.id in hosts
    return lambda w: may_run(target, w.id, w.labels, colocated)


def _serve(workers: Collection[WorkerInfo]) -> str:
    return "1 live worker serves" if len(workers) == 1 else f"{len(workers)} live workers serve"


@dataclass(frozen=True, slots=True)
class StepTopology:
    """Who can run one step: its queue and target, the ids of the live workers that can, and
    why none can (None if some can)."""

    step: str
    queue: str
    target: str | None
    workers: tuple[str, ...]
    blocker: str | None


@dataclass(frozen=True, slots=True)
class Topology:
    """Which live workers can run which steps of a workflow version (`engine.topology`)."""

    workflow: str
    version: str
    fingerprint: str
    workers: tuple[WorkerInfo, ...]  # the live workers serving this version
    steps: dict[str, StepTopology]  # in definition order

    def as_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "workers": [w.id for w in self.workers],
            "steps": [
                {
                    "step": s.step,
                    "queue": s.queue,
                    "target": s.target,
                    "workers": list(s.workers),
                    "blocker": s.blocker,
                }
                for s in self.steps.values()
            ],
        }


def topology(plan: WorkflowPlan, workers: Sequence[WorkerInfo]) -> Topology:
    """For each step of `plan`, the live `workers` that can run it. A `colocate_with` step can
    run on a worker that can run the other step too (whichever of them runs it)."""
    steps: dict[str, StepTopology] = {}
    by_id = {w.id: w for w in workers}
    version = f"{plan.name} v{plan.version}"
    for step in plan.steps:
        target = None if step.options is None else step.options.target
        queue = queue_of(step.options)
        if target is not None and target.startswith("="):
            other = steps.get(target[1:])
            hosts = frozenset(() if other is None else other.workers)
            need = f"a worker that can run step {target[1:]!r} too"
            accepts = _accepting(target, hosts=hosts)
        else:
            need = describe(target) if target is not None else ""
            accepts = _accepting(target)
        able, why = _able(workers, plan.fingerprint, version, queue, target, accepts, need)
        steps[step.name] = StepTopology(step.name, queue, target, tuple(w.id for w in able), why)
    serving = tuple(by_id[i] for i in sorted(by_id) if plan.fingerprint in by_id[i].fingerprints)
    return Topology(plan.name, plan.version, plan.fingerprint, serving, steps)


def registry_blockers(
    run: RunRow,
    rows: Iterable[StepRow],
    workers: Sequence[WorkerInfo],
    now: float,
    blockers: MutableMapping[str, list[str]],
) -> None:
    """Add to `blockers` (`inspect`'s) why no live worker can take a claimable ready step of a
    run that may progress (which replaces whatever else it waited on), or, for a step with a
    target that some worker can take, who it waits for."""
    if run.status not in (RunStatus.PENDING, RunStatus.RUNNING):
        return
    rows = list(rows)
    ran_on = {r.name: r.worker_id for r in rows}
    version = f"{run.workflow} v{run.version}"
    for r in rows:
        if r.status is not StepStatus.READY or (r.available_at or 0.0) > now:
            continue
        target = None if r.options is None else r.options.target
        colocated = None
        need = ""
        if target is not None:
            colocated = ran_on.get(target[1:]) if target.startswith("=") else None
            need = describe(target) + (f" ({colocated})" if colocated else "")
        accepts = _accepting(target, colocated)
        queue = queue_of(r.options)
        _, why = _able(workers, run.fingerprint, version, queue, target, accepts, need)
        if why is not None:
            blockers[r.name] = [why]
        elif target is not None:
            waits = f"needs {need}: waiting for it to claim the step"
            held = [b for b in blockers.get(r.name, []) if not b.startswith("no worker has")]
            blockers[r.name] = [*held, waits]
