"""`plait runs watch ID`: a run's events printed as they are committed, until the run ends.

Registered on the `runs` group (cli/app.py). Each event is one line with the columns of `plait runs
events` (or one JSON document per line with --json), flushed at once so a pipe sees it live.
Exit codes: 0 once the run has ended (with --exit-status: 1 if it failed or was cancelled);
2 for an unknown run; 130 on Ctrl-C.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from ..core.rows import RunStatus
from . import render
from .app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    db_option,
    existing_engine,
    json_option,
    log_option,
    runs,
    user_errors,
)

if TYPE_CHECKING:
    from rich.console import Console

    from ..engine.views import Event

# minimum widths of SEQ, TIME, TYPE and STEP: lines printed one at a time stay aligned
WIDTHS = (4, 16, 20, 12)


@runs.command("watch")
@click.argument("run_id", metavar="ID")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="SEQ",
    help="Only events after this sequence number.",
)
@click.option("--exit-status", is_flag=True, help="Exit with 1 if the run failed or was cancelled.")
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_watch(
    run_id: str, after: int, exit_status: bool, as_json: bool, db: str, log_level: str
) -> None:
    """Print a run's events as they are committed, one a line, until the run ends (Ctrl-C
    stops watching; the run goes on)."""
    render.install_logging(log_level)
    out = render.stdout_console()
    header = True
    try:
        with existing_engine(db) as engine:
            for event in engine.watch(run_id, after_seq=after):
                if as_json:
                    click.echo(json.dumps(render.event_doc(event), separators=(",", ":")))
                else:
                    _print_line(out, event, header=header)
                    header = False
            run = engine.get_run(run_id)
    except KeyboardInterrupt:
        # click would say "Aborted!" and exit 1; watching was stopped, nothing failed
        click.echo(f"interrupted: stopped watching run {run_id}", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    click.echo(
        f"run {run.id} {run.status.value}" + (f": {run.error}" if run.error else ""), err=True
    )
    if exit_status and run.status is not RunStatus.COMPLETED:
        raise SystemExit(EXIT_FAILED)


def _print_line(out: Console, event: Event, *, header: bool) -> None:
    table = render.events_table([event])
    table.show_header = header
    for column, width in zip(table.columns, WIDTHS, strict=False):
        column.min_width = width
    out.print(table)
