"""Helpers the integration tests share: loading an app module by path, and condition waits."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

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
