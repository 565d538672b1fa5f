"""The app of the flow-control process tests (test_flow_processes.py): steps of limited queues
that log when they start and end (epoch seconds, fsync'ed) to the file in $PLAIT_FLOW_LOG, one
JSON line each, so that the test can compute how many ran at once across processes."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import orjson

import plait

LOG_ENV = "PLAIT_FLOW_LOG"
WORK = 0.03  # seconds each step works: long enough for steps of several workers to overlap


def _log(kind: str, queue: str, key: str | None) -> None:
    line = {"kind": kind, "queue": queue, "key": key, "t": time.time(), "pid": os.getpid()}
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, orjson.dumps(line) + b"\n")  # one write: lines never interleave
    finally:
        os.close(fd)


def _work(queue: str, key: str | None = None) -> None:
    _log("start", queue, key)
    time.sleep(WORK)  # the step's work
    _log("end", queue, key)


limited = plait.Workflow("limited")


PAIR_WAIT = 5.0  # seconds a `narrow` step waits for a second one to run beside it


def _open_at_once(queue: str) -> int:
    """The most steps of `queue` between their start and end lines so far (the log, read)."""
    with open(os.environ[LOG_ENV], "rb") as f:
        lines = [orjson.loads(line) for line in f.read().splitlines()]
    marks = sorted(
        (x["t"], 1 if x["kind"] == "start" else -1) for x in lines if x["queue"] == queue
    )
    now = peak = 0
    for _, delta in marks:
        now += delta
        peak = max(peak, now)
    return peak


@limited.step(queue="narrow")
def narrow(n: int) -> int:
    """Until two `narrow` steps have run at once, each waits for a second to start beside it:
    a loaded machine may never overlap two 30 ms steps, and the test checks that the limit
    (2) is reached, not only that it holds. With a limit of 1 each would wait in vain."""
    _log("start", "narrow", None)
    deadline = time.monotonic() + PAIR_WAIT
    while _open_at_once("narrow") < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(WORK)
    _log("end", "narrow", None)
    return n


@limited.step(queue="keyed", concurrency_key=lambda customer: customer, key_limit=1)
def keyed(customer: str, n: int) -> int:
    _work("keyed", customer)
    return n


@limited.step
def account(customer: str) -> str:
    """The account a customer bills to, known only once this step ran: ann and bob share one."""
    return f"account-{len(customer) % 2}"


@limited.step(queue="billing", concurrency_key=lambda account: account, key_limit=1)
def bill(account: str, n: int) -> int:
    _work("billing", account)
    return n


@limited.step(queue="rated")
def rated(n: int) -> int:
    _work("rated")
    return n


WORKFLOWS = [limited]


placed = plait.Workflow("placed")


@placed.step(target="gpu")
def train(n: int) -> int:
    _work("train")
    return os.getpid()


@placed.step(colocate_with="train")
def evaluate(train: int) -> int:
    _work("evaluate")
    return os.getpid()


@placed.task
def part(x: int) -> int:
    _work("part")
    return os.getpid()


@placed.step
def split(ctx: plait.StepContext, n: int) -> list[plait.Handle]:
    return [ctx.spawn(part, input=i, colocate=True) for i in range(2)]


@placed.step
def where(split: list[int]) -> int:
    return os.getpid()


WORKFLOWS.append(placed)


# A queue of one slot: the test holds it, and a worker process (below) waits for it.
held = plait.Workflow("held")


@held.step(queue="solo")
def first() -> str:
    return "first"


@held.step(queue="solo")
def second() -> str:
    return "second"


def serve_counting_claims(url: str, claims_log: str, run_id: str, poll: str = "60") -> None:
    """A worker process that appends the time of each of its claims to `claims_log`, and
    claims unprompted only once a minute (its sweep): what makes it claim sooner was pushed to
    it or, on SQLite, seen at one of its looks every `poll` seconds (a read of the change
    counter, not a claim, while nothing changes)."""
    engine = plait.Engine(url, poll_interval=float(poll), sweep_interval=60.0)
    original = engine.store.claim

    async def claim(**kwargs: Any) -> Any:
        fd = os.open(claims_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{time.time()}\n".encode())
        finally:
            os.close(fd)
        return await original(**kwargs)

    engine.store.claim = claim  # type: ignore[method-assign]  # instrumenting this one store
    with engine:
        engine.run_worker(until=run_id, workflows=[held], concurrency=2, timeout=60)


if __name__ == "__main__":
    serve_counting_claims(*sys.argv[1:5])
