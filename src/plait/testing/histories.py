"""Recorded histories: a run exported to a JSON file kept with the tests, and checked against
the code of today (`assert_replays`), so a change that would make old runs go another way is
seen in CI, not in production.

    export_run(engine, run_id, "tests/histories/orders-v3.json")     # once, from a real run
    assert_replays("tests/histories/orders-v3.json", orders)         # in every test run after

`assert_replays` replays each step the run recorded as done (but signals) with today's code, in this
process, writing nothing (`engine.replay`'s machinery: `engine.replay.replay_step`, the same
binding, validation, condition and timeout as a worker), from the run input and its
dependencies' outputs as recorded, and fails with every step whose new result differs.

The file (format 1) holds the workflow's plan as recorded (name, version, fingerprint, steps
and their dependencies), the run (as `Engine.get_run` shows it), each step (status, attempts,
iteration, output, error, and for a spawned step its task and input) and the run's events.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import orjson

from .. import _codec
from .._errors import InputError
from .._portal import Portal
from ..core.rows import StepInputs, StepRow, StepStatus
from ..engine.engine import Engine
from ..engine.replay import Replay, replay_step
from ..engine.views import Event
from ..workflow.definition import Workflow

T = TypeVar("T")
FORMAT = 1
KIND = "plait.testing history"


class ReplayMismatch(AssertionError):
    """Today's code does not reproduce a recorded run: `mismatches` lists each step's
    differences (`Replay.diff` entries) or why it could not be replayed."""

    def __init__(self, message: str, mismatches: dict[str, Any]) -> None:
        super().__init__(message)
        self.mismatches = mismatches


@dataclass(frozen=True, slots=True)
class History:
    """A recorded run as read from its file."""

    path: str
    workflow: dict[str, Any]
    run: dict[str, Any]
    steps: list[dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list)
    plait_version: str | None = None


# -- export ---------------------------------------------------------------------------------------


def export_run(engine: Engine, run_id: str, path: str | os.PathLike[str]) -> Path:
    """Write run `run_id` of `engine` to the JSON file `path` (replaced if it exists); the path.
    RunNotFound for an unknown run."""
    # on the Engine's own loop, where its store lives (as its blocking methods do)
    return engine._portal.call(export_run_async(engine, run_id, path))


async def export_run_async(engine: Engine, run_id: str, path: str | os.PathLike[str]) -> Path:
    """`export_run`, on the caller's loop."""
    run = await engine.get_run_async(run_id)
    views = await engine.steps_async(run_id)
    rows = {r.name: r for r in await engine.store.get_steps(run_id)}
    events = await engine.events_async(run_id)
    plan = await engine.store.get_workflow(run.workflow, run.fingerprint)
    document = {
        "kind": KIND,
        "format": FORMAT,
        "plait_version": _version(),
        "exported_at": datetime.now(UTC).isoformat(),
        "workflow": {
            "name": run.workflow,
            "version": run.version,
            "fingerprint": run.fingerprint,
            "steps": []
            if plan is None
            else [
                {"name": s.name, "dependencies": {d: str(k) for d, k in s.dependencies}}
                for s in plan.steps
            ],
        },
        "run": {
            "id": run.id,
            "status": str(run.status),
            "input": run.input,
            "output": run.output,
            "error": run.error,
            "created_at": run.created_at.isoformat(),
            "finished_at": None if run.finished_at is None else run.finished_at.isoformat(),
        },
        "steps": [_step(v, rows.get(v.name)) for v in views],
        "events": [_event(e) for e in events],
    }
    target = Path(path)
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    await asyncio.to_thread(target.write_bytes, data)
    return target


def _event(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type,
        "step": event.step,
        "payload": event.payload,
        "ts": event.ts.isoformat(),
    }


def _step(view: Any, row: StepRow | None) -> dict[str, Any]:
    return {
        "name": view.name,
        "status": str(view.status),
        "attempts": view.attempts,
        "iteration": view.iteration,
        "task": view.task,
        "parent": view.parent,
        "input": None if row is None else _codec.loads(row.input),
        "output": view.output,
        "gather": None if row is None else _codec.loads(row.gather),
        "error": None
        if view.error is None
        else {"code": view.error.code, "message": view.error.message},
        "skip_reason": view.skip_reason,
    }


def _version() -> str | None:
    try:
        return metadata.version("plait")
    except metadata.PackageNotFoundError:
        return None


# -- replay ---------------------------------------------------------------------------------------


def load_history(path: str | os.PathLike[str]) -> History:
    """Read a history file. InputError for a file that is not one (or of a newer format)."""
    try:
        document = _codec.loads(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the history {os.fspath(path)!r}: {exc}") from None
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise InputError(
            f"{os.fspath(path)!r} is not a plait.testing history (plait.testing.export_run "
            "writes them)"
        )
    if document.get("format") != FORMAT:
        raise InputError(
            f"the history {os.fspath(path)!r} has format {document.get('format')!r}; this plait "
            f"reads format {FORMAT}"
        )
    return History(
        path=os.fspath(path),
        workflow=document["workflow"],
        run=document["run"],
        steps=document["steps"],
        events=document.get("events", []),
        plait_version=document.get("plait_version"),
    )


def assert_replays(
    path: str | os.PathLike[str], wf: Workflow, *, skip: Iterable[str] = ()
) -> list[Replay]:
    """Replay every step that the run of history `path` recorded as done with today's code of
    `wf`; their replays, when each reproduced its recorded output. `skip`: steps (or tasks)
    not to call, such as ones with side effects outside plait.

    Raises ReplayMismatch (an AssertionError) naming each step whose output differs or that
    today's code lacks; InputError for a history of another workflow or an unknown name in
    `skip`."""
    return _blocking(_replays(load_history(path), wf, set(skip)))


async def _replays(history: History, wf: Workflow, skip: set[str]) -> list[Replay]:
    if not isinstance(wf, Workflow):
        raise InputError(f"assert_replays takes a plait.Workflow, got {wf!r}")
    recorded = history.workflow["name"]
    if wf.name != recorded:
        raise InputError(
            f"the history {history.path!r} is a run of workflow {recorded!r}, not {wf.name!r}"
        )
    wf.plan()
    steps = {s["name"]: s for s in history.steps}
    known = {*steps, *(s["task"] for s in history.steps if s["task"])}
    unknown = sorted(skip - known)
    if unknown:
        raise InputError(
            f"skip= names {', '.join(repr(n) for n in unknown)}, which the run of "
            f"{history.path!r} does not have"
        )
    run_input = _codec.dumps(history.run["input"])
    replays: list[Replay] = []
    mismatches: dict[str, Any] = {}
    for index, step in enumerate(history.steps):
        name, task = step["name"], step["task"]
        if step["status"] != StepStatus.DONE or name in skip or (task and task in skip):
            continue
        definition = wf.task_of(task) if task else wf._steps.get(name)
        if definition is None:
            what = f"task {task!r}" if task else "such step"
            mismatches[name] = f"today's workflow has no {what}"
            continue
        if definition.is_signal:  # its output came from outside: nothing to call
            continue
        absent = [d for d in definition.data_deps if d not in steps]
        if absent:
            mismatches[name] = (
                f"today's code reads the output of {', '.join(repr(d) for d in absent)}, "
                "which the run does not have"
            )
            continue
        row = StepRow(
            run_id=history.run["id"], name=name, idx=index, status=StepStatus.DONE, unmet=0,
            attempt=step["attempts"], iteration=step["iteration"], task=task,
            input=None if step["input"] is None else _codec.dumps(step["input"]),
            output=_codec.dumps(step["output"]),
        )  # fmt: skip
        inputs = StepInputs(
            run_input,
            {
                d: (StepStatus(steps[d]["status"]), _codec.dumps(steps[d]["output"]))
                for d in definition.data_deps
            },
        )
        replay = await replay_step(wf, definition, row, inputs, history.workflow["fingerprint"])
        replays.append(replay)
        if step["gather"] is not None:  # it returned handles: compare the steps it gathers
            if replay.status != "done" or replay.output != step["gather"]:
                mismatches[name] = replay.diff
        elif replay.changed:
            mismatches[name] = replay.diff
    if mismatches:
        raise ReplayMismatch(_told(history, wf, mismatches), mismatches)
    return replays


def _told(history: History, wf: Workflow, mismatches: dict[str, Any]) -> str:
    lines = [
        f"today's code of workflow {wf.name!r} (version {wf.version}, {wf.fingerprint}) does "
        f"not replay the run recorded in {history.path!r} (version "
        f"{history.workflow['version']}, {history.workflow['fingerprint']}):"
    ]
    for name, what in mismatches.items():
        if isinstance(what, str):
            lines.append(f"  {name}: {what}")
            continue
        lines.append(f"  {name}:")
        for entry in what:
            a, b = _short(entry.get("a")), _short(entry.get("b"))
            lines.append(f"    {entry['path']} {entry['op']}: recorded {a}, now {b}")
    return "\n".join(lines)


def _short(value: Any, most: int = 120) -> str:
    try:
        text = _codec.dumps(value).decode()
    except _codec.EncodeError:
        text = repr(value)
    return text if len(text) <= most else text[: most - 1] + "…"


def _blocking(coro: Coroutine[Any, Any, T]) -> T:
    portal = Portal("plait-testing")
    try:
        return portal.call(coro)
    finally:
        portal.close()
