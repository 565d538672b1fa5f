"""`plait runs list|show|events` and `plait workflows`: reading runs and versions."""

from __future__ import annotations

import shlex

import click
from click.core import ParameterSource

from .._errors import InputError
from ..core.rows import RunStatus
from . import render
from .app import (
    cli,
    db_option,
    existing_engine,
    json_option,
    label_option,
    log_option,
    parse_labels,
    runs,
    user_errors,
)
from .loading import CliError


@runs.command("list")
@click.option("--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option(
    "--status", type=click.Choice([s.value for s in RunStatus]), help="Only runs in this status."
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", help="The next-page cursor printed by a previous page.")
@label_option("Only runs with this label (repeat: runs with every one of them).")
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_list(
    workflow: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    label_texts: tuple[str, ...],
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """Runs, newest first, one page at a time."""
    render.install_logging(log_level)
    labels = parse_labels(label_texts)
    with existing_engine(db) as engine:
        try:
            page = engine.list_runs(
                workflow=workflow,
                status=status,
                labels=labels,
                limit=limit,
                cursor=cursor,
                excerpt=None if as_json else 0,  # the table shows no payload
            )
        except InputError:
            if cursor is None:
                raise
            raise CliError(
                f"invalid --cursor {cursor!r}: pass the cursor a previous page printed (its "
                "'more:' line, or next_cursor with --json)"
            ) from None
    if as_json:
        render.print_json(
            {"runs": [render.run_doc(r) for r in page.runs], "next_cursor": page.next_cursor}
        )
        return
    out = render.stdout_console()
    if not page.runs:
        out.print("no runs", markup=False)
        return
    out.print(render.runs_table(page.runs))
    if page.next_cursor:
        again = _same_list(workflow=workflow, status=status, labels=label_texts, limit=limit, db=db)
        out.print(f"more: {shlex.join([*again, '--cursor', page.next_cursor])}", markup=False)


def _same_list(
    *, workflow: str | None, status: str | None, labels: tuple[str, ...], limit: int, db: str
) -> list[str]:
    """The command that lists the next page as this one was listed: the same filters, page size
    and --db (when given on the command line; PLAIT_DB applies to the next command as well)."""
    command = ["plait", "runs", "list"]
    if workflow is not None:
        command += ["--workflow", workflow]
    if status is not None:
        command += ["--status", status]
    for label in labels:
        command += ["--label", label]
    context = click.get_current_context()
    if context.get_parameter_source("limit") is not ParameterSource.DEFAULT:
        command += ["--limit", str(limit)]
    if context.get_parameter_source("db") is ParameterSource.COMMANDLINE:
        command += ["--db", db]
    return command


@runs.command("show")
@click.argument("run_id", metavar="ID")
@click.option(
    "--step",
    metavar="STEP",
    help="Show this step in full: its error, output, and the traceback of each failed attempt.",
)
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_show(run_id: str, step: str | None, as_json: bool, db: str, log_level: str) -> None:
    """A run, its steps (status, attempts, durations, errors) and what waiting steps wait on;
    with --step, one step and the tracebacks of its failed attempts."""
    render.install_logging(log_level)
    if step is not None:
        _show_step(run_id, step, as_json, db)
        return
    with existing_engine(db) as engine:  # the lines show the payloads' start: read no more
        excerpt = None if as_json else render.excerpt_for(render.SHOW_WIDTH)
        inspection = engine.inspect(run_id, excerpt=excerpt)
        # the session state's history: read only when the run has a state (changes made one)
        events = engine.events(run_id) if inspection.run.state else engine.events(run_id, 0, 1)
    # the run's own approval policy, which its first event records (`core.policy`)
    policy = events[0].payload.get("approval_policy") if events else None
    if as_json:
        doc = render.inspection_doc(inspection)
        doc["approval_policy"] = policy
        doc["state_history"] = render.state_history_doc(events)
        render.print_json(doc)
    else:
        out = render.stdout_console()
        render.show_inspection(out, inspection, policy)
        if inspection.run.state:
            render.show_state(out, inspection.run.state, events)


def _show_step(run_id: str, name: str, as_json: bool, db: str) -> None:
    with existing_engine(db) as engine:
        steps = engine.steps(
            run_id, excerpt=None if as_json else render.excerpt_for(render.STEP_WIDTH)
        )
        found = next((s for s in steps if s.name == name), None)
        if found is None:
            raise CliError(f"run {run_id!r} has no step {name!r}; see plait runs show {run_id}")
        failures = [
            e
            for e in engine.events(run_id)
            if e.step == name and e.type in ("step_retrying", "step_failed")
        ]
    if as_json:
        render.print_json(
            {**render.step_doc(found), "failures": [render.failure_doc(e) for e in failures]}
        )
    else:
        render.show_step(render.stdout_console(), found, failures)


@runs.command("events")
@click.argument("run_id", metavar="ID")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="SEQ",
    help="Only events after this sequence number.",
)
@json_option
@db_option
@log_option("warning")
@user_errors
def runs_events(run_id: str, after: int, as_json: bool, db: str, log_level: str) -> None:
    """A run's event log, in order."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        events = engine.events(run_id, after_seq=after)
    if as_json:
        render.print_json([render.event_doc(e) for e in events])
    elif events:
        render.stdout_console().print(render.events_table(events))
    else:
        render.stdout_console().print(f"no events after {after}", markup=False)


@cli.group(invoke_without_command=True)
@json_option
@db_option
@log_option("warning")
@click.pass_context
@user_errors
def workflows(ctx: click.Context, as_json: bool, db: str, log_level: str) -> None:
    """The workflow versions recorded in the store: when each was registered, its code
    digests, its runs in flight and the live workers serving it. `plait workflows diff NAME
    V1 V2` says what changed between two versions."""
    if ctx.invoked_subcommand is not None:
        return
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        infos = engine.workflows()
    if as_json:
        render.print_json([render.workflow_doc(i) for i in infos])
    elif infos:
        render.stdout_console().print(render.workflows_table(infos))
    else:
        render.stdout_console().print("no workflows", markup=False)


@workflows.command("diff")
@click.argument("name")
@click.argument("version_a", metavar="V1")
@click.argument("version_b", metavar="V2")
@json_option
@db_option
@log_option("warning")
@user_errors
def workflows_diff(
    name: str, version_a: str, version_b: str, as_json: bool, db: str, log_level: str
) -> None:
    """What changed from version V1 to V2 of workflow NAME (each a version string or a
    fingerprint): steps added and removed, edges, options, code."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        found = engine.diff_versions(name, version_a, version_b)
    if as_json:
        render.print_json(found.as_dict())
        return
    out = render.stdout_console()
    for line in render.version_diff_lines(name, found):
        out.print(line, markup=False)
