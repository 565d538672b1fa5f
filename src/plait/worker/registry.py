"""The worker registry: which workers live, what each serves, and so which steps they can run.

Every worker keeps a document in the reserved records collection `plait.workers` (key: its id)
while it lives: host, pid, labels, queues, the workflow versions (fingerprints) it serves, its
concurrency, when it started, its last heartbeat and when that expires. It is rewritten on the
scheduler's timer (every lease / 3: one write, no extra wake-up, so an idle worker does no more
transactions than before), deleted by a graceful stop, and left to expire by a killed worker: a
registration past `expires_at` is no longer live, and is forgotten `FORGET_AFTER` seconds later
by whichever worker sweeps next (each sweeps every `SWEEP_EVERY` seconds).

Records need no new table and no new store operation, and every store keeps them already.
Users cannot write there: `engine.records("plait.…")` is refused (`_documents.py`).

From the registrations, purely:
- `topology(plan, workers)`: for each step of a workflow version, the live workers that can run
  it (they serve its fingerprint, its queue, and its target label);
- `registry_blockers(...)`: for `inspect`, a ready step that no live worker can take says why:
  "no live worker serves this fingerprint" / "…this queue" / "…this target".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Collection, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from ..core.placement import describe, may_run
from ..core.queues import queue_of
from ..core.rows import RecordRow, RunRow, RunStatus, StepRow, StepStatus, WorkflowPlan
from ..engine.schedules import Scheduler

if TYPE_CHECKING:
    from ..stores import Store
    from .worker import Worker

log = logging.getLogger(__name__)

WORKERS = "plait.workers"  # reserved records collection: one document per registered worker
FORGET_AFTER = 3600.0  # seconds after its registration expired that a dead worker is forgotten
SWEEP_EVERY = 300.0  # seconds between one worker's looks for dead workers to forget
PAGE = 1000  # registrations read at a time


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


def registration(worker: Worker, now: float) -> WorkerInfo:
    """What a worker registers when it starts (heartbeats renew the times)."""
    served = sorted(ServedWorkflow(wf.name, wf.version, fp) for fp, wf in worker.workflows.items())
    return WorkerInfo(
        id=worker.id,
        host=socket.gethostname(),
        pid=os.getpid(),
        labels=tuple(sorted(worker.labels)),
        queues=None if worker.queues is None else tuple(sorted(worker.queues)),
        workflows=tuple(served),
        concurrency=worker.concurrency,
        started_at=now,
        heartbeat_at=now,
        expires_at=now + worker.engine.lease,
    )


async def _rows(store: Store) -> list[RecordRow]:
    found: list[RecordRow] = []
    after = ""
    while True:
        rows = await store.list_records(WORKERS, "", after, PAGE)
        found.extend(rows)
        if len(rows) < PAGE:
            return found
        after = rows[-1].key


async def read_workers(store: Store, now: float, *, include_dead: bool = False) -> list[WorkerInfo]:
    """The registered workers by id: the live ones, or also the dead not yet forgotten."""
    found = [WorkerInfo.of(r) for r in await _rows(store)]
    return [w for w in found if include_dead or w.is_live(now)]


# -- a worker's registration, kept on the scheduler's timer --------------------------------------


class Presence:
    """One worker's registration: `beat` writes it (and now and then forgets dead workers),
    `leave` deletes it."""

    def __init__(self, store: Store, info: WorkerInfo, ttl: float) -> None:
        self.store, self.info, self.ttl = store, info, ttl
        self._next_sweep = 0.0  # the first beat sweeps

    async def beat(self, now: float) -> None:
        self.info = replace(self.info, heartbeat_at=now, expires_at=now + self.ttl)
        row = RecordRow(WORKERS, self.info.id, self.info.doc(), 0, now)
        await self.store.put_record(row, None)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            await forget_dead(self.store, now)

    async def leave(self) -> None:
        await self.store.delete_record(WORKERS, self.info.id, None)


async def forget_dead(store: Store, now: float) -> int:
    """Delete registrations expired more than FORGET_AFTER seconds ago; how many were."""
    forgotten = 0
    for row in await _rows(store):
        if WorkerInfo.of(row).expires_at < now - FORGET_AFTER:
            # at the revision read: a worker that came back meanwhile is not deleted
            deleted, _ = await store.delete_record(WORKERS, row.key, row.revision)
            forgotten += deleted
    return forgotten


async def keep_registered(worker: Worker, stop: asyncio.Event) -> None:
    """Run beside a worker until `stop`: every lease / 3, heartbeat its registration and give the
    scheduler its pass (which may ask for an earlier one: a tick is due). At the end, deregister
    and resign the election."""
    engine = worker.engine
    ttl = engine.lease
    presence = Presence(engine.store, registration(worker, time.time()), ttl)
    scheduler = Scheduler(engine, worker.id, ttl=ttl)
    while not stop.is_set():
        wait = ttl / 3
        try:
            await presence.beat(time.time())
            wait = min(wait, await scheduler.beat(time.time()))
        except Exception:  # a store outage: the worker reports it; try again later
            log.warning("worker %s: registry pass failed", worker.id, exc_info=True)
            scheduler.elected = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(wait, 0.01))
    with contextlib.suppress(Exception):  # gone: its registration expires anyway
        await presence.leave()
    if scheduler.elected:
        with contextlib.suppress(Exception):  # the election lease expires anyway
            await scheduler.resign()


# -- who can run what (pure) ---------------------------------------------------------------------


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
