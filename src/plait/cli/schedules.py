"""`plait schedules list|add|pause|resume|delete`: cron schedules, registered on the `plait` group.

A schedule's runs are started by the elected scheduler of a running `plait worker`; see
`engine.schedules`. Bad cron expressions, timezones, catch-up policies or names exit 2 in one line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ..core.cron import CATCH_UP
from . import render
from .app import (
    cli,
    db_option,
    existing_engine,
    json_option,
    log_option,
    open_engine,
    user_errors,
)
from .loading import CliError, load_module, parse_input, pick_workflow, split_target

if TYPE_CHECKING:
    from ..engine.schedules import Schedule


@cli.group()
def schedules() -> None:
    """Cron schedules: list, add, pause, resume, delete (a running `plait worker` starts them)."""


def _doc(s: Schedule) -> dict[str, Any]:
    return {
        "name": s.name,
        "workflow": s.workflow,
        "cron": s.cron,
        "timezone": s.timezone,
        "input": s.input,
        "catch_up": s.catch_up,
        "paused": s.paused,
        "next_at": datetime.fromtimestamp(s.next_at, UTC).isoformat(),
    }


def _line(s: Schedule) -> str:
    state = (
        "paused" if s.paused else f"next {datetime.fromtimestamp(s.next_at, UTC):%Y-%m-%d %H:%M}Z"
    )
    return f"{s.name}  {s.workflow}  '{s.cron}' {s.timezone}  catch-up {s.catch_up}  {state}"


@schedules.command("list")
@json_option
@db_option
@log_option("warning")
@user_errors
def schedules_list(as_json: bool, db: str, log_level: str) -> None:
    """Every schedule, by name."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        found = engine.schedules()
    if as_json:
        render.print_json([_doc(s) for s in found])
    else:
        click.echo("\n".join(_line(s) for s in found) if found else "no schedules")


@schedules.command("add")
@click.argument("name")
@click.argument("target", metavar="FILE.py[:WORKFLOW]")
@click.option("--cron", required=True, help="5 fields (minute hour day month weekday) or @daily…")
@click.option("--input", "input_text", default="{}", metavar="JSON", help="The runs' input.")
@click.option("--timezone", default="UTC", show_default=True, help="An IANA timezone name.")
@click.option("--catch-up", type=click.Choice(CATCH_UP), default="skip", show_default=True)
@db_option
@log_option("warning")
@user_errors
def schedules_add(
    name: str,
    target: str,
    cron: str,
    input_text: str,
    timezone: str,
    catch_up: str,
    db: str,
    log_level: str,
) -> None:
    """Add (or replace) schedule NAME: start the workflow at each tick of --cron. WORKFLOW is
    the variable that holds the plait.Workflow, or its name."""
    render.install_logging(log_level)
    path, attr = split_target(target)
    wf = pick_workflow(load_module(path), path, attr)
    value = parse_input(input_text)
    with open_engine(db) as engine:
        s = engine.schedule(name, wf, cron=cron, input=value, timezone=timezone, catch_up=catch_up)
    click.echo(_line(s))


def _toggle(name: str, db: str, paused: bool) -> None:
    with existing_engine(db, writes=True) as engine:
        s = engine.pause_schedule(name) if paused else engine.resume_schedule(name)
    click.echo(_line(s))


@schedules.command("pause")
@click.argument("name")
@db_option
@log_option("warning")
@user_errors
def schedules_pause(name: str, db: str, log_level: str) -> None:
    """Start no more runs of schedule NAME until it is resumed."""
    render.install_logging(log_level)
    _toggle(name, db, True)


@schedules.command("resume")
@click.argument("name")
@db_option
@log_option("warning")
@user_errors
def schedules_resume(name: str, db: str, log_level: str) -> None:
    """Start runs of schedule NAME again, from its first tick after now (the ticks of the pause
    are not started, whatever its catch-up policy)."""
    render.install_logging(log_level)
    _toggle(name, db, False)


@schedules.command("delete")
@click.argument("name")
@db_option
@log_option("warning")
@user_errors
def schedules_delete(name: str, db: str, log_level: str) -> None:
    """Delete schedule NAME (the runs it started stay)."""
    render.install_logging(log_level)
    with existing_engine(db, writes=True) as engine:
        if not engine.delete_schedule(name):
            raise CliError(f"no schedule named {name!r}; see plait schedules list")
    click.echo(f"schedule {name} deleted")
