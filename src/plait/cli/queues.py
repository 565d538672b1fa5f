"""`plait queues list|set`: the stored limits of flow-control queues, registered on the `plait` group.

`set` replaces a queue's configuration (a limit not given is lifted); every worker obeys it from
its next claim. Bad limits or names exit 2 in one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..core.queues import check_queue, make_rate
from . import render
from .app import cli, db_option, existing_engine, json_option, log_option, open_engine, user_errors
from .loading import CliError

if TYPE_CHECKING:
    from ..engine.views import Queue


@cli.group()
def queues() -> None:
    """Flow-control queues: list their limits, set them (workers obey at their next claim)."""


def _doc(q: Queue) -> dict[str, Any]:
    rate = None if q.rate is None else q.rate.as_dict()
    return {"name": q.name, "concurrency": q.concurrency, "rate": rate, "tokens": q.tokens}


def _line(q: Queue) -> str:
    parts = [q.name, f"concurrency {q.concurrency if q.concurrency is not None else '-'}"]
    if q.rate is not None:
        r = q.rate
        tokens = f", {render.amount(q.tokens)} token(s) left" if q.tokens is not None else ""
        parts.append(f"rate {r.count:g} per {r.per:g}s, burst {r.capacity:g}{tokens}")
    return "  ".join(parts)


@queues.command("list")
@json_option
@db_option
@log_option("warning")
@user_errors
def queues_list(as_json: bool, db: str, log_level: str) -> None:
    """The configured queues, by name (others are limited only by worker concurrency)."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        found = engine.queues()
    if as_json:
        render.print_json([_doc(q) for q in found])
    else:
        click.echo("\n".join(_line(q) for q in found) if found else "no configured queues")


@queues.command("set")
@click.argument("name")
@click.option("--concurrency", type=int, help="At most this many of its steps run at once.")
@click.option("--rate", type=float, metavar="COUNT", help="At most COUNT starts per --per.")
@click.option(
    "--per", type=float, metavar="SECONDS", help="The period of --rate, in seconds (default: 1)."
)
@click.option(
    "--burst", type=float, help="Starts allowed at once after a quiet spell (default: COUNT)."
)
@db_option
@log_option("warning")
@user_errors
def queues_set(
    name: str,
    concurrency: int | None,
    rate: float | None,
    per: float | None,
    burst: float | None,
    db: str,
    log_level: str,
) -> None:
    """Configure queue NAME (limits not given are lifted)."""
    render.install_logging(log_level)
    check_queue("plait queues set", name, error=CliError)
    lifted = "queues set replaces a queue's limits: those not given are lifted"
    if rate is None and burst is not None:
        raise CliError(f"--burst needs --rate COUNT: it sizes a rate limit ({lifted})")
    if rate is None and per is not None:
        raise CliError(f"--per needs --rate COUNT: it is the period of a rate limit ({lifted})")
    limit = (
        None
        if rate is None
        else make_rate(f"queue {name!r}", rate, 1.0 if per is None else per, burst)
    )
    with open_engine(db) as engine:
        q = engine.configure_queue(name, concurrency=concurrency, rate=limit)
    click.echo(_line(q))
