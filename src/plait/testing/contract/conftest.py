"""The contract suite's fixtures: one set of tests that every store must pass.

The suite runs on the stores that `backends(config)` names:
- a store from outside plait, when one is named (`--plait-contract-store=module:factory`, an
  option of plait's pytest plugin, or the environment variable PLAIT_CONTRACT_STORE; `python -m
  plait.testing.store_contract` sets it): only that store. Its factory is called as `factory(url, create=…, read_only=…)` with a
  URL of the scheme `contract-outside` naming a fresh directory (`contract-outside:///tmp/…/`):
  the same URL again is the same store. `--plait-contract-durable` (PLAIT_CONTRACT_DURABLE=1)
  says the store keeps what it wrote across opening it again;
- else plait's own stores that need no server (memory, SQLite), and those a plugin adds with
  `add_backends` (plait's checkout adds PostgreSQL and NATS, with the servers its tests start).

PLAIT_CONTRACT_BACKENDS=name,… runs only the stores of those names. A store whose server is
missing is skipped on a developer's machine, but fails under CI=true: CI must never pass by not
testing. Tests may be plain `async def` functions: each runs in a fresh event loop, so the
suite needs no asyncio plugin. A test module dropped into this directory joins the suite.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Coroutine, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import pytest

from plait.stores import Store, open_store
from plait.testing.contract.backends import (
    Backend,
    add_backends,
    backends,
    outside_store,
)

__all__ = ["Backend", "add_backends", "backends", "outside_store", "run"]

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    outside_store(config)  # a bad factory stops the session before any test, saying why


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    chosen = backends(metafunc.config)
    for name, only_durable in (("backend", False), ("durable_backend", True)):
        if name in metafunc.fixturenames:
            params = [b for b in chosen if b.durable or not only_durable]
            metafunc.parametrize(name, params, ids=[b.name for b in params], indirect=True)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """An `async def` test runs in a fresh event loop."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


@pytest.fixture(scope="session", autouse=True)
def _backend_sessions(request: pytest.FixtureRequest) -> Iterator[None]:
    """What each store sets up for the session and takes down after it (a server's leftovers)."""
    with ExitStack() as stack:
        for chosen in backends(request.config):
            if chosen.session is not None and chosen.missing() is None:
                stack.enter_context(chosen.session())
        yield


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _require(backend: Backend) -> Backend:
    reason = backend.missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the {backend.name} store cannot run under CI: {reason}")
        pytest.skip(f"{backend.name} store unavailable: {reason}")
    return backend


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.param
    return _require(chosen)


@pytest.fixture
def durable_backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.param
    return _require(chosen)


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
