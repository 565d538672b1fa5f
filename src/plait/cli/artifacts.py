"""`plait artifacts list RUN | get ID [-o FILE] | gc`: files steps saved (registered on cli.py).

`get` checks the artifact's size and sha256 before it writes a byte, and writes FILE through a
temporary file renamed at the end, so a damaged artifact or an interrupted copy never leaves a
short FILE. An unknown run or artifact, or a damaged one, exits 2 in one line.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from .._errors import ArtifactNotFound
from ..data.artifacts import DEFAULT_GRACE, Artifact
from . import render
from .app import cli, db_option, existing_engine, json_option, log_option, user_errors
from .loading import CliError


@cli.group()
def artifacts() -> None:
    """Files steps saved (ctx.save_artifact): list a run's, get one, sweep unreferenced ones."""


def _doc(a: Artifact) -> dict[str, Any]:
    return {
        "id": a.id,
        "run_id": a.run_id,
        "step": a.step,
        "name": a.name,
        "size": a.size,
        "sha256": a.sha256,
        "content_type": a.content_type,
        "uri": a.uri,
        "metadata": a.metadata,
        "created_at": a.created_at,
    }


@artifacts.command("list")
@click.argument("run_id", metavar="RUN")
@json_option
@db_option
@log_option("warning")
@user_errors
def artifacts_list(run_id: str, as_json: bool, db: str, log_level: str) -> None:
    """The artifacts of run RUN, oldest first: id, step, name, size, content type."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        found = engine.artifacts(run_id)
    if as_json:
        render.print_json([_doc(a) for a in found])
        return
    if not found:
        click.echo(f"run {run_id} has no artifacts")
        return
    for a in found:
        click.echo(f"{a.id}  {a.step}  {a.name}  {a.size} bytes  {a.content_type}")


@artifacts.command("get")
@click.argument("artifact_id", metavar="ID")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the bytes to FILE (replaced if it exists) instead of stdout.",
)
@db_option
@log_option("warning")
@user_errors
def artifacts_get(artifact_id: str, output: Path | None, db: str, log_level: str) -> None:
    """Write the bytes of artifact ID to stdout, or to FILE with -o (checked first)."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        try:
            source = engine.open_artifact(artifact_id)
        except ArtifactNotFound as exc:
            raise CliError(str(exc)) from None
    with source:
        if output is None:
            shutil.copyfileobj(source, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        folder = output.parent if str(output.parent) else Path(".")
        try:
            fd, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=folder)
        except OSError as exc:
            raise CliError(f"cannot write {str(output)!r}: {exc}") from None
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out)
                size = out.tell()
            os.replace(temporary, output)
        except BaseException as exc:
            Path(temporary).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise CliError(f"cannot write {str(output)!r}: {exc}") from None
            raise
    click.echo(f"wrote {size} bytes to {output}", err=True)


@artifacts.command("gc")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE,
    show_default=True,
    metavar="SECONDS",
    help="Keep unreferenced files younger than this: an attempt still running may commit them.",
)
@db_option
@log_option("warning")
@user_errors
def artifacts_gc(grace: float, db: str, log_level: str) -> None:
    """Remove artifact files no artifact references (failed attempts', interrupted copies)."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        removed = engine.gc_artifacts(grace=grace)
    click.echo(f"removed {removed} unreferenced artifact file(s)")
