"""`plait runs delete`: the data plane's commands, registered on the groups of cli.py.

Each exits 2 with one line when the run does not exist or its state does not allow the command.
"""

from __future__ import annotations

import click

from . import _cli_render as render
from .cli import _user_errors, db_option, existing_engine, log_option, runs


@runs.command("delete")
@click.argument("run_id", metavar="ID")
@click.option("--force", is_flag=True, help="Cancel the run first if it is unfinished.")
@db_option
@log_option("warning")
@_user_errors
def runs_delete(run_id: str, force: bool, db: str, log_level: str) -> None:
    """Delete a finished run: its steps and event log (records its steps wrote stay)."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        engine.delete_run(run_id, force=force)
    click.echo(f"run {run_id} deleted")
