"""Integration tests: real worker processes, killed at random moments.

pytest tests/integration                       # 20 crash trials (SIGKILLs)
pytest tests/integration --crash-trials 200    # the long version
PLAIT_CRASH_SEED=1234 pytest tests/integration  # replay the random kill schedule of a failure
"""

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
