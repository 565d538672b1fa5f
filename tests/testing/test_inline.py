"""plait.testing.run: a workflow run to its end in one call, mocks, approvals and signals."""

from __future__ import annotations

from typing import Any

import pytest

import plait
from plait import testing
from plait.testing import RunStuck


def orders(called: list[str]) -> plait.Workflow:
    wf = plait.Workflow("orders")

    @wf.step()
    def fetch(order_id: int) -> dict[str, Any]:
        called.append("fetch")
        return {"id": order_id, "amount": 10}

    @wf.step(approval=True)
    def review(fetch: dict[str, Any]) -> bool:
        called.append("review")
        return fetch["amount"] < 100

    @wf.step()
    def charge(fetch: dict[str, Any], review: bool) -> dict[str, Any]:
        called.append("charge")
        raise RuntimeError("the real payment provider must not be called")

    wf.signal("shipped", after=["charge"])

    @wf.step()
    def notify(charge: dict[str, Any], shipped: dict[str, Any]) -> str:
        return f"{charge['charged']} via {shipped['by']}"

    return wf


def test_a_run_ends_with_mocks_approvals_and_signals() -> None:
    called: list[str] = []
    result = testing.run(
        orders(called),
        {"order_id": 7},
        mocks={"charge": {"charged": 99}},
        approve={"review": True},
        signals={"shipped": {"by": "ups"}},
    )
    assert result.status == "completed"
    assert result.output == {"notify": "99 via ups"}
    assert called == ["fetch", "review"]  # the mocked step's code was not called
    assert list(result.steps) == ["fetch", "review", "charge", "shipped", "notify"]
    assert result["charge"].output == {"charged": 99}
    approved = [e for e in result.events if e.type == "step_approved"]
    assert [(e.step, e.payload["by"]) for e in approved] == [("review", "plait.testing")]
    assert result.events[-1].type == "run_completed"


def test_a_callable_mock_receives_the_arguments_it_declares() -> None:
    seen: list[Any] = []

    def charge(fetch: dict[str, Any]) -> dict[str, Any]:
        seen.append(fetch)
        return {"charged": fetch["amount"] * 2}

    result = testing.run(
        orders([]),
        {"order_id": 1},
        mocks={"charge": charge, "notify": lambda **kw: sorted(kw)},
        approve={"review": True},
        signals={"shipped": {"by": "post"}},
    )
    assert seen == [{"id": 1, "amount": 10}]
    assert result.output == {"notify": ["charge", "shipped"]}


def test_an_exception_mock_fails_the_step_and_a_rejection_fails_the_gate() -> None:
    failed = testing.run(
        orders([]),
        {"order_id": 1},
        mocks={"charge": plait.Permanent("declined", code="card_declined")},
        approve={"review": True},
    )
    assert failed.status == "failed"
    assert failed["charge"].error is not None
    assert failed["charge"].error.code == "card_declined"
    assert failed["notify"].status == "skipped"
    rejected = testing.run(orders([]), {"order_id": 1}, approve={"review": False})
    assert rejected.status == "failed"
    assert rejected["review"].error is not None
    assert rejected["review"].error.code == "rejected"


def test_async_steps_and_tasks_can_be_mocked() -> None:
    wf = plait.Workflow("fanout")

    @wf.task()
    async def price(item: str) -> int:
        raise RuntimeError("not in tests")

    @wf.step()
    async def items(ctx: plait.StepContext) -> list[Any]:
        return ctx.map(price, ["a", "bb"])

    @wf.step()
    async def total(items: list[int]) -> int:
        return sum(items)

    result = testing.run(wf, mocks={"price": lambda item: len(item)})
    assert result.output == {"total": 3}


def test_the_same_run_twice_runs_its_steps_in_the_same_order() -> None:
    wf = plait.Workflow("wide")
    for name in "abcdef":
        wf.add_step(name, lambda: 1)

    def started(result: testing.RunResult) -> list[str | None]:
        return [e.step for e in result.events if e.type == "step_started"]

    assert started(testing.run(wf)) == started(testing.run(wf)) == list("abcdef")


def test_a_given_engine_runs_it_and_stays_open(tmp_path: Any) -> None:
    with plait.Engine(f"sqlite:///{tmp_path / 'p.db'}") as engine:
        result = testing.run(orders([]), {"order_id": 2}, mocks={"charge": {"charged": 1}},
                             approve={"review": True}, signals={"shipped": {"by": "x"}},
                             engine=engine, run_id="r-1")  # fmt: skip
        assert result.id == "r-1"
        assert engine.get_run("r-1").status == "completed"


def test_runs_of_one_engine_with_other_mocks_use_their_own() -> None:
    wf = plait.Workflow("twice")
    wf.add_step("a", lambda: 1)
    wf.add_step("b", lambda a: a + 1, deps="a")
    with plait.Engine("memory://") as engine:
        runs = [
            testing.run(wf, mocks={"a": 10}, engine=engine),
            testing.run(wf, mocks={"a": 20}, engine=engine),
            testing.run(wf, engine=engine),
            testing.run(wf, mocks={"b": lambda a: a * 100}, engine=engine),
        ]
    assert [r.output for r in runs] == [{"b": 11}, {"b": 21}, {"b": 2}, {"b": 100}]
    assert {r.run.fingerprint for r in runs} == {wf.fingerprint}  # the code under test


async def test_run_async_runs_on_the_callers_loop() -> None:
    wf = plait.Workflow("tiny")
    wf.add_step("a", lambda: 1)
    assert (await testing.run_async(wf)).output == {"a": 1}


# -- user errors ----------------------------------------------------------------------------------


def test_an_unknown_mock_name_is_an_error_naming_the_steps() -> None:
    with pytest.raises(plait.InputError) as err:
        testing.run(orders([]), {"order_id": 1}, mocks={"chrage": {}})
    assert str(err.value) == (
        "mocks= names 'chrage', which workflow 'orders' does not have as a step or task "
        "(it has: 'fetch', 'review', 'charge', 'shipped', 'notify')"
    )


def test_a_signal_step_cannot_be_mocked() -> None:
    with pytest.raises(plait.InputError, match=r"a signal step .* signals=\{'shipped': \.\.\.\}"):
        testing.run(orders([]), {"order_id": 1}, mocks={"shipped": {}})


def test_unknown_approve_and_signal_names_are_errors() -> None:
    with pytest.raises(plait.InputError) as err:
        testing.run(orders([]), {"order_id": 1}, approve={"charge": True})
    assert str(err.value) == (
        "approve= names 'charge', which workflow 'orders' does not have as an approval gate "
        "(it has: 'review')"
    )
    with pytest.raises(plait.InputError) as err:
        testing.run(orders([]), {"order_id": 1}, signals={"review": 1})
    assert str(err.value) == (
        "signals= names 'review', which workflow 'orders' does not have as a signal step "
        "(it has: 'shipped')"
    )


def test_a_decision_is_a_boolean() -> None:
    with pytest.raises(plait.InputError, match=r"approve=\{'review': 'yes'\}: a decision is True"):
        testing.run(orders([]), {"order_id": 1}, approve={"review": "yes"})  # type: ignore[dict-item]  # the error under test


def test_a_run_waiting_for_what_nobody_gives_is_stuck() -> None:
    with pytest.raises(RunStuck) as err:
        testing.run(orders([]), {"order_id": 1}, mocks={"charge": {"charged": 1}})
    assert "waits at step 'review'" in str(err.value)
    assert str(err.value).endswith("pass approve={'review': True} (or False to reject it)")
    assert err.value.result["review"].status == "waiting"
    with pytest.raises(RunStuck) as err:
        testing.run(orders([]), {"order_id": 1}, mocks={"charge": {"charged": 1}},
                    approve={"review": True})  # fmt: skip
    assert str(err.value).endswith("pass signals={'shipped': <payload>}")


def test_a_run_past_its_timeout_is_told_step_by_step() -> None:
    wf = plait.Workflow("slow")
    wf.add_step("a", lambda: 1)
    wf.add_step("b", lambda a: a, deps="a", delay=30)
    with pytest.raises(TimeoutError) as err:
        testing.run(wf, run_id="slow-1", timeout=0.5)
    assert str(err.value).startswith(
        "run 'slow-1' did not end within timeout=0.5s:\n"
        "run 'slow-1' of workflow 'slow' (version 1): running\n"
    )
    assert "  a  done\n  b  ready" in str(err.value)


def test_not_a_workflow_is_an_error() -> None:
    with pytest.raises(plait.InputError, match=r"takes a plait\.Workflow, got 'orders'"):
        testing.run("orders")  # type: ignore[arg-type]  # the error under test


def test_a_run_approval_policy_makes_gates_the_approvals_decide() -> None:
    policy = plait.ApprovalPolicy("ask", allow=["review", "charge", "notify"])
    result = testing.run(
        orders([]), {"order_id": 7}, mocks={"charge": {"charged": 5}},
        approve={"fetch": True, "review": True}, signals={"shipped": {"by": "ups"}},
        approval_policy=policy,
    )  # fmt: skip
    assert result.output == {"notify": "5 via ups"}
    approved = [e.step for e in result.events if e.type == "step_approved"]
    assert approved == ["fetch", "review"]  # fetch by the run's policy, review by its own
    denied = testing.run(
        orders([]), {"order_id": 7}, approval_policy=plait.ApprovalPolicy("deny", allow=["fetch"])
    )
    assert denied.status == "failed"
    assert denied["review"].error is not None and denied["review"].error.code == "action_denied"
    with pytest.raises(plait.InputError) as err:  # without the policy, fetch has no gate
        testing.run(orders([]), {"order_id": 1}, approve={"fetch": True})
    assert "approve= names 'fetch'" in str(err.value)
    with pytest.raises(plait.InputError) as err:
        testing.run(orders([]), {"order_id": 1}, approval_policy="sometimes")
    assert str(err.value).startswith("plait.testing.run: approval_policy: unknown mode")
