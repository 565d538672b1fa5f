"""`Workflow(approval_policy=...)`: the approval policy of workflow files, in Python, by step
name: which steps run, wait for an approval, or fail, with the same codes and the same rules as
a file's (block first, then allow, then the mode; names case-insensitive)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import plait
from plait.core.rows import Gate
from tests.unit.declare.helpers import flow, step_errors


def _workflow(policy: Any, **extra: Any) -> plait.Workflow:
    wf = plait.Workflow("policed", approval_policy=policy)

    @wf.step()
    def lookup() -> int:
        return 7

    @wf.step()
    def Refund(lookup: int) -> int:
        return lookup * 10

    @wf.step(**extra)
    def close() -> str:
        return "closed"

    return wf


def _ended(wf: plait.Workflow) -> tuple[plait.Engine, str]:
    engine = plait.Engine("memory://")
    handle = engine.start(wf, {})
    engine.run_worker(until=handle, timeout=30)
    return engine, handle.id


def test_ask_makes_the_steps_not_allowed_wait_for_an_approval() -> None:
    wf = _workflow(plait.ApprovalPolicy("ask", allow=["LOOKUP", "close"], expires_after=60))
    engine = plait.Engine("memory://")
    handle = engine.start(wf, {})
    worker = threading.Thread(target=lambda: engine.run_worker(until=handle, timeout=30))
    worker.start()
    deadline = time.monotonic() + 20
    while not engine.list_waiting(run_id=handle.id):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    [waiting] = engine.list_waiting(run_id=handle.id)
    assert (waiting.step, waiting.gate) == ("Refund", Gate.APPROVAL)
    assert waiting.expires_at is not None
    engine.approve(handle.id, "Refund")
    worker.join(30)
    assert handle.result(timeout=5) == {"Refund": 70, "close": "closed"}


def test_a_step_s_own_approval_is_kept() -> None:
    wf = _workflow("auto", approval=True)
    assert wf["close"].options is not None and wf["close"].options.gate is Gate.APPROVAL
    assert wf["lookup"].options is None


def test_deny_and_block_fail_the_steps_they_refuse_unrun() -> None:
    wf = _workflow(plait.ApprovalPolicy("deny", allow=["lookup", "refund"], block=["REFUND"]))
    engine, run_id = _ended(wf)
    errors = step_errors(engine, run_id)
    assert errors == {
        "Refund": (
            "action_blocked",
            "step 'Refund': step 'Refund' is blocked by the workflow's approval_policy",
        ),
        "close": (
            "action_denied",
            "step 'close': step 'close' is not allowed by the workflow's approval_policy (mode "
            "deny: only the steps under allow run)",
        ),
    }
    steps = {s.name: s for s in engine.steps(run_id)}
    assert steps["lookup"].status is plait.StepStatus.DONE
    assert steps["close"].attempts == 1


def test_the_policy_is_part_of_the_fingerprint() -> None:
    assert _workflow(None).fingerprint != _workflow("deny").fingerprint
    assert _workflow("auto").fingerprint == _workflow(None).fingerprint


def test_python_and_a_workflow_file_police_alike() -> None:
    """The same policy in a file (by action) and in Python (by step): the same ends."""
    from_file = flow(
        """
        approval_policy: {mode: deny, allow: [test.echo], block: [TEST.FAIL]}
        steps:
          echo: {action: test.echo, with: {value: 1}}
          fail: {action: test.fail}
          fetch: {action: test.fetch, with: {order_id: 1}}
        """
    )
    in_python = plait.Workflow(
        "twin", approval_policy=plait.ApprovalPolicy("deny", allow=["echo"], block=["FAIL"])
    )
    for name in ("echo", "fail", "fetch"):
        in_python.add_step(name, lambda: 1)
    ends = []
    for wf in (from_file, in_python):
        engine, run_id = _ended(wf)
        ends.append({s.name: (s.status, s.error and s.error.code) for s in engine.steps(run_id)})
    assert ends[0] == ends[1]
    assert ends[0]["fail"] == (plait.StepStatus.FAILED, "action_blocked")


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            "aks",
            "workflow 'policed': approval_policy: unknown mode 'aks'; modes: auto (every action "
            "runs), ask (each step waits for an approval, but the allowed actions), deny (only "
            "the allowed actions run)",
        ),
        (
            3,
            "workflow 'policed': approval_policy must be 'auto', 'ask', 'deny' or a "
            "plait.ApprovalPolicy, got 3",
        ),
    ],
)
def test_a_bad_policy_is_refused(policy: Any, message: str) -> None:
    with pytest.raises(plait.DefinitionError) as caught:
        plait.Workflow("policed", approval_policy=policy)
    assert str(caught.value) == message


def test_a_bad_policy_object_is_refused() -> None:
    with pytest.raises(plait.DefinitionError, match=r"allow must be a list of names, got 'x'"):
        plait.ApprovalPolicy(allow="x")
    with pytest.raises(plait.DefinitionError, match="on_expiry must be 'reject' or 'approve'"):
        plait.ApprovalPolicy(on_expiry="later")
