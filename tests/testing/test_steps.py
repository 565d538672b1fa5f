"""plait.testing.call_step: one step's code with given upstream outputs and a test context."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import plait
from plait import testing
from plait.testing import Recorded, Saved, Spawned


class Order(BaseModel):
    id: int
    amount: float


def shop() -> plait.Workflow:
    wf = plait.Workflow("shop")

    @wf.step()
    def fetch(order_id: int) -> dict[str, Any]:
        raise RuntimeError("not called by these tests")

    @wf.step()
    def discount(fetch: Order) -> int:
        return 5

    @wf.step(when=lambda fetch: fetch["amount"] > 0, defaults={"discount": 0})
    def charge(
        fetch: Order, discount: int, ctx: plait.StepContext, currency: str = "EUR"
    ) -> dict[str, Any]:
        total = fetch.amount - discount
        ctx.record("ledger", f"order-{fetch.id}", {"total": total}, expected_revision=0)
        ctx.save_artifact("receipt.txt", f"{total} {currency}".encode())
        return {"total": total, "currency": currency, "attempt": ctx.attempt}

    @wf.task()
    def ship(parcel: str) -> str:
        return parcel.upper()

    @wf.step()
    async def pack(fetch: Order, ctx: plait.StepContext) -> list[Any]:
        return [ctx.spawn(ship, input=f"box-{fetch.id}"), ctx.spawn(ship, input="letter")]

    return wf


def test_a_step_is_called_with_given_outputs_and_its_writes_are_captured() -> None:
    call = testing.call_step(
        shop(), "charge", input={"order_id": 7}, fetch={"id": 7, "amount": 30}, discount=5
    )
    assert call.output == {"total": 25.0, "currency": "EUR", "attempt": 1}
    assert call.records == [Recorded("ledger", "order-7", {"total": 25.0}, 0)]
    assert call.artifacts == [Saved("receipt.txt", b"25.0 EUR", "text/plain", None)]
    assert call.spawned == []
    assert not call.skipped


def test_input_fields_defaults_and_the_attempt_bind_as_a_worker_binds_them() -> None:
    call = testing.call_step(
        shop(),
        "charge",
        input={"currency": "CHF"},
        outputs={"fetch": {"id": "3", "amount": 10}},  # lax like a worker: "3" → 3
        attempt=3,
    )
    assert call.output == {"total": 10.0, "currency": "CHF", "attempt": 3}  # discount default 0


def test_a_false_condition_skips_the_call() -> None:
    call = testing.call_step(shop(), "charge", fetch={"id": 1, "amount": 0}, discount=0)
    assert call.skipped
    assert call.output is None
    assert call.records == []


def test_spawns_are_captured_not_run_and_tasks_are_called_with_their_input() -> None:
    call = testing.call_step(shop(), "pack", fetch={"id": 4, "amount": 1})
    assert call.spawned == [
        Spawned("pack/ship-0", "ship", "box-4"),
        Spawned("pack/ship-1", "ship", "letter"),
    ]
    assert [h.name for h in call.output] == ["pack/ship-0", "pack/ship-1"]
    assert testing.call_step(shop(), "ship", input="box").output == "BOX"


async def test_call_step_async_awaits_on_the_callers_loop() -> None:
    call = await testing.call_step_async(shop(), "pack", fetch={"id": 1, "amount": 1})
    assert len(call.spawned) == 2


def test_an_exception_out_of_the_step_propagates() -> None:
    with pytest.raises(RuntimeError, match="not called by these tests"):
        testing.call_step(shop(), "fetch", input={"order_id": 1})


# -- user errors ----------------------------------------------------------------------------------


def test_an_unknown_step_is_an_error_naming_the_steps() -> None:
    with pytest.raises(plait.InputError) as err:
        testing.call_step(shop(), "chrage")
    assert str(err.value) == (
        "workflow 'shop' has no step or task 'chrage' "
        "(it has: 'fetch', 'discount', 'charge', 'pack', 'ship')"
    )


def test_an_output_the_step_does_not_read_is_an_error() -> None:
    with pytest.raises(plait.InputError) as err:
        testing.call_step(shop(), "charge", fetch={"id": 1, "amount": 1}, fetsh={})
    assert str(err.value) == (
        "step 'charge' of workflow 'shop' does not read the output of 'fetsh' "
        "(it reads: 'fetch', 'discount')"
    )


def test_a_missing_upstream_output_is_an_error() -> None:
    with pytest.raises(plait.InputError) as err:
        testing.call_step(shop(), "charge", discount=1)
    assert str(err.value) == "step 'charge' reads the output of 'fetch': pass fetch=<its output>"


def test_a_missing_input_field_is_an_error() -> None:
    with pytest.raises(plait.InputError) as err:
        testing.call_step(shop(), "fetch", input={})
    assert str(err.value) == "step 'fetch' reads the run-input field 'order_id', which input= lacks"


def test_a_value_its_annotation_refuses_is_an_error() -> None:
    with pytest.raises(plait.InputError, match=r"^step 'charge': 1 validation error for Order"):
        testing.call_step(shop(), "charge", fetch={"id": 1}, discount=1)


def test_a_task_reads_no_upstream_outputs_and_a_signal_has_no_code() -> None:
    with pytest.raises(plait.InputError) as err:
        testing.call_step(shop(), "ship", input="x", fetch={})
    assert str(err.value) == "task 'ship' reads no upstream outputs, only its input: got 'fetch'"
    wf = plait.Workflow("signals")
    wf.signal("go")
    with pytest.raises(plait.InputError) as err:
        testing.call_step(wf, "go")
    assert (
        str(err.value) == "step 'go' of workflow 'signals' is a signal step: it has no code to call"
    )


def test_a_bad_attempt_or_input_is_an_error() -> None:
    with pytest.raises(plait.InputError, match=r"^attempt must be an integer >= 1, got 0$"):
        testing.call_step(shop(), "fetch", input={"order_id": 1}, attempt=0)
    with pytest.raises(plait.InputError, match=r"^step 'fetch': a run input is a JSON object"):
        testing.call_step(shop(), "fetch", input=[1])


def test_an_output_that_is_not_json_is_an_error() -> None:
    wf = plait.Workflow("odd")
    wf.add_step("a", lambda: object())
    with pytest.raises(plait.InputError, match=r"^step 'a' returned a value that is not JSON"):
        testing.call_step(wf, "a")


def test_the_session_state_is_given_and_what_the_step_left_in_it_is_returned() -> None:
    wf = plait.Workflow("sessions")

    @wf.step()
    def count(ctx: plait.StepContext) -> int:
        seen = ctx.state.get("seen", 0)
        ctx.state.set("seen", seen + 1)
        ctx.state.append("log", "count")
        return seen

    def is_ready(session: plait.SessionState) -> bool:
        return bool(session.get("ready", False))

    @wf.step(when=is_ready)
    def gated() -> str:
        return "ran"

    call = testing.call_step(wf, "count", state={"seen": 2})
    assert call.output == 2
    assert call.state == {"seen": 3, "log": ["count"]}
    assert testing.call_step(wf, "gated").skipped
    assert testing.call_step(wf, "gated", state={"ready": True}).output == "ran"
    with pytest.raises(plait.InputError) as err:
        testing.call_step(wf, "count", state=[1])  # type: ignore[arg-type]  # the error under test
    assert str(err.value) == "step 'count': state is a JSON object (the session state), got [1]"


def test_outside_a_worker_the_context_has_no_worker_nor_lease() -> None:
    wf = plait.Workflow("alone")

    @wf.step()
    def look(ctx: plait.StepContext) -> list[Any]:
        return [ctx.worker_id, sorted(ctx.labels), ctx.attempt, ctx.lease_expires_at]

    assert testing.call_step(wf, "look", attempt=3).output == [None, [], 3, None]


def test_the_events_a_step_emitted_are_kept_for_the_test() -> None:
    wf = plait.Workflow("emitting")

    @wf.step()
    def work(ctx: plait.StepContext) -> int:
        ctx.emit("progress", {"done": 1})
        ctx.emit("finished")
        return 1

    assert testing.call_step(wf, "work").events == [("progress", {"done": 1}), ("finished", None)]
    wf2 = plait.Workflow("emitting_badly")

    @wf2.step()
    def bad(ctx: plait.StepContext) -> None:
        ctx.emit("no good")

    with pytest.raises(plait.InputError, match=r"^an event type is 1-64 letters"):
        testing.call_step(wf2, "bad")


def priced() -> plait.Workflow:
    wf = plait.Workflow("priced")

    @wf.step()
    def fetch(order_id: int) -> dict[str, Any]:
        return {"id": order_id, "amount": 10.0}

    @wf.task()
    def price(order: Order, rate: float, ctx: plait.StepContext, note: str = "") -> dict[str, Any]:
        tier = ctx.run_labels.get("tier", "none")
        return {"total": order.amount * (1 + rate), "tier": tier, "note": note}

    @wf.step()
    def quote(fetch: Order, ctx: plait.StepContext) -> Any:
        return ctx.spawn(price, inputs={"order": "fetch"}, args={"rate": 0.5})

    return wf


def test_a_task_spawned_by_parameter_is_called_with_its_args_and_inputs() -> None:
    wf = priced()
    spawned = testing.call_step(wf, "quote", fetch={"id": 1, "amount": 10.0})
    assert [s.task for s in spawned.spawned] == ["price"]
    call = testing.call_step(
        wf, "price", inputs={"order": {"id": 1, "amount": 10.0}}, args={"rate": 0.5}
    )
    assert call.output == {"total": 15.0, "tier": "none", "note": ""}
    with_input = testing.call_step(
        wf, "price", input={"id": 2, "amount": 2.0}, args={"rate": 1, "note": "x"}
    )  # input= binds the task's first parameter beside the others, as in ctx.spawn
    assert with_input.output == {"total": 4.0, "tier": "none", "note": "x"}


def test_the_run_labels_are_given_to_the_context() -> None:
    wf = priced()
    call = testing.call_step(
        wf, "price", inputs={"order": {"id": 1, "amount": 2.0}}, args={"rate": 0},
        run_labels={"tier": "gold"},
    )  # fmt: skip
    assert call.output["tier"] == "gold"
    wf2 = plait.Workflow("labelled")

    @wf2.step()
    def look(ctx: plait.StepContext) -> dict[str, str]:
        return dict(ctx.run_labels)

    assert testing.call_step(wf2, "look", run_labels={"a": "1"}).output == {"a": "1"}
    assert testing.call_step(wf2, "look").output == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"args": {"rate": 1, "colour": "red"}, "inputs": {"order": {"id": 1, "amount": 1}}},
            "task 'price': args= names parameter 'colour', which the task does not have "
            "(its parameters besides ctx: 'order', 'rate', 'note')",
        ),
        (
            {"args": {"rate": 1, "order": {"id": 1, "amount": 1}}, "inputs": {"order": {}}},
            "task 'price': parameter 'order' is given both by args= and by inputs=: give it once",
        ),
        (
            {"input": {"id": 1, "amount": 1}, "inputs": {"order": {"id": 1, "amount": 1}}},
            "task 'price': parameter 'order' is given both by input= and by inputs=: give it once",
        ),
        (
            {"args": {"note": "n"}},
            "task 'price': parameter(s) 'order', 'rate' of the task are not given: bind them "
            "with input=, inputs= or args=",
        ),
        ({"args": ["rate"]}, "task 'price': args= must be a dict of parameter -> JSON value"),
        (
            {"inputs": {"order": {"id": 1, "amount": 1}, "rate": object()}},
            "task 'price': inputs= 'rate' is not JSON",
        ),
        (
            {"args": {"rate": "lots", "order": {"id": 1, "amount": 1}}},
            "task 'price': 1 validation error",
        ),
        (
            {"args": {"rate": 1}, "inputs": {"order": {"id": 1}}, "run_labels": {"a b": "1"}},
            "task 'price': run_labels: invalid label key 'a b'",
        ),
    ],
)
def test_bad_task_arguments_are_errors_naming_them(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(plait.InputError) as err:
        testing.call_step(priced(), "price", **kwargs)
    assert str(err.value).startswith(message), str(err.value)


def test_args_and_inputs_are_for_tasks_only() -> None:
    with pytest.raises(plait.InputError) as err:
        testing.call_step(priced(), "quote", args={"rate": 1}, fetch={"id": 1, "amount": 1})
    assert str(err.value) == (
        "step 'quote': args= and inputs= bind the parameters of a task (a spawned step); a "
        "workflow step reads the run input (input=) and upstream outputs by step name (an "
        "upstream step named 'args' or 'inputs': give it in outputs=)"
    )
