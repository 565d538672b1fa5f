"""`plait runs <action>`: operator actions on runs, registered on the `runs` group (cli/app.py).

Each prints the run as it is afterwards (a line, or JSON with --json) and exits 2 with one line
when the run does not exist or its state does not allow the action.

`cancel`, `pause`, `resume`, `retry` and `delete` act on many runs too: no ID, and filters
(`--workflow`, `--status`, `--label KEY=VALUE`, repeatable) select the runs (`engine.bulk`). They
count first and say so, then ask (unless --yes); `--dry-run` only counts. Exit code 1 if the
Engine refused a run.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import render
from .app import (
    EXIT_FAILED,
    by_option,
    db_option,
    existing_engine,
    json_option,
    label_option,
    log_option,
    parse_labels,
    runs,
    user_errors,
)
from .loading import CliError, read_json

if TYPE_CHECKING:
    from ..engine.views import BulkResult, Run, RunFilter, Step

F = TypeVar("F", bound=Callable[..., Any])
# engine.bulk's most runs per call (engine/bulk.py; not imported: `plait --help` stays light)
MAX_BULK = 1000


def bulk_options(fn: F) -> F:
    """The options that make an action act on the runs they select instead of one ID."""
    options: list[Callable[[Any], Any]] = [
        click.option(
            "--workflow", metavar="NAME", help="Many runs: those of this workflow (no ID)."
        ),
        click.option("--status", metavar="STATUS", help="Many runs: those in this status."),
        label_option("Many runs: those with this label (repeat: with every one of them)."),
        click.option(
            "--limit",
            type=click.IntRange(1, MAX_BULK),
            default=MAX_BULK,
            show_default=True,
            help="Many runs: act on at most this many, the newest; run again for the rest.",
        ),
        click.option("--dry-run", is_flag=True, help="Many runs: only count them."),
        click.option("--yes", "-y", is_flag=True, help="Many runs: do not ask first."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def selection(
    command: str,
    run_id: str | None,
    workflow: str | None,
    status: str | None,
    label_texts: tuple[str, ...],
) -> RunFilter | None:
    """The runs filters select (None: the one run ID names); a CliError for both or neither."""
    from ..engine.views import RunFilter

    labels = parse_labels(label_texts)
    filtering = workflow is not None or status is not None or labels is not None
    if run_id is not None and filtering:
        raise CliError(
            f"runs {command} takes a run ID or filters (--workflow, --status, --label), not both"
        )
    if run_id is None and not filtering:
        raise CliError(
            f"runs {command} takes a run ID, or filters that select runs (--workflow, "
            "--status, --label)"
        )
    return RunFilter(workflow=workflow, status=status, labels=labels) if filtering else None


def run_bulk(
    action: str,
    where: RunFilter,
    *,
    limit: int,
    dry_run: bool,
    yes: bool,
    by: str | None,
    as_json: bool,
    db: str,
    reason: str | None = None,
) -> None:
    """Count the runs `where` selects and say so; then (unless dry_run) ask, unless `yes`, and
    act on them: a line per run, exit code 1 if the Engine refused one."""
    with existing_engine(db, writes=not dry_run) as engine:
        count = engine.bulk(action, filter=where, dry_run=True, limit=limit)
        if dry_run or not count.eligible:
            _print_bulk(count, as_json)
            return
        if not yes and not as_json:
            click.echo(_bulk_line(count))
            click.confirm(f"{action} {count.eligible} runs?", abort=True)
        done = engine.bulk(action, filter=where, limit=limit, by=by, reason=reason)
    _print_bulk(done, as_json)
    if any(item.outcome == "error" for item in done.items):
        sys.exit(EXIT_FAILED)


def _bulk_line(result: BulkResult) -> str:
    skipped = ", ".join(f"{n} {status}" for status, n in sorted(result.skipped_by_status.items()))
    more = (
        f"; only the newest {result.selected} are acted on per call: run again for the rest"
        if result.matched > result.selected
        else ""
    )
    return (
        f"{result.matched} runs match; {result.action} applies to {result.eligible} of the "
        f"{result.selected} selected" + (f" (skipped: {skipped})" if skipped else "") + more
    )


def _print_bulk(result: BulkResult, as_json: bool) -> None:
    if as_json:
        render.print_json(dataclasses.asdict(result))
        return
    if result.dry_run or not result.items:
        click.echo(_bulk_line(result))
        return
    for item in result.items:
        click.echo(
            f"run {item.run_id}: {item.outcome}" + (f": {item.message}" if item.message else "")
        )
    counts: dict[str, int] = {}
    for item in result.items:
        counts[item.outcome] = counts.get(item.outcome, 0) + 1
    click.echo(f"{result.action}: " + ", ".join(f"{n} {o}" for o, n in counts.items()))


@runs.command("cancel")
@click.argument("run_id", metavar="[ID]", required=False)
@click.option("--reason", metavar="TEXT", help="Why, for the run's log and its error.")
@bulk_options
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_cancel(
    run_id: str | None, reason: str | None, workflow: str | None, status: str | None,
    label_texts: tuple[str, ...], limit: int, dry_run: bool, yes: bool, by: str | None,
    as_json: bool, db: str, log_level: str,
) -> None:  # fmt: skip
    """Cancel a run (or the runs the filters select): waiting steps end cancelled, running
    ones are interrupted."""
    render.install_logging(log_level)
    where = selection("cancel", run_id, workflow, status, label_texts)
    if where is not None:
        return run_bulk("cancel", where, limit=limit, dry_run=dry_run, yes=yes, by=by,
                        as_json=as_json, db=db, reason=reason)  # fmt: skip
    assert run_id is not None
    with existing_engine(db, writes=True) as engine:
        _print_run(engine.cancel(run_id, reason=reason, by=by), as_json)


def _print_run(run: Run, as_json: bool) -> None:
    if as_json:
        render.print_json(render.run_doc(run))
    else:
        click.echo(f"run {run.id} {run.status.value}" + (f": {run.error}" if run.error else ""))


@runs.command("pause")
@click.argument("run_id", metavar="[ID]", required=False)
@bulk_options
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_pause(
    run_id: str | None, workflow: str | None, status: str | None, label_texts: tuple[str, ...],
    limit: int, dry_run: bool, yes: bool, by: str | None, as_json: bool, db: str, log_level: str,
) -> None:  # fmt: skip
    """Pause a run (or the runs the filters select): nothing new starts; steps in flight
    finish (pausing, then paused)."""
    render.install_logging(log_level)
    where = selection("pause", run_id, workflow, status, label_texts)
    if where is not None:
        return run_bulk("pause", where, limit=limit, dry_run=dry_run, yes=yes, by=by,
                        as_json=as_json, db=db)  # fmt: skip
    assert run_id is not None
    with existing_engine(db, writes=True) as engine:
        _print_run(engine.pause(run_id, by=by), as_json)


@runs.command("resume")
@click.argument("run_id", metavar="[ID]", required=False)
@bulk_options
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_resume(
    run_id: str | None, workflow: str | None, status: str | None, label_texts: tuple[str, ...],
    limit: int, dry_run: bool, yes: bool, by: str | None, as_json: bool, db: str, log_level: str,
) -> None:  # fmt: skip
    """Resume a paused run (or the runs the filters select)."""
    render.install_logging(log_level)
    where = selection("resume", run_id, workflow, status, label_texts)
    if where is not None:
        return run_bulk("resume", where, limit=limit, dry_run=dry_run, yes=yes, by=by,
                        as_json=as_json, db=db)  # fmt: skip
    assert run_id is not None
    with existing_engine(db, writes=True) as engine:
        _print_run(engine.resume(run_id, by=by), as_json)


@runs.command("retry")
@click.argument("run_id", metavar="[ID", required=False)
@click.argument("step", metavar="STEP]", required=False)
@bulk_options
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_retry(
    run_id: str | None, step: str | None, workflow: str | None, status: str | None,
    label_texts: tuple[str, ...], limit: int, dry_run: bool, yes: bool, by: str | None,
    as_json: bool, db: str, log_level: str,
) -> None:  # fmt: skip
    """Run a failed step again; the steps its failure skipped wait for it again. With filters
    instead of ID STEP: every failed step of each failed run they select."""
    render.install_logging(log_level)
    where = selection("retry", run_id, workflow, status, label_texts)
    if where is not None:
        return run_bulk("retry", where, limit=limit, dry_run=dry_run, yes=yes, by=by,
                        as_json=as_json, db=db)  # fmt: skip
    if step is None:
        raise CliError("runs retry takes a run ID and the STEP to retry (or filters)")
    assert run_id is not None
    with existing_engine(db, writes=True) as engine:
        _print_run(engine.retry(run_id, step, by=by), as_json)


@runs.command("resume-failed")
@click.argument("run_id", metavar="ID")
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_resume_failed(run_id: str, by: str | None, as_json: bool, db: str, log_level: str) -> None:
    """Run a failed or cancelled run again: its failed and cancelled steps, and those skipped
    because of them, go back to pending; completed steps keep their outputs."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        _print_run(engine.resume_failed(run_id, by=by), as_json)


@runs.command("approve")
@click.argument("run_id", metavar="ID")
@click.argument("step", metavar="STEP")
@click.option("--note", metavar="TEXT", help="A note for the run's log.")
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_approve(
    run_id: str, step: str, note: str | None, by: str | None, as_json: bool, db: str,
    log_level: str,
) -> None:  # fmt: skip
    """Approve a step waiting at its approval gate: it runs."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        _print_step(engine.approve(run_id, step, by=by, note=note), as_json)


@runs.command("reject")
@click.argument("run_id", metavar="ID")
@click.argument("step", metavar="STEP")
@click.option("--reason", metavar="TEXT", help="Why, for the run's log and the step's error.")
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_reject(
    run_id: str, step: str, reason: str | None, by: str | None, as_json: bool, db: str,
    log_level: str,
) -> None:  # fmt: skip
    """Reject a step waiting at its approval gate: it fails with code 'rejected'."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        _print_step(engine.reject(run_id, step, reason=reason, by=by), as_json)


def _print_step(step: Step, as_json: bool) -> None:
    if as_json:
        render.print_json(render.step_doc(step))
    else:
        error = f": [{step.error.code}] {step.error.message}" if step.error else ""
        click.echo(f"step {step.name} of run {step.run_id} {step.status.value}{error}")


@runs.command("signal")
@click.argument("run_id", metavar="ID")
@click.argument("name", metavar="SIGNAL")
@click.argument("payload", metavar="JSON", required=False, default="null")
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_signal(
    run_id: str, name: str, payload: str, by: str | None, as_json: bool, db: str, log_level: str
) -> None:
    """Send a signal to a run's signal step. Its payload: JSON text (default null),
    @file.json, or - for stdin."""
    render.install_logging(log_level)
    value = read_json(payload, "signal payload")
    with existing_engine(db, writes=True) as engine:
        delivered = engine.signal(run_id, name, value, by=by)
    if as_json:
        render.print_json({"run_id": run_id, "signal": name, "delivered": delivered})
    elif delivered:
        click.echo(f"signal {name} delivered to run {run_id}")
    else:
        click.echo(f"signal {name} ignored: run {run_id} already had one")


@runs.command("annotate")
@click.argument("run_id", metavar="ID")
@click.argument("event_type", metavar="TYPE")
@click.argument("payload", metavar="JSON", required=False, default="null")
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_annotate(
    run_id: str,
    event_type: str,
    payload: str,
    by: str | None,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """Append an event to a run's log, as user.TYPE (TYPE: letters, digits, '_', '-', '.').
    Its payload: JSON text (default null), @file.json, or - for stdin."""
    render.install_logging(log_level)
    value = read_json(payload, "event payload")
    with existing_engine(db, writes=True) as engine:
        engine.annotate(run_id, event_type, value, by=by)
    if as_json:
        render.print_json({"run_id": run_id, "type": f"user.{event_type}"})
    else:
        click.echo(f"event user.{event_type} appended to run {run_id}")


@runs.command("waiting")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--run", "run_id", default=None, help="Only this run's waiting steps.")
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_waiting(limit: int, run_id: str | None, as_json: bool, db: str, log_level: str) -> None:
    """Steps waiting for an approval or a signal, across runs, the longest waiting first."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        waiting = engine.list_waiting(limit=limit, run_id=run_id)
    if as_json:
        render.print_json([render.waiting_doc(w) for w in waiting])
    elif not waiting:
        click.echo("nothing is waiting")
    else:
        render.stdout_console().print(render.waiting_table(waiting))
