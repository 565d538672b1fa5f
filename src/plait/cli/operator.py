"""`plait runs <action>`: operator actions on runs, registered on the `runs` group (cli/app.py).

Each prints the run as it is afterwards (a line, or JSON with --json) and exits 2 with one line
when the run does not exist or its state does not allow the action.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import render
from .app import by_option, db_option, existing_engine, json_option, log_option, runs, user_errors
from .loading import read_json

if TYPE_CHECKING:
    from ..engine.views import Run, Step


@runs.command("cancel")
@click.argument("run_id", metavar="ID")
@click.option("--reason", metavar="TEXT", help="Why, for the run's log and its error.")
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_cancel(
    run_id: str, reason: str | None, by: str | None, as_json: bool, db: str, log_level: str
) -> None:
    """Cancel a run: waiting steps end cancelled, running ones are interrupted."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        _print_run(engine.cancel(run_id, reason=reason, by=by), as_json)


def _print_run(run: Run, as_json: bool) -> None:
    if as_json:
        render.print_json(render.run_doc(run))
    else:
        click.echo(f"run {run.id} {run.status.value}" + (f": {run.error}" if run.error else ""))


@runs.command("pause")
@click.argument("run_id", metavar="ID")
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_pause(run_id: str, by: str | None, as_json: bool, db: str, log_level: str) -> None:
    """Pause a run: nothing new starts; steps in flight finish (pausing, then paused)."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        _print_run(engine.pause(run_id, by=by), as_json)


@runs.command("resume")
@click.argument("run_id", metavar="ID")
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_resume(run_id: str, by: str | None, as_json: bool, db: str, log_level: str) -> None:
    """Resume a paused run."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        _print_run(engine.resume(run_id, by=by), as_json)


@runs.command("retry")
@click.argument("run_id", metavar="ID")
@click.argument("step", metavar="STEP")
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_retry(
    run_id: str, step: str, by: str | None, as_json: bool, db: str, log_level: str
) -> None:
    """Run a failed step again; the steps its failure skipped wait for it again."""
    render.install_logging(log_level)
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
