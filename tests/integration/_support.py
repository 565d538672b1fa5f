"""Helpers the integration tests share: loading an app module by path, condition waits, and a
fresh store for real processes."""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from tests import postgres_server

T = TypeVar("T")


def load_app(path: Path) -> ModuleType:
    """Import the app file the worker processes serve, under its own module name."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(path.stem, module)
    spec.loader.exec_module(module)
    return module


def wait_for(
    read: Callable[[], T],
    ok: Callable[[T], bool],
    what: str,
    diagnose: Callable[[], str],
    timeout: float,
    max_pause: float = 0.05,
) -> T:
    """Poll `read()` until `ok(value)`; past `timeout`, fail saying what and how things stand."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        value = read()
        if ok(value):
            return value
        assert time.monotonic() < deadline, (
            f"{what}: not within {timeout}s: {value!r}\n{diagnose()}"
        )
        time.sleep(pause)  # polling interval of a condition wait with a deadline
        pause = min(pause * 2, max_pause)


@contextlib.contextmanager
def fresh_store_url(kind: str, tmp_path: Path, prefix: str) -> Iterator[str]:
    """A fresh, empty store that outlives the processes using it: a SQLite file in `tmp_path`,
    or a PostgreSQL schema `<prefix>…` (skipped without a server, failed under CI=true) that
    is dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'plait.db'}"
        return
    base = postgres_server.require_server_url()
    url = postgres_server.fresh_schema_url(base, prefix)
    try:
        yield url
    finally:
        postgres_server.drop_schemas(base, url.rsplit("schema=", 1)[-1])


def stop_workers(workers: Iterable[subprocess.Popen[bytes]], grace: float = 30.0) -> None:
    """SIGTERM every worker still running (a graceful stop), then wait; kill one that overstays."""
    workers = list(workers)
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()
