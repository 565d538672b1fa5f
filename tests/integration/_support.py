"""Helpers the integration tests share: loading an app module by path, condition waits, and a
fresh store for real processes."""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType

from plait.testing.contract.helpers import wait_for as wait_for  # the suite's condition wait
from tests import postgres_server


def load_app(path: Path) -> ModuleType:
    """Import the app file the worker processes serve, under its own module name."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(path.stem, module)
    spec.loader.exec_module(module)
    return module


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
