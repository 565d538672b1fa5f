"""`plait doctor`: what to know about a store before trusting it with runs (`Engine.doctor`):
it opens, what its settings promise about an acknowledged commit, whether unfinished runs have
a live worker. Exit 1 if a check fails; a warning does not change the exit code."""

from __future__ import annotations

from . import render
from .app import EXIT_FAILED, cli, db_option, existing_engine, json_option, log_option, user_errors

MARKS = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[red]fail[/]"}


@cli.command()
@json_option
@db_option
@log_option("error")
@user_errors
def doctor(as_json: bool, db: str, log_level: str) -> None:
    """Check the store: it opens, a committed outcome survives a power failure (the store's
    durability settings), and unfinished runs have a live worker."""
    from rich.markup import escape

    render.install_logging(log_level)
    with existing_engine(db) as engine:
        checks = engine.doctor()
    if as_json:
        render.print_json([c.as_dict() for c in checks])
    else:
        out = render.stdout_console()
        for c in checks:
            settings = ""
            if c.settings:
                settings = " (" + ", ".join(f"{k}={v}" for k, v in c.settings.items()) + ")"
            out.print(f"{MARKS[c.status]}  {c.name:<11} {escape(c.says)}{escape(settings)}")
    if any(c.status == "fail" for c in checks):
        raise SystemExit(EXIT_FAILED)
