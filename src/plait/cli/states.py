"""`plait states list|show|create|transition|increment|complete|fail|delete COLLECTION …`: the
workflow-state documents of `engine.states(collection)`, registered on the `plait` group.

Every change takes `--expected-revision N` (the revision `show` printed): then it is made only
over that revision. An invalid name or phase, an unknown id, a revision conflict, a document that
has ended or is at its max_iterations exits 2 in one line, and nothing is written.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from ..core.rows import PAGE_LIMIT
from . import render
from .app import cli, db_option, existing_engine, json_option, log_option, user_errors
from .loading import CliError, read_json

if TYPE_CHECKING:
    from rich.table import Table

    from ..data.states import State

CONTEXT_WIDTH = 60  # characters of a context shown in the list's table


@cli.group()
def states() -> None:
    """Workflow-state documents (engine.states): list, show, create, change, delete."""


def state_doc(s: State) -> dict[str, Any]:
    return {
        "id": s.id,
        "revision": s.revision,
        "phase": s.phase,
        "iteration": s.iteration,
        "max_iterations": s.max_iterations,
        "context": s.context,
        "error": s.error,
        "created_at": render._iso(s.created_at),
        "updated_at": render._iso(s.updated_at),
        "completed_at": render._iso(s.completed_at),
    }


def _iterations(s: State) -> str:
    return f"{s.iteration}" + ("" if s.max_iterations is None else f"/{s.max_iterations}")


def states_table(found: list[State]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("ID", "PHASE", "ITERATION", "REVISION", "UPDATED", "ERROR / CONTEXT"):
        table.add_column(column, overflow="fold")
    for s in found:
        detail = s.error if s.error is not None else render._short(s.context, CONTEXT_WIDTH)
        table.add_row(
            escape(s.id),
            escape(s.phase),
            _iterations(s),
            str(s.revision),
            render._when(s.updated_at),
            escape(detail),
        )
    return table


def print_state(collection: str, s: State, as_json: bool) -> None:
    """A document as `show` and every change print it: JSON on stdout with --json, else lines."""
    if as_json:
        render.print_json({"collection": collection, **state_doc(s)})
        return
    limit = "no limit" if s.max_iterations is None else f"max {s.max_iterations}"
    lines = [
        f"{collection} {s.id}: revision {s.revision}",
        f"  phase      {s.phase}",
        f"  iteration  {s.iteration} ({limit})",
        f"  error      {s.error if s.error is not None else '-'}",
        f"  created    {render._when(s.created_at)}",
        f"  updated    {render._when(s.updated_at)}",
        f"  completed  {render._when(s.completed_at)}",
        f"  context    {render._short(s.context, 200)}",
    ]
    click.echo("\n".join(lines))


def _context(text: str | None) -> dict[str, Any] | None:
    return None if text is None else read_json(text, "--context")


expected_option = click.option(
    "--expected-revision",
    type=click.IntRange(min=1),
    metavar="N",
    help="Change it only if it is at revision N (what show printed).",
)
context_option = click.option(
    "--context", "context_text", metavar="JSON", help="A JSON object, @file.json, or - for stdin."
)


@states.command("list")
@click.argument("collection")
@click.option("--phase", metavar="PHASE", help="Only documents in this phase.")
@click.option("--prefix", default="", metavar="TEXT", help="Only ids that start with TEXT.")
@click.option("--after", metavar="ID", help="Start after this id (the next page's, printed).")
@click.option("--limit", type=click.IntRange(1, PAGE_LIMIT), default=100, show_default=True)
@json_option
@db_option
@log_option("warning")
@user_errors
def states_list(
    collection: str,
    phase: str | None,
    prefix: str,
    after: str | None,
    limit: int,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """The state documents of COLLECTION by id, one page at a time."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        page = engine.states(collection).list(phase, prefix=prefix, after=after, limit=limit)
    if as_json:
        render.print_json(
            {"states": [state_doc(s) for s in page.items], "next_after": page.next_after}
        )
        return
    out = render.stdout_console()
    if not page.items:
        where = f" in phase {phase!r}" if phase else ""
        where += f" with ids starting {prefix!r}" if prefix else ""
        out.print(f"no states in {collection}{where}", markup=False)
        return
    out.print(states_table(page.items))
    if page.next_after is not None:
        command = ["plait", "states", "list", collection]
        if phase:
            command += ["--phase", phase]
        if prefix:
            command += ["--prefix", prefix]
        context = click.get_current_context()
        if context.get_parameter_source("limit") is not ParameterSource.DEFAULT:
            command += ["--limit", str(limit)]
        if context.get_parameter_source("db") is ParameterSource.COMMANDLINE:
            command += ["--db", db]
        out.print(f"more: {shlex.join([*command, '--after', page.next_after])}", markup=False)


@states.command("show")
@click.argument("collection")
@click.argument("state_id", metavar="ID")
@json_option
@db_option
@log_option("warning")
@user_errors
def states_show(collection: str, state_id: str, as_json: bool, db: str, log_level: str) -> None:
    """The state document ID of COLLECTION."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        found = engine.states(collection).get(state_id)
    if found is None:
        raise CliError(
            f"no state {state_id!r} in collection {collection!r}; see plait states list "
            f"{shlex.quote(collection)}"
        )
    print_state(collection, found, as_json)


@states.command("create")
@click.argument("collection")
@click.argument("state_id", metavar="ID")
@click.argument("phase", default="created")
@context_option
@click.option(
    "--max-iterations",
    type=click.IntRange(min=0),
    metavar="N",
    help="How many times increment may count (default: no limit).",
)
@json_option
@db_option
@log_option("warning")
@user_errors
def states_create(
    collection: str,
    state_id: str,
    phase: str,
    context_text: str | None,
    max_iterations: int | None,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """Create the state document ID of COLLECTION in PHASE (default: created)."""
    render.install_logging(log_level)
    context = _context(context_text)
    with existing_engine(db, writes=True) as engine:
        made = engine.states(collection).create(
            state_id, phase, context=context, max_iterations=max_iterations
        )
    print_state(collection, made, as_json)


@states.command("transition")
@click.argument("collection")
@click.argument("state_id", metavar="ID")
@click.argument("phase")
@context_option
@expected_option
@json_option
@db_option
@log_option("warning")
@user_errors
def states_transition(
    collection: str,
    state_id: str,
    phase: str,
    context_text: str | None,
    expected_revision: int | None,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """Move the state document ID of COLLECTION to PHASE (replacing its context if given)."""
    render.install_logging(log_level)
    context = _context(context_text)
    with existing_engine(db, writes=True) as engine:
        moved = engine.states(collection).transition(
            state_id, phase, context=context, expected_revision=expected_revision
        )
    print_state(collection, moved, as_json)


@states.command("increment")
@click.argument("collection")
@click.argument("state_id", metavar="ID")
@expected_option
@json_option
@db_option
@log_option("warning")
@user_errors
def states_increment(
    collection: str,
    state_id: str,
    expected_revision: int | None,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """Count one more iteration of the state document ID (refused past its max_iterations)."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        counted = engine.states(collection).increment_iteration(
            state_id, expected_revision=expected_revision
        )
    print_state(collection, counted, as_json)


@states.command("complete")
@click.argument("collection")
@click.argument("state_id", metavar="ID")
@expected_option
@json_option
@db_option
@log_option("warning")
@user_errors
def states_complete(
    collection: str,
    state_id: str,
    expected_revision: int | None,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """End the state document ID of COLLECTION in phase completed."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        ended = engine.states(collection).complete(state_id, expected_revision=expected_revision)
    print_state(collection, ended, as_json)


@states.command("fail")
@click.argument("collection")
@click.argument("state_id", metavar="ID")
@click.argument("error")
@expected_option
@json_option
@db_option
@log_option("warning")
@user_errors
def states_fail(
    collection: str,
    state_id: str,
    error: str,
    expected_revision: int | None,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """End the state document ID of COLLECTION in phase failed, with ERROR."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        ended = engine.states(collection).fail(state_id, error, expected_revision=expected_revision)
    print_state(collection, ended, as_json)


@states.command("delete")
@click.argument("collection")
@click.argument("state_id", metavar="ID")
@expected_option
@db_option
@log_option("warning")
@user_errors
def states_delete(
    collection: str, state_id: str, expected_revision: int | None, db: str, log_level: str
) -> None:
    """Delete the state document ID of COLLECTION (ended or not)."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        engine.states(collection).delete(state_id, expected_revision=expected_revision)
    click.echo(f"deleted state {state_id} of {collection}", err=True)
