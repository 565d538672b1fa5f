"""The workflows of tests/integration/test_subflow_crash.py: a parent whose step calls a child
workflow; the child's step blocks until the file named by PLAIT_SUBFLOW_RELEASE exists, so
that the test can kill the worker while the parent waits for it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import plait

RELEASE_ENV = "PLAIT_SUBFLOW_RELEASE"

child = plait.Workflow("subflow-child")


@child.step()
def slow(ctx: plait.StepContext, n: int) -> int:
    release = Path(os.environ[RELEASE_ENV])
    while not release.exists():  # polled: the test creates it once the worker is killed
        ctx.check_cancelled()
        time.sleep(0.02)
    return n * 2


parent = plait.Workflow("subflow-parent", calls=[child])


@parent.step()
def call(ctx: plait.StepContext, n: int) -> int:
    return ctx.call(child, {"n": n})["slow"]  # type: ignore[no-any-return]
