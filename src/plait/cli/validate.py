"""`plait validate FILE...`: load workflow files (YAML, or Python) and report what each
defines or its first mistake, without a store and without running anything. For CI and
editors' save hooks: exit code 2 if any file is wrong."""

from __future__ import annotations

import click

from .._errors import PlaitError
from .app import cli
from .loading import EXIT_USAGE, CliError, load_module, module_workflows


@cli.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
def validate(files: tuple[str, ...]) -> None:
    """Check workflow files (FLOW.yaml, or FILE.py): one line per workflow on stdout, one line per
    mistake on stderr (file:line:col: path: problem for a YAML file). Nothing runs and no store
    is opened, but the modules a file imports are imported."""
    wrong = 0
    for path in files:
        try:
            workflows = module_workflows(load_module(path))
        except CliError as exc:
            wrong += 1
            exc.show()
            continue
        if not workflows:
            wrong += 1
            click.echo(f"plait: error: {path} defines no plait.Workflow", err=True)
        for wf in workflows.values():
            try:
                steps = len(wf.steps)  # checks the graph: a Python file's cycle, say
            except PlaitError as exc:
                wrong += 1
                click.echo(f"plait: error: {path}: {exc}", err=True)
                continue
            click.echo(
                f"{path}: ok: {wf.name} v{wf.version}, {steps} step{'s' if steps != 1 else ''}, "
                f"fingerprint {wf.fingerprint}"
            )
    if wrong:
        raise SystemExit(EXIT_USAGE)
