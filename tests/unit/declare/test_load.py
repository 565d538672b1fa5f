"""Workflow files load into the same Workflow the Python API builds, and run on the Engine."""

from __future__ import annotations

import pytest

import plait
from plait import testing
from plait.core.rows import Gate
from plait.declare import loader

from . import actions
from .helpers import flow, run, step_errors, text

ORDERS = """
inputs:
  order_id: {type: integer}
  currency: {type: string, default: USD}
steps:
  fetch:
    action: test.fetch
    with: {order_id: "${inputs.order_id}"}
  charge:
    action: test.charge
    when: ${steps.fetch.output.total > 0}
    with:
      amount: ${steps.fetch.output.total * 1.5}
      currency: ${inputs.currency}
  label:
    action: tests.unit.declare.actions:shout
    with: {text: "order ${inputs.order_id} in ${inputs.currency}"}
"""


def test_a_file_is_a_workflow_the_engine_runs() -> None:
    wf = flow(ORDERS, name="orders")
    assert isinstance(wf, plait.Workflow)
    assert (wf.name, wf.version) == ("orders", "1")
    assert [s.name for s in wf.steps] == ["fetch", "charge", "label"]
    assert testing.run(wf, {"order_id": 4}).output == {
        "charge": {"charged": 60.0, "currency": "USD"},
        "label": "ORDER 4 IN USD",
    }


def test_a_false_when_skips_the_step_as_a_python_condition_does() -> None:
    engine, handle = run(flow(ORDERS), {"order_id": 0})
    statuses = {s.name: s.status.value for s in engine.steps(handle.id)}
    assert statuses == {"fetch": "done", "charge": "skipped", "label": "done"}


def test_typed_inputs_are_checked_at_start_and_their_defaults_used() -> None:
    wf = flow(ORDERS)
    engine = plait.Engine("memory://")
    with pytest.raises(plait.InputError, match="misses field 'order_id'"):
        engine.start(wf, {})
    with pytest.raises(plait.InputError, match=r"'order_id'.*valid integer"):
        engine.start(wf, {"order_id": "four"})
    with pytest.raises(plait.InputError, match=r"'currency'.*valid string"):
        engine.start(wf, {"order_id": 1, "currency": 5})
    assert wf.validate_input({"order_id": 1}) == {"order_id": 1}


def test_step_options_become_the_python_step_options() -> None:
    wf = flow(
        """
        retry: {attempts: 3, delay: 2s}
        timeout: 1m
        steps:
          a:
            action: test.echo
            with: {value: 1}
          b:
            action: test.echo
            depends_on: [a]
            with: {value: 2}
            retry: {attempts: 5, delay: 250ms, backoff: 3, max_delay: 1h, jitter: 0}
            timeout: 1m30s
            optional: true
            defaults: {a: null}
            queue: slow-io
            priority: 7
            delay: 5
        """
    )
    a, b = wf["a"], wf["b"]
    assert wf.retry == plait.Retry(attempts=3, delay=2.0)
    assert wf.timeout == 60.0
    assert a.retry is None and a.timeout is None and a.options is None
    assert b.after == ("a",) and b.data_deps == ()
    assert b.retry == plait.Retry(attempts=5, delay=0.25, backoff=3, max_delay=3600, jitter=0)
    assert b.timeout == 90.0
    assert b.optional is True and b.defaults == {"a": None} and b.priority == 7
    assert b.options is not None
    assert (b.options.queue, b.options.delay) == ("slow-io", 5.0)


def test_a_step_reading_another_s_output_depends_on_it() -> None:
    wf = flow(ORDERS)
    assert wf["charge"].data_deps == ("fetch",)  # from `when:` and `with:`
    assert wf["label"].data_deps == ()


def test_the_file_content_is_part_of_the_code_digests() -> None:
    body = ORDERS.replace("steps:", "steps:  # the steps")
    assert flow(ORDERS).fingerprint == flow(ORDERS).fingerprint
    # the graph is the same: the version too; the code is not, and pinned runs see it
    assert flow(ORDERS).fingerprint == flow(body).fingerprint
    assert flow(ORDERS).code_of("fetch") != flow(body).code_of("fetch")
    assert flow(ORDERS).pinned_fingerprint != flow(body).pinned_fingerprint


def test_the_action_s_code_is_part_of_the_code_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    before = flow(ORDERS)
    registered = loader.resolve("test.charge")
    monkeypatch.setattr(registered, "fn", lambda amount, currency="EUR": None)
    assert flow(ORDERS).code_of("charge") != before.code_of("charge")
    assert flow(ORDERS).pinned_fingerprint != before.pinned_fingerprint


def test_arguments_are_validated_by_the_action_s_annotations_when_the_step_runs() -> None:
    wf = flow(
        """
        inputs:
          amount: {type: any}
        steps:
          charge:
            action: test.charge
            with: {amount: "${inputs.amount}"}
        """
    )
    engine, handle = run(wf, {"amount": "a lot"})
    code, message = step_errors(engine, handle.id)["charge"]
    assert code == "invalid_arguments"
    assert message.startswith("action 'test.charge', argument 'amount': ")
    assert "valid number" in message and "'a lot'" in message
    _, ok = run(wf, {"amount": "12.5"})  # lax, as a Python step's parameters
    assert ok.result(timeout=10) == {"charge": {"charged": 12.5, "currency": "EUR"}}


def test_async_actions_and_import_paths() -> None:
    wf = flow(
        """
        steps:
          double:
            action: test.async_double
            with: {n: 21}
          loud:
            action: tests.unit.declare.actions:shout
            with: {text: "${str(steps.double.output)}!"}
        """
    )
    assert wf["double"].is_async
    assert testing.run(wf).output == {"loud": "42!"}


def test_retry_in_a_file_retries() -> None:
    wf = flow(
        """
        steps:
          flaky:
            action: test.flaky
            with: {key: retry-test}
            retry: {attempts: 2, delay: 0.01}
        """
    )
    assert testing.run(wf).output == {"flaky": "ok after 2"}


def test_a_failing_expression_fails_the_step_with_a_code_and_the_line() -> None:
    wf = flow(
        """
        inputs:
          order: {type: object}
        steps:
          charge:
            action: test.charge
            with: {amount: "${inputs.order.total}"}
        """
    )
    engine, handle = run(wf, {"order": {"totl": 3}})
    code, message = step_errors(engine, handle.id)["charge"]
    assert code == "expression_error"
    assert message == (
        "flow.yaml:9:20: steps.charge.with.amount: no field 'total' (fields: 'totl') "
        "(did you mean 'totl'?)"
    )


def test_for_each_fans_out_and_gathers_in_order_within_its_cap() -> None:
    actions.ACTIVE.update(now=0, most=0)
    wf = flow(
        """
        inputs:
          xs: {type: array}
        steps:
          each:
            action: test.track
            for_each: ${inputs.xs}
            max_parallel: 2
            with: {x: "${item + index}"}
        """
    )
    _, handle = run(wf, {"xs": [5, 4, 3, 2, 1, 0]})
    assert handle.result(timeout=30) == {"each": [50, 50, 50, 50, 50, 50]}
    assert 1 <= actions.ACTIVE["most"] <= 2


def test_for_each_over_an_empty_list_gives_an_empty_list() -> None:
    wf = flow(
        """
        steps:
          each:
            action: test.echo
            for_each: ${[]}
            with: {value: "${item}"}
        """
    )
    assert testing.run(wf).output == {"each": []}


def test_for_each_over_what_is_not_a_list_fails_the_step_with_a_clear_code() -> None:
    wf = flow(
        """
        inputs:
          xs: {type: any}
        steps:
          each:
            action: test.echo
            for_each: ${inputs.xs}
            with: {value: "${item}"}
        """
    )
    engine, handle = run(wf, {"xs": {"a": 1}})
    assert step_errors(engine, handle.id)["each"] == (
        "for_each_not_a_list",
        "flow.yaml:9:15: steps.each.for_each: for_each needs a list, got an object",
    )


def test_goto_runs_a_step_again_until_its_condition_is_false() -> None:
    wf = flow(
        """
        steps:
          loop:
            action: test.count
            with: {n: 0}
            goto:
              - when: ${steps.loop.output < 3}
                step: loop
                max_iterations: 5
          after:
            action: test.echo
            with: {value: "${steps.loop.output}"}
        """
    )
    engine, handle = run(wf)
    assert handle.result(timeout=10) == {"after": 3}
    looped = [e for e in engine.events(handle.id) if e.type == "step_looped"]
    assert len(looped) == 2


def test_goto_past_max_iterations_fails_the_step() -> None:
    wf = flow(
        """
        steps:
          loop:
            action: test.count
            with: {n: 0}
            goto: {step: loop, max_iterations: 3}
        """
    )
    engine, handle = run(wf)
    code, message = step_errors(engine, handle.id)["loop"]
    assert code == "max_iterations" and "max_iterations=3" in message


def test_load_reads_a_file_and_names_it_in_errors(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "orders.yaml"
    path.write_text(text(ORDERS, name="orders"))
    assert plait.load(path).name == "orders"
    path.write_text(text(ORDERS, name="orders").replace("test.charge", "test.chrage"))
    with pytest.raises(plait.DeclarationError) as caught:
        plait.load(str(path))
    assert str(caught.value).startswith(f"{path}:12:13: steps.charge.action: unknown action")
    assert (caught.value.line, caught.value.column) == (12, 13)
    assert caught.value.path == "steps.charge.action"
    with pytest.raises(plait.DeclarationError, match="cannot read the file"):
        plait.load(Path(str(tmp_path)) / "missing.yaml")


def test_fields_of_an_annotated_output_are_read_as_declared() -> None:
    wf = flow(
        """
        steps:
          o:
            action: test.order
            with: {order_id: 3}
          e:
            action: test.echo
            with: {value: "${steps.o.output.quote.price * steps.o.output.id}"}
          d:
            action: test.echo
            with: {value: {a: 2}}
          f:
            action: test.echo  # Any (or a dict) may hold anything: not checked at load
            with: {value: "${[steps.e.output, steps.d.output.a, default(steps.d.output.b, 0)]}"}
        """
    )
    assert testing.run(wf).output == {"f": [28.5, 2, 0]}


def test_an_approval_gate_waits_for_an_operator() -> None:
    wf = flow(
        """
        steps:
          deploy:
            action: test.echo
            with: {value: shipped}
            approval: true
          after:
            action: test.echo
            with: {value: "${steps.deploy.output}"}
        """
    )
    result = testing.run(wf, approve={"deploy": True})  # approving a step that is no gate: an error
    assert [e.type for e in result.events if e.step == "deploy"][:2] == [
        "step_waiting",
        "step_approved",
    ]
    assert result.output == {"after": "shipped"}


def test_an_approval_may_expire() -> None:
    wf = flow(
        """
        steps:
          later:
            action: test.echo
            approval: {expires_after: 1h, on_expiry: approve}
        """
    )
    options = wf["later"].options
    assert options is not None
    assert (options.gate, options.expires_after, options.on_expiry.value) == (
        Gate.APPROVAL,
        3600.0,
        "approve",
    )


def test_a_when_that_fails_at_run_time_fails_the_step_with_condition_error() -> None:
    wf = flow(
        """
        inputs:
          n: {type: any}
        steps:
          a:
            action: test.echo
            when: inputs.n > 1
        """
    )
    engine, handle = run(wf, {"n": "many"})
    code, message = step_errors(engine, handle.id)["a"]
    assert code == "condition_error"
    assert message.endswith("flow.yaml:9:11: steps.a.when: cannot compare a string with a number")


def test_run_holds_the_run_id_attempt_and_iteration() -> None:
    wf = flow(
        """
        steps:
          key:
            action: test.echo
            with: {value: "${run.id}:${run.attempt}:${run.iteration}"}
        """
    )
    _, handle = run(wf)
    assert handle.result(timeout=10) == {"key": f"{handle.id}:1:0"}


def test_an_expression_over_its_budget_fails_the_step() -> None:
    wf = flow(
        """
        inputs:
          xs: {type: array}
        steps:
          a:
            action: test.echo
            with: {value: "${-1 in inputs.xs}"}
        """
    )
    engine, handle = run(wf, {"xs": list(range(20_000))})
    assert step_errors(engine, handle.id)["a"] == (
        "expression_error",
        "flow.yaml:9:19: steps.a.with.value: the expression took more than 10000 steps",
    )


def test_operator_actions_serve_a_file_s_runs() -> None:
    wf = flow(ORDERS, name="orders")
    engine, handle = run(wf, {"order_id": 2})
    fork = engine.fork(handle.id, "charge", input={"order_id": 2, "currency": "CHF"})
    engine.run_worker(until=fork, timeout=30)
    assert fork.result(timeout=10)["charge"] == {"charged": 30.0, "currency": "CHF"}
    steps = {s.name: s for s in engine.steps(fork.id)}
    assert steps["fetch"].reused_from == handle.id  # not run again


def test_a_failed_item_fails_its_for_each_step() -> None:
    wf = flow(
        """
        steps:
          each:
            action: test.fail
            for_each: ${['a', 'b']}
            with: {message: "item ${index}: ${item}"}
        """
    )
    engine, handle = run(wf)
    errors = step_errors(engine, handle.id)
    assert errors["each/each.item-0"] == ("Permanent", "item 0: a")
    assert errors["each"][0] == "child_failed"
