"""The worker registry: every live worker keeps a document saying what it serves.

Every worker keeps a document in the reserved records collection `plait.workers` (key: its id)
while it lives: host, pid, labels, queues, the workflow versions (fingerprints) it serves, its
concurrency, when it started, its last heartbeat and when that expires. It is rewritten on the
scheduler's timer (every lease / 3: one write, no extra wake-up, so an idle worker does no more
transactions than before), deleted by a graceful stop, and left to expire by a killed worker: a
registration past `expires_at` is no longer live, and is forgotten `FORGET_AFTER` seconds later
by whichever worker sweeps next (each sweeps every `SWEEP_EVERY` seconds).

Records need no new table and no new store operation, and every store keeps them already.
Users cannot write there: `engine.records("plait.…")` is refused. Who can run what, from the
registrations, is pure: `core.topology`.

The same timer gives the elected scheduler its pass: `keep_registered` drives any `Beat` (the
Engine passes its `Scheduler`), so the worker knows nothing of schedules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import Protocol

from .._clock import REAL, Clock
from .._errors import StoreError
from ..core.rows import RecordRow
from ..core.topology import WORKERS, ServedWorkflow, WorkerInfo
from ..stores import Store
from ..workflow.definition import Workflow

log = logging.getLogger(__name__)

FORGET_AFTER = 3600.0  # seconds after its registration expired that a dead worker is forgotten
SWEEP_EVERY = 300.0  # seconds between one worker's looks for dead workers to forget
PAGE = 1000  # registrations read at a time


def registration(
    worker_id: str,
    workflows: Iterable[Workflow],
    *,
    labels: Iterable[str],
    queues: Iterable[str] | None,
    concurrency: int,
    ttl: float,
    now: float,
    known: Collection[str] = (),
) -> WorkerInfo:
    """What a worker registers when it starts (heartbeats renew the times): every fingerprint
    whose runs it serves: each workflow's own, and the others of `Workflow.fingerprints` (with
    code_changes="deploy", the pinned one of its code, which runs started before migration 12
    carry) that are in `known` (the store has that version: it may have runs)."""
    served = sorted(
        {
            ServedWorkflow(wf.name, wf.version, fp)
            for wf in workflows
            for fp in wf.fingerprints
            if fp == wf.fingerprint or fp in known
        }
    )
    return WorkerInfo(
        id=worker_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        labels=tuple(sorted(labels)),
        queues=None if queues is None else tuple(sorted(queues)),
        workflows=tuple(served),
        concurrency=concurrency,
        started_at=now,
        heartbeat_at=now,
        expires_at=now + ttl,
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


class Beat(Protocol):
    """What rides on the registry's timer besides the heartbeat: the elected scheduler's pass."""

    elected: bool
    next_tick: float | None  # when the soonest tick it starts is due (None: none known)

    async def beat(self, now: float) -> float:
        """One pass; seconds until the next one is wanted."""
        ...

    async def resign(self) -> None: ...


async def keep_registered(
    store: Store,
    info: WorkerInfo,
    ttl: float,
    stop: asyncio.Event,
    beat: Beat | None,
    clock: Clock = REAL,
) -> None:
    """Run beside a worker until `stop`: every ttl / 3 of `clock`, heartbeat its registration
    and give `beat` its pass (which may ask for an earlier one: a tick is due). At the end,
    deregister and resign the election."""
    presence = Presence(store, info, ttl)
    while not stop.is_set():
        wait = ttl / 3
        due: float | None = None  # seconds until a tick is due (a virtual clock skips there)
        try:
            await presence.beat(clock.time())
            if beat is not None:
                wait = min(wait, await beat.beat(clock.time()))
                if beat.elected and beat.next_tick is not None:
                    due = max(beat.next_tick - clock.time(), 0.01)
        except Exception as exc:  # try again on the next pass
            if isinstance(exc, StoreError):  # an outage: one line (the claim loop says more)
                log.warning("worker %s: registry pass failed (next pass soon): %s", info.id, exc)
            else:
                log.warning("worker %s: registry pass failed", info.id, exc_info=True)
            if beat is not None:
                beat.elected = False
        sleeping = asyncio.ensure_future(clock.wait_any([], due, upkeep=max(wait, 0.01)))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, stopping):
                task.cancel()
            await asyncio.gather(sleeping, stopping, return_exceptions=True)
    with contextlib.suppress(Exception):  # gone: its registration expires anyway
        await presence.leave()
    if beat is not None and beat.elected:
        with contextlib.suppress(Exception):  # the election lease expires anyway
            await beat.resign()
