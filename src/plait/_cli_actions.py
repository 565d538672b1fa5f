"""`plait runs <action>`: operator actions on runs, registered on the `runs` group of cli.py.

Each prints the run as it is afterwards (a line, or JSON with --json) and exits 2 with one line
when the run does not exist or its state does not allow the action.
"""

from __future__ import annotations

import click

from . import _cli_render as render
from ._views import Run
from .cli import _user_errors, db_option, existing_engine, json_option, log_option, runs

by_option = click.option(
    "--by", metavar="WHO", help="Who acts, for the run's log (default: user@host)."
)


@runs.command("cancel")
@click.argument("run_id", metavar="ID")
@click.option("--reason", metavar="TEXT", help="Why, for the run's log and its error.")
@by_option
@json_option
@db_option
@log_option("warning")
@_user_errors
def runs_cancel(
    run_id: str, reason: str | None, by: str | None, as_json: bool, db: str, log_level: str
) -> None:
    """Cancel a run: waiting steps end cancelled, running ones are interrupted."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
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
@_user_errors
def runs_pause(run_id: str, by: str | None, as_json: bool, db: str, log_level: str) -> None:
    """Pause a run: nothing new starts; steps in flight finish (pausing, then paused)."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        _print_run(engine.pause(run_id, by=by), as_json)


@runs.command("resume")
@click.argument("run_id", metavar="ID")
@by_option
@json_option
@db_option
@log_option("warning")
@_user_errors
def runs_resume(run_id: str, by: str | None, as_json: bool, db: str, log_level: str) -> None:
    """Resume a paused run."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        _print_run(engine.resume(run_id, by=by), as_json)


@runs.command("retry")
@click.argument("run_id", metavar="ID")
@click.argument("step", metavar="STEP")
@by_option
@json_option
@db_option
@log_option("warning")
@_user_errors
def runs_retry(
    run_id: str, step: str, by: str | None, as_json: bool, db: str, log_level: str
) -> None:
    """Run a failed step again; the steps its failure skipped wait for it again."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        _print_run(engine.retry(run_id, step, by=by), as_json)
