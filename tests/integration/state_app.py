"""The workflow of tests/integration/test_session_state_processes.py: parts running in parallel
on several worker processes, each appending to one list of the session state and setting one
key, then a join that reads what they left."""

from __future__ import annotations

import os
import time

import plait

PARTS = 24

wf = plait.Workflow("state-parts")


def make(i: int) -> object:
    def part(ctx: plait.StepContext) -> int:
        time.sleep(0.002 * (i % 5))
        ctx.state.append("parts", i)
        ctx.state.append("pids", os.getpid())
        ctx.state.set("last", i)
        return i

    return part


NAMES = [f"part{i}" for i in range(PARTS)]
for i, name in enumerate(NAMES):
    wf.add_step(name, make(i))  # type: ignore[arg-type]  # a handler made per part


@wf.step(after=NAMES)
def join(ctx: plait.StepContext) -> list[int]:
    return sorted(ctx.state.get("parts"))
