"""Options and hooks shared by the whole suite (declared here so they work from the repository
root). An `async def` test runs in a fresh event loop: the suite needs no asyncio plugin."""

from __future__ import annotations

import asyncio
import compileall
import inspect
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# kills a store in a CI run: 3 rounds, each run a fresh random schedule (more: --crash-trials)
DEFAULT_CRASH_TRIALS = 4
ROOT = Path(__file__).resolve().parent.parent
MYPY_TEST = "test_quality.py::test_tool_passes[mypy-strict]"
_mypy = pytest.StashKey["subprocess.Popen[str]"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--crash-trials",
        type=int,
        default=DEFAULT_CRASH_TRIALS,
        metavar="N",
        help=f"number of worker processes SIGKILLed by the crash tests (default {DEFAULT_CRASH_TRIALS})",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """The commands and worker processes the tests start import plait afresh. Where
    PYTHONDONTWRITEBYTECODE is set (it is on the machines these tests run on), each of them would
    compile plait's ~100 modules again (0.3 s a process, minutes over the suite): compile them
    once, here (compileall writes the cache whatever that variable says): in the process that
    runs the tests, or with pytest-xdist in the controller, before it starts the workers."""
    if _is_xdist_worker(session.config):
        return
    for folder in (ROOT / "src", ROOT / "tests", ROOT / "examples"):
        if folder.is_dir():
            compileall.compile_dir(folder, quiet=1)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


def _start_mypy() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


MAX_WORKERS = 4  # each opens PostgreSQL connections, NATS servers and worker processes


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: a worker per core, at most MAX_WORKERS."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Strict mypy over the package takes ~20 s of one core: when its test is selected, start it
    now, so that it runs beside the tests that wait on servers and processes, not after them.
    Not in pytest-xdist's workers: each collects every test, and runs only some; the one that
    runs the test starts mypy then, beside the other workers' tests."""
    if _is_xdist_worker(session.config):
        return
    if any(item.nodeid.endswith(MYPY_TEST) for item in session.items):
        session.config.stash[_mypy] = _start_mypy()


@pytest.fixture
def mypy_run(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    """The mypy process started at collection (or one started now)."""
    proc = request.config.stash.get(_mypy, None) or _start_mypy()
    yield proc
    if proc.poll() is None:
        proc.kill()
