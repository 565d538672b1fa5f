"""Workflows and a worker process for the crash tests (tests/integration/test_crash.py).

Run as a script, it is one worker process that the test kills with SIGKILL at random moments:

    python crash_app.py DB_URL JOURNAL RUN_IDS_FILE [--lease S] [--max-recoveries N]

It serves both workflows until every run listed in RUN_IDS_FILE has ended, then exits 0.
Imported by the test, it provides the same workflows (same code, so same fingerprints) to start
runs with.

Every handler appends one line to the journal (JSON: run, step, attempt, pid, t) with O_APPEND and
fsync *before* it returns, so the test knows which handler executions happened, by which process,
and when.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import orjson

import plait

JOURNAL_ENV = "PLAIT_CRASH_JOURNAL"
FAN_OUT = 6
CHAIN = 3
SPREAD = 4  # steps spawned at run time


def journal(ctx: plait.StepContext) -> None:
    """Record that this handler ran, durably, before it returns."""
    line = orjson.dumps(
        {
            "run": ctx.run_id,
            "step": ctx.step,
            "attempt": ctx.attempt,
            "pid": os.getpid(),
            "t": time.time(),
        }
    )
    fd = os.open(os.environ[JOURNAL_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line + b"\n")  # one write of a short line: never interleaved with others
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the workload: chains, a fan-out/fan-in, a retried step, slow steps -------------------------
#
#   seed ─► fetch (slow) ─► part0 … part5 (slow-ish) ─► gather ─┐
#        ├► link1 ─► link2 ─► link3 (slow) ─────────────────────┤
#        ├► spread: spawns piece ×4 (slow-ish), gathers them ───┼► finish
#        └► flaky (fails on its first attempt) ─────────────────┘

crashy = plait.Workflow("crashy", version="1")


def seed(ctx: plait.StepContext, n: int) -> int:
    journal(ctx)
    return n


def fetch(ctx: plait.StepContext, seed: int) -> int:
    time.sleep(0.3)
    journal(ctx)
    return seed * 10


def part(ctx: plait.StepContext, fetch: int) -> int:
    time.sleep(0.1)
    journal(ctx)
    return fetch + int(ctx.step.removeprefix("part"))


def gather(ctx: plait.StepContext, **parts: int) -> int:
    journal(ctx)
    return sum(parts.values())


def link(ctx: plait.StepContext, **previous: int) -> int:
    (value,) = previous.values()
    time.sleep(0.2 if ctx.step == f"link{CHAIN}" else 0.03)
    journal(ctx)
    return value + 1


def flaky(ctx: plait.StepContext, seed: int) -> int:
    journal(ctx)
    if ctx.attempt == 1:
        raise RuntimeError("flaky fails on its first attempt")
    return seed


def piece(ctx: plait.StepContext, x: int) -> int:
    time.sleep(0.1)
    journal(ctx)
    return 2 * x


def spread(ctx: plait.StepContext, seed: int) -> list[plait.Handle]:
    handles = ctx.map(piece, [seed + i for i in range(SPREAD)])
    journal(ctx)
    return handles


def finish(
    ctx: plait.StepContext, gather: int, flaky: int, spread: list[int], **chain: int
) -> dict[str, int]:
    journal(ctx)
    return {
        "gather": gather,
        "flaky": flaky,
        "chain": chain[f"link{CHAIN}"],
        "spread": sum(spread),
    }


crashy.add_step("seed", seed)
crashy.add_step("fetch", fetch)
for _i in range(FAN_OUT):
    crashy.add_step(f"part{_i}", part)
crashy.add_step("gather", gather, deps=[f"part{i}" for i in range(FAN_OUT)])
crashy.add_step("link1", link, deps=["seed"])
for _i in range(2, CHAIN + 1):
    crashy.add_step(f"link{_i}", link, deps=[f"link{_i - 1}"])
crashy.task(piece)
crashy.add_step("spread", spread)
crashy.add_step("flaky", flaky, retry=plait.Retry(attempts=3, delay=0.05, jitter=0.0))
crashy.add_step("finish", finish, deps=[f"link{CHAIN}"])


def expected_output(n: int) -> dict[str, int]:
    """What a `crashy` run with input {"n": n} must output, however often its workers die."""
    return {
        "finish": {
            "gather": sum(n * 10 + i for i in range(FAN_OUT)),
            "flaky": n,
            "chain": n + CHAIN,
            "spread": sum(2 * (n + i) for i in range(SPREAD)),
        }
    }


# -- a step that kills its own worker every time -------------------------------------------------

suicidal = plait.Workflow("suicidal", version="1")


def before(ctx: plait.StepContext) -> int:
    journal(ctx)
    return 1


def die(ctx: plait.StepContext, before: int) -> int:
    journal(ctx)
    os.kill(os.getpid(), signal.SIGKILL)
    return before  # never reached


def after(ctx: plait.StepContext, die: int) -> int:
    journal(ctx)
    return die


suicidal.add_step("before", before)
suicidal.add_step("die", die)
suicidal.add_step("after", after)

# -- a step long enough to freeze its worker (SIGSTOP) while it runs --------------------------------

frozen = plait.Workflow("frozen", version="1")


def slow(ctx: plait.StepContext) -> int:
    time.sleep(1.0)
    journal(ctx)
    return os.getpid()


frozen.add_step("slow", slow)

WORKFLOWS = [crashy, suicidal, frozen]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db_url")
    parser.add_argument("journal")
    parser.add_argument("run_ids_file")
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--max-recoveries", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    os.environ[JOURNAL_ENV] = args.journal
    with open(args.run_ids_file, encoding="utf-8") as f:
        run_ids = [line.strip() for line in f if line.strip()]
    engine = plait.Engine(args.db_url, lease=args.lease, max_recoveries=args.max_recoveries)
    for wf in WORKFLOWS:
        engine.register(wf)
    print("ready", flush=True)  # the test times its kill from here
    engine.run_worker(concurrency=args.concurrency, until=run_ids, grace=10.0)
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
