"""`plait artifacts list RUN | get ID [-o FILE] | gc`: files steps saved (registered on the `plait` group).

`get` checks the artifact's size and sha256 before it writes a byte, then writes to what FILE is
(`write_output`): a new or existing regular file gets a complete copy renamed into place, so a
damaged artifact or an interrupted copy never leaves a short FILE; a FIFO or a character device is
written through; a symbolic link is followed and stays a link. An unknown run or artifact, a
damaged one, or a FILE that cannot be written exits 2 in one line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from .._errors import ArtifactNotFound
from ..core.blobs import ARTIFACT_GRACE
from . import render
from .app import cli, db_option, existing_engine, json_option, log_option, user_errors
from .loading import CliError

if TYPE_CHECKING:
    from ..data.artifacts import Artifact

CHUNK = 1 << 20  # bytes copied at a time


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
        "created_at": render.iso_epoch(a.created_at),
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
    metavar="FILE",
    help="Write the bytes to FILE instead of stdout (- for stdout). A regular file is replaced "
    "whole, keeping its permissions; a FIFO or a device is written through; a symbolic link is "
    "followed.",
)
@db_option
@log_option("warning")
@user_errors
def artifacts_get(artifact_id: str, output: str | None, db: str, log_level: str) -> None:
    """Write the bytes of artifact ID to stdout, or to FILE with -o (checked first)."""
    render.install_logging(log_level)
    if output == "":
        raise CliError("-o: name a file, or - for stdout")
    with existing_engine(db) as engine:
        try:
            source = engine.open_artifact(artifact_id)
        except ArtifactNotFound as exc:
            raise CliError(str(exc)) from None
    with source:
        if output is None or output == "-":
            _copy(source, sys.stdout.buffer)
            return
        size = write_output(output, source)
    click.echo(f"wrote {size} bytes to {output}", err=True)


def write_output(output: str, source: BinaryIO) -> int:
    """Copy `source` to the path `output` as what that path is; the number of bytes written.

    Nothing there: a new regular file, with the mode the umask gives, complete or absent. A
    regular file: replaced by a complete copy (rename), keeping its permission bits (and owner,
    as root), so a failure leaves it as it was. A FIFO or a character device (a terminal,
    /dev/null): opened and written, as the shell's `>` does. A symbolic link: the same for what
    it points to; the link stays. A directory, a block device, a socket or a link to nothing
    is refused, and nothing is written."""
    try:
        info: os.stat_result | None = os.stat(output)  # follows symbolic links
    except FileNotFoundError:
        if os.path.islink(output):
            raise CliError(
                f"-o {output}: a symbolic link to {os.readlink(output)!r}, which does not "
                "exist; nothing was written"
            ) from None
        info = None
    except OSError as exc:
        raise CliError(f"cannot write {output!r}: {exc.strerror or exc}") from None
    if info is None:
        return _replace(output, source, None)
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return _replace(os.path.realpath(output), source, info, shown=output)
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return _write_through(output, source)
    kind = "a directory" if stat.S_ISDIR(mode) else _special(mode)
    raise CliError(
        f"-o {output} is {kind}: plait writes an artifact to a file, a FIFO or a character "
        "device (or - for stdout); nothing was written"
    )


def _special(mode: int) -> str:
    if stat.S_ISBLK(mode):
        return "a block device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a file"


def _write_through(output: str, source: BinaryIO) -> int:
    """A FIFO or a character device: written as it is (a FIFO waits for its reader)."""
    try:
        with open(output, "wb") as out:
            return _copy(source, out)
    except OSError as exc:
        raise CliError(f"cannot write {output!r}: {exc.strerror or exc}") from None


def _copy(source: BinaryIO, out: BinaryIO) -> int:
    size = 0
    while chunk := source.read(CHUNK):
        out.write(chunk)
        size += len(chunk)
    out.flush()
    return size


def _replace(
    path: str, source: BinaryIO, existing: os.stat_result | None, shown: str | None = None
) -> int:
    """Write a complete copy beside `path`, then move it into place: over `existing` (whose
    permission bits it takes), or as a new file (which must still not exist)."""
    shown = shown or path
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.plait-part")
    # 0o666 minus the umask, as for any new file; an existing file's own bits are set below
    created = 0o600 if existing is not None else 0o666
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, created)
    except OSError as exc:
        raise CliError(f"cannot write {shown!r}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            size = _copy(source, out)
            if existing is not None:
                os.fchmod(out.fileno(), stat.S_IMODE(existing.st_mode))
                if (existing.st_uid, existing.st_gid) != (os.getuid(), os.getgid()):
                    with contextlib.suppress(PermissionError):  # only root may give files away
                        os.fchown(out.fileno(), existing.st_uid, existing.st_gid)
        if existing is not None:
            os.replace(temporary, path)
        else:
            _create(temporary, path, shown)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise CliError(f"cannot write {shown!r}: {exc.strerror or exc}") from None
        raise
    return size


def _create(temporary: str, path: str, shown: str) -> None:
    """Move the copy to `path`, which did not exist: never over something made meanwhile."""
    try:
        os.link(temporary, path)  # fails if `path` exists now, unlike a rename
    except FileExistsError:
        raise CliError(
            f"cannot write {shown!r}: it was created by someone else while the artifact was "
            "copied; nothing was written to it"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        os.rename(temporary, path)  # a file system without hard links
        return
    os.unlink(temporary)


@artifacts.command("gc")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=ARTIFACT_GRACE,
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
