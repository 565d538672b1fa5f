"""plait.testing: test your workflows without servers and without waiting.

- `run(wf, input, mocks=, approve=, signals=)`: a run to its end in one call, on a memory store;
  `RunResult` holds the run, its steps and its events; `assert_completed(result)` fails a test
  with the run's steps and errors told readably (`describe`).
- `call_step(wf, "charge", input=, fetch=...)`: one step's code with given upstream outputs and
  a test context; `StepCall` holds what it returned, recorded, saved and spawned.
- `TestEngine()`: an Engine on a memory store whose `clock` (a `VirtualClock`) the test moves,
  or which skips by itself to what is due: delays, retries, expiries, deadlines, rate limits,
  schedules and leases without waiting.
- `explore_crashes(wf, input, mocks=, effects=)`: the run again and again, its worker crashing
  before and after each durable write and each step delivered twice; `SideEffects` stands for
  the outside world the steps call with idempotency keys; `CrashesFound` names what broke.
- `export_run(engine, run_id, path)` and `assert_replays(path, wf)`: a recorded run kept with
  the tests, checked against today's code.
- the pytest plugin (`plait.testing.plugin`, entry point `pytest11`): the `plait_engine`
  and `plait_clock` fixtures.
- for store authors, `python -m plait.testing.store_contract module:factory`: plait's store
  contract suite (the test package `plait.testing.contract`) run on a store of their own.

This package is public (its names below); its modules are not. Nothing here is imported by
`import plait`, and each name is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .clock import TestEngine, VirtualClock
    from .crashes import CrashesFound, SideEffects, explore_crashes
    from .histories import ReplayMismatch, assert_replays, export_run, load_history
    from .inline import RunStuck, run, run_async
    from .results import RunResult, assert_completed, describe
    from .steps import Recorded, Saved, Spawned, StepCall, call_step, call_step_async

_LAZY = {
    "CrashesFound": ".crashes",
    "SideEffects": ".crashes",
    "explore_crashes": ".crashes",
    "TestEngine": ".clock",
    "VirtualClock": ".clock",
    "ReplayMismatch": ".histories",
    "assert_replays": ".histories",
    "export_run": ".histories",
    "load_history": ".histories",
    "RunResult": ".results",
    "RunStuck": ".inline",
    "assert_completed": ".results",
    "describe": ".results",
    "run": ".inline",
    "run_async": ".inline",
    "Recorded": ".steps",
    "Saved": ".steps",
    "Spawned": ".steps",
    "StepCall": ".steps",
    "call_step": ".steps",
    "call_step_async": ".steps",
}

__all__ = [
    "CrashesFound",
    "Recorded",
    "ReplayMismatch",
    "RunResult",
    "RunStuck",
    "Saved",
    "SideEffects",
    "Spawned",
    "StepCall",
    "TestEngine",
    "VirtualClock",
    "assert_completed",
    "assert_replays",
    "call_step",
    "call_step_async",
    "describe",
    "explore_crashes",
    "export_run",
    "load_history",
    "run",
    "run_async",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
