"""Workflows whose handlers misbehave, for tests/integration/test_wedged_worker.py.

Served by `python -m plait worker wedge_app.py`, or run as a script, one worker process with a
given `max_recoveries` (the CLI has no flag for it):

    python wedge_app.py DB_URL MAX_RECOVERIES

It prints "ready" once it serves, and stops gracefully on SIGTERM. Imported by the test, it
provides the same workflows (same code, same fingerprints) to start runs with.

The handlers that wait for the test wait for the file named by $PLAIT_WEDGE_GO to exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

import plait

GO_ENV = "PLAIT_WEDGE_GO"
STARTED_ENV = "PLAIT_WEDGE_STARTED"  # a file each `stuck` handler appends a line to as it starts


def go() -> bool:
    return Path(os.environ[GO_ENV]).exists()


def mark_started() -> None:
    if STARTED_ENV in os.environ:
        with open(os.environ[STARTED_ENV], "a") as f:
            f.write(f"{os.getpid()}\n")


class Odd(BaseException):
    """Neither an Exception nor one of the interpreter's own."""


# -- handlers that raise what is not an Exception: each used to keep its worker slot forever ----

rude = plait.Workflow("rude", retry=plait.Retry(attempts=3, delay=0.05))


@rude.step()
async def cancelled_future() -> None:
    future = asyncio.get_running_loop().create_future()
    future.cancel()
    await future  # raises CancelledError here, though nobody cancelled the step


@rude.step()
async def generator_exit() -> None:
    raise GeneratorExit("leaked from a generator")


@rude.step()
async def odd() -> None:
    raise Odd("neither Exception nor interpreter's")


@rude.step()
def sync_base() -> None:
    raise BaseException("from a thread")


@rude.step()
def sync_cancelled() -> None:
    raise asyncio.CancelledError


@rude.step(after_any=["cancelled_future", "generator_exit", "odd", "sync_base", "sync_cancelled"])
def after() -> str:
    return "still serving"


# -- handlers that never end: async deaf to cancellation, sync deaf to ctx.cancelled -------------

deaf_async = plait.Workflow("deaf_async")
deaf_sync = plait.Workflow("deaf_sync")


@deaf_async.step(name="stuck")
async def stuck_async() -> str:
    mark_started()
    while not go():
        with contextlib.suppress(asyncio.CancelledError):  # the worker cannot interrupt it
            await asyncio.sleep(0.05)
    return "went"


@deaf_sync.step(name="stuck")
def stuck_sync() -> str:
    mark_started()
    while not go():
        time.sleep(0.05)  # never looks at ctx.cancelled
    return "went"


# -- a SIGTERM that the kernel gives to a handler's thread, not the main one -------------------

# Python runs its signal handlers on the main thread when that thread wakes; a worker's main
# thread that waited without waking never ran the worker's SIGTERM handler.
self_term = plait.Workflow("self_term")


@self_term.step
def terminate(ctx: plait.StepContext) -> str:
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # to this thread only
    while not ctx.cancelled and not go():
        time.sleep(0.05)
    return "went"


# -- a sync step that overstays its timeout, then one that must still get its own time ----------

threads = plait.Workflow("threads")


@threads.step(timeout=1)
def overstays() -> str:
    while not go():  # ignores ctx.cancelled: its thread stays busy past the timeout
        time.sleep(0.05)
    return "late"


@threads.step(after_any=["overstays"], timeout=2, retry=plait.Retry(attempts=2, delay=0.05))
def next_in_line() -> str:
    time.sleep(0.2)
    return "ran"


def main() -> None:
    url, max_recoveries = sys.argv[1], int(sys.argv[2])
    engine = plait.Engine(url, max_recoveries=max_recoveries)
    for wf in (rude, deaf_async, deaf_sync, threads, self_term):
        engine.register(wf)
    print("ready", flush=True)
    try:
        engine.run_worker(concurrency=1, grace=0.2)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
