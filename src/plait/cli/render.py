"""What the command line shows: JSON documents, rich tables, the progress of a run, log output.

Kept apart from the command modules, which parse arguments and drive the engine, so that each
reads in one sitting. Humans get tables and colours on a terminal; `--json` and pipes get stable, plain output.
"""

from __future__ import annotations

import functools
import json
import logging
import shlex
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..core.cascade import CONDITION
from ..core.rows import USER_EVENT_PREFIX, Excerpt, StepStatus

if TYPE_CHECKING:  # rich and the engine are imported by the functions that use them
    import asyncio

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from ..core.versions import PlanDiff
    from ..engine.engine import Engine
    from ..engine.views import Event, FailedStep, Inspection, Run, Step, Waiting, WorkflowInfo

PAYLOAD_WIDTH = 100  # characters of an event payload shown in a table
SHOW_WIDTH = 200  # characters of a run's input and output `plait runs show` prints
STEP_WIDTH = 2000  # characters of a step's output `plait runs show --step` prints
SPAWNED_SHOWN = 20  # spawned steps listed per parent by `runs show`; the rest are counted
NAMES_SHOWN = 10  # step names listed on one line (`runs fork`); more are counted
SAME_SHOWN = 20  # unchanged steps listed as rows by `runs diff`; more are counted in a line

STATUS_STYLE = {
    "completed": "green",
    "done": "green",
    "failed": "red",
    "cancelled": "yellow",
    "skipped": "yellow",
    "running": "cyan",
    "ready": "blue",
    "pending": "dim",
    "waiting": "magenta",
    "pausing": "magenta",
    "paused": "magenta",
}


def _console(stderr: bool) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # piped: do not wrap tables at 80 columns
        console = Console(stderr=stderr, highlight=False, width=240)
    return console


def stdout_console() -> Console:
    return _console(stderr=False)


@functools.cache
def stderr_console() -> Console:
    """One console for stderr, shared by logging and the progress bar so they do not collide."""
    return _console(stderr=True)


# -- JSON documents ------------------------------------------------------------------------------


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def run_doc(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "fingerprint": run.fingerprint,
        "status": run.status.value,
        "input": run.input,
        "output": run.output,
        "error": run.error,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration": run.duration,
        "deadline": _iso(run.deadline),
        "parent_run": run.parent_run,
        "forked_from": run.forked_from,
        "called_by": run.called_by,
        "state": run.state,
        "name": run.name,
        "labels": run.labels,
        "metadata": run.metadata,
    }


def step_doc(step: Step) -> dict[str, Any]:
    return {
        "name": step.name,
        "status": step.status.value,
        "attempts": step.attempts,
        "output": step.output,
        "error": {"code": step.error.code, "message": step.error.message} if step.error else None,
        "skip_reason": step.skip_reason,
        "worker": step.worker,
        "ready_at": _iso(step.ready_at),
        "started_at": _iso(step.started_at),
        "finished_at": _iso(step.finished_at),
        "queued": step.queued,
        "duration": step.duration,
        "gate": step.gate.value if step.gate is not None else None,
        "expires_at": _iso(step.expires_at),
        "reused_from": step.reused_from,
        "task": step.task,
        "parent": step.parent,
        "code": step.code,
        "input": step.input,
        "calling": step.calling,
    }


def event_doc(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type,
        "step": event.step,
        "payload": iso_times(event.payload),
        "ts": _iso(event.ts),
    }


def workflow_doc(info: WorkflowInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "version": info.version,
        "fingerprint": info.fingerprint,
        "steps": list(info.steps),
        "registered_at": _iso(info.registered_at),
        "code_changes": info.code_changes,
        "code": info.code,
        "runs_in_flight": info.runs_in_flight,
        "workers": list(info.workers),
    }


def version_diff_lines(name: str, diff: PlanDiff) -> list[str]:
    """`plait workflows diff` in words, a line per change."""
    lines = [f"workflow {name}: {diff.a} -> {diff.b}"]
    if diff.same:
        return [*lines, "same graph, same code"]
    lines.extend(f"step added    {n}" for n in diff.added)
    lines.extend(f"step removed  {n}" for n in diff.removed)
    for step, edges in diff.edges.items():
        changes = [f"+{e}" for e in edges["added"]] + [f"-{e}" for e in edges["removed"]]
        lines.append(f"edges         {step}: {', '.join(changes)}")
    for step, fields in diff.options.items():
        lines.append(f"options       {step}: {', '.join(fields)}")
    for step, code in diff.code.items():
        lines.append(f"code          {step}: {code['a']} -> {code['b']}")
    if diff.graph and len(lines) == 1 + len(diff.code):
        lines.append("graph         the workflow's own options (retry, timeout, fail_fast)")
    if not diff.graph:
        lines.append("same steps, edges and options")
    return lines


def inspection_doc(inspection: Inspection) -> dict[str, Any]:
    return {
        "run": run_doc(inspection.run),
        "steps": [step_doc(s) for s in inspection.steps],
        "counts": inspection.counts,
        "blockers": inspection.blockers,
        "duration": inspection.duration,
        "notes": inspection.notes,
    }


def state_history_doc(events: Sequence[Event]) -> list[dict[str, Any]]:
    """The changes of a run's session state (its `state_changed` events), in commit order."""
    return [
        {"seq": e.seq, "step": e.step, "op": e.payload.get("op"), "key": e.payload.get("key"),
         "value": e.payload.get("value"), "ts": _iso(e.ts)}
        for e in events
        if e.type == "state_changed"
    ]  # fmt: skip


def show_state(console: Console, state: dict[str, Any], events: Sequence[Event]) -> None:
    """A run's session state, then its history: one line per change, with the step."""
    from rich.markup import escape
    from rich.table import Table

    console.print()
    console.print(f"[bold]state[/]     {escape(_short(state, 400))}")
    history = state_history_doc(events)
    if not history:
        return
    table = Table(box=None, header_style="bold")
    for column in ("SEQ", "STEP", "CHANGE", "VALUE"):
        table.add_column(column, overflow="fold")
    for change in history:
        table.add_row(
            str(change["seq"]),
            escape(change["step"] or "-"),
            escape(f"{change['op']} {change['key']}"),
            escape(_short(json.dumps(change["value"], ensure_ascii=False))),
        )
    console.print(table)


def print_json(value: Any) -> None:
    """Indented JSON on stdout: readable, and what `jq` and `json.loads` expect. Written as
    bytes made in one piece (a 50 MB output is held twice, as its value and its JSON, not
    as text, text with a newline and its UTF-8 again)."""
    import orjson

    try:
        data = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # what orjson does not take: an int past 64 bits, keys that are not str
        data = (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream (a test's)
        sys.stdout.write(data.decode())
    else:
        sys.stdout.flush()
        buffer.write(data)
    sys.stdout.flush()


# -- tables --------------------------------------------------------------------------------------


def _status(value: str) -> str:
    style = STATUS_STYLE.get(value)
    return f"[{style}]{value}[/]" if style else value


def _when(ts: datetime | None) -> str:
    """A time for people: local, with its zone ('2024-05-01 14:03:07 CEST')."""
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if ts is not None else "-"


def when_epoch(ts: float) -> str:
    return _when(datetime.fromtimestamp(ts, UTC))


def iso_epoch(ts: float) -> str:
    """A time for machines, as every JSON document of the CLI gives times: ISO 8601, UTC."""
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _is_time(key: str, value: Any) -> bool:
    """Event payloads keep times as epoch seconds, under names ending in `_at`."""
    return key.endswith("_at") and isinstance(value, int | float) and not isinstance(value, bool)


def iso_times(payload: Mapping[str, Any]) -> dict[str, Any]:
    """An event's payload (or a worker's registration) for JSON: its times (epoch seconds under
    names ending in `_at`) in ISO 8601, as the rest of the document."""
    return {k: iso_epoch(v) if _is_time(k, v) else v for k, v in payload.items()}


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 120:
        return f"{value:.2f}s"
    return f"{value / 60:.1f}min"


def some(names: Sequence[str]) -> str:
    """Names for a line: all of a few ('fetch, total'), or how many and the first ones
    ('4,999 steps: fetch, a/0, a/1 and 4,996 more'), so a huge graph takes one line."""
    if len(names) <= NAMES_SHOWN:
        return ", ".join(names)
    return f"{len(names):,} steps: {first_names(names)}"


def first_names(names: Sequence[str], shown: int = 3) -> str:
    """'fetch, a/0, a/1 and 4,996 more' (or every name, when there are no more than `shown`)."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more:,} more" if more > 0 else "")


def amount(value: float) -> str:
    """A count that may be fractional or huge: '3.5', '12,000.0', '1e+308' (never 309 digits)."""
    return f"{value:,.1f}" if abs(value) < 1e9 else f"{value:.3g}"


def span(seconds: float) -> str:
    """A length of time for people: '42s', '26min 18s', '3h 5min', '2d 4h' (whole units, cut
    down, never rounded up)."""
    whole = max(int(seconds), 0)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}min"
    return f"{minutes}min {secs}s" if minutes else f"{secs}s"


def waits_for(run_id: str, step: str, gate: str | None, expires_in: float | None = None) -> str:
    """What a waiting step waits for, and the command that gives it."""
    who = f"{shlex.quote(run_id)} {shlex.quote(step)}"
    if gate == "signal":
        return f"waits for a signal: plait runs signal {who} JSON"
    expiry = f" (expires in {span(expires_in)})" if expires_in is not None else ""
    return f"waits for approval{expiry}: plait runs approve {who}, or plait runs reject {who}"


def excerpt_for(width: int) -> int:
    """How many bytes of a payload's JSON `_short` needs to show `width` characters of it."""
    return 4 * width + 64  # UTF-8 takes up to 4 bytes a character


def _short(value: Any, width: int = PAYLOAD_WIDTH) -> str:
    if isinstance(value, Excerpt):  # the start of a long payload's JSON (read with excerpt=)
        text = " ".join(value.decode("utf-8", "ignore").split())
        text = text[1:] if text.startswith('"') else text  # a string, shown as strings are
        return f"{text[: width - 1]}… ({value.size:,} bytes)"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def runs_table(runs: Sequence[Run]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    named = any(run.name for run in runs)  # the columns of identity, when some run has one
    labelled = any(run.labels for run in runs)
    columns = ["RUN", *(["NAME"] if named else []), "WORKFLOW", "VERSION", "STATUS", "CREATED",
               "DURATION", *(["LABELS"] if labelled else [])]  # fmt: skip
    for column in columns:
        table.add_column(column, no_wrap=column not in ("RUN", "NAME", "LABELS"))
    for run in runs:
        cells = [escape(run.id)]
        if named:
            cells.append(escape(run.name or "-"))
        cells += [
            escape(run.workflow),
            escape(run.version),
            _status(run.status.value),
            _when(run.created_at),
            _secs(run.duration),
        ]
        if labelled:
            cells.append(escape(labels_text(run.labels)))
        table.add_row(*cells)
    return table


def policy_text(policy: Mapping[str, Any]) -> str:
    """A run's approval policy on one line: `ask, allow: a, b, block: c`."""
    parts = [str(policy.get("mode"))]
    for key in ("allow", "block"):
        if policy.get(key):
            parts.append(f"{key}: {', '.join(map(str, policy[key]))}")
    return ", ".join(parts)


def labels_text(labels: Mapping[str, str]) -> str:
    """Labels as the command line writes them: key=value, comma-separated."""
    return ", ".join(f"{k}={v}" for k, v in labels.items()) or "-"


def failures_table(steps: Sequence[FailedStep]) -> Table:
    """Failed steps across runs (`plait failures list`), the latest ended first."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("RUN", "WORKFLOW", "STEP", "CODE", "ATTEMPTS", "ENDED", "MESSAGE"):
        table.add_column(column, no_wrap=column not in ("RUN", "MESSAGE"), overflow="fold")
    for f in steps:
        table.add_row(
            escape(f.run_id),
            escape(f.workflow),
            escape(f.step),
            escape(f.error.code),
            str(f.attempts),
            _when(f.finished_at),
            escape(_short(f.error.message, 60)),
        )
    return table


def failure_step_doc(f: FailedStep) -> dict[str, Any]:
    return {
        "run_id": f.run_id,
        "workflow": f.workflow,
        "step": f.step,
        "error": {"code": f.error.code, "message": f.error.message},
        "attempts": f.attempts,
        "finished_at": None if f.finished_at is None else f.finished_at.isoformat(),
        "task": f.task,
    }


def workflows_table(infos: Sequence[WorkflowInfo]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in (
        "WORKFLOW", "VERSION", "FINGERPRINT", "CODE", "STEPS", "REGISTERED", "IN FLIGHT",
        "WORKERS",
    ):  # fmt: skip
        table.add_column(column)
    for info in infos:
        code = ", ".join(f"{step}={digest or '-'}" for step, digest in info.code.items())
        table.add_row(
            escape(info.name),
            escape(info.version),
            info.fingerprint,
            escape(f"{info.code_changes}: {_short(code, 60)}"),
            escape(_short(", ".join(info.steps), 60)),
            _when(info.registered_at),
            str(info.runs_in_flight),
            escape(", ".join(info.workers) or "-"),
        )
    return table


def waiting_doc(w: Waiting) -> dict[str, Any]:
    return {
        "run_id": w.run_id,
        "workflow": w.workflow,
        "step": w.step,
        "gate": w.gate.value,
        "since": _iso(w.since),
        "expires_at": _iso(w.expires_at),
        "request": w.request,
    }


def waiting_table(waiting: Sequence[Waiting]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("RUN", "WORKFLOW", "STEP", "WAITS FOR", "SINCE", "EXPIRES"):
        table.add_column(column, overflow="fold")
    for w in waiting:
        table.add_row(
            escape(w.run_id),
            escape(w.workflow),
            escape(w.step),
            w.gate.value,
            _when(w.since),
            _when(w.expires_at) if w.expires_at else "-",
        )
    return table


def show_inspection(
    console: Console, inspection: Inspection, policy: Mapping[str, Any] | None = None
) -> None:
    from rich.markup import escape
    from rich.table import Table

    run = inspection.run
    console.print(f"[bold]run[/] {escape(run.id)}  {_status(run.status.value)}")
    console.print(f"workflow  {escape(run.workflow)} v{escape(run.version)} ({run.fingerprint})")
    if run.name is not None:
        console.print(f"name      {escape(run.name)}")
    if run.labels:
        console.print(f"labels    {escape(labels_text(run.labels))}")
    if run.metadata:
        console.print(f"metadata  {escape(_short(run.metadata, SHOW_WIDTH))}")
    console.print(
        f"created   {_when(run.created_at)}   finished {_when(run.finished_at)}"
        f"   duration {_secs(inspection.duration)}"
    )
    if run.parent_run is not None and run.called_by is not None:
        at = escape(run.called_by)
        console.print(f"called    by run {escape(run.parent_run)}, step {at} (a sub-workflow)")
    elif run.parent_run is not None:
        at = escape(run.forked_from or "?")
        console.print(f"forked    from run {escape(run.parent_run)} at step {at}")
    if run.deadline is not None:
        console.print(f"deadline  {_when(run.deadline)}")
    if policy is not None:
        console.print(f"policy    {escape(policy_text(policy))} (the run's approval_policy)")
    console.print(f"input     {escape(_short(run.input, SHOW_WIDTH))}")
    if run.output is not None:
        console.print(f"output    {escape(_short(run.output, SHOW_WIDTH))}")
    if run.error:
        console.print(f"error     [red]{escape(run.error)}[/]")
    counts = ", ".join(f"{n} {status}" for status, n in inspection.counts.items() if n)
    console.print(f"steps     {counts}")
    console.print()
    table = Table(box=None, header_style="bold")
    for column in (
        "STEP", "STATUS", "ATTEMPTS", "QUEUED", "DURATION", "WORKER", "CODE", "DETAIL"
    ):  # fmt: skip
        table.add_column(column, overflow="fold")
    now = datetime.now(UTC)
    shown: dict[str, int] = {}  # parent → spawned steps listed (a fan-out may have thousands)
    hidden: dict[str, Counter[str]] = {}
    for step in inspection.steps:
        if step.parent is not None:
            shown[step.parent] = shown.get(step.parent, 0) + 1
            if shown[step.parent] > SPAWNED_SHOWN:
                hidden.setdefault(step.parent, Counter())[step.status.value] += 1
                continue
        if step.error is not None:
            detail = f"[red]\\[{escape(step.error.code)}][/] {escape(_short(step.error.message))}"
        elif step.skip_reason:
            detail = escape(step.skip_reason)
        elif (reused := step.reused_from) is not None:
            detail = f"[dim]reused from {escape(reused)}[/]"
        elif step.calling is not None:
            detail = f"[yellow]waiting for sub-workflow run {escape(step.calling)}[/]"
        elif step.status.value == "waiting" and step.gate is not None:
            expires_in = (
                None if step.expires_at is None else (step.expires_at - now).total_seconds()
            )
            why = waits_for(run.id, step.name, step.gate.value, expires_in)
            detail = "[yellow]" + escape(why) + "[/]"
        elif step.name in inspection.blockers:
            why = ", ".join(inspection.blockers[step.name])
            # "no live worker serves…", "no worker has claimed it yet…" read as they are
            detail = escape(why) if why.startswith("no ") else "waits on " + escape(why)
        elif step.task is not None:
            detail = f"[dim]spawned: task {escape(step.task)}[/]"
        else:
            detail = ""
        table.add_row(
            escape(step.name),
            _status(step.status.value),
            str(step.attempts),
            _secs(step.queued),
            _secs(step.duration),
            escape(step.worker or "-"),
            escape(step.code or "-"),
            detail,
        )
    console.print(table)
    for parent, by_status in hidden.items():
        what = ", ".join(f"{n:,} {status}" for status, n in by_status.most_common())
        console.print(
            f"… and {by_status.total():,} more steps spawned by {escape(parent)} ({what})"
        )
    for note in inspection.notes:
        console.print(f"note: {escape(note)}")
    hint = traceback_hint(run.id, inspection.steps)
    if hint is not None:
        console.print(escape(hint))


def failure_doc(event: Event) -> dict[str, Any]:
    """A failed attempt, from its `step_retrying` or `step_failed` event."""
    p = event.payload
    return {
        "seq": event.seq,
        "attempt": p.get("attempt"),
        "code": p.get("code"),
        "message": p.get("message"),
        "traceback": p.get("traceback"),
        "details": p.get("details"),
        "retried": event.type == "step_retrying",
        "ts": _iso(event.ts),
    }


def show_step(console: Console, step: Step, failures: Sequence[Event]) -> None:
    """One step in full: what `runs show` cuts short, and the traceback of each failed
    attempt (the event log keeps them)."""
    from rich.markup import escape

    say = functools.partial(console.print, markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"[bold]step[/] {escape(step.name)} of run {escape(step.run_id)}  "
        f"{_status(step.status.value)}"
    )
    say(
        f"attempts  {step.attempts}   queued {_secs(step.queued)}   duration "
        f"{_secs(step.duration)}   worker {step.worker or '-'}   code {step.code or '-'}"
    )
    say(f"started   {_when(step.started_at)}   finished {_when(step.finished_at)}")
    if step.task is not None:
        say(f"spawned   by {step.parent}, task {step.task}")
    if step.reused_from is not None:
        say(f"reused    from run {step.reused_from}")
    if step.skip_reason:
        say(f"skipped   {step.skip_reason}")
    if step.error is not None:
        say(f"error     [{step.error.code}] {step.error.message}")
    if step.input is not None:
        say(f"input     {_short(step.input, STEP_WIDTH)}")
    if step.output is not None:
        say(f"output    {_short(step.output, STEP_WIDTH)}")
    if not failures:
        say(
            "no failed attempts"
            if step.attempts
            else "never ran"
            if step.status.terminal
            else "no attempt yet"
        )
    for event in failures:
        doc = failure_doc(event)
        then = "; retried" if doc["retried"] else ""
        say("")
        say(
            f"attempt {doc['attempt']} failed at {_when(event.ts)}: [{doc['code']}] "
            f"{doc['message']}{then}"
        )
        if doc["details"] is not None:
            say(f"details   {json.dumps(doc['details'], ensure_ascii=False)}")
        say((doc["traceback"] or "(no traceback: the failure was not an exception)").rstrip())


def traceback_hint(run_id: str, steps: Sequence[Step]) -> str | None:
    """Where the tracebacks of a run's failed attempts are, if it has any."""
    names = [s.name for s in steps if s.error is not None or s.attempts > 1]
    if not names:
        return None
    return (
        f"tracebacks: plait runs show {shlex.quote(run_id)} --step STEP (failed attempts: "
        f"{first_names(names)})"
    )


def events_table(events: Iterable[Event]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("SEQ", "TIME", "TYPE", "STEP", "DETAIL"):
        table.add_column(column, overflow="fold")
    for event in events:
        payload = {
            k: v
            for k, v in event.payload.items()
            if k not in ("traceback", "step") and v is not None
        }
        detail = " ".join(
            f"{k}={when_epoch(v) if _is_time(k, v) else _short(v, 60)}" for k, v in payload.items()
        )
        local = event.ts.astimezone()
        table.add_row(
            str(event.seq),
            f"{local:%H:%M:%S}.{local.microsecond // 1000:03d} {local:%Z}",
            event.type,
            escape(event.step or ""),
            escape(detail),
        )
    return table


# -- progress of `plait run` ---------------------------------------------------------------------


# The progress counts the steps that ended as planned: done (run, reused by a fork, given a
# signal) or skipped by a false condition (a branch not taken, and what it cascaded to). A
# failed, cancelled or failure-skipped step has ended, but is not counted as done.
DONE_EVENTS = frozenset({"step_completed", "step_reused"})
NEUTRAL_EVENTS = frozenset({"step_outcome_ignored", "signal_ignored"})  # the step is unchanged


def _counted(event: Event) -> bool:
    if event.type == "step_skipped":
        return str(event.payload.get("reason")).startswith(CONDITION)
    return event.type in DONE_EVENTS


def _as_planned(step: Step) -> bool:
    if step.status is StepStatus.SKIPPED:
        return (step.skip_reason or "").startswith(CONDITION)
    return step.status is StepStatus.DONE


def plural(count: int, noun: str) -> str:
    """'1 step', '2 steps', '1,000 steps'."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def event_line(event: Event) -> str | None:
    """One plain line for the events worth telling while a run progresses."""
    p = event.payload
    step = event.step or ""
    if event.type == "step_completed":
        if p.get("joined"):  # a parent that waited for the steps it spawned
            return f"{step} done: the steps it spawned have ended"
        if p.get("signal"):
            return f"{step} done: its signal was delivered"
        return f"{step} done in {_secs(p.get('duration'))}"
    if event.type == "steps_spawned":  # the run's total of steps grows by as many
        return f"{step} spawned {plural(int(p.get('count') or 0), 'step')}"
    if event.type == "step_retrying":
        retry_at = p.get("retry_at")
        wait = (
            f" in {_secs(max(retry_at - event.ts.timestamp(), 0.0))}"
            if isinstance(retry_at, int | float)
            else ""
        )
        return (
            f"{step} attempt {p.get('attempt')} failed: [{p.get('code')}] "
            f"{_short(p.get('message') or '', 200)}; retrying{wait}"
        )
    if event.type == "step_failed":
        return f"{step} failed: [{p.get('code')}] {_short(p.get('message') or '', 200)}"
    if event.type == "step_skipped":
        return f"{step} skipped: {p.get('reason')}"
    if event.type == "step_cancelled":
        if p.get("reason"):
            return f"{step} cancelled: {p['reason']}"
        if p.get("by") == "deadline":
            return f"{step} cancelled: the run passed its deadline"
        return (
            f"{step} cancelled by {p['by']}" if p.get("by") else f"{step} cancelled (interrupted)"
        )
    if event.type == "step_released":
        return f"{step} released for another worker"
    if event.type == "step_key_full":
        return (
            f"{step} waits: concurrency key {p.get('key')!r} runs at most {p.get('key_limit')} "
            "at once"
        )
    if event.type == "step_lease_expired":
        return f"{step}: lease expired (worker {p.get('worker')} lost); it will run again"
    if event.type == "step_waiting":
        expires_at = p.get("expires_at")
        expires_in = (
            expires_at - event.ts.timestamp() if isinstance(expires_at, int | float) else None
        )
        return f"{step} {waits_for(event.run_id, step, p.get('gate'), expires_in)}"
    if event.type in ("step_approved", "step_rejected"):
        done = "approved" if event.type == "step_approved" else "rejected"
        # the clock decides an approval nobody decided in time, as "plait"
        expired = p.get("by") == "plait" and (
            p.get("reason") == "expired" or str(p.get("note")).startswith("no decision")
        )
        by = "(expired)" if expired else f"by {p.get('by')}"
        return f"{step} {done} {by}"
    if event.type.startswith(USER_EVENT_PREFIX):  # ctx.emit (a step's) or engine.annotate (by)
        who = step or f"by {p.get('by')}"
        data = p.get("data")
        return f"{who}: {event.type}" + ("" if data is None else f" {_short(data, 200)}")
    if event.type == "signal_kept":  # one that came in time says `done: its signal…`
        return f"{step} received its signal early (from {p.get('by')}): kept until it is reached"
    return None


class RunProgress:
    """Follows one run while an embedded worker runs it: "steps done / total" and a line per event.

    On a terminal, a rich progress bar on stderr; otherwise plain lines on stderr (stdout is kept
    for the result).
    """

    def __init__(
        self, engine: Engine, run_id: str, *, console: Console, interval: float = 0.05
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.console = console
        self.interval = interval
        self.live = console.is_terminal
        self._seq = 0
        self._done = 0
        self._total = 0
        self._ended: set[str] = set()
        self._bar: Progress | None = None
        self._task: Any = None

    def _say(self, text: str) -> None:
        from rich.markup import escape

        if self._bar is not None:
            self._bar.console.print(escape(text), highlight=False)
        else:
            self.console.print(escape(f"[{self._done}/{self._total}] {text}"), highlight=False)

    async def _tick(self) -> None:
        events = await self.engine.events_async(self.run_id, after_seq=self._seq)
        steps = await self.engine.steps_async(self.run_id)
        self._total = len(steps)
        for event in events:
            self._seq = event.seq
            if event.step is not None and event.type not in NEUTRAL_EVENTS:
                if _counted(event):
                    self._ended.add(event.step)
                else:
                    self._ended.discard(event.step)
            self._done = len(self._ended)
            line = event_line(event)
            if line is not None:
                self._say(line)
        # the snapshot is read after the events, so it may be ahead of them by a step or two
        self._done = max(self._done, sum(1 for s in steps if _as_planned(s)))
        if self._bar is not None:
            self._bar.update(self._task, completed=self._done, total=self._total)

    async def follow(self, stop: asyncio.Event) -> None:
        """Report until `stop` is set, then once more so the last steps are shown."""
        import asyncio

        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        if self.live:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps done"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._task = self._bar.add_task(escape(self.run_id), total=None)
            self._bar.start()
        try:
            while not stop.is_set():
                await self._tick()
                try:
                    async with asyncio.timeout(self.interval):
                        await stop.wait()
                except TimeoutError:
                    pass
            await self._tick()
        finally:
            if self._bar is not None:
                self._bar.stop()

    @property
    def summary(self) -> str:
        return f"{self._done}/{self._total} steps done"


# -- logging -------------------------------------------------------------------------------------


class _StampFormatter(logging.Formatter):
    """Adds the run id, step and attempt that plait stamps on its records."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        stamps = [
            f"{key}={getattr(record, key)}"
            for key in ("run_id", "step", "attempt")
            if getattr(record, key, None) is not None
        ]
        return f"{text} [{' '.join(stamps)}]" if stamps else text


def install_logging(level: str) -> None:
    """Logging on stderr for the command line (the library itself never installs handlers)."""
    console = stderr_console()
    handler: logging.Handler
    if console.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
        handler.setFormatter(_StampFormatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_StampFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def failures_text(failures: Mapping[str, Any]) -> list[str]:
    return [f"  {name}: [{err.code}] {err.message}" for name, err in failures.items()]
