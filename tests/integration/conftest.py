"""Integration tests: real worker processes, killed at random moments.

pytest tests/integration                       # 4 crash trials a store (SIGKILLs)
pytest tests/integration --crash-trials 200    # the long version
PLAIT_CRASH_SEED=1234 pytest tests/integration  # replay the random kill schedule of a failure
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The --crash-trials option is declared in tests/conftest.py, so it works from the root.


@pytest.fixture
def fleet_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Fleets of `plait worker` processes on a store (test_postgres_workers.Fleet), closed (their
    workers killed) after the test; the PostgreSQL and NATS fault tests share them."""
    from tests.integration.test_postgres_workers import Fleet

    made: list[Fleet] = []

    def make(url: str, **kwargs: Any) -> Fleet:
        fleet = Fleet(tmp_path, url, **kwargs)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.close()
