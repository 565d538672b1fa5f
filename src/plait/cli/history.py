"""`plait runs fork`, `plait runs diff` and `plait replay`: looking back at recorded runs.

Registered on the `plait` groups when it imports this module. Each exits 2 with one line for a
mistake of the user's (unknown run or step, bad JSON…). `plait replay` exits 1 when the replayed
handler fails (or, replaying a whole run, a step diverges), so a script can tell whether a fix
works.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import click

from .._errors import InputError, RunConflict
from . import render
from .app import (
    EXIT_FAILED,
    by_option,
    cli,
    db_option,
    existing_engine,
    json_option,
    label_option,
    log_option,
    parse_labels,
    runs,
    user_errors,
)
from .loading import (
    CliError,
    load_module,
    module_workflows,
    parse_input,
    pick_workflow,
    split_target,
)

if TYPE_CHECKING:
    from ..engine.replay import Replay, RunReplay
    from ..workflow.definition import Workflow


def parse_override(text: str) -> tuple[str, Any]:
    """'STEP=JSON' → (step, value)."""
    from .. import _codec

    step, sep, raw = text.partition("=")
    if not sep or not step:
        raise CliError(f"--override {text!r}: expected STEP=JSON, as in price='[1, 2]'")
    try:
        return step, _codec.parse(raw)
    except json.JSONDecodeError as exc:
        raise CliError(f"--override {step}: the value is not valid JSON: {exc}") from None
    except _codec.DecodeError as exc:  # a key twice in one object, NaN, Infinity
        raise CliError(f"--override {step}: {exc}") from None


@runs.command("fork")
@click.argument("run_id", metavar="RUN")
@click.argument("step", metavar="STEP")
@click.option(
    "--input",
    "input_text",
    metavar="JSON",
    help="A new run input: a JSON object, @file.json, or - for stdin (default: the run's own).",
)
@click.option(
    "--override",
    "overrides",
    multiple=True,
    metavar="STEP=JSON",
    help="Replace the recorded output of a reused step (repeatable).",
)
@click.option("--run-id", "new_run_id", metavar="ID", help="The fork's run id (idempotent).")
@click.option(
    "--fingerprint",
    metavar="FP",
    help="The workflow version to run on (default: the run's own while a live worker serves "
    "it, else the newest served).",
)
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_fork(
    run_id: str,
    step: str,
    input_text: str | None,
    overrides: tuple[str, ...],
    new_run_id: str | None,
    fingerprint: str | None,
    by: str | None,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """Start a new run from RUN that reuses every recorded output except STEP's and those
    downstream of it, which run again (on the run's version while a live worker serves it,
    else the newest served, or --fingerprint); a worker runs it."""
    render.install_logging(log_level)
    data = parse_input(input_text) if input_text is not None else None
    replaced: dict[str, Any] = {}
    for text in overrides:
        name, value = parse_override(text)
        if name in replaced:
            raise CliError(f"--override {name}: given twice")
        replaced[name] = value
    with existing_engine(db, writes=True) as engine:
        try:
            handle = engine.fork(
                run_id, step, data, replaced or None, new_run_id=new_run_id, by=by,
                fingerprint=fingerprint,
            )  # fmt: skip
        except RunConflict:  # only a --run-id taken by another run
            raise CliError(
                f"run id {new_run_id!r} is already used by another run; choose another --run-id"
            ) from None
        except InputError as exc:
            raise CliError(_own_input(exc, given=data is not None)) from None
        run = engine.get_run(handle.id)
        steps = [s.name for s in engine.steps(handle.id)]
        reused = [e.step for e in engine.events(handle.id) if e.type == "step_reused" and e.step]
    again = [name for name in steps if name not in reused]
    if as_json:
        render.print_json({**render.run_doc(run), "reused": reused, "runs_again": again})
        return
    click.echo(
        f"run {run.id} forked from {run_id} at {step} "
        f"({run.workflow} v{run.version}): reused {render.some(reused) or 'nothing'}; "
        f"runs again {render.some(again)}"
    )
    click.echo(f"a worker serving {run.workflow} v{run.version} runs it", err=True)


def _own_input(exc: InputError, *, given: bool) -> str:
    """The fork's refusal of the run's own input, which ends by naming the API's parameter
    (`pass input=`), asks for --input instead."""
    text = str(exc)
    api = "; pass input="
    return (
        text.removesuffix(api) + "; pass --input JSON" if not given and text.endswith(api) else text
    )


@runs.command("diff")
@click.argument("run_a", metavar="A")
@click.argument("run_b", metavar="B")
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_diff(run_a: str, run_b: str, as_json: bool, db: str, log_level: str) -> None:
    """Compare two runs step by step: same, changed (where), or in one run only."""
    from rich.markup import escape
    from rich.table import Table

    render.install_logging(log_level)
    with existing_engine(db) as engine:
        diff = engine.diff(run_a, run_b)
    if as_json:
        render.print_json(diff)
        return
    same = [name for name, entry in diff.items() if entry["status"] == "same"]
    rows = diff if len(same) <= render.SAME_SHOWN else {
        name: entry for name, entry in diff.items() if entry["status"] != "same"
    }  # fmt: skip
    out = render.stdout_console()
    if rows:
        table = Table(box=None, header_style="bold")
        for column in ("STEP", "STATUS", "DIFFERENCES"):
            table.add_column(column, overflow="fold")
        for name, entry in rows.items():
            lines = "\n".join(entry_line(e) for e in entry["diff"] or ())
            if "code" in entry:
                code = f"code: {entry['code']['a']} → {entry['code']['b']}"
                lines = f"{lines}\n{code}" if lines else code
            status = {"only_a": f"only in {run_a}", "only_b": f"only in {run_b}"}.get(
                entry["status"], entry["status"]
            )
            table.add_row(escape(name), escape(status), escape(lines))
        out.print(table)
    if len(rows) < len(diff):  # the unchanged steps of a huge graph, in one line
        out.print(f"{len(same):,} same: {render.first_names(same)}", markup=False)


def entry_line(entry: dict[str, Any]) -> str:
    """One difference in words: '/output/total: 6 → 60', '/note: added "x"'."""
    path = entry["path"] or "(whole)"
    if entry["op"] == "added":
        return f"{path}: added {_json(entry['b'], 60)}"
    if entry["op"] == "removed":
        return f"{path}: removed {_json(entry['a'], 60)}"
    return f"{path}: {_json(entry['a'], 60)} → {_json(entry['b'], 60)}"


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.argument("step", metavar="[STEP]", required=False)
@click.option(
    "--app",
    "target",
    required=True,
    metavar="FILE.py[:WORKFLOW]",
    envvar="PLAIT_APP",
    help="The code to run: the file defining the run's workflow (env PLAIT_APP); :WORKFLOW, its "
    "variable or its name, when the file defines several of that name.",
)
@click.option(
    "--from",
    "from_step",
    metavar="STEP",
    help="Whole run: replay STEP and what depends on it; the steps upstream keep their "
    "recorded outputs.",
)
@click.option(
    "--break-at",
    metavar="STEP",
    help="Whole run: stop before STEP runs and print the process id (attach a debugger, then "
    "press Enter), or enter pdb with --pdb.",
)
@click.option("--pdb", "use_pdb", is_flag=True, help="With --break-at: enter pdb there.")
@json_option
@db_option
@log_option("warning")
@user_errors
def replay(
    run_id: str,
    step: str | None,
    target: str,
    from_step: str | None,
    break_at: str | None,
    use_pdb: bool,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """Run the current code with the inputs RUN recorded, write nothing, and show the new
    results next to the recorded ones: of STEP, or of every step in dependency order (OK,
    DIVERGED with the differences, FAIL). Exit code 1 if a handler fails or, for a whole run,
    a step diverges."""
    render.install_logging(log_level)
    if step is not None and (from_step or break_at or use_pdb):
        raise CliError("--from, --break-at and --pdb replay a whole run: give no STEP with them")
    if use_pdb and break_at is None:
        raise CliError("--pdb enters the debugger at --break-at STEP: give --break-at")
    path, attr = split_target(target)
    module = load_module(path)
    with existing_engine(db) as engine:
        workflow_name = engine.get_run(run_id).workflow
        workflow = (
            pick_workflow(module, path, attr) if attr else _named(module, path, workflow_name)
        )
        if step is None:
            whole = engine.replay_run(
                run_id,
                workflow=workflow,
                from_step=from_step,
                break_at=break_at,
                on_break=_debugger if use_pdb else _pause,
            )
            if as_json:
                render.print_json(run_replay_doc(whole))
            else:
                show_run_replay(whole)
            if not whole.ok:
                sys.exit(EXIT_FAILED)
            return
        result = engine.replay(run_id, step, workflow=workflow)
    if as_json:
        render.print_json(replay_doc(result))
    else:
        show_replay(result)
    if result.status == "failed":
        sys.exit(EXIT_FAILED)


def _pause(step: str, inputs: dict[str, Any]) -> None:
    """--break-at without --pdb: say where this process is, and wait for Enter."""
    pid = os.getpid()
    click.echo(
        f"stopped before step {step}: process id {pid} (attach a debugger, such as "
        f"`py-spy dump --pid {pid}` or debugpy); press Enter to run it",
        err=True,
    )
    click.get_text_stream("stdin").readline()


def _debugger(step: str, inputs: dict[str, Any]) -> None:
    """--break-at with --pdb: pdb here, with `step` and `inputs` (what the step will get)."""
    import pdb

    click.echo(
        f"stopped before step {step} (process id {os.getpid()}): `inputs` holds its run input "
        "and its dependencies' recorded outputs; `c` runs it",
        err=True,
    )
    pdb.Pdb().set_trace()


def _named(module: Any, path: str, name: str) -> Workflow:
    found = [wf for wf in module_workflows(module).values() if wf.name == name]
    if len(found) == 1:
        return found[0]
    attrs = [a for a, wf in module_workflows(module).items() if wf.name == name]
    if found:
        choices = ", ".join(f"{path}:{a}" for a in attrs)
        raise CliError(f"{path} defines workflow {name!r} several times; name one: {choices}")
    defined = ", ".join(sorted({wf.name for wf in module_workflows(module).values()})) or "none"
    raise CliError(f"{path} defines no workflow {name!r} (workflows there: {defined})")


def _json(value: Any, width: int) -> str:
    """A value as JSON on one line, cut to `width` characters (a string keeps its quotes)."""
    return render._short(json.dumps(value, ensure_ascii=False), width)


def replay_doc(result: Replay) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "step": result.step,
        "workflow": result.workflow,
        "version": result.version,
        "fingerprint": result.fingerprint,
        "recorded_fingerprint": result.recorded_fingerprint,
        "code": result.code,
        "recorded": {
            "status": result.recorded_status.value,
            "code": result.recorded_code,
            "output": result.recorded,
            "error": _error_doc(result.recorded_error),
        },
        "replayed": {
            "status": result.status,
            "output": result.output,
            "error": _error_doc(result.error),
            "traceback": result.traceback,
        },
        "changed": result.changed,
        "diff": result.diff,
    }


def _error_doc(error: Any) -> dict[str, str] | None:
    return None if error is None else {"code": error.code, "message": error.message}


def run_replay_doc(whole: RunReplay) -> dict[str, Any]:
    return {
        "run_id": whole.run_id,
        "workflow": whole.workflow,
        "version": whole.version,
        "fingerprint": whole.fingerprint,
        "recorded_fingerprint": whole.recorded_fingerprint,
        "from_step": whole.from_step,
        "ok": whole.ok,
        "steps": [
            {
                "step": s.step,
                "result": s.result,
                "reason": s.reason,
                "replay": None if s.replay is None else replay_doc(s.replay),
            }
            for s in whole.steps
        ],
    }


_RESULT = {"ok": "OK", "diverged": "DIVERGED", "failed": "FAIL", "reused": "REUSED"}


def show_run_replay(whole: RunReplay) -> None:
    out = render.stdout_console()
    say = functools.partial(out.print, markup=False, highlight=False, soft_wrap=True)
    say(
        f"replayed run {whole.run_id} with {whole.workflow} v{whole.version} "
        f"({whole.fingerprint}); the run was recorded with {whole.recorded_fingerprint}"
    )
    width = max((len(s.step) for s in whole.steps), default=0)
    for s in whole.steps:
        label = _RESULT.get(s.result, "NOT RUN")
        line = f"{label:<8}  {s.step:<{width}}"
        if s.reason:
            line += f"  {s.reason}"
        elif s.replay is not None and s.replay.error is not None:
            line += f"  [{s.replay.error.code}] {s.replay.error.message}"
        say(line.rstrip())
        if s.result == "diverged" and s.replay is not None:
            for entry in s.replay.diff:
                say(f"    {entry_line(entry)}")
    counts = Counter(_RESULT.get(s.result, "NOT RUN") for s in whole.steps)
    say(", ".join(f"{n} {label}" for label, n in counts.items()))


def show_replay(result: Replay) -> None:
    out = render.stdout_console()
    out.print(
        f"replayed step {result.step} of run {result.run_id} with {result.workflow} "
        f"v{result.version} ({result.fingerprint}); the run was recorded with "
        f"{result.recorded_fingerprint}; code {result.code} (recorded: "
        f"{result.recorded_code or 'unknown'})",
        markup=False,
    )
    recorded = (
        f"[{result.recorded_error.code}] {result.recorded_error.message}"
        if result.recorded_error is not None
        else _json(result.recorded, 200)
    )
    out.print(f"recorded  {result.recorded_status.value}  {recorded}", markup=False)
    new = (
        f"[{result.error.code}] {result.error.message}"
        if result.error is not None
        else _json(result.output, 200)
    )
    out.print(f"replayed  {result.status}  {new}", markup=False)
    if not result.changed:
        out.print("no difference", markup=False)
    else:
        out.print("differences:", markup=False)
        for entry in result.diff:
            out.print(f"  {entry_line(entry)}", markup=False)
    if result.traceback:
        click.echo(result.traceback.rstrip(), err=True)


@runs.command("upgrade")
@click.argument("run_id", metavar="[RUN]", required=False)
@click.option("--workflow", metavar="NAME", help="Every run of this workflow in flight.")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="FILE.py[:WORKFLOW]",
    help="The new version: the file defining it; :WORKFLOW, its variable or its name, when the "
    "file defines several.",
)
@click.option("--dry-run", is_flag=True, help="Say what would happen to each run; change nothing.")
@label_option("With --workflow: only its runs with this label (repeat: with every one of them).")
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_upgrade(
    run_id: str | None,
    workflow: str | None,
    target: str,
    dry_run: bool,
    label_texts: tuple[str, ...],
    by: str | None,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """Move RUN (or every run of --workflow in flight, with every --label given) to the
    version defined in --to, when it fits: steps done keep their outputs, steps added after
    unfinished work are added, steps not yet run are dropped or take their new dependencies
    and options. A run that does not fit (a running step removed or changed, a done step's
    dependencies changed, a step added after work that has all ended) is refused with the
    reason. Exit code 1 if any run was refused."""
    render.install_logging(log_level)
    if (run_id is None) == (workflow is None):
        raise CliError(
            "runs upgrade takes a RUN or --workflow NAME (every run in flight), not both"
        )
    labels = parse_labels(label_texts)
    if labels is not None and workflow is None:
        raise CliError("runs upgrade takes --label with --workflow NAME (to select its runs)")
    path, attr = split_target(target)
    module = load_module(path)
    with existing_engine(db, writes=not dry_run) as engine:
        name = workflow if workflow is not None else engine.get_run(run_id or "").workflow
        to = pick_workflow(module, path, attr) if attr else _named(module, path, name)
        done = engine.upgrade(
            run_id, workflow=workflow, to=to, dry_run=dry_run, by=by, labels=labels
        )
    if as_json:
        render.print_json([u.as_dict() for u in done])
    else:
        out = render.stdout_console()
        if not done:
            out.print(f"no run of {name} in flight", markup=False)
        for u in done:
            line = f"{u.run_id}: {u.status} {u.from_fingerprint} -> {u.to_fingerprint}"
            changes = [
                f"{what} {', '.join(names)}"
                for what, names in (("adds", u.added), ("drops", u.dropped), ("changes", u.changed))
                if names
            ]
            if changes:
                line += f" ({'; '.join(changes)})"
            if u.reason:
                line += f": {u.reason}"
            out.print(line, markup=False)
    if any(u.status == "refused" for u in done):
        sys.exit(EXIT_FAILED)
