"""A worker process for tests/integration/test_artifact_crash.py:

    python artifact_app.py DB_URL RUN_ID MARKER GO

Its one step saves an artifact, appends "<pid> <artifact id>" to MARKER (fsync'ed), then waits
until the file GO exists before it returns: the test kills the first worker in that wait.
"""

from __future__ import annotations

import os
import sys
import time

import plait

wf = plait.Workflow("artifact_crash")


@wf.step
def save(ctx: plait.StepContext, marker: str, go: str) -> str:
    ref = ctx.save_artifact("out.bin", ctx.run_id.encode() * 1000)
    fd = os.open(marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()} {ref.id}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    while not os.path.exists(go):  # the test decides when an attempt may finish
        time.sleep(0.01)
    return ref.id


def main(url: str, run_id: str) -> int:
    with plait.Engine(url, lease=1.0) as engine:
        engine.register(wf)
        engine.run_worker(until=run_id, timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
