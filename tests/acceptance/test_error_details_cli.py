"""`plait runs show RUN --step STEP` prints the JSON details a step raised with its error
(issue 18, item 5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import plait

from .conftest import Cli, import_file

APP = """
import plait

wf = plait.Workflow("cards", retry=plait.Retry(attempts=2, delay=0))

@wf.step
def charge(ctx: plait.StepContext) -> None:
    if ctx.attempt == 1:
        raise plait.Retryable("gateway busy", code="busy", details={"retry_in": 3})
    raise plait.Permanent("card declined", code="declined", details={"card": "visa <b>"})
"""


def test_runs_show_step_prints_the_details(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    wf = import_file(write_app("cards_app.py", APP)).wf
    handle = engine.start(wf, run_id="c1")
    engine.run_worker(until=handle, workflows=[wf], timeout=30)
    shown = cli("runs", "show", "c1", "--step", "charge")
    assert shown.code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    first = lines.index(next(line for line in lines if line.startswith("attempt 1 failed")))
    assert "[busy] gateway busy; retried" in lines[first]
    assert lines[first + 1] == 'details   {"retry_in": 3}'
    assert 'details   {"card": "visa <b>"}' in lines
    events = cli("runs", "events", "c1", "--json").json()
    failed = next(e for e in events if e["type"] == "step_failed")
    assert failed["payload"]["details"] == {"card": "visa <b>"}
