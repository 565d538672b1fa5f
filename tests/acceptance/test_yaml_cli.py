"""Workflow files at the command line: `plait run flow.yaml`, `plait worker flow.yaml`, and a
mistake in a file as one line on stderr at its line and column, exit code 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import plait

from .conftest import DEADLINE, Cli, Spawned

ACTIONS = """
    import plait

    @plait.action("accept.greet")
    def greet(name: str, times: int = 1) -> str:
        return " ".join([f"hello {name}"] * times)
"""

FLOW = """
    plait: 1
    name: greeting
    imports: [{module}]
    inputs:
      name: {{type: string}}
    steps:
      greet:
        action: accept.greet
        with: {{name: "${{inputs.name}}", times: 2}}
      shout:
        action: {module}:shout
        with: {{text: "${{steps.greet.output}}"}}
"""


@pytest.fixture
def flow(write_app: Callable[[str, str], Path], request: pytest.FixtureRequest) -> Path:
    module = f"yaml_actions_{request.node.name}"  # each test's own module: no import cache
    write_app(
        f"{module}.py",
        ACTIONS + "\n    def shout(text: str) -> str:\n        return text.upper()\n",
    )
    return write_app("flow.yaml", FLOW.format(module=module))


def test_plait_run_runs_a_workflow_file(cli: Cli, flow: Path) -> None:
    result = cli("run", "flow.yaml", "--input", '{"name": "ada"}')
    assert result.code == 0, result.stderr
    assert result.json() == {"shout": "HELLO ADA HELLO ADA"}
    named = cli("run", "flow.yaml:greeting", "--input", '{"name": "bo"}')
    assert named.json() == {"shout": "HELLO BO HELLO BO"}, named.stderr


def test_a_mistake_in_the_file_is_one_line_at_its_position(cli: Cli, flow: Path) -> None:
    flow.write_text(flow.read_text().replace("times: 2", "tmes: 2"))
    result = cli("run", "flow.yaml", "--input", '{"name": "ada"}')
    assert result.code == 2
    assert result.stderr.startswith(
        "plait: error: flow.yaml:9:36: steps.greet.with.tmes: action 'accept.greet' has no "
        "parameter 'tmes' (did you mean 'times'?)"
    )
    assert "Traceback" not in result.stderr


def test_a_run_input_that_does_not_fit_the_declared_inputs_is_refused(cli: Cli, flow: Path) -> None:
    result = cli("run", "flow.yaml", "--input", '{"name": 5}')
    assert result.code == 2
    assert "run input field 'name'" in result.stderr and "valid string" in result.stderr


def test_plait_worker_serves_a_workflow_file(
    cli: Cli, flow: Path, engine: plait.Engine, spawned: list[Spawned]
) -> None:
    worker = cli.spawn("worker", "flow.yaml")
    spawned.append(worker)
    worker.wait_for_stderr("plait worker: serving")
    assert "greeting v1" in worker.stderr
    wf = plait.load(flow)  # the same file: the same fingerprint as the worker's
    run = engine.start(wf, {"name": "cy"})
    assert run.result(timeout=DEADLINE) == {"shout": "HELLO CY HELLO CY"}
    assert worker.stop() == 0, worker.stderr


def test_plait_validate_checks_files_without_running_them(cli: Cli, flow: Path) -> None:
    ok = cli("validate", "flow.yaml")
    assert ok.code == 0, ok.stderr
    assert ok.stdout.startswith("flow.yaml: ok: greeting v1, 2 steps, fingerprint ")
    bad = flow.with_name("bad.yaml")
    bad.write_text(flow.read_text().replace("inputs.name", "inputs.nmae"))
    result = cli("validate", "flow.yaml", "bad.yaml", "missing.yaml")
    assert result.code == 2
    assert result.stdout.count(": ok: ") == 1
    assert result.stderr.splitlines() == [
        "plait: error: bad.yaml:9:28: steps.greet.with.name: unknown input 'nmae' (did you mean "
        "'name'?): declare it under inputs:",
        "plait: error: file not found: missing.yaml",
    ]


def test_plait_validate_prints_each_mistake_of_a_file(cli: Cli, flow: Path) -> None:
    text = flow.read_text().replace("times: 2", "tmes: 2")
    text = text.replace(":shout", ":shuot")
    flow.write_text(text)
    result = cli("validate", "flow.yaml")
    assert result.code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("plait: error: flow.yaml:9:36: steps.greet.with.tmes: ")
    assert lines[1].startswith("plait: error: flow.yaml:11:13: steps.shout.action: module ")
    assert "has no 'shuot' (did you mean 'shout'?)" in lines[1]
