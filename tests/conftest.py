"""Options and hooks shared by the whole suite (declared here so they work from the repository
root). An `async def` test runs in a fresh event loop: the suite needs no asyncio plugin."""

from __future__ import annotations

import asyncio
import inspect

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


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True
