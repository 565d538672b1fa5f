"""The throwaway PostgreSQL clusters the PostgreSQL tests rely on really start, stop and check passwords.

Skipped when initdb/pg_ctl are not installed, except under CI=true, where that is a failure.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

import plait
from tests.postgres_server import HOW_TO, Auth, Cluster, connect, find_bin_dir, skip_or_fail

PASSWORD = "s3cret: with/odd@chars%"


def _cluster(auth: Auth, password: str | None = None) -> Iterator[Cluster]:
    if find_bin_dir() is None:
        skip_or_fail(f"initdb and pg_ctl not found; {HOW_TO}")
    cluster = Cluster.create(auth=auth, password=password)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def trust_cluster() -> Iterator[Cluster]:
    yield from _cluster("trust")


@pytest.fixture(scope="module")
def scram_cluster() -> Iterator[Cluster]:
    yield from _cluster("scram-sha-256", PASSWORD)


def _select_one(url: str) -> object:
    with connect(url, connect_timeout=3) as conn:
        row = conn.execute("select 1").fetchone()
        return row[0] if row else None


def test_cluster_starts_stops_restarts_and_is_destroyed(trust_cluster: Cluster) -> None:
    assert trust_cluster.url == f"postgresql://postgres@127.0.0.1:{trust_cluster.port}/postgres"
    assert not trust_cluster.running
    trust_cluster.start()
    assert _select_one(trust_cluster.url) == 1

    trust_cluster.stop()
    assert not trust_cluster.running
    with pytest.raises(psycopg.OperationalError):
        _select_one(trust_cluster.url)

    trust_cluster.start()
    assert _select_one(trust_cluster.url) == 1
    trust_cluster.stop("immediate")
    trust_cluster.restart()
    assert _select_one(trust_cluster.url) == 1

    trust_cluster.destroy()
    assert not trust_cluster.directory.exists()
    trust_cluster.destroy()  # a second time is harmless (the fixture does it again too)


def test_scram_cluster_checks_the_password(scram_cluster: Cluster) -> None:
    scram_cluster.start()
    assert _select_one(scram_cluster.url) == 1

    wrong = scram_cluster.url.replace(":s3cret", ":wrong", 1)
    assert wrong != scram_cluster.url
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _select_one(wrong)


def test_plait_reports_a_wrong_password_clearly_and_hides_it(scram_cluster: Cluster) -> None:
    """Through plait: a StoreError naming the problem, raised at open, the password hidden."""
    if not scram_cluster.running:
        scram_cluster.start()
    wrong = scram_cluster.url.replace(":s3cret", ":wrong", 1)
    engine = plait.Engine(f"{wrong}?schema=plait_pw")
    with pytest.raises(plait.StoreError) as caught:
        engine.workflows()
    engine.close()
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL store postgresql://postgres:***@")
    assert 'password authentication failed for user "postgres"' in message
    assert "check the user and password in the URL" in message
    assert "wrong" not in message and "s3cret" not in message
    # the right password works, and the schema is created
    with plait.Engine(f"{scram_cluster.url}?schema=plait_pw") as engine:
        assert engine.workflows() == []
