"""Loading workflow files from text and running them on the memory store."""

from __future__ import annotations

import textwrap
from typing import Any

import plait

ACTIONS = "tests.unit.declare.actions"


def flow(body: str, *, name: str = "flow", file: str = "flow.yaml") -> plait.Workflow:
    """A workflow file whose first lines name it and import the test actions; `body` follows
    (so its line numbers start at 4)."""
    return plait.loads(text(body, name=name), file=file)


def text(body: str, *, name: str = "flow") -> str:
    return f"name: {name}\nimports: [{ACTIONS}]\n\n" + textwrap.dedent(body).lstrip("\n")


def run(
    wf: plait.Workflow, run_input: dict[str, Any] | None = None
) -> tuple[plait.Engine, plait.RunHandle]:
    engine = plait.Engine("memory://")
    engine.register(wf)
    handle = engine.start(wf, run_input or {})
    engine.run_worker(until=handle, timeout=30)
    return engine, handle


def step_errors(engine: plait.Engine, run_id: str) -> dict[str, tuple[str, str]]:
    """{step: (code, message)} of the failed steps."""
    return {
        s.name: (s.error.code, s.error.message)
        for s in engine.steps(run_id)
        if s.error is not None and s.status.value == "failed"
    }
