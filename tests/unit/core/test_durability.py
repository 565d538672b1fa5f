"""The verdicts on store settings (core/durability.py) that the test servers do not have: each
PostgreSQL setting that acknowledges a commit before it is on disk, SQLite below FULL, a NATS
cluster without fsync. (What the real stores report: tests/contract/test_doctor.py.)"""

from __future__ import annotations

import pytest

from plait.core import durability

SAFE_PG = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


def test_postgres_defaults_are_safe() -> None:
    found = durability.postgres(SAFE_PG)
    assert found.safe is True
    assert found.settings == SAFE_PG
    # a standby's acknowledgement is as good, or better
    for level in ("local", "remote_write", "remote_apply"):
        assert durability.postgres({**SAFE_PG, "synchronous_commit": level}).safe is True


@pytest.mark.parametrize(
    ("name", "risk"),
    [
        ("fsync", "fsync=off: a crash of the machine may corrupt the database"),
        (
            "synchronous_commit",
            "synchronous_commit=off: the last commits before a crash of the server may be lost",
        ),
        (
            "full_page_writes",
            "full_page_writes=off: a crash of the machine may corrupt the database",
        ),
    ],
)
def test_each_unsafe_postgres_setting_is_named(name: str, risk: str) -> None:
    found = durability.postgres({**SAFE_PG, name: "off"})
    assert found.safe is False
    assert found.says == f"{risk} (set them on in postgresql.conf)"


def test_two_unsafe_postgres_settings_are_both_named() -> None:
    found = durability.postgres({**SAFE_PG, "fsync": "off", "synchronous_commit": "off"})
    assert found.says.startswith("fsync=off: ")
    assert "; synchronous_commit=off: " in found.says


@pytest.mark.parametrize("level", ["NORMAL", "OFF"])
def test_sqlite_below_full_may_lose_the_last_commits(level: str) -> None:
    found = durability.sqlite(level, "wal")
    assert found.safe is False
    assert found.says.startswith(f"synchronous={level.lower()}: the last commits")


def test_a_nats_cluster_without_fsync_says_what_replicas_do_and_do_not_cover() -> None:
    found = durability.nats(False, 3)
    assert found.safe is False
    assert found.says.endswith(
        "(with 3 replicas, one server's power failure loses nothing; all of them at once may)"
    )
    assert durability.nats(False, 1).says.endswith("in its jetstream block")
    assert durability.nats(True, 3).safe is True


def test_memory_is_never_durable() -> None:
    assert durability.in_memory().safe is False
