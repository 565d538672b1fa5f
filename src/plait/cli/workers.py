"""`plait workers` and `plait topology`: the worker registry (`worker.registry`, `core.topology`), registered on
the `plait` group.

`workers` lists the live workers sharing the store (`--all`: also the dead ones not yet
forgotten); `topology WORKFLOW` shows, per step, which live workers can run it, or why none can.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from . import render
from .app import cli, db_option, existing_engine, json_option, log_option, user_errors

if TYPE_CHECKING:
    from rich.table import Table

    from ..core.topology import Topology, WorkerInfo


def worker_doc(w: WorkerInfo, now: float) -> dict[str, Any]:
    return {**render.iso_times(w.as_dict()), "live": w.is_live(now)}


def _ago(ts: float, now: float) -> str:
    return f"{render.span(now - ts)} ago"


def workers_table(workers: list[WorkerInfo], now: float) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("WORKER", "STATUS", "LABELS", "QUEUES", "WORKFLOWS", "CONC", "STARTED",
                   "HEARTBEAT"):  # fmt: skip
        table.add_column(column)
    for w in workers:
        served = ", ".join(f"{s.name} v{s.version} ({s.fingerprint})" for s in w.workflows)
        table.add_row(
            escape(w.id),
            "[green]live[/]" if w.is_live(now) else "[red]dead[/]",
            escape(", ".join(w.labels) or "-"),
            escape("all" if w.queues is None else ", ".join(w.queues)),
            escape(served or "-"),
            str(w.concurrency),
            render.when_epoch(w.started_at),
            _ago(w.heartbeat_at, now),
        )
    return table


@cli.command()
@click.option("--all", "include_dead", is_flag=True, help="Also dead workers not yet forgotten.")
@json_option
@db_option
@log_option("warning")
@user_errors
def workers(include_dead: bool, as_json: bool, db: str, log_level: str) -> None:
    """The live workers sharing the store: what each serves (workflows, queues, labels)."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        found = engine.workers(include_dead=include_dead)
    now = time.time()
    if as_json:
        render.print_json([worker_doc(w, now) for w in found])
    elif found:
        render.stdout_console().print(workers_table(found, now))
    else:
        render.stdout_console().print("no live workers" if not include_dead else "no workers",
                                      markup=False)  # fmt: skip


def topology_table(t: Topology) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("STEP", "QUEUE", "TARGET", "WORKERS"):
        table.add_column(column)
    for s in t.steps.values():
        who = ", ".join(s.workers) if s.workers else f"[yellow]{escape(s.blocker or '-')}[/]"
        target = s.target or "-"
        if target.startswith("="):
            target = f"with {target[1:]}"
        table.add_row(escape(s.step), escape(s.queue), escape(target), who)
    return table


@cli.command()
@click.argument("workflow", metavar="WORKFLOW")
@click.option("--fingerprint", help="That version (default: the latest registered).")
@json_option
@db_option
@log_option("warning")
@user_errors
def topology(
    workflow: str, fingerprint: str | None, as_json: bool, db: str, log_level: str
) -> None:
    """Which live workers can run which steps of WORKFLOW, or why none can."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        found = engine.topology(workflow, fingerprint=fingerprint)
    if as_json:
        render.print_json(found.as_dict())
        return
    out = render.stdout_console()
    out.print(f"{found.workflow} v{found.version} ({found.fingerprint}): "
              f"{len(found.workers)} live worker(s) serve it", markup=False)  # fmt: skip
    out.print(topology_table(found))
