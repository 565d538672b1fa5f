"""approval_policy: in workflow files: which actions run, wait for an approval that shows the
action and its arguments expanded, or fail; examples/refund.yaml run both ways."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import plait
from plait.core.rows import Gate

from .helpers import flow, run, step_errors

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "refund.yaml"


def started(
    wf: plait.Workflow, run_input: dict[str, object]
) -> tuple[plait.Engine, str, threading.Thread]:
    """A run served by a worker (in a thread, until the run ends), once a step of it waits."""
    engine = plait.Engine("memory://")
    engine.register(wf)
    handle = engine.start(wf, run_input)
    worker = threading.Thread(target=lambda: engine.run_worker(until=handle, timeout=60))
    worker.start()
    deadline = time.monotonic() + 30
    while not engine.list_waiting(run_id=handle.id):
        assert time.monotonic() < deadline, "no step of the run came to wait"
        time.sleep(0.01)
    return engine, handle.id, worker


def test_the_example_waits_for_an_approval_that_shows_the_expanded_arguments() -> None:
    wf = plait.load(EXAMPLE)
    engine, run_id, worker = started(wf, {"order_id": 7})

    [waiting] = engine.list_waiting(run_id=run_id)
    assert (waiting.step, waiting.gate) == ("refund", Gate.APPROVAL)
    assert waiting.request == {
        "action": "payments.refund",
        "with": {"order_id": 7, "amount": 70, "reason": "customer request"},
    }
    assert waiting.expires_at is not None  # expires_after: 1d

    engine.approve(run_id, "refund")
    worker.join(60)
    steps = {s.name: s for s in engine.steps(run_id)}
    assert steps["notify"].output == {"to": "customer-7", "text": "refunded 70.0"}
    assert steps["log"].status is plait.StepStatus.DONE


def test_a_rejected_refund_still_runs_the_finally_step() -> None:
    wf = plait.load(EXAMPLE)
    engine, run_id, worker = started(wf, {"order_id": 7})
    engine.reject(run_id, "refund", reason="not this one")
    worker.join(60)
    steps = {s.name: s for s in engine.steps(run_id)}
    assert steps["refund"].error is not None and steps["refund"].error.code == "rejected"
    assert steps["log"].output == {"to": "ops", "text": "refund of order 7: none"}


def test_list_waiting_by_an_unknown_run_is_refused() -> None:
    engine = plait.Engine("memory://")
    with pytest.raises(plait.RunNotFound):
        engine.list_waiting(run_id="nope")


POLICY = """
approval_policy: {mode: MODE, allow: [Test.Echo], block: [test.fail]}
steps:
  a: {action: test.echo, with: {value: 1}}
  b: {action: test.count, with: {n: 1}}
"""


def test_deny_runs_only_the_allowed_actions_and_block_fails_blocked_ones() -> None:
    engine, handle = run(flow(POLICY.replace("MODE", "deny")))
    statuses = {s.name: s.status.value for s in engine.steps(handle.id)}
    assert statuses == {"a": "done", "b": "failed"}  # allow is case-insensitive
    assert step_errors(engine, handle.id) == {
        "b": (
            "action_denied",
            "step 'b': action 'test.count' is not allowed by the workflow's approval_policy "
            "(mode deny: only the actions under allow: run)",
        )
    }
    blocked = flow(POLICY.replace("MODE", "auto") + "  c: {action: test.fail}\n")
    engine, handle = run(blocked)
    assert step_errors(engine, handle.id) == {
        "c": (
            "action_blocked",
            "step 'c': action 'test.fail' is blocked by the workflow's approval_policy",
        )
    }


def test_auto_runs_everything_and_ask_gates_what_is_not_allowed() -> None:
    _engine, handle = run(flow(POLICY.replace("MODE", "auto")))
    assert handle.result(timeout=10) == {"a": 1, "b": 2}
    wf = flow(POLICY.replace("MODE", "ask"))
    assert wf["a"].options is None  # allowed: no gate
    assert wf["b"].options is not None and wf["b"].options.gate is Gate.APPROVAL


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            "approval_policy: aks\n",
            "flow.yaml:4:18: approval_policy: unknown approval_policy mode 'aks' (did you mean "
            "'ask'?); modes: auto (every action runs), ask (each step waits for an approval, "
            "but the allowed actions), deny (only the allowed actions run)",
        ),
        (
            "approval_policy: {mode: ask, allow: test.echo, blok: []}\n",
            "flow.yaml:4:48: approval_policy.blok: unknown key 'blok' (did you mean 'block'?); "
            "approval_policy (or a mode) takes: mode, allow, block, expires_after, on_expiry",
        ),
        (
            "approval_policy: {allow: {a: 1}}\n",
            "flow.yaml:4:26: approval_policy.allow: must be a list of action names, got a mapping",
        ),
        (
            "approval_policy: {on_expiry: later}\n",
            "flow.yaml:4:30: approval_policy.on_expiry: must be 'reject' or 'approve', got 'later'",
        ),
    ],
)
def test_policy_mistakes_are_refused_at_their_line(policy: str, message: str) -> None:
    with pytest.raises(plait.DeclarationError) as info:
        flow(policy + "steps:\n  a: {action: test.echo}\n")
    assert str(info.value) == message
