"""Record a SQLite file with the plait on PYTHONPATH (an earlier version's checkout):

    PYTHONPATH=/path/to/old/src:. python -m tests.testing.databases.make OUT.db

It holds run "done" (n=3), finished by a worker, and run "waiting" (n=5), started and never
worked on: today's code must read the first as it was and finish the second."""

from __future__ import annotations

import sys

import plait
from tests.testing.databases.flow import wf


def main() -> None:
    out = sys.argv[1]
    engine = plait.Engine(f"sqlite:///{out}")
    try:
        engine.register(wf)
        done = engine.start(wf, {"n": 3}, run_id="done")
        engine.run_worker(until=[done.id], timeout=60)
        engine.start(wf, {"n": 5}, run_id="waiting")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
