"""Real headless Chromium for the dashboard's tests: Debian's `chromium`, driven by Playwright
(never a browser download). Under CI=true a missing browser is installed with apt, and one that
still cannot start fails the run; on a developer's machine the browser tests are skipped."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
CI = os.environ.get("CI", "").lower() == "true"


def chromium() -> str:
    """The browser's path; installs Debian's package under CI when it is missing."""
    path = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if path is None and CI and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False,
                       capture_output=True)  # fmt: skip
        path = shutil.which("chromium")
    if path is None:
        message = "Debian's chromium is not installed (apt-get install -y chromium)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextmanager
def browser_context(**options: Any) -> Iterator[Any]:
    """A fresh Chromium (its own --user-data-dir) and a Playwright context on it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if CI:
            pytest.fail("playwright is not installed (pip install -e '.[test]')")
        pytest.skip("playwright is not installed")
    path = chromium()
    profile = tempfile.mkdtemp(prefix="plait-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=path, headless=True, args=ARGS, **options
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread; its base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=1)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
