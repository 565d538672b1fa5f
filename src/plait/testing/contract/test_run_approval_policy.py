"""A run's own approval policy (`engine.start(..., approval_policy=)`), on every store: it is
resolved into the run's step rows when the run is created, so the store keeps it with nothing
of its own. `ask` makes a step wait with an approval request, `deny` and `block` fail steps
with their codes, `allow` lets them run; it replaces the workflow's policy for that run, and
the runs it calls and its forks keep it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import plait
from plait.core.rows import Gate

ACTIONS = "plait.testing.contract.actions"


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def _chain(name: str, policy: Any = None) -> plait.Workflow:
    wf = plait.Workflow(name, approval_policy=policy)

    @wf.step()
    def lookup(n: int) -> int:
        return n + 1

    @wf.step()
    def refund(lookup: int) -> int:
        return lookup * 10

    return wf


def _errors(engine: plait.Engine, run_id: str) -> dict[str, str | None]:
    return {s.name: s.error.code for s in engine.steps(run_id) if s.error is not None}


def test_ask_makes_a_step_wait_and_allow_lets_one_run(engine: plait.Engine) -> None:
    wf = _chain("run-asks")
    policy = plait.ApprovalPolicy("ask", allow=["REFUND"])
    handle = engine.start(wf, {"n": 1}, approval_policy=policy)
    # no worker yet: the first step waits as soon as the run exists
    [waiting] = engine.list_waiting(run_id=handle.id)
    assert (waiting.step, waiting.gate) == ("lookup", Gate.APPROVAL)
    other = engine.start(wf, {"n": 2})  # the workflow has no policy: nothing waits
    assert engine.list_waiting(run_id=other.id) == []
    engine.approve(handle.id, "lookup")
    engine.run_worker(until=[handle, other], timeout=60)
    assert handle.result(timeout=10) == {"refund": 20}
    assert other.result(timeout=10) == {"refund": 30}
    started = engine.events(handle.id)[0]
    assert started.type == "run_started"
    assert started.payload["approval_policy"] == {
        "mode": "ask",
        "allow": ["refund"],
        "block": [],
    }
    assert "approval_policy" not in engine.events(other.id)[0].payload


def test_deny_and_block_fail_steps_with_their_codes(engine: plait.Engine) -> None:
    wf = _chain("run-denies")
    denied = engine.start(wf, {"n": 1}, approval_policy="deny")
    blocked = engine.start(
        wf, {"n": 1}, approval_policy=plait.ApprovalPolicy("auto", block=["Refund"])
    )
    engine.run_worker(until=[denied, blocked], timeout=60)
    assert engine.get_run(denied.id).status is plait.RunStatus.FAILED
    assert _errors(engine, denied.id) == {"lookup": "action_denied"}
    [lookup] = [s for s in engine.steps(denied.id) if s.name == "lookup"]
    assert lookup.error is not None
    assert lookup.error.message == (
        "step 'lookup': step 'lookup' is not allowed by the run's approval_policy (mode deny: "
        "only the steps under allow run)"
    )
    assert _errors(engine, blocked.id) == {"refund": "action_blocked"}


def test_a_run_policy_replaces_the_workflows(engine: plait.Engine) -> None:
    wf = _chain("run-replaces", policy=plait.ApprovalPolicy("deny", block=["lookup"]))
    own = engine.start(wf, {"n": 1})
    freed = engine.start(wf, {"n": 1}, approval_policy="auto")
    engine.run_worker(until=[own, freed], timeout=60)
    assert _errors(engine, own.id) == {"lookup": "action_blocked"}
    assert freed.result(timeout=10) == {"refund": 20}

    asks = _chain("run-replaces-ask", policy="ask")
    quiet = engine.start(asks, {"n": 1}, approval_policy=plait.ApprovalPolicy("auto"))
    assert engine.list_waiting(run_id=quiet.id) == []
    engine.run_worker(until=quiet, timeout=60)
    assert quiet.result(timeout=10) == {"refund": 20}


FILE = f"""
name: run-asks-file
imports: [{ACTIONS}]
inputs:
  order_id: integer
steps:
  fetch:
    action: contract.fetch
    with: {{order_id: "${{inputs.order_id}}"}}
  charge:
    action: contract.charge
    with: {{amount: "${{steps.fetch.output.total}}"}}
"""


def test_a_file_run_asks_by_action_showing_the_expanded_arguments(engine: plait.Engine) -> None:
    pytest.importorskip("yaml", reason="workflow files need PyYAML: pip install 'plait[yaml]'")
    wf = plait.loads(FILE)
    engine.register(wf)
    handle = engine.start(
        wf, {"order_id": 4}, approval_policy=plait.ApprovalPolicy("ask", allow=["Contract.Charge"])
    )
    [waiting] = engine.list_waiting(run_id=handle.id)
    assert waiting.step == "fetch"
    assert waiting.request == {"action": "contract.fetch", "with": {"order_id": 4}}
    engine.approve(handle.id, "fetch")
    engine.run_worker(until=handle, timeout=60)
    assert handle.result(timeout=10) == {"charge": {"charged": 40.0, "currency": "EUR"}}

    denied = engine.start(
        wf, {"order_id": 4}, approval_policy=plait.ApprovalPolicy("deny", allow=["contract.fetch"])
    )
    engine.run_worker(until=denied, timeout=60)
    assert _errors(engine, denied.id) == {"charge": "action_denied"}


def test_the_runs_a_run_calls_and_its_forks_keep_its_policy(engine: plait.Engine) -> None:
    child = _chain("run-policy-child")
    parent = plait.Workflow("run-policy-parent", calls=[child])

    @parent.step()
    def start(n: int) -> int:
        return n

    @parent.step()
    def call(ctx: plait.StepContext, start: int) -> Any:
        return ctx.call(child, {"n": start})

    policy = plait.ApprovalPolicy("deny", allow=["start", "call", "lookup"])
    handle = engine.start(parent, {"n": 1}, approval_policy=policy)
    engine.run_worker(until=handle, timeout=60)
    assert engine.get_run(handle.id).status is plait.RunStatus.FAILED
    [called] = [r for r in engine.list_runs(workflow="run-policy-child").runs]
    assert called.parent_run == handle.id
    assert _errors(engine, called.id) == {"refund": "action_denied"}
    assert engine.events(called.id)[0].payload["approval_policy"]["mode"] == "deny"

    forked = engine.fork(handle.id, "call")
    engine.run_worker(until=forked, timeout=60)
    assert engine.events(forked.id)[0].payload["approval_policy"]["allow"] == [
        "call",
        "lookup",
        "start",
    ]
    [again] = [
        r for r in engine.list_runs(workflow="run-policy-child").runs if r.parent_run == forked.id
    ]
    assert _errors(engine, again.id) == {"refund": "action_denied"}
