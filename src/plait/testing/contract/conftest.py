"""The contract suite: one set of tests that every store must pass.

A store joins the suite by adding one `Backend` to BACKENDS. A backend whose server is missing is
skipped on a developer's machine, but fails under CI=true: CI must never pass by not testing.

A store from outside plait runs the suite too (docs/stores.md): point PLAIT_CONTRACT_STORE at
its factory, `module:function`, called as `factory(url, create=…, read_only=…)` with a URL of
the scheme `contract-outside` naming a fresh directory (`contract-outside:///tmp/…/`): the same
URL again is the same store. PLAIT_CONTRACT_DURABLE=1 says the store keeps what it wrote across
opening it again; PLAIT_CONTRACT_BACKENDS=outside (names, comma-separated) runs only it.

Tests may be plain `async def` functions: tests/conftest.py runs each one in a fresh event loop,
so the suite needs no asyncio plugin.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from plait.stores import Store, open_store
from tests import nats_server, postgres_server

T = TypeVar("T")


@dataclass(frozen=True)
class Backend:
    name: str
    url: Callable[[Path], str]  # a fresh, empty store in this temporary directory
    durable: bool  # a store opened again on the same URL sees what the last one wrote
    missing: Callable[[], str | None] = lambda: None  # why the backend cannot run here, or None


def _postgres_url(tmp: Path) -> str:
    """A schema of its own per test (the store creates it), named after the test's directory so
    that opening the same URL again finds the same store."""
    base = postgres_server.server_url()
    assert base is not None
    schema = POSTGRES_SCHEMA_PREFIX + hashlib.sha256(str(tmp).encode()).hexdigest()[:16]
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


def _nats_url(tmp: Path) -> str:
    """A namespace of its own per test on the session's nats-server, named after the test's
    directory so that opening the same URL again finds the same store."""
    base = nats_server.server_url()
    assert base is not None
    return f"{base}?namespace={nats_server.namespace_for(str(tmp))}"


POSTGRES_SCHEMAS = "plait_c_"
# this session's schemas: sessions running side by side never drop each other's
POSTGRES_SCHEMA_PREFIX = f"{POSTGRES_SCHEMAS}{os.getpid()}_"

BACKENDS = [
    Backend("memory", lambda _tmp: "memory://", durable=False),
    Backend("sqlite", lambda tmp: f"sqlite:///{tmp / 'plait.db'}", durable=True),
    Backend("postgres", _postgres_url, durable=True, missing=postgres_server.unavailable_reason),
    Backend("nats", _nats_url, durable=True, missing=nats_server.unavailable_reason),
]

OUTSIDE_SCHEME = "contract-outside"


def _outside() -> Backend | None:
    """The backend of a store from outside plait (PLAIT_CONTRACT_STORE), if one is named."""
    target = os.environ.get("PLAIT_CONTRACT_STORE")
    if not target:
        return None
    import importlib

    from plait.stores import register_store

    module, _, name = target.partition(":")
    if not name:
        raise pytest.UsageError(
            f"PLAIT_CONTRACT_STORE={target!r}: write module:factory (my_store.testing:make)"
        )
    factory = getattr(importlib.import_module(module), name)
    register_store(OUTSIDE_SCHEME, factory)
    _install_entry_point(target)
    durable = os.environ.get("PLAIT_CONTRACT_DURABLE", "") == "1"
    return Backend("outside", lambda tmp: f"{OUTSIDE_SCHEME}://{tmp}/", durable=durable)


def _install_entry_point(target: str) -> None:
    """Make the outside store's scheme known to the processes tests start (`plait worker
    --db contract-outside://…`) as a package installs it: an entry point of the group
    `plait.stores`, in a dist-info folder on their PYTHONPATH (with this checkout's root, so
    that they import the factory's module as this process does)."""
    import tempfile

    site = Path(tempfile.mkdtemp(prefix="plait-contract-outside-"))
    info = site / "plait_contract_outside-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: plait-contract-outside\nVersion: 0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[plait.stores]\n{OUTSIDE_SCHEME} = {target}\n", encoding="utf-8"
    )
    root = Path(__file__).resolve().parents[2]
    paths = [str(site), str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)


_outside_backend = _outside()
if _outside_backend is not None:
    BACKENDS.append(_outside_backend)
_only = os.environ.get("PLAIT_CONTRACT_BACKENDS")
if _only:
    BACKENDS = [b for b in BACKENDS if b.name in _only.split(",")]


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_schemas() -> Iterator[None]:
    """Each PostgreSQL test has its own schema: drop this session's when it ends (and any left
    by an interrupted session when it starts)."""
    base = postgres_server.server_url()
    if base is not None:
        postgres_server.drop_stale_schemas(base, POSTGRES_SCHEMAS)
    yield
    if base is not None:
        postgres_server.drop_schemas(base, POSTGRES_SCHEMA_PREFIX)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _require(backend: Backend) -> Backend:
    reason = backend.missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the {backend.name} store cannot run under CI: {reason}")
        pytest.skip(f"{backend.name} store unavailable: {reason}")
    return backend


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    return _require(request.param)


@pytest.fixture(params=[b for b in BACKENDS if b.durable], ids=lambda b: b.name)
def durable_backend(request: pytest.FixtureRequest) -> Backend:
    return _require(request.param)


@pytest.fixture
def store_url(backend: Backend, tmp_path: Path) -> str:
    return backend.url(tmp_path)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    run(opened.open())
    try:
        yield opened
    finally:
        run(opened.close())


@pytest.fixture
def sqlite_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement the SQLite stores opened in this test run, in order (the same programs
    drive PostgreSQL, where a statement may be a round trip): to show what a feature costs."""
    from plait.stores import sqlite as sqlite_store

    run_sync = sqlite_store.run_sync
    sent: list[str] = []

    def recording(db: Any, program: Any) -> Any:
        def watched() -> Any:
            result = None
            while True:
                try:
                    op = program.send(result)
                except StopIteration as stop:
                    return stop.value
                sent.append(op[1])
                result = yield op

        return run_sync(db, watched())

    monkeypatch.setattr(sqlite_store, "run_sync", recording)
    return sent
