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
from .app import (
    by_option,
    cli,
    db_option,
    existing_engine,
    json_option,
    log_option,
    runs,
    user_errors,
)
from .loading import CliError
from .operator import bulk_options, run_bulk, selection


@runs.command("delete")
@click.argument("run_id", metavar="[ID]", required=False)
@click.option("--force", is_flag=True, help="Cancel the run first if it is unfinished.")
@bulk_options
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_delete(
    run_id: str | None, force: bool, workflow: str | None, status: str | None,
    label_texts: tuple[str, ...], limit: int, dry_run: bool, yes: bool, by: str | None,
    as_json: bool, db: str, log_level: str,
) -> None:  # fmt: skip
    """Delete a finished run (or the finished runs the filters select): its steps and event
    log (records its steps wrote stay)."""
    render.install_logging(log_level)
    where = selection("delete", run_id, workflow, status, label_texts)
    if where is not None:
        if force:
            raise CliError("runs delete --force takes one run ID: filters delete finished runs")
        return run_bulk("delete", where, limit=limit, dry_run=dry_run, yes=yes, by=by,
                        as_json=as_json, db=db)  # fmt: skip
    assert run_id is not None
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
    if as_json:
        render.print_json({"deleted": run_id})
    else:
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
