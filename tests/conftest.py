"""Options and hooks shared by the whole suite (declared here so they work from the repository
root). An `async def` test runs in a fresh event loop: the suite needs no asyncio plugin."""

from __future__ import annotations

import asyncio
import compileall
import inspect
from pathlib import Path

import pytest

DEFAULT_CRASH_TRIALS = 20


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
    once, here (compileall writes the cache whatever that variable says)."""
    root = Path(__file__).resolve().parent.parent
    for folder in (root / "src", root / "tests", root / "examples"):
        if folder.is_dir():
            compileall.compile_dir(folder, quiet=1)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True
