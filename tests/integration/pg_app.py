"""Workflows for the PostgreSQL worker tests (tests/integration/test_postgres_workers.py).

The test serves them with `plait worker pg_app.py --db postgresql://…` processes, and imports this
file itself to start runs (same code, so same fingerprints). A mixed workload:

    mixed (input n; completes):
      root ─► c1 ─► c2 ─► c3 ─► c4 ─────────────────────────────┐
           ├► part0 … part5 ─► gather ─────────────────────────┼► finish
           ├► flaky (fails twice, succeeds on its 3rd attempt) ─┤
           └► brittle (optional; fails at once, Permanent) ─► fallback (default for brittle)

    doomed (input n; fails):
      first ─► bad (fails both of its 2 attempts) ─► never (skipped)
            └► side

Every handler appends one line to the journal named by $PLAIT_PG_JOURNAL (JSON: run, step,
attempt, pid, t) with O_APPEND and fsync before it returns or raises, so the test knows which
handler executions happened, where and when. $PLAIT_PG_PAUSE (seconds, default 0.01) is how long
the slower steps sleep: long enough, and a workload outlasts a server restart.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

import plait

JOURNAL_ENV = "PLAIT_PG_JOURNAL"
PAUSE_ENV = "PLAIT_PG_PAUSE"
CHAIN = 4
FAN_OUT = 6
FLAKY_FAILURES = 2


def journal(ctx: plait.StepContext) -> None:
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


def pause() -> None:
    time.sleep(float(os.environ.get(PAUSE_ENV, "0.01")))


# -- mixed: chains, a fan-out/fan-in, retries, an optional failure with a fallback ---------------

mixed = plait.Workflow("mixed", version="1")


def root(ctx: plait.StepContext, n: int) -> int:
    journal(ctx)
    return n


def link(ctx: plait.StepContext, **previous: int) -> int:
    (value,) = previous.values()
    pause()
    journal(ctx)
    return value + 1


def part(ctx: plait.StepContext, root: int) -> int:
    pause()
    journal(ctx)
    return root * 10 + int(ctx.step.removeprefix("part"))


def gather(ctx: plait.StepContext, **parts: int) -> int:
    journal(ctx)
    return sum(parts.values())


def flaky(ctx: plait.StepContext, root: int) -> int:
    journal(ctx)
    if ctx.attempt <= FLAKY_FAILURES:
        raise plait.Retryable(f"flaky fails on attempt {ctx.attempt}", code="flaky")
    return -root


def brittle(ctx: plait.StepContext, root: int) -> int:
    journal(ctx)
    raise plait.Permanent("brittle always fails", code="brittle")


def fallback(ctx: plait.StepContext, brittle: int) -> int:
    journal(ctx)
    return brittle


def finish(
    ctx: plait.StepContext, gather: int, flaky: int, fallback: int, **chain: int
) -> dict[str, int]:
    pause()
    journal(ctx)
    return {"gather": gather, "flaky": flaky, "fallback": fallback, "chain": chain[f"c{CHAIN}"]}


mixed.add_step("root", root)
mixed.add_step("c1", link, deps=["root"])
for _i in range(2, CHAIN + 1):
    mixed.add_step(f"c{_i}", link, deps=[f"c{_i - 1}"])
for _i in range(FAN_OUT):
    mixed.add_step(f"part{_i}", part)
mixed.add_step("gather", gather, deps=[f"part{i}" for i in range(FAN_OUT)])
mixed.add_step(
    "flaky", flaky, retry=plait.Retry(attempts=FLAKY_FAILURES + 1, delay=0.05, jitter=0.0)
)
mixed.add_step("brittle", brittle, optional=True, retry=plait.Retry(attempts=3, delay=0.05))
mixed.add_step("fallback", fallback, defaults={"brittle": -1})
mixed.add_step("finish", finish, deps=["gather", "flaky", "fallback", f"c{CHAIN}"])

# -- doomed: a step that fails every attempt fails the run; its dependent is skipped -------------

doomed = plait.Workflow("doomed", version="1")


def first(ctx: plait.StepContext, n: int) -> int:
    journal(ctx)
    return n


def bad(ctx: plait.StepContext, first: int) -> int:
    pause()
    journal(ctx)
    raise RuntimeError(f"bad fails on attempt {ctx.attempt}")


def never(ctx: plait.StepContext, bad: int) -> int:
    journal(ctx)
    return bad


def side(ctx: plait.StepContext, first: int) -> int:
    journal(ctx)
    return first + 1


doomed.add_step("first", first)
doomed.add_step("bad", bad, retry=plait.Retry(attempts=2, delay=0.05, jitter=0.0))
doomed.add_step("never", never)
doomed.add_step("side", side)

WORKFLOWS = [mixed, doomed]


# -- what a run must end as, however its workers fare ----------------------------------------------

COMPLETED, FAILED, SKIPPED = "step_completed", "step_failed", "step_skipped"


def expected_steps(workflow: str) -> dict[str, tuple[str, int]]:
    """step → (its one outcome event, its attempts)."""
    if workflow == "mixed":
        steps = {step.name: (COMPLETED, 1) for step in mixed.steps}
        steps["flaky"] = (COMPLETED, FLAKY_FAILURES + 1)
        steps["brittle"] = (FAILED, 1)  # Permanent: no retry, though the budget is 3
        return steps
    return {
        "first": (COMPLETED, 1),
        "bad": (FAILED, 2),
        "never": (SKIPPED, 0),
        "side": (COMPLETED, 1),
    }


def expected_output(workflow: str, n: int) -> dict[str, Any] | None:
    """The output of a completed run, or None for a run that must fail."""
    if workflow != "mixed":
        return None
    return {
        "finish": {
            "gather": sum(n * 10 + i for i in range(FAN_OUT)),
            "flaky": -n,
            "fallback": -1,
            "chain": n + CHAIN,
        }
    }
