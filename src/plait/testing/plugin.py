"""plait's pytest plugin (entry point `pytest11`, loaded wherever plait is installed).

Fixtures:
- `plait_engine`: an Engine on a fresh, empty store for each test, closed after it. The store
  is memory by default; `--plait-store=sqlite` (a file in the test's tmp_path), or
  `--plait-store=postgresql://user@host/db` (a schema of its own per test, dropped after it),
  chooses another for the whole session, and `@pytest.mark.plait_store("sqlite")` for one test
  (the marker wins over the option).
- `plait_clock`: a `plait.testing.VirtualClock` (skipping by itself to what is due). A test
  that asks for it too gets a `plait_engine` on it (a `TestEngine`, so memory or SQLite):
  delays, retries, expiries, deadlines, rate limits, schedules and leases follow that clock.

Options of the store contract suite (`plait.testing.contract`, docs/stores.md), declared here
so that `pytest --pyargs plait.testing.contract` knows them: `--plait-contract-store=
module:factory` runs the suite on that store only, `--plait-contract-durable` says it keeps
what it wrote across opening it again. They change nothing else.

Nothing else: no hooks, so the plugin changes no test that does not ask for its fixture. It
imports nothing of plait's engine until a test does.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..engine.engine import Engine
    from .clock import VirtualClock

OPTION = "--plait-store"
MARKER = "plait_store"
CHOICES = "'memory', 'sqlite' or a postgresql:// URL"
SCHEMA_PREFIX = "plait_test_"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("plait")
    group.addoption(
        OPTION,
        default="memory",
        metavar="STORE",
        help=f"the store of the plait_engine fixture: {CHOICES} (default memory)",
    )
    group.addoption(
        "--plait-contract-store",
        default=None,
        metavar="MODULE:FACTORY",
        help="run the store contract suite (plait.testing.contract) on this store only",
    )
    group.addoption(
        "--plait-contract-durable",
        action="store_true",
        default=False,
        help="the store of --plait-contract-store keeps what it wrote across opening it again",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--plait-contract-store", None):
        from .contract.backends import outside_store

        outside_store(config)  # a bad factory stops pytest before it collects, saying why
    config.addinivalue_line(
        "markers",
        f"{MARKER}(store): the store of this test's plait_engine fixture: {CHOICES}",
    )


def store_of(request: pytest.FixtureRequest) -> str:
    """The store this test asks for: its marker's, else the command line's."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if len(marker.args) != 1 or marker.kwargs:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes one store: {CHOICES}; got {marker.args!r}"
            )
        store = marker.args[0]
    else:
        store = request.config.getoption(OPTION)
    if not isinstance(store, str) or not (
        store in ("memory", "sqlite") or store.startswith(("postgresql://", "postgres://"))
    ):
        raise pytest.UsageError(f"the plait_engine store must be {CHOICES}, got {store!r}")
    return store


@pytest.fixture
def plait_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An Engine on a fresh, empty store (see the module docstring), closed after the test."""
    from ..engine.engine import Engine
    from .clock import TestEngine

    store = store_of(request)
    clocked = "plait_clock" in request.fixturenames
    if clocked and store not in ("memory", "sqlite"):
        raise pytest.UsageError(
            f"plait_clock needs the plait_engine store to be 'memory' or 'sqlite', got {store!r}"
        )
    if store == "memory":
        url = "memory://"
    elif store == "sqlite":
        tmp = request.getfixturevalue("tmp_path")
        url = f"sqlite:///{tmp / 'plait.db'}"
    else:
        schema = (
            SCHEMA_PREFIX
            + hashlib.sha256(f"{os.getpid()} {request.node.nodeid}".encode()).hexdigest()[:16]
        )
        base = _without_schema(store)
        url = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    engine = (
        TestEngine(url, clock=request.getfixturevalue("plait_clock")) if clocked else Engine(url)
    )
    try:
        yield engine
    finally:
        engine.close()
        if store.startswith("postgres"):
            _drop_schema(store, url)


@pytest.fixture
def plait_clock() -> Iterator[VirtualClock]:
    """A virtual clock (see the module docstring), its skipping stopped after the test."""
    from .clock import VirtualClock

    clock = VirtualClock()
    try:
        yield clock
    finally:
        clock.close()


def _without_schema(url: str) -> str:
    return re.sub(r"([?&])schema=[^&]*&?", r"\1", url).rstrip("?&")


def _drop_schema(base: str, url: str) -> None:
    import psycopg
    from psycopg import sql

    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(_without_schema(base), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
