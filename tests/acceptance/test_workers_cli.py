"""`plait workers` and `plait topology`, as a user runs them, beside a `plait worker` process."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import plait

from .conftest import Cli, Spawned, import_file, wait_for

APP = """
    import plait

    wf = plait.Workflow("mixed")

    @wf.step
    def plain() -> int:
        return 1

    @wf.step(queue="emails")
    def mail() -> int:
        return 2

    @wf.step(target="gpu")
    def train() -> int:
        return 3
"""


def test_workers_and_topology(
    cli: Cli,
    engine: plait.Engine,
    write_app: Callable[[str, str], Path],
    spawned: list[Spawned],
) -> None:
    app = write_app("mixed.py", APP)
    wf = import_file(app).wf
    engine.register(wf)
    cli.env["TZ"] = "UTC"
    assert cli("workers").stdout.strip() == "no live workers"
    assert cli("workers", "--all").stdout.strip() == "no workers"
    assert cli("workers", "--json").json() == []
    nobody = (
        f"no live worker serves this fingerprint (mixed v1, {wf.fingerprint}): start a "
        "worker with this version of the workflow"
    )
    doc = cli("topology", "mixed", "--json").json()
    assert doc["workers"] == [] and {s["blocker"] for s in doc["steps"]} == {nobody}

    worker = cli.spawn("worker", str(app), "--labels", "gpu", "--queues", "default",
                       "--concurrency", "3")  # fmt: skip
    spawned.append(worker)
    worker.wait_for_stderr("plait worker: serving")
    [w] = wait_for(lambda: cli("workers", "--json").json(), "the worker registers")
    assert w["id"].startswith(f"{socket.gethostname()}:{worker.proc.pid}:")
    assert (w["host"], w["pid"], w["live"]) == (socket.gethostname(), worker.proc.pid, True)
    assert (w["labels"], w["queues"], w["concurrency"]) == (["gpu"], ["default"], 3)
    assert w["workflows"] == [{"name": "mixed", "version": "1", "fingerprint": wf.fingerprint}]
    times = [datetime.fromisoformat(w[k]) for k in ("started_at", "heartbeat_at", "expires_at")]
    assert times[0] <= times[1] < times[2] and times[0].utcoffset() == timedelta(0)  # ISO, UTC
    table = cli("workers")
    assert table.code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["WORKER", "STATUS", "LABELS", "QUEUES", "WORKFLOWS", "CONC",
                                "STARTED", "HEARTBEAT"]  # fmt: skip
    assert w["id"] in lines[1] and " live " in lines[1] and "mixed v1" in lines[1]
    assert re.search(r" UTC +\d+s ago$", lines[1].rstrip()), lines[1]  # zone; whole seconds

    shown = cli("topology", "mixed")
    assert shown.code == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == f"mixed v1 ({wf.fingerprint}): 1 live worker(s) serve it"
    doc = cli("topology", "mixed", "--json").json()
    assert [(s["step"], s["workers"]) for s in doc["steps"]] == [
        ("plain", [w["id"]]), ("mail", []), ("train", [w["id"]]),
    ]  # fmt: skip
    assert doc["steps"][1]["blocker"] == (
        "no live worker serves this queue ('emails'): 1 live worker serves the fingerprint, "
        "with --queues that leave it out"
    )

    assert worker.stop() == 0  # a graceful stop deregisters
    assert cli("workers", "--all", "--json").json() == []


def test_topology_of_an_unknown_workflow_exits_2(cli: Cli, engine: plait.Engine) -> None:
    engine.workflows()  # the database exists
    result = cli("topology", "ghost")
    assert result.code == 2
    assert result.stderr.strip() == (
        f"plait: error: topology: no workflow 'ghost' is registered in {cli.db}; "
        "see plait workflows"
    )


def test_workers_needs_an_existing_database(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    result = cli("workers", "--db", f"sqlite:///{missing}")
    assert result.code == 2
    assert result.stderr.strip() == (
        f"plait: error: no plait database at {missing}; a worker or `plait run` creates it"
    )
    assert not os.path.exists(missing)
