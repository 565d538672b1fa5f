"""`plait start` and `plait run` with a run's own approval policy: `--approval-policy MODE`,
`--allow NAME`..., `--block NAME`...; and what a mistake in them says."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import plait
from plait.core.rows import Gate

from .conftest import Cli, import_file

REFUNDS = """
    import plait

    wf = plait.Workflow("refunds")

    @wf.step()
    def lookup(n: int) -> int:
        return n + 1

    @wf.step()
    def refund(lookup: int) -> int:
        return lookup * 10
"""


@pytest.fixture
def app(write_app: Callable[[str, str], Path]) -> Path:
    return write_app("refunds.py", REFUNDS)


def _codes(engine: plait.Engine, run_id: str) -> dict[str, str | None]:
    return {s.name: s.error.code for s in engine.steps(run_id) if s.error is not None}


def test_start_with_ask_makes_the_steps_not_allowed_wait(
    cli: Cli, app: Path, engine: plait.Engine
) -> None:
    started = cli(
        "start", f"{app}:wf", "--input", '{"n": 1}', "--approval-policy", "ask", "--allow", "REFUND"
    )
    assert started.code == 0, started.stderr
    run_id = started.stdout.strip()
    [waiting] = engine.list_waiting(run_id=run_id)
    assert (waiting.step, waiting.gate) == ("lookup", Gate.APPROVAL)
    assert engine.events(run_id)[0].payload["approval_policy"] == {
        "mode": "ask",
        "allow": ["refund"],
        "block": [],
    }
    shown = cli("runs", "show", run_id)
    assert shown.code == 0, shown.stderr
    assert "policy    ask, allow: refund (the run's approval_policy)" in shown.stdout
    as_json = json.loads(cli("runs", "show", run_id, "--json").stdout)
    assert as_json["approval_policy"] == {"mode": "ask", "allow": ["refund"], "block": []}
    engine.approve(run_id, "lookup")
    engine.run_worker(workflows=[import_file(app).wf], until=run_id, timeout=30)
    assert engine.get_run(run_id).output == {"refund": 20}
    plain = cli("start", f"{app}:wf", "--input", '{"n": 1}').stdout.strip()
    assert "policy" not in cli("runs", "show", plain).stdout
    assert json.loads(cli("runs", "show", plain, "--json").stdout)["approval_policy"] is None


def test_start_many_with_a_block_fails_the_blocked_step(
    cli: Cli, app: Path, tmp_path: Path, engine: plait.Engine
) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"n": 1}\n{"n": 2}\n', encoding="utf-8")
    started = cli(
        "start", f"{app}:wf", "--inputs", str(inputs),
        "--approval-policy", "auto", "--block", "refund",
    )  # fmt: skip
    assert started.code == 0, started.stderr
    ids = started.stdout.split()
    assert len(ids) == 2
    engine.run_worker(workflows=[import_file(app).wf], until=ids, timeout=30)
    assert [_codes(engine, run_id) for run_id in ids] == [{"refund": "action_blocked"}] * 2


def test_run_with_deny_runs_only_the_allowed_steps(
    cli: Cli, app: Path, engine: plait.Engine
) -> None:
    result = cli(
        "run", f"{app}:wf", "--input", '{"n": 1}', "--approval-policy", "deny",
        "--allow", "lookup", "--run-id", "denied",
    )  # fmt: skip
    assert result.code != 0
    assert _codes(engine, "denied") == {"refund": "action_denied"}
    assert "not allowed by the run's approval_policy" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--approval-policy", "maybe"],
            "plait: error: invalid value for '--approval-policy': 'maybe' is not one of 'auto', "
            "'ask', 'deny'; see plait",
        ),
        (
            ["--allow", "refund"],
            "plait: error: --allow names what a run's approval policy lets run or fails: give "
            "--approval-policy auto, ask or deny too",
        ),
        (
            ["--block", "refund"],
            "plait: error: --block names what a run's approval policy lets run or fails: give "
            "--approval-policy auto, ask or deny too",
        ),
        (
            ["--approval-policy", "ask", "--block", " "],
            "plait: error: --block takes a step or action name, got ' '",
        ),
    ],
)
@pytest.mark.parametrize("command", ["start", "run"])
def test_a_mistake_in_the_policy_options_is_one_line_and_starts_nothing(
    cli: Cli, app: Path, engine: plait.Engine, command: str, args: list[str], message: str
) -> None:
    result = cli(command, f"{app}:wf", "--input", '{"n": 1}', *args)
    assert result.code != 0
    assert message in result.stderr
    assert engine.list_runs().runs == []
