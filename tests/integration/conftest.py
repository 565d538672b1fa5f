"""Integration tests: real worker processes, killed at random moments.

pytest tests/integration                       # 20 crash trials (SIGKILLs)
pytest tests/integration --crash-trials 200    # the long version
PLAIT_CRASH_SEED=1234 pytest tests/integration  # replay the random kill schedule of a failure
"""

from __future__ import annotations

# The --crash-trials option is declared in tests/conftest.py, so it works from the root.
