"""`plait start`: start runs without running them (a worker does), one or many at once."""

from __future__ import annotations

import re
from typing import Any

import click

from .._errors import InputError, RunConflict
from . import render
from .app import (
    approval_policy_options,
    cli,
    db_option,
    identity_options,
    if_exists_option,
    in_cli_words,
    log_option,
    open_engine,
    parse_approval_policy,
    parse_labels,
    parse_metadata,
    user_errors,
)
from .loading import (
    CliError,
    load_module,
    parse_input,
    parse_inputs,
    pick_workflow,
    split_target,
)

_INPUT = re.compile(r"\binputs\[(\d+)\]")
_RUN_ID = re.compile(r"\brun_ids\[(\d+)\]")


@cli.command()
@click.argument("target", metavar="FILE.py:WORKFLOW")
@click.option(
    "--input",
    "input_text",
    metavar="JSON",
    help="The run input: a JSON object, @file.json, or - for stdin (default {}).",
)
@click.option(
    "--inputs",
    "inputs_file",
    metavar="FILE.jsonl",
    help="Start a run per line of this file (- for stdin), each a JSON object: many runs per "
    "transaction, every line checked before any run is started.",
)
@click.option(
    "--run-id",
    help="With --input: the run id (an id that exists is that run, if its input is the same).",
)
@click.option(
    "--id-prefix",
    metavar="PREFIX",
    help="With --inputs: run ids PREFIX-N, N the line's number, so that starting the same "
    "file again starts no run twice. Default: new ids.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Each run fails with deadline_exceeded if unfinished this long after it starts.",
)
@click.option(
    "--priority",
    type=int,
    default=0,
    show_default=True,
    help="Added to the priority of each run's steps: within a queue, higher first.",
)
@identity_options
@approval_policy_options
@if_exists_option
@db_option
@log_option("warning")
@user_errors
def start(
    target: str,
    input_text: str | None,
    inputs_file: str | None,
    run_id: str | None,
    id_prefix: str | None,
    deadline: float | None,
    priority: int,
    name: str | None,
    label_texts: tuple[str, ...],
    metadata_text: str | None,
    policy_mode: str | None,
    allow_names: tuple[str, ...],
    block_names: tuple[str, ...],
    if_exists: str,
    db: str,
    log_level: str,
) -> None:
    """Start runs of a workflow and print their ids, one per line; a worker (plait worker)
    runs them.

    One run with --input, or one per line of a JSON Lines file with --inputs (a progress bar
    on stderr). WORKFLOW is the variable that holds the plait.Workflow, or its name; it may be
    left out when FILE.py defines one workflow."""
    render.install_logging(log_level)
    if inputs_file is not None and (input_text is not None or run_id is not None):
        raise CliError("--inputs starts a run per line: give --input and --run-id without it")
    if id_prefix is not None and inputs_file is None:
        raise CliError("--id-prefix names the runs of --inputs: give --inputs too")
    if id_prefix is not None:
        from ..engine.runs import check_run_id  # here: plait --help imports no engine

        try:
            check_run_id(f"{id_prefix}-1")
        except InputError:
            raise CliError(
                f"--id-prefix {id_prefix!r} makes invalid run ids: use ASCII letters, digits "
                "or any of _ . : @ - (at most 190)"
            ) from None
    who: dict[str, Any] = {
        "name": name,
        "labels": parse_labels(label_texts),
        "metadata": parse_metadata(metadata_text),
        "if_exists": if_exists,
        "approval_policy": parse_approval_policy(policy_mode, allow_names, block_names),
    }
    payload = None if inputs_file is not None else parse_input(input_text or "{}")
    lines = parse_inputs(inputs_file) if inputs_file is not None else []
    path, attr = split_target(target)
    workflow = pick_workflow(load_module(path), path, attr)
    engine = open_engine(db)
    try:
        if inputs_file is None:
            try:
                handle = engine.start(
                    workflow, payload, run_id=run_id, deadline=deadline, priority=priority, **who
                )
            except RunConflict as exc:  # a --run-id used by a run of another workflow or input
                raise CliError(in_cli_words(str(exc), "--run-id")) from None
            click.echo(handle.id)
            return
        ids = [f"{id_prefix}-{number}" for number, _ in lines] if id_prefix else None
        started = _start_lines(engine, workflow, lines, ids, deadline, priority, inputs_file, who)
        click.echo("\n".join(started) if started else "", nl=bool(started))
    finally:
        engine.close()


def _start_lines(
    engine: Any,
    workflow: Any,
    lines: list[tuple[int, dict[str, Any]]],
    ids: list[str] | None,
    deadline: float | None,
    priority: int,
    source: str,
    who: dict[str, Any],
) -> list[str]:
    """Start a run per line, with a progress bar on a terminal's stderr; their ids."""
    from rich.progress import (  # here: plait --help imports no rich
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    where = "--inputs (stdin)" if source == "-" else f"--inputs file {source}"
    console = render.stderr_console()
    bar = None
    if console.is_terminal and lines:
        bar = Progress(
            TextColumn("[bold]starting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("runs"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        task = bar.add_task("start", total=len(lines))
        bar.start()
    try:
        handles = engine.start_many(
            workflow,
            [value for _, value in lines],
            run_ids=ids,
            deadline=deadline,
            priority=priority,
            progress=None if bar is None else lambda done: bar.update(task, completed=done),
            **who,
        )
    except (InputError, RunConflict) as exc:
        if exc.index is None:
            raise
        # the engine names inputs by index (inputs[3], run_ids[3]); here they are lines
        said = in_cli_words(str(exc), "--id-prefix")
        said = _INPUT.sub(lambda m: f"line {lines[int(m[1])][0]}", said)
        said = _RUN_ID.sub(lambda m: f"the run id of line {lines[int(m[1])][0]}", said)
        raise CliError(f"{where} {said}") from None
    finally:
        if bar is not None:
            bar.stop()
    if not console.is_terminal:
        console.print(
            f"plait start: {len(handles)} runs of {workflow.name} started", highlight=False
        )
    return [h.id for h in handles]
