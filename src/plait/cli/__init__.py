"""The `plait` command line.

    plait run FILE.py:WORKFLOW --input JSON      run one workflow to completion, embedded worker
    plait start FILE.py:WORKFLOW --inputs F.jsonl start a run per line (a worker runs them)
    plait worker FILE.py                         serve every workflow the file defines
    plait validate FLOW.yaml ...                 check workflow files (YAML or Python), run nothing
    plait runs list | show ID | events ID        read runs from the store
    plait workflows                              the workflow versions recorded in the store
    plait workers | topology WORKFLOW            live workers, and which can run which steps
    plait doctor                                 the store: opens, durable settings, workers
    plait failures list | retry                  failed steps across runs; retry many at once
    plait records list COLLECTION | get C KEY    the documents steps wrote (read-only)
    plait states list|show|create|transition|increment|complete|fail|delete COLLECTION …
                                                 workflow-state documents (engine.states)
    plait serve [--host H --port P --token T]    the dashboard, the HTTP API and /metrics

Every command takes `--db URL` (env `PLAIT_DB`, default `sqlite:///plait.db`) and `--log-level`.
Exit codes: 0 success; 1 the run failed, was cancelled or did not finish; 2 bad usage or input
(the message says which); 130 interrupted. Results and `--json` documents go to stdout, everything
else (progress, logs, errors) to stderr.
"""

from __future__ import annotations

import sys

import click

# importing a command module registers its commands on the group
from . import (  # noqa: F401
    artifacts,
    data,
    doctor,
    failures,
    history,
    operator,
    queues,
    records,
    run,
    runs,
    schedules,
    serve,
    start,
    states,
    validate,
    watch,
    workers,
)
from .app import EXIT_INTERRUPTED, cli


def main() -> None:
    try:
        cli(prog_name="plait")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
