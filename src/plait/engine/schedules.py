"""Schedules: start a workflow on a cron expression, from one elected scheduler at a time.

    engine.schedule("nightly", wf, cron="0 2 * * *", timezone="Europe/Paris", input={...})

A schedule is a document of the store's records (collection `plait.schedules`, reserved), so
every store keeps it without a table of its own: its workflow, cron, timezone, input, catch-up
policy, whether it is paused, and `next_at`, the next tick to start. Writes go through the
document's revision, so two processes that change one schedule never both win.

Every worker process runs a `Scheduler`; one at a time is elected, by a lease document
(`plait.leases`, key `scheduler`) that the holder renews every `ttl / 3` seconds and that another
scheduler takes over once it has expired (its holder died). The elected scheduler starts each
due tick's run with the run id `tick_id(schedule, tick)`, derived from the schedule's name and
the tick time: even two schedulers that both believe they are elected (a paused process waking
after its lease expired) start a tick once, because a run id is started once; only the one that
created the run logs "started run". A pass that outlives its lease (the process was descheduled)
starts no more ticks: the next pass campaigns again. Resigning expires the lease rather than
deleting it, so its revision keeps growing and a stale holder's renewal cannot match a new lease.

A tick is started if a scheduler reaches it at most `MISFIRE_GRACE` (60) seconds late: passes
come every few seconds, and an election changing hands takes up to a lease. Ticks reached later
(no worker ran, or none was elected) are missed: `catch_up="skip"` starts none of them,
`"run_once"` starts one run, for the latest. A paused schedule has no ticks: resuming it moves
`next_at` to the first tick after the resume, so ticks that fell in the pause are never started,
however short the pause and whatever `catch_up` says (they were not missed: the operator chose).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from .. import _codec
from .._errors import ConfigError, InputError, RunConflict, WorkflowNotFound
from .._runtime import Runtime
from ..core.cron import CATCH_UP, Cron, tick_id
from ..core.cron import timezone as cron_timezone
from ..core.rows import RecordRow
from ..workflow.definition import Workflow
from . import runs

log = logging.getLogger(__name__)

SCHEDULES = "plait.schedules"
LEASES = "plait.leases"
SCHEDULER = "scheduler"
MISFIRE_GRACE = 60.0  # seconds: a tick reached later than this is missed (see catch_up)
MAX_CATCH_UP = 1000  # missed ticks looked at, at most, per schedule and pass
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A stored schedule, as `engine.schedules()` shows it."""

    name: str
    workflow: str
    cron: str
    timezone: str
    input: Any
    catch_up: str
    paused: bool
    next_at: float  # the next tick to start (epoch seconds)
    revision: int = 0

    def doc(self) -> bytes:
        return orjson.dumps(
            {
                "workflow": self.workflow,
                "cron": self.cron,
                "timezone": self.timezone,
                "input": self.input,
                "catch_up": self.catch_up,
                "paused": self.paused,
                "next_at": self.next_at,
            }
        )

    @classmethod
    def of(cls, row: RecordRow) -> Schedule:
        d = orjson.loads(row.doc)
        return cls(
            row.key,
            d["workflow"],
            d["cron"],
            d["timezone"],
            d["input"],
            d["catch_up"],
            d["paused"],
            d["next_at"],
            row.revision,
        )


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"invalid schedule name {name!r}: use 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (no spaces)"
        )
    return name


def _row(s: Schedule, now: float) -> RecordRow:
    return RecordRow(SCHEDULES, s.name, s.doc(), 0, now)


async def schedule(
    rt: Runtime,
    name: str,
    workflow: Workflow | str,
    *,
    cron: str,
    input: Any,
    timezone: str,
    catch_up: str,
) -> Schedule:
    _check_name(name)
    parsed = Cron.parse(cron)
    zone = cron_timezone(timezone)
    if catch_up not in CATCH_UP:
        raise ConfigError(
            f"schedule {name!r}: catch_up must be 'skip' or 'run_once', got {catch_up!r}"
        )
    store = await rt.ready()
    if isinstance(workflow, Workflow):
        await rt.register(workflow)
        value = workflow.validate_input(input)
        wf_name = workflow.name
    elif isinstance(workflow, str):
        local = rt.workflows.latest(workflow)
        if local is None and await store.get_workflow(workflow) is None:
            raise WorkflowNotFound(
                f"schedule {name!r}: no workflow {workflow!r} is registered; register it "
                "(engine.register, or a worker serving it) before scheduling it"
            )
        value = local.validate_input(input) if local is not None else input
        wf_name = workflow
    else:
        raise WorkflowNotFound(f"expected a plait.Workflow or a workflow name, got {workflow!r}")
    try:
        value = _codec.loads(_codec.dumps(value))  # stored as plait's JSON rule encodes it
    except _codec.EncodeError as exc:
        raise InputError(f"schedule {name!r}: input is not JSON: {exc}") from None
    now = rt.clock.time()
    s = Schedule(
        name, wf_name, parsed.expression, timezone, value, catch_up, False,
        parsed.next_after(now, zone),
    )  # fmt: skip
    _, revision = await store.put_record(_row(s, now), None)
    return replace(s, revision=revision)


async def schedules(rt: Runtime) -> list[Schedule]:
    store = await rt.ready()
    rows = await store.list_records(SCHEDULES, "", "", 10_000)
    return [Schedule.of(r) for r in rows]


async def get_schedule(rt: Runtime, name: str) -> Schedule:
    store = await rt.ready()
    row = await store.get_record(SCHEDULES, _check_name(name))
    if row is None:
        raise InputError(f"no schedule named {name!r}; see plait schedules list")
    return Schedule.of(row)


async def delete_schedule(rt: Runtime, name: str) -> bool:
    store = await rt.ready()
    deleted, _ = await store.delete_record(SCHEDULES, _check_name(name), None)
    return deleted


async def set_paused(rt: Runtime, name: str, paused: bool) -> Schedule:
    """Pause or resume; a resume carries on from the first tick after now (see the module doc)."""
    store = await rt.ready()
    while True:
        s = await get_schedule(rt, name)
        if s.paused == paused:
            return s
        now = rt.clock.time()
        changed = replace(s, paused=paused)
        if not paused:  # the ticks of the pause are dropped: none is due, or missed
            zone = cron_timezone(s.timezone)
            changed = replace(changed, next_at=Cron.parse(s.cron).next_after(now, zone))
        ok, revision = await store.put_record(_row(changed, now), s.revision)
        if ok:
            return replace(changed, revision=revision)


# -- the elected scheduler -----------------------------------------------------------------------


def due_ticks(s: Schedule, now: float, grace: float = MISFIRE_GRACE) -> tuple[list[float], float]:
    """The ticks of `s` to start at `now` (catch-up applied), and its next `next_at`."""
    cron, zone = Cron.parse(s.cron), cron_timezone(s.timezone)
    if s.next_at > now:
        return [], s.next_at
    ticks = [s.next_at, *cron.ticks_between(s.next_at, now, zone, MAX_CATCH_UP)]
    on_time = [t for t in ticks if now - t <= grace]
    missed = [t for t in ticks if now - t > grace]
    start = on_time if s.catch_up == "skip" or not missed else [missed[-1], *on_time]
    return start, cron.next_after(now, zone)


class Scheduler:
    """Runs in each worker process (its pass is given by the registry's timer,
    `worker.registry.keep_registered`);
    starts due ticks while elected (see the module docstring)."""

    def __init__(
        self,
        rt: Runtime,
        holder: str,
        ttl: float = 15.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.rt, self.holder, self.ttl = rt, holder, ttl
        self._clock = clock or rt.clock.monotonic  # measures a pass against the lease it holds
        self.elected = False
        self.next_tick: float | None = None  # the soonest tick of the last pass, while elected
        self._lease_revision = 0  # of the lease document while we hold it: renewed unread

    async def beat(self, now: float) -> float:
        """One pass: hold or take the election, start due ticks; seconds until the next pass.
        Without any schedule, nobody campaigns (an idle store sees only a read)."""
        store = self.rt.store
        began = self._clock()  # the lease written below expires at most ttl after this
        rows = await store.list_records(SCHEDULES, "", "", 10_000)
        elected = bool(rows) and await self._elect(now)
        if elected != self.elected:
            log.info("scheduler %s %s", self.holder, "elected" if elected else "not elected")
        self.elected = elected
        if not elected:
            return self.ttl / 3
        soonest = now + self.ttl / 3
        ticks_at: list[float] = []
        for row in rows:
            s = Schedule.of(row)
            if s.paused:
                continue
            ticks, next_at = due_ticks(s, now)
            if s.next_at <= now:
                for tick in ticks:
                    if self._clock() - began >= self.ttl:
                        # another scheduler may hold the election by now: campaign again
                        log.warning(
                            "scheduler %s: pass outlived its %gs lease; stopping it",
                            self.holder,
                            self.ttl,
                        )
                        return 0.0
                    await self._start(s, tick)
                changed = replace(s, next_at=next_at)
                await store.put_record(_row(changed, now), s.revision)  # lost: someone else did
            soonest = min(soonest, next_at)
            ticks_at.append(next_at)
        self.next_tick = min(ticks_at, default=None)
        return soonest - self.rt.clock.time()

    async def _start(self, s: Schedule, tick: float) -> None:
        run_id = tick_id(s.name, tick)
        try:
            _, created = await runs.start(  # a tick's run, whoever started it
                self.rt, s.workflow, s.input, run_id=run_id, who=runs.Identity(if_exists="return")
            )
        except (WorkflowNotFound, InputError, RunConflict) as exc:
            log.error("schedule %s: tick %s not started: %s", s.name, run_id, exc)
            return
        if created:
            log.info("schedule %s: started run %s", s.name, run_id)
        else:  # another scheduler (or an earlier failed pass of ours) started it
            log.info("schedule %s: run %s of the tick exists already", s.name, run_id)

    async def _elect(self, now: float) -> bool:
        store = self.rt.store
        doc = orjson.dumps({"holder": self.holder, "expires_at": now + self.ttl})
        if self.elected and self._lease_revision:  # renew what we hold, without reading it
            ok, revision = await store.put_record(
                RecordRow(LEASES, SCHEDULER, doc, 0, now), self._lease_revision
            )
            if ok:
                self._lease_revision = revision
                return True
        row = await store.get_record(LEASES, SCHEDULER)
        if row is not None:
            lease = orjson.loads(row.doc)
            if lease["holder"] != self.holder and lease["expires_at"] > now:
                return False
        expected = 0 if row is None else row.revision
        ok, revision = await store.put_record(RecordRow(LEASES, SCHEDULER, doc, 0, now), expected)
        self._lease_revision = revision if ok else 0
        return ok

    async def resign(self) -> None:
        """Expire our lease, for another scheduler to take at once (a write, so a stale holder's
        renewal, which expects the revision it last wrote, cannot match the next lease)."""
        store = self.rt.store
        row = await store.get_record(LEASES, SCHEDULER)
        if row is not None and orjson.loads(row.doc)["holder"] == self.holder:
            expired = orjson.dumps({"holder": self.holder, "expires_at": 0.0})
            await store.put_record(
                RecordRow(LEASES, SCHEDULER, expired, 0, self.rt.clock.time()), row.revision
            )
        self.elected, self._lease_revision = False, 0
