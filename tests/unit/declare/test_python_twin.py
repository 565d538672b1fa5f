"""examples/etl.yaml and examples/etl.py are the same workflow written twice: run on the same
inputs, they give the same outputs, the same steps (spawned ones too)
and the same events (with their payloads), step by step."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plait
from plait import testing

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture(scope="module")
def twins() -> Iterator[tuple[plait.Workflow, plait.Workflow]]:
    added = str(EXAMPLES) not in sys.path
    if added:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location("etl_example_py", EXAMPLES / "etl.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield plait.load(EXAMPLES / "etl.yaml"), module.wf
    if added:
        sys.path.remove(str(EXAMPLES))


def story(wf: plait.Workflow, run_input: dict[str, Any]) -> dict[str, Any]:
    """What a run did, without what differs from run to run (ids, times, durations)."""
    result = testing.run(wf, run_input)
    events: dict[str | None, list[tuple[str, dict[str, Any]]]] = {}
    for event in result.events:
        payload = {
            k: v
            for k, v in event.payload.items()
            if k not in ("duration", "fingerprint", "worker", "code")
        }
        events.setdefault(event.step, []).append((event.type, payload))
    return {
        "status": result.status.value,
        "output": result.output,
        "steps": sorted(
            (s.name, s.status.value, s.attempts, s.output, s.task, s.parent)
            for s in result.steps.values()
        ),
        "events": events,
    }


@pytest.mark.parametrize(
    "run_input",
    [
        {"source": "Shop", "limit": 6},  # a fan-out wider than its cap of 4
        {"source": "Shop", "limit": 0, "rate": 2.0},  # nothing to load: `when` skips load
    ],
)
def test_the_yaml_and_the_python_workflow_agree(
    twins: tuple[plait.Workflow, plait.Workflow], run_input: dict[str, Any]
) -> None:
    from_yaml, from_python = twins
    assert (from_yaml.name, from_yaml.version) == (from_python.name, from_python.version)
    assert [s.name for s in from_yaml.steps] == [s.name for s in from_python.steps]
    yaml_story, python_story = story(from_yaml, run_input), story(from_python, run_input)
    assert yaml_story == python_story
    assert yaml_story["status"] == "completed"


def test_the_twins_options_agree(twins: tuple[plait.Workflow, plait.Workflow]) -> None:
    from_yaml, from_python = twins
    assert from_yaml.retry == from_python.retry
    for a, b in zip(from_yaml.steps, from_python.steps, strict=True):
        assert (a.name, a.data_deps, a.after, a.optional, a.defaults, a.retry, a.timeout) == (
            b.name,
            b.data_deps,
            b.after,
            b.optional,
            b.defaults,
            b.retry,
            b.timeout,
        )
