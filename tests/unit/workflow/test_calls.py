"""What a Workflow says about the workflows its steps call (`calls=`), and the ids of the child
runs `ctx.call` starts (the same on every attempt; always a valid run id)."""

from __future__ import annotations

import re

import pytest

import plait
from plait.workflow.context import child_run_id

RUN_ID = re.compile(r"^[A-Za-z0-9_.:@\-]{1,200}$")


def test_calls_lists_workflows() -> None:
    child = plait.Workflow("child")
    assert plait.Workflow("parent", calls=[child]).calls == (child,)
    with pytest.raises(plait.DefinitionError) as caught:
        plait.Workflow("parent", calls=["child"])  # type: ignore[list-item]
    assert str(caught.value) == (
        "workflow 'parent': calls must list plait.Workflow objects, got 'child'"
    )


def test_child_run_ids_are_deterministic_and_valid_run_ids() -> None:
    assert child_run_id("r1", "charge", 0, 1) == "r1.charge.0.1"
    assert child_run_id("r1", "each/each.item-3", 2, 1) == "r1.each:each.item-3.2.1"
    long = child_run_id("r" * 190, "step", 0, 1)
    assert long == child_run_id("r" * 190, "step", 0, 1) != child_run_id("r" * 190, "step", 0, 2)
    for found in (long, child_run_id("x" * 200, "s" * 100, 10, 99)):
        assert RUN_ID.fullmatch(found), found
