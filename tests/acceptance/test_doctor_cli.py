"""`plait doctor` as a user runs it: a line per check, `--json`, exit 1 only when a check fails.
(What each store reports: tests/contract/test_doctor.py.)"""

from __future__ import annotations

from pathlib import Path

import plait

from .conftest import Cli


def test_a_durable_store_and_a_run_without_a_worker(
    cli: Cli, engine: plait.Engine, db_url: str
) -> None:
    wf = plait.Workflow("lonely")

    @wf.step
    def one() -> int:
        return 1

    engine.start(wf, run_id="r1")
    done = cli("doctor")
    assert done.code == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"ok    store       {db_url}: open, schema current",
        "ok    durability  every commit is on disk before it returns (journal_mode=wal, "
        "synchronous=full)",
        "warn  workers     no live worker, and 1 unfinished run waiting for one (start one: "
        "plait worker FILE.py)",
    ]
    assert [c["status"] for c in cli("doctor", "--json").json()] == ["ok", "ok", "warn"]


def test_a_store_that_trades_durability_for_speed_is_a_warning(
    cli: Cli, engine: plait.Engine, db_url: str
) -> None:
    assert engine.workflows() == []  # the database exists
    done = cli("doctor", "--db", f"{db_url}?synchronous=normal", "--json")
    assert done.code == 0, done.stderr
    [_, durability, _] = done.json()
    assert durability == {
        "name": "durability",
        "status": "warn",
        "says": "synchronous=normal: the last commits before a power failure may be lost (the "
        "file stays consistent); ?synchronous=full in the URL keeps every one",
        "settings": {"journal_mode": "wal", "synchronous": "normal"},
    }


def test_a_store_that_does_not_open_fails_with_exit_1(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    done = cli("doctor", "--db", f"sqlite:///{missing}")
    assert done.code == 1
    assert done.stdout.splitlines() == [
        f"fail  store       no plait database at {missing}; a worker or `plait run` creates it"
    ]
    assert not missing.exists()  # the doctor creates nothing
