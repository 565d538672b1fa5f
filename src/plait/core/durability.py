"""What a store's settings promise about a commit it has acknowledged: whether a committed step
outcome survives a power failure (`plait doctor`, `Engine.doctor`). Each store reads its own
settings (`stores.protocol.ReportsDurability`); the verdicts on them are here, pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Durability:
    """`safe`: True if an acknowledged commit survives a power failure, False if it may be lost,
    None if the store cannot tell. `says`: one line, why, and what to change when not safe."""

    safe: bool | None
    says: str
    settings: Mapping[str, str] = field(default_factory=dict)


def in_memory() -> Durability:
    return Durability(False, "in this process's memory: nothing survives the process")


def sqlite(synchronous: str, journal_mode: str) -> Durability:
    settings = {"journal_mode": journal_mode.lower(), "synchronous": synchronous.lower()}
    if synchronous.upper() == "FULL":
        return Durability(True, "every commit is on disk before it returns", settings)
    return Durability(
        False,
        f"synchronous={synchronous.lower()}: the last commits before a power failure may be "
        "lost (the file stays consistent); ?synchronous=full in the URL keeps every one",
        settings,
    )


# PostgreSQL settings that acknowledge a commit before it is on disk, and what each risks
_PG_RISKS = {
    "fsync": ("off", "a crash of the machine may corrupt the database"),
    "synchronous_commit": ("off", "the last commits before a crash of the server may be lost"),
    "full_page_writes": ("off", "a crash of the machine may corrupt the database"),
}


def postgres(settings: Mapping[str, str]) -> Durability:
    risks = [
        f"{name}={settings[name]}: {risk}"
        for name, (bad, risk) in _PG_RISKS.items()
        if settings.get(name) == bad
    ]
    if risks:
        return Durability(False, "; ".join(risks) + " (set them on in postgresql.conf)", settings)
    return Durability(True, "every commit is flushed to disk before it returns", settings)


def nats(sync_always: bool | None, replicas: int) -> Durability:
    settings = {
        "sync_interval": {True: "always", False: "periodic", None: "unknown"}[sync_always],
        "replicas": str(replicas),
    }
    if sync_always:
        return Durability(True, "the server fsyncs every write before it acknowledges it", settings)
    cluster = (
        f" (with {replicas} replicas, one server's power failure loses nothing; all of them at "
        "once may)"
        if replicas >= 3
        else ""
    )
    if sync_always is None:
        return Durability(
            None,
            "the server's sync_interval is not known (this user may not read the server's "
            "VARZ): set `sync_interval: always` in its jetstream block to be sure" + cluster,
            settings,
        )
    return Durability(
        False,
        "the server does not fsync every write: acknowledged commits may be lost on a power "
        "failure; set `sync_interval: always` in its jetstream block" + cluster,
        settings,
    )
