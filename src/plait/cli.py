"""The `plait` command line.

    plait run FILE.py:WORKFLOW --input JSON      run one workflow to completion, embedded worker
    plait worker FILE.py                         serve every workflow the file defines
    plait runs list | show ID | events ID        read runs from the store
    plait workflows                              the workflow versions recorded in the store
    plait workers | topology WORKFLOW            live workers, and which can run which steps

Every command takes `--db URL` (env `PLAIT_DB`, default `sqlite:///plait.db`) and `--log-level`.
Exit codes: 0 success; 1 the run failed, was cancelled or did not finish; 2 bad usage or input
(the message says which); 130 interrupted. Results and `--json` documents go to stdout, everything
else (progress, logs, errors) to stderr.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from . import _cli_render as render
from ._cli_apps import (
    CliError,
    load_module,
    module_workflows,
    parse_input,
    pick_workflow,
    split_target,
)
from ._cron import CronError
from ._definition import Workflow
from ._engine import DEFAULT_URL, Engine, RunHandle
from ._errors import (
    ConfigError,
    DefinitionError,
    InputError,
    RunCancelled,
    RunConflict,
    RunFailed,
    RunNotFound,
    RunStateError,
    StoreError,
    WorkflowNotFound,
)
from ._placement import worker_labels
from ._queues import worker_queues
from ._records import RunStatus

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

LOG_LEVELS = ("debug", "info", "warning", "error")


_USER_ERRORS = (
    ConfigError,
    CronError,
    InputError,
    DefinitionError,
    RunNotFound,
    WorkflowNotFound,
    RunConflict,
    RunStateError,
    StoreError,
)


def _user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn plait errors a user causes (bad input, unknown run, unusable store) into CliError."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except _USER_ERRORS as exc:
            raise CliError(str(exc)) from None

    return wrapper


# -- shared options ------------------------------------------------------------------------------

db_option = click.option(
    "--db",
    "db",
    envvar="PLAIT_DB",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="Store URL: sqlite:///relative.db, sqlite:////absolute.db, postgresql://user@host/db or "
    "memory:// (env PLAIT_DB).",
)


concurrency_option = click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Steps run at once.",
)


def grace_option(help: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    return click.option(
        "--grace",
        type=click.FloatRange(min=0),
        default=10.0,
        show_default=True,
        metavar="SECONDS",
        help=help,
    )


def log_option(default: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        envvar="PLAIT_LOG_LEVEL",
        default=default,
        show_default=True,
        help="Log messages of this level and above on stderr (env PLAIT_LOG_LEVEL).",
    )


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def open_engine(db: str, **options: Any) -> Engine:
    return Engine(db, **options)


def existing_engine(db: str) -> Engine:
    """An engine on a store that must already exist (reading commands never create a database)."""
    if db.startswith("sqlite://"):
        path = db.removeprefix("sqlite:///").split("?", 1)[0]
        if path and path != ":memory:" and not Path(path).exists():
            raise CliError(f"no plait database at {path} (pass --db URL or set PLAIT_DB)")
    return Engine(db)


# -- commands ------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="plait", prog_name="plait")
def cli() -> None:
    """plait: a durable DAG workflow engine."""


@cli.command()
@click.argument("target", metavar="FILE.py:WORKFLOW")
@click.option(
    "--input",
    "input_text",
    default="{}",
    show_default=True,
    metavar="JSON",
    help="The run input: a JSON object, @file.json, or - for stdin.",
)
@click.option("--run-id", help="Run id; starting an id that exists resumes that run (idempotent).")
@concurrency_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up waiting after this long (the run stays in the store, resumable).",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="The run fails with deadline_exceeded if unfinished this long after it starts.",
)
@grace_option("On Ctrl-C, how long running steps may take to finish.")
@db_option
@log_option("warning")
@_user_errors
def run(
    target: str,
    input_text: str,
    run_id: str | None,
    concurrency: int,
    timeout: float | None,
    deadline: float | None,
    grace: float,
    db: str,
    log_level: str,
) -> None:
    """Run a workflow to completion with an embedded worker; print its result as JSON."""
    render.install_logging(log_level)
    payload = parse_input(input_text)
    path, attr = split_target(target)
    workflow = pick_workflow(load_module(path), path, attr)
    engine = open_engine(db)
    code = asyncio.run(
        _run(
            engine,
            workflow,
            payload,
            run_id=run_id,
            concurrency=concurrency,
            timeout=timeout,
            deadline=deadline,
            grace=grace,
            path=path,
        )
    )
    sys.exit(code)


async def _run(
    engine: Engine,
    workflow: Workflow,
    payload: dict[str, Any],
    *,
    run_id: str | None,
    concurrency: int,
    timeout: float | None,
    deadline: float | None,
    grace: float,
    path: str,
) -> int:
    err = render.stderr_console()
    async with engine:
        handle = await engine.start_async(workflow, payload, run_id=run_id, deadline=deadline)
        steps = len(workflow.steps)
        err.print(
            f"run {handle.id} of {workflow.name} v{workflow.version} ({steps} steps) "
            f"in {engine.url}",
            markup=False,
        )
        stop = asyncio.Event()
        progress = render.RunProgress(engine, handle.id, console=err)
        follower = asyncio.create_task(progress.follow(stop))
        timed_out = False
        try:
            await engine.run_worker_async(
                concurrency=concurrency,
                until=handle,
                timeout=timeout,
                workflows=[workflow],
                grace=grace,
                handle_signals=True,
            )
        except TimeoutError:
            timed_out = True
        finally:
            stop.set()
            await follower
        return await _report(engine, handle, timed_out=timed_out, timeout=timeout, path=path)


async def _report(
    engine: Engine, handle: RunHandle, *, timed_out: bool, timeout: float | None, path: str
) -> int:
    run = await handle.get_async()
    if run.status is RunStatus.COMPLETED:
        render.print_json(run.output)
        return 0
    if run.status.terminal:
        try:
            await handle.result_async(timeout=0)
        except RunFailed as exc:
            lines = [f"run {run.id} failed:", *render.failures_text(exc.failures)]
            if not exc.failures:  # the run itself failed (its deadline), not a step
                lines[0] += f" {run.error}"
            click.echo("\n".join(lines), err=True)
        except RunCancelled as exc:
            click.echo(str(exc), err=True)
        return EXIT_FAILED
    resume = f"plait worker {path} --db {engine.url}"
    if timed_out:
        click.echo(
            f"run {run.id} did not finish within {timeout}s (it is {run.status.value}); "
            f"it stays in the store and resumes when a worker serves it: {resume}",
            err=True,
        )
        return EXIT_FAILED
    click.echo(
        f"interrupted: run {run.id} is {run.status.value}; resume it with: {resume}", err=True
    )
    return EXIT_INTERRUPTED


@cli.command()
@click.argument("target", metavar="FILE.py[:WORKFLOW]")
@concurrency_option
@click.option(
    "--lease",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a claimed step is held before other workers may take it over.",
)
@click.option(
    "--queues",
    metavar="A,B",
    help="Serve only steps of these queues (comma-separated; steps without queue= are in "
    "'default'). Default: every queue.",
)
@click.option(
    "--labels",
    metavar="A,B",
    default="",
    help="This worker's labels (comma-separated), for steps with target=.",
)
@grace_option("On SIGTERM or Ctrl-C, how long running steps may take.")
@db_option
@log_option("info")
@_user_errors
def worker(
    target: str,
    concurrency: int,
    lease: float,
    queues: str | None,
    labels: str,
    grace: float,
    db: str,
    log_level: str,
) -> None:
    """Serve the workflows a file defines until SIGTERM or Ctrl-C (a graceful stop)."""
    render.install_logging(log_level)
    # Until the worker installs its own handler, SIGTERM stops the start-up just as cleanly.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        served = None if queues is None else worker_queues(queues)
        carried = worker_labels(labels)
        path, attr = split_target(target)
        module = load_module(path)
        workflows = (
            [pick_workflow(module, path, attr)] if attr else list(module_workflows(module).values())
        )
        if not workflows:
            raise CliError(f"{path} defines no plait.Workflow")
        engine = open_engine(db, lease=lease)
        try:
            for wf in workflows:
                engine.register(wf)
            names = ", ".join(f"{wf.name} v{wf.version} ({wf.fingerprint})" for wf in workflows)
            where = "" if served is None else f" (queues {', '.join(sorted(served))})"
            click.echo(
                f"plait worker: serving {names}{where} from {path} in {engine.url}; "
                "SIGTERM or Ctrl-C stops it",
                err=True,
            )
            engine.run_worker(
                concurrency=concurrency,
                workflows=workflows,
                grace=grace,
                queues=served,
                labels=carried,
            )
        finally:
            engine.close()
    except KeyboardInterrupt:
        pass  # stopped before serving: nothing was in flight
    click.echo("plait worker: stopped", err=True)


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


@cli.group()
def runs() -> None:
    """Read runs (list, show, events, diff, waiting) and act on them (cancel, pause, resume,
    retry, approve, reject, signal, fork)."""


@runs.command("list")
@click.option("--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option(
    "--status", type=click.Choice([s.value for s in RunStatus]), help="Only runs in this status."
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", help="The next-page cursor printed by a previous page.")
@json_option
@db_option
@log_option("warning")
@_user_errors
def runs_list(
    workflow: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    db: str,
    log_level: str,
) -> None:
    """Runs, newest first, one page at a time."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        page = engine.list_runs(workflow=workflow, status=status, limit=limit, cursor=cursor)
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
        out.print(f"more: plait runs list --cursor '{page.next_cursor}'", markup=False)


@runs.command("show")
@click.argument("run_id", metavar="ID")
@json_option
@db_option
@log_option("warning")
@_user_errors
def runs_show(run_id: str, as_json: bool, db: str, log_level: str) -> None:
    """A run, its steps (status, attempts, durations, errors) and what waiting steps wait on."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        inspection = engine.inspect(run_id)
    if as_json:
        render.print_json(render.inspection_doc(inspection))
    else:
        render.show_inspection(render.stdout_console(), inspection)


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
@_user_errors
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


@cli.command()
@json_option
@db_option
@log_option("warning")
@_user_errors
def workflows(as_json: bool, db: str, log_level: str) -> None:
    """The workflow versions recorded in the store."""
    render.install_logging(log_level)
    with existing_engine(db) as engine:
        infos = engine.workflows()
    if as_json:
        render.print_json([render.workflow_doc(i) for i in infos])
    elif infos:
        render.stdout_console().print(render.workflows_table(infos))
    else:
        render.stdout_console().print("no workflows", markup=False)


# operator actions on runs live in their own module; importing it registers them on `runs`
from . import (  # noqa: E402, F401
    _cli_actions,
    _cli_artifacts,
    _cli_data,
    _cli_fork,
    _cli_queues,
    _cli_schedules,
    _cli_watch,
    _cli_workers,
)


def main() -> None:
    try:
        cli(prog_name="plait")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    # `python -m plait.cli`: run the package's module, on which _cli_actions registered itself
    from plait.cli import main as package_main

    package_main()
