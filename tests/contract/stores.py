"""plait's own server stores in the contract suite (src/plait/testing/contract): PostgreSQL
and NATS, on the servers the tests start (tests/postgres_server.py, tests/nats_server.py).
A pytest plugin, loaded by the repository's conftest.py; memory and SQLite are the suite's own."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from plait.testing.contract.backends import Backend, add_backends
from tests import nats_server, postgres_server

POSTGRES_SCHEMAS = "plait_c_"
# this session's schemas: sessions running side by side never drop each other's
POSTGRES_SCHEMA_PREFIX = f"{POSTGRES_SCHEMAS}{os.getpid()}_"


def _postgres_url(tmp: Path) -> str:
    """A schema of its own per test (the store creates it), named after the test's directory so
    that opening the same URL again finds the same store."""
    base = postgres_server.server_url()
    assert base is not None
    schema = POSTGRES_SCHEMA_PREFIX + hashlib.sha256(str(tmp).encode()).hexdigest()[:16]
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


@contextmanager
def _postgres_schemas() -> Iterator[None]:
    """Each PostgreSQL test has its own schema: drop this session's when it ends (and any left
    by an interrupted session when it starts)."""
    base = postgres_server.server_url()
    if base is not None:
        postgres_server.drop_stale_schemas(base, POSTGRES_SCHEMAS)
    yield
    if base is not None:
        postgres_server.drop_schemas(base, POSTGRES_SCHEMA_PREFIX)


def _nats_url(tmp: Path) -> str:
    """A namespace of its own per test on the session's nats-server, named after the test's
    directory so that opening the same URL again finds the same store."""
    base = nats_server.server_url()
    assert base is not None
    return f"{base}?namespace={nats_server.namespace_for(str(tmp))}"


BACKENDS = [
    Backend(
        "postgres",
        _postgres_url,
        durable=True,
        missing=postgres_server.unavailable_reason,
        session=_postgres_schemas,
    ),
    Backend("nats", _nats_url, durable=True, missing=nats_server.unavailable_reason),
]


def pytest_configure(config: pytest.Config) -> None:
    add_backends(config, *BACKENDS)
