"""`plait records list COLLECTION | get COLLECTION KEY`: reading the documents steps wrote with
`ctx.record` (and programs with `engine.records(...).put`), registered on the `plait` group.

Read-only: writing stays with code, where a revision is read and expected. An invalid or
reserved collection name, a missing document or a bad option exits 2 in one line.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from ..core.rows import PAGE_LIMIT
from . import render
from .app import cli, db_option, existing_engine, json_option, log_option, user_errors
from .loading import CliError

if TYPE_CHECKING:
    from rich.table import Table

    from ..data.records import Record

DOC_WIDTH = 80  # characters of a document shown in the list's table


@cli.group()
def records() -> None:
    """Documents steps wrote (ctx.record), by collection: list them, get one (read-only)."""


def record_doc(r: Record) -> dict[str, Any]:
    return {
        "key": r.key,
        "doc": r.doc,
        "revision": r.revision,
        "updated_at": render._iso(r.updated_at),
        "run_id": r.run_id,
        "step": r.step,
    }


def records_table(found: list[Record]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("KEY", "REVISION", "UPDATED", "WRITTEN BY", "DOCUMENT"):
        table.add_column(column, overflow="fold")
    for r in found:
        by = f"{r.run_id} / {r.step}" if r.run_id is not None else "-"
        table.add_row(
            escape(r.key),
            str(r.revision),
            render._when(r.updated_at),
            escape(by),
            escape(render._short(r.doc, DOC_WIDTH)),
        )
    return table


@records.command("list")
@click.argument("collection")
@click.option("--prefix", default="", metavar="TEXT", help="Only keys that start with TEXT.")
@click.option("--after", metavar="KEY", help="Start after this key (the next page's, printed).")
@click.option("--limit", type=click.IntRange(1, PAGE_LIMIT), default=100, show_default=True)
@json_option
@db_option
@log_option("warning")
@user_errors
def records_list(
    collection: str,
    prefix: str,
    after: str | None,
    limit: int,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """The documents of COLLECTION by key, one page at a time."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        page = engine.records(collection).list(prefix, after=after, limit=limit)
    if as_json:
        render.print_json(
            {"records": [record_doc(r) for r in page.items], "next_after": page.next_after}
        )
        return
    out = render.stdout_console()
    if not page.items:
        where = f" with keys starting {prefix!r}" if prefix else ""
        out.print(f"no records in {collection}{where}", markup=False)
        return
    out.print(records_table(page.items))
    if page.next_after is not None:
        command = ["plait", "records", "list", collection]
        if prefix:
            command += ["--prefix", prefix]
        context = click.get_current_context()
        if context.get_parameter_source("limit") is not ParameterSource.DEFAULT:
            command += ["--limit", str(limit)]
        if context.get_parameter_source("db") is ParameterSource.COMMANDLINE:
            command += ["--db", db]
        out.print(f"more: {shlex.join([*command, '--after', page.next_after])}", markup=False)


@records.command("get")
@click.argument("collection")
@click.argument("key")
@json_option
@db_option
@log_option("warning")
@user_errors
def records_get(collection: str, key: str, as_json: bool, db: str, log_level: str) -> None:
    """The document KEY of COLLECTION, as JSON (with --json: with its key and revision)."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        found = engine.records(collection).get(key)
    if found is None:
        raise CliError(
            f"no record {key!r} in collection {collection!r}; see plait records list "
            f"{shlex.quote(collection)}"
        )
    doc, revision = found
    if as_json:
        render.print_json({"collection": collection, "key": key, "doc": doc, "revision": revision})
        return
    click.echo(f"{collection} {key}: revision {revision}", err=True)
    render.print_json(doc)
