"""`Engine.doctor`: what a user should know about a store before trusting it with runs. One check
per concern, each ok, warn or fail with one line: the store opens, what its settings promise
about an acknowledged commit (`core.durability`), and whether unfinished runs have a worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .._errors import StoreError
from .._runtime import Runtime
from ..core.rows import RunStatus
from ..stores.nats_setup import hide_secrets
from ..stores.protocol import ReportsDurability
from ..worker.registry import read_workers

Status = Literal["ok", "warn", "fail"]
# runs that need no worker: the total is read first, then these, so that a run moving between
# two other statuses meanwhile is not counted twice (nor one that ends meanwhile)
IDLE = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PAUSED)


@dataclass(frozen=True)
class DoctorCheck:
    """One finding of `Engine.doctor`: `name` (store, durability, workers), its `status`, and
    `says`, one line; `settings`: the store settings it was made from (durability)."""

    name: str
    status: Status
    says: str
    settings: dict[str, str] | None = None

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {"name": self.name, "status": self.status, "says": self.says}
        if self.settings is not None:
            found["settings"] = self.settings
        return found


async def doctor(rt: Runtime) -> list[DoctorCheck]:
    shown = hide_secrets(rt.url)
    try:
        await rt.ready()
    except StoreError as exc:
        return [DoctorCheck("store", "fail", str(exc))]
    checks = [DoctorCheck("store", "ok", f"{shown}: open, schema current")]
    try:
        checks.append(await _durability(rt))
        checks.append(await _workers(rt))
    except StoreError as exc:
        checks.append(DoctorCheck("store", "fail", str(exc)))
    return checks


async def _durability(rt: Runtime) -> DoctorCheck:
    if not isinstance(rt.store, ReportsDurability):
        return DoctorCheck("durability", "warn", f"{type(rt.store).__name__} does not say")
    found = await rt.store.durability()
    status: Status = "ok" if found.safe else "warn"
    return DoctorCheck("durability", status, found.says, dict(found.settings))


async def _workers(rt: Runtime) -> DoctorCheck:
    live = await read_workers(rt.store, rt.clock.time())
    unfinished = await rt.store.count_runs(workflow=None, status=None)
    for status in IDLE:
        unfinished -= await rt.store.count_runs(workflow=None, status=status)
    runs = f"{unfinished} unfinished run{'' if unfinished == 1 else 's'}"
    if live:
        return DoctorCheck(
            "workers", "ok", f"{len(live)} live worker{'' if len(live) == 1 else 's'}; {runs}"
        )
    if unfinished:
        return DoctorCheck(
            "workers",
            "warn",
            f"no live worker, and {runs} waiting for one (start one: plait worker FILE.py)",
        )
    return DoctorCheck("workers", "ok", f"no live worker; {runs}")
