"""Options shared by the whole suite (declared here so they work from the repository root)."""

from __future__ import annotations

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
