"""`plait runs delete`, `plait blobs`, `plait gc`: the data plane's commands, registered on the
groups (cli/app.py).

Each exits 2 with one line when the run does not exist or its state does not allow the command.
"""

from __future__ import annotations

import dataclasses
import shlex

import click

from .._errors import RunStateError
from ..core.blobs import DEFAULT_GRACE, BlobStats
from . import render
from .app import cli, db_option, existing_engine, json_option, log_option, runs, user_errors
from .loading import CliError


@runs.command("delete")
@click.argument("run_id", metavar="ID")
@click.option("--force", is_flag=True, help="Cancel the run first if it is unfinished.")
@db_option
@log_option("warning")
@user_errors
def runs_delete(run_id: str, force: bool, db: str, log_level: str) -> None:
    """Delete a finished run: its steps and event log (records its steps wrote stay)."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        try:
            engine.delete_run(run_id, force=force)
        except RunStateError:
            run = engine.get_run(run_id)
            if force or run.status.terminal:
                raise
            raise CliError(
                f"run {run_id!r} is {run.status.value}: plait runs delete deletes finished runs "
                f"only; cancel it first (plait runs cancel {shlex.quote(run_id)}), or pass "
                "--force (which cancels it, then deletes)"
            ) from None
    click.echo(f"run {run_id} deleted")


def _stats_line(stats: BlobStats) -> str:
    return f"{stats.blobs} blob(s), {stats.bytes:,} bytes, {stats.references} reference(s) to them"


@cli.command("blobs")
@json_option
@db_option
@log_option("warning")
@user_errors
def blobs(as_json: bool, db: str, log_level: str) -> None:
    """What the blob table holds: payloads over the store's blob_threshold, kept once."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        stats = engine.blob_stats()
    if as_json:
        render.print_json(dataclasses.asdict(stats))
    else:
        click.echo(_stats_line(stats))


@cli.command("gc")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE,
    show_default=True,
    help="Keep unreferenced blobs and artifact files younger than this many seconds.",
)
@json_option
@db_option
@log_option("warning")
@user_errors
def gc(grace: float, as_json: bool, db: str, log_level: str) -> None:
    """Remove the blobs no run refers to any more (deleted runs, rewritten outputs), and the
    artifact files no artifact refers to (failed attempts)."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        files = engine.gc_artifacts(grace=grace)
        removed = engine.gc(grace=grace)
        stats = engine.blob_stats()
    if as_json:
        render.print_json(
            {"removed": removed, "artifact_files": files, **dataclasses.asdict(stats)}
        )
    else:
        click.echo(
            f"removed {removed} unreferenced blob(s) and {files} artifact file(s); "
            f"left: {_stats_line(stats)}"
        )
