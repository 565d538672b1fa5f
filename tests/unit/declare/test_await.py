"""`await:` on a for_each (all, first, any_error, a timeout), run on the memory store; its
mistakes refused at their line; the same as `join=` / `join_timeout=` in Python."""

from __future__ import annotations

import time
from typing import Any

import pytest

import plait

from .helpers import flow, run

FILE = """
inputs:
  items: array
steps:
  spread:
    action: test.item
    for_each: ${inputs.items}
    with: {item: "${item}"}
    optional: true
    await: AWAIT
"""


def load(awaiting: str) -> plait.Workflow:
    return flow(FILE.replace("AWAIT", awaiting))


def outcome(engine: plait.Engine, run_id: str) -> tuple[str, Any, str | None]:
    spread = {s.name: s for s in engine.steps(run_id)}["spread"]
    return spread.status.value, spread.output, None if spread.error is None else spread.error.code


def test_await_first_gives_the_first_success_and_cancels_the_rest() -> None:
    began = time.monotonic()
    engine, handle = run(load("first"), {"items": ["ok", "slow"]})
    assert time.monotonic() - began < 8
    assert outcome(engine, handle.id) == ("done", "did ok", None)
    items = {s.name: s.status.value for s in engine.steps(handle.id) if "/" in s.name}
    assert sorted(items.values()) == ["cancelled", "done"]


def test_await_any_error_fails_at_the_first_failure() -> None:
    began = time.monotonic()
    engine, handle = run(load("any_error"), {"items": ["slow", "fail"]})
    assert time.monotonic() - began < 8
    assert outcome(engine, handle.id) == ("failed", None, "child_failed")


def test_await_all_is_the_default_and_gathers_every_output() -> None:
    engine, handle = run(load("all"), {"items": ["a", "b"]})
    assert outcome(engine, handle.id) == ("done", ["did a", "did b"], None)


def test_an_await_timeout_fails_the_step() -> None:
    began = time.monotonic()
    engine, handle = run(load("{timeout: 1s}"), {"items": ["slow"]})
    assert time.monotonic() - began < 8
    assert outcome(engine, handle.id) == ("failed", None, "timeout")


def test_the_file_makes_the_options_of_python() -> None:
    step = load("{mode: first, timeout: 2m}")["spread"]
    assert step.options is not None
    assert (step.options.join, step.options.join_timeout) == ("first", 120.0)


@pytest.mark.parametrize(
    ("awaiting", "message"),
    [
        (
            "frist",
            "flow.yaml:12:12: steps.spread.await: unknown await mode 'frist' (did you mean "
            "'first'?); modes: all (every item), first (the first item that succeeds), "
            "any_error (fail at the first item that fails)",
        ),
        (
            "{mode: some}",
            "flow.yaml:12:19: steps.spread.await.mode: unknown await mode 'some'; modes: all "
            "(every item), first (the first item that succeeds), any_error (fail at the first "
            "item that fails)",
        ),
        (
            "{timeout: soon}",
            "flow.yaml:12:22: steps.spread.await.timeout: must be a duration: seconds (a number "
            "> 0) or text as '30s', '5m', '1h30m', '250ms'; got 'soon'",
        ),
        (
            "{mode: first, wait: 1}",
            "flow.yaml:12:26: steps.spread.await.wait: unknown key 'wait'; await (or a mode) "
            "takes: mode, timeout",
        ),
    ],
)
def test_await_mistakes_are_refused_at_their_line(awaiting: str, message: str) -> None:
    with pytest.raises(plait.DeclarationError) as info:
        load(awaiting)
    assert str(info.value) == message


def test_await_without_for_each_is_refused() -> None:
    with pytest.raises(plait.DeclarationError) as info:
        flow("steps:\n  a:\n    action: test.echo\n    await: first\n")
    assert str(info.value) == (
        "flow.yaml:7:5: steps.a.await: await says how a for_each waits: add for_each"
    )
