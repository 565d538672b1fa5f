"""`plait run` (one workflow to completion, with an embedded worker) and `plait worker`."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .._errors import (
    RunCancelled,
    RunConflict,
    RunFailed,
)
from ..core.placement import worker_labels
from ..core.queues import worker_queues
from ..core.rows import RunStatus
from . import render
from .app import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    approval_policy_options,
    cli,
    concurrency_option,
    db_option,
    grace_option,
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
    module_workflows,
    parse_input,
    pick_workflow,
    split_target,
)

if TYPE_CHECKING:
    from ..engine.engine import Engine, RunHandle
    from ..workflow.definition import Workflow


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
@click.option(
    "--run-id",
    help="Run id; starting an id that exists resumes that run, if its input is the same.",
)
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
@identity_options
@approval_policy_options
@if_exists_option
@db_option
@log_option("warning")
@user_errors
def run(
    target: str,
    input_text: str,
    run_id: str | None,
    concurrency: int,
    timeout: float | None,
    deadline: float | None,
    grace: float,
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
    """Run a workflow to completion with an embedded worker; print its result as JSON.

    WORKFLOW is the variable that holds the plait.Workflow, or its name (as in
    Workflow("orders")); it may be left out when FILE.py defines one workflow."""
    import asyncio

    render.install_logging(log_level)
    payload = parse_input(input_text)
    who: dict[str, Any] = {
        "name": name,
        "labels": parse_labels(label_texts),
        "metadata": parse_metadata(metadata_text),
        "if_exists": if_exists,
        "approval_policy": parse_approval_policy(policy_mode, allow_names, block_names),
    }
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
            who=who,
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
    who: dict[str, Any],
) -> int:
    import asyncio

    err = render.stderr_console()
    async with engine:
        try:
            handle = await engine.start_async(
                workflow, payload, run_id=run_id, deadline=deadline, **who
            )
        except RunConflict as exc:  # a --run-id used by a run of another workflow or input
            raise CliError(in_cli_words(str(exc), "--run-id")) from None
        steps = render.plural(len(workflow.steps), "step")
        err.print(
            f"run {handle.id} of {workflow.name} v{workflow.version} ({steps}) in {engine.url}",
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
    type=float,  # checked by the Engine: from 1 s to a day
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
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Serve this worker's Prometheus metrics on 127.0.0.1:PORT/metrics (needs the server "
    "extra).",
)
@grace_option("On SIGTERM or Ctrl-C, how long running steps may take.")
@db_option
@log_option("info")
@user_errors
def worker(
    target: str,
    concurrency: int,
    lease: float,
    queues: str | None,
    labels: str,
    metrics_port: int | None,
    grace: float,
    db: str,
    log_level: str,
) -> None:
    """Serve the workflows a file defines until SIGTERM or Ctrl-C (a graceful stop).

    With :WORKFLOW (the variable that holds the plait.Workflow, or its name), only that one."""
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
            if metrics_port is not None:
                _serve_metrics(engine, metrics_port)
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


def _serve_metrics(engine: Engine, port: int) -> None:
    try:
        from ..server.metrics import WorkerMetrics
    except ImportError as exc:
        raise CliError(
            f"--metrics-port needs the server extra ({exc.name} is missing): "
            "pip install 'plait[server]'"
        ) from None
    metrics = WorkerMetrics()
    try:
        metrics.serve(port)
    except OSError as exc:
        raise CliError(f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}: {exc}") from None
    engine.observe(metrics)
    click.echo(f"plait worker: metrics on http://127.0.0.1:{port}/metrics", err=True)


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt
