"""`plait failures list|retry`: failed steps across runs (a dead-letter view), registered on the
`plait` group.

`list` pages newest first, filtered by workflow, step, error code, end time and run labels
(`--label KEY=VALUE`, repeatable, as for `plait runs`), and prints the command for the next
page. `retry` counts what its filter matches first and says so, then asks
(unless `--yes`) and retries at most that many, each as `plait runs retry` would.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from .._errors import InputError
from . import render
from .app import (
    by_option,
    cli,
    db_option,
    existing_engine,
    json_option,
    log_option,
    parse_labels,
    user_errors,
)
from .loading import CliError

if TYPE_CHECKING:  # the engine is imported by the commands that run (`plait --help` stays light)
    from ..engine.views import FailureRetry

_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str | None) -> datetime | float | None:
    """`--since`: an ISO 8601 date-time (naive: UTC), epoch seconds, or an age ("30m", "2h",
    "7d": that long ago)."""
    if value is None:
        return None
    if m := _AGO.fullmatch(value.strip()):
        return time.time() - float(m[1]) * _UNIT[m[2]]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(
            f"invalid --since {value!r}: give an ISO 8601 date-time (naive: UTC), epoch "
            "seconds, or an age such as 30m, 2h, 7d"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _filters(fn: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(
        [
            click.option("--workflow", metavar="NAME", help="Only steps of this workflow's runs."),
            click.option("--step", metavar="NAME", help="Only steps of this name."),
            click.option("--code", metavar="CODE", help="Only steps failed with this error code."),
            click.option(
                "--since",
                metavar="WHEN",
                help="Only steps ended at or after WHEN: ISO 8601, epoch seconds, or an age "
                "(30m, 2h, 7d).",
            ),
            click.option(  # as `label_option` (typed for plain functions, not click's FC)
                "--label",
                "label_texts",
                multiple=True,
                metavar="KEY=VALUE",
                help="Only steps of runs with this label (repeat: with every one of them).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@cli.group()
def failures() -> None:
    """Failed steps across runs: list them (newest first), retry many at once."""


@failures.command("list")
@_filters
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", help="The next-page cursor printed by a previous page.")
@json_option
@db_option
@log_option("warning")
@user_errors
def failures_list(
    workflow: str | None,
    step: str | None,
    code: str | None,
    since: str | None,
    label_texts: tuple[str, ...],
    limit: int,
    cursor: str | None,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """Failed steps across runs, the latest ended first, one page at a time."""
    render.install_logging(log_level)
    when = parse_since(since)
    labels = parse_labels(label_texts)
    if cursor is not None and since is not None and _AGO.fullmatch(since.strip()):
        raise CliError(
            "--cursor with an age as --since (it moves as time passes): give --since as a "
            "date-time or epoch seconds to page"
        )
    with existing_engine(db) as engine:
        try:
            page = engine.failures(
                workflow=workflow, step=step, code=code, since=when, labels=labels, limit=limit,
                cursor=cursor,
            )  # fmt: skip
        except InputError as exc:
            if cursor is None or "cursor" not in str(exc):
                raise
            raise CliError(str(exc).replace("cursor", "--cursor", 1)) from None
    if as_json:
        docs = [render.failure_step_doc(f) for f in page.steps]
        render.print_json({"steps": docs, "next_cursor": page.next_cursor})
        return
    out = render.stdout_console()
    if not page.steps:
        out.print("no failed steps", markup=False)
        return
    out.print(render.failures_table(page.steps))
    if page.next_cursor:
        again = ["plait", "failures", "list"]
        for name, value in (("--workflow", workflow), ("--step", step), ("--code", code)):
            if value is not None:
                again += [name, value]
        if since is not None:
            again += ["--since", since]
        for label in label_texts:
            again += ["--label", label]
        again += ["--limit", str(limit), "--cursor", page.next_cursor]
        out.print(f"more: {shlex.join(again)}", markup=False)


@failures.command("retry")
@_filters
@click.option(
    "--limit",
    type=int,
    help="Retry at most this many, the newest (default and most: 1000); run again for the rest.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before retrying.")
@click.option("--dry-run", is_flag=True, help="Only say how many would be retried.")
@by_option
@json_option
@db_option
@log_option("warning")
@user_errors
def failures_retry(
    workflow: str | None,
    step: str | None,
    code: str | None,
    since: str | None,
    label_texts: tuple[str, ...],
    limit: int | None,
    yes: bool,
    dry_run: bool,
    by: str | None,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """Retry the failed steps the filters match: says how many first, asks unless --yes."""
    from ..engine.views import FailureFilter

    render.install_logging(log_level)
    where = FailureFilter(workflow, step, code, parse_since(since), parse_labels(label_texts))
    with existing_engine(db, writes=not dry_run) as engine:
        count = (
            engine.retry_failures(where, dry_run=True)
            if limit is None
            else engine.retry_failures(where, dry_run=True, limit=limit)
        )
        more = " (and more: run again for the rest)" if count.more else ""
        what = f"{count.matched} failed step(s) in {count.runs} run(s) match{more}"
        if dry_run or count.matched == 0:
            if as_json:
                render.print_json(_doc(count))
            else:
                click.echo(what if count.matched else "no failed steps match: nothing to retry")
            return
        click.echo(what + ": " + render.first_names(count.sample), err=True)
        if not yes:
            click.confirm("Retry them?", abort=True, err=True)
        done = engine.retry_failures(where, limit=count.matched, by=by)
    errors = [i for i in done.items if i.outcome != "done"]
    if as_json:
        render.print_json(_doc(done))
    else:
        click.echo(f"retried {len(done.items) - len(errors)} failed step(s)")
        for item in errors:
            click.echo(f"not retried: {item.run_id}/{item.step}: {item.message}", err=True)
    if errors:
        raise SystemExit(1)


def _doc(result: FailureRetry) -> dict[str, Any]:
    return dataclasses.asdict(result)
