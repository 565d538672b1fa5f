"""A run's own approval policy (`engine.start(..., approval_policy=)`): the same in Python (by
step name) and in a workflow file (by action), kept by `start_many` and by an upgrade to
another version, and what a mistake in it says."""

from __future__ import annotations

from typing import Any

import pytest

import plait
from tests.unit.declare.helpers import flow


def _ends(engine: plait.Engine, run_id: str) -> dict[str, tuple[str, str | None]]:
    return {s.name: (s.status.value, s.error and s.error.code) for s in engine.steps(run_id)}


def test_a_run_policy_polices_python_and_a_workflow_file_alike() -> None:
    """No policy in either definition; the same run policy, by action in the file and by step
    name in Python: the same ends, and the definition's own runs are not policed."""
    from_file = flow(
        """
        steps:
          echo: {action: test.echo, with: {value: 1}}
          fail: {action: test.fail}
          fetch: {action: test.fetch, with: {order_id: 1}}
        """
    )
    in_python = plait.Workflow("twin")
    for name in ("echo", "fail", "fetch"):
        in_python.add_step(name, lambda: 1)
    ends = []
    for wf, allow, block in (
        (from_file, ["TEST.ECHO"], ["test.fail"]),
        (in_python, ["Echo"], ["FAIL"]),
    ):
        engine = plait.Engine("memory://")
        policed = engine.start(wf, {}, approval_policy=plait.ApprovalPolicy("deny", allow, block))
        plain = engine.start(wf, {})
        engine.run_worker(until=[policed, plain], timeout=30)
        ends.append(_ends(engine, policed.id))
        assert _ends(engine, plain.id)["fetch"] == ("done", None)
    assert (
        ends[0]
        == ends[1]
        == {
            "echo": ("done", None),
            "fail": ("failed", "action_blocked"),
            "fetch": ("failed", "action_denied"),
        }
    )


def test_start_many_polices_every_run() -> None:
    wf = plait.Workflow("many")
    wf.add_step("lookup", lambda: 1)
    wf.add_step("refund", lambda lookup: lookup, ["lookup"])
    engine = plait.Engine("memory://")
    handles = engine.start_many(
        wf, [{}, {}, {}], approval_policy=plait.ApprovalPolicy("auto", block=["refund"])
    )
    engine.run_worker(until=handles, timeout=30)
    assert [_ends(engine, h.id)["refund"] for h in handles] == [("failed", "action_blocked")] * 3
    assert all("approval_policy" in engine.events(h.id)[0].payload for h in handles)


def _held(version: str) -> plait.Workflow:
    """A workflow whose runs wait for a signal, so that they are in flight to upgrade."""
    wf = plait.Workflow("held", version=version)
    wf.signal("go")
    wf.add_step("refund", lambda go: go, ["go"])
    if version == "2":
        wf.add_step("mail", lambda go: go, ["go"])
    return wf


def test_an_upgraded_run_keeps_its_policy_on_the_new_version() -> None:
    engine = plait.Engine("memory://")
    handle = engine.start(_held("1"), {}, approval_policy="deny")
    [moved] = engine.upgrade(handle.id, to=_held("2"))
    assert moved.status == "upgraded", moved
    engine.signal(handle.id, "go", 1)
    engine.run_worker(until=handle, timeout=30)
    assert _ends(engine, handle.id) == {
        "go": ("done", None),
        "refund": ("failed", "action_denied"),
        "mail": ("failed", "action_denied"),  # the new version's step: policed as well
    }


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            "sometimes",
            "start: approval_policy: unknown mode 'sometimes'; modes: auto (every action runs), "
            "ask (each step waits for an approval, but the allowed actions), deny (only the "
            "allowed actions run)",
        ),
        (
            {"mode": "ask"},
            "start: approval_policy must be 'auto', 'ask', 'deny' or a plait.ApprovalPolicy, "
            "got {'mode': 'ask'}",
        ),
    ],
)
def test_a_bad_run_policy_is_an_input_error_and_starts_nothing(policy: Any, message: str) -> None:
    wf = plait.Workflow("bad-policy")
    wf.add_step("one", lambda: 1)
    engine = plait.Engine("memory://")
    with pytest.raises(plait.InputError) as caught:
        engine.start(wf, {}, approval_policy=policy)
    assert str(caught.value) == message
    with pytest.raises(plait.InputError, match=r"^start_many: approval_policy: unknown mode"):
        engine.start_many(wf, [{}], approval_policy="never")
    assert engine.count_runs() == 0


def test_a_run_policy_needs_the_definition_where_the_run_starts(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'plait.db'}"
    wf = plait.Workflow("elsewhere")
    wf.add_step("one", lambda: 1)
    with plait.Engine(url) as defining:
        defining.register(wf)
    with plait.Engine(url) as other:  # knows the workflow by its name only, from the store
        other.start("elsewhere", {})  # without a policy: fine
        with pytest.raises(plait.InputError) as caught:
            other.start("elsewhere", {}, approval_policy="deny")
        assert str(caught.value) == (
            "workflow 'elsewhere': a run's approval_policy is resolved from the workflow's "
            "definition: start it with the plait.Workflow (or a workflow file), in a process "
            "that defines it"
        )
        assert other.count_runs() == 1


@pytest.mark.parametrize("kind", ["python", "file"])
def test_a_row_made_before_refusals_were_kept_in_rows_is_still_refused(kind: str) -> None:
    """A run started by an earlier plait has rows without the refusal: the worker applies its
    definition's, as it did then (a Python workflow's and a workflow file's alike)."""
    from dataclasses import replace

    from plait.core.cascade import new_run

    if kind == "python":
        wf = plait.Workflow("earlier", approval_policy=plait.ApprovalPolicy("auto", block=["b"]))
        wf.add_step("a", lambda: 1)
        wf.add_step("b", lambda a: a, ["a"])
    else:
        wf = flow(
            """
            approval_policy: {mode: auto, block: [test.echo]}
            steps:
              a: {action: test.fetch, with: {order_id: 1}}
              b: {action: test.echo, with: {value: 1}, depends_on: [a]}
            """
        )
    engine = plait.Engine("memory://")
    engine.register(wf)
    plan = wf.plan()
    bare = replace(plan, steps=tuple(replace(s, options=None) for s in plan.steps))
    run, steps, events = new_run(bare, "old-run", b"{}", 0.0)
    assert all(s.options is None for s in steps)  # as an earlier plait made them
    engine._portal.call(engine.store.create_run(run, steps, events))
    engine.run_worker(until=["old-run"], timeout=30)
    assert _ends(engine, "old-run")["b"] == ("failed", "action_blocked")
