"""Every mistake a workflow file can hold is refused at load, at its line and column, with the
path of the node and what to do. (The file's body starts at line 4: see helpers.flow.)"""

from __future__ import annotations

import pytest

import plait
from plait.declare.loader import loads

from .helpers import flow

STEP = """
steps:
  charge:
    action: test.charge
    with: {amount: 1}
"""

CASES = [
    (  # YAML syntax
        "steps:\n  a: [1, 2\n",
        "flow.yaml:6:1: YAML syntax error: while parsing a flow sequence expected ',' or ']', "
        "but got '<stream end>'",
    ),
    (
        "steps:\n  a:\n    action: test.echo\n    action: test.fetch\n",
        "flow.yaml:7:5: steps.a.action: duplicate key 'action' (first given at line 6)",
    ),
    (
        "stesp: {}\n",
        "flow.yaml:4:1: stesp: unknown key 'stesp' (did you mean 'steps'?); a workflow file "
        "takes: plait, name, version, description, imports, inputs, retry, timeout, fail_fast, "
        "approval_policy, steps, catch, finally",
    ),
    (
        STEP + "    retyr: {attempts: 2}\n",
        "flow.yaml:8:5: steps.charge.retyr: unknown key 'retyr' (did you mean 'retry'?); a step "
        "takes: action, workflow, description, with, depends_on, when, retry, timeout, optional, "
        "defaults, queue, priority, delay, approval, for_each, max_parallel, await, goto, post, "
        "catch",
    ),
    (
        STEP + "    retry: {attempts: three}\n",
        "flow.yaml:8:23: steps.charge.retry.attempts: must be an integer from 1 to 1000, or null "
        "for no limit, got 'three'",
    ),
    (
        STEP + "    retry: {attempts: 2, jiter: 0.5}\n",
        "flow.yaml:8:26: steps.charge.retry.jiter: unknown key 'jiter' (did you mean 'jitter'?); "
        "retry takes: attempts, delay, backoff, max_delay, jitter, non_retryable",
    ),
    (
        STEP + "    timeout: soon\n",
        "flow.yaml:8:14: steps.charge.timeout: must be a duration: seconds (a number > 0) or "
        "text as '30s', '5m', '1h30m', '250ms'; got 'soon'",
    ),
    (
        STEP + "    optional: yes please\n",
        "flow.yaml:8:15: steps.charge.optional: must be true or false, got 'yes please'",
    ),
    (
        STEP + "    priority: high\n",
        "flow.yaml:8:15: steps.charge.priority: must be an integer from -2147483648 to "
        "2147483647, got 'high'",
    ),
    (
        STEP + "    queue: two words\n",
        "flow.yaml:8:12: steps.charge.queue: invalid queue name 'two words': use 1-100 letters, "
        "digits or any of _ . : @ - (no spaces)",
    ),
    (
        STEP + "    depends_on: [fecth]\n",
        "flow.yaml:8:18: steps.charge.depends_on[0]: unknown step 'fecth'",
    ),
    (
        "steps:\n  charge:\n    with: {amount: 1}\n",
        "flow.yaml:6:5: steps.charge: a step needs an action: (a registered action's name or "
        "module:function) or a workflow: (a workflow file to call)",
    ),
    (
        "steps:\n  charge: {action: test.chrage}\n",
        "flow.yaml:5:20: steps.charge.action: unknown action 'test.chrage' (did you mean "
        "'test.charge'?): register a function with @plait.action(...) in a module listed under "
        "imports:, or name one by its import path, module:function",
    ),
    (
        "steps:\n  a: {action: 'no_such_module_here:f'}\n",
        "flow.yaml:5:15: steps.a.action: cannot import module 'no_such_module_here': No module "
        "named 'no_such_module_here'",
    ),
    (
        "steps:\n  a: {action: 'tests.unit.declare.actions:shuot'}\n",
        "flow.yaml:5:15: steps.a.action: module 'tests.unit.declare.actions' has no 'shuot' "
        "(did you mean 'shout'?)",
    ),
    (
        "steps:\n  a: {action: 'tests.unit.declare.actions:NOT_A_FUNCTION'}\n",
        "flow.yaml:5:15: steps.a.action: 'tests.unit.declare.actions:NOT_A_FUNCTION' is a int, "
        "not a function",
    ),
    (
        "steps:\n  charge:\n    action: test.charge\n    with: {amont: 1}\n",
        "flow.yaml:7:12: steps.charge.with.amont: action 'test.charge' has no parameter 'amont' "
        "(did you mean 'amount'?) (it takes: amount, currency)",
    ),
    (
        "steps:\n  charge:\n    action: test.charge\n    with: {currency: EUR}\n",
        "flow.yaml:7:11: steps.charge.with: action 'test.charge' needs argument 'amount' under with:",
    ),
    (
        "steps:\n  charge:\n    action: test.charge\n    with: {amount: lots}\n",
        "flow.yaml:7:20: steps.charge.with.amount: action 'test.charge', argument 'amount': "
        "Input should be a valid number, unable to parse string as a number",
    ),
    (  # expressions
        "steps:\n  charge:\n    action: test.charge\n    with: {amount: '${1 +}'}\n",
        "flow.yaml:7:26: steps.charge.with.amount: invalid expression: expected a value, found '}'",
    ),
    (
        "steps:\n  charge:\n    action: test.charge\n    with: {amount: '${lenn(1)}'}\n",
        "flow.yaml:7:23: steps.charge.with.amount: invalid expression: unknown function 'lenn' "
        "(did you mean 'len'?)",
    ),
    (
        "steps:\n  fetch: {action: test.fetch, with: {order_id: 1}}\n  charge:\n"
        "    action: test.charge\n    with: {amount: '${steps.fecth.output.total}'}\n",
        "flow.yaml:8:29: steps.charge.with.amount: unknown step 'fecth' (did you mean 'fetch'?)",
    ),
    (
        "steps:\n  fetch: {action: test.fetch, with: {order_id: 1}}\n  charge:\n"
        "    action: test.charge\n    with: {amount: '${steps.fetch.total}'}\n",
        "flow.yaml:8:35: steps.charge.with.amount: write steps.fetch.output: a step's output is "
        "all an expression reads of it",
    ),
    (
        "inputs: {order_id: integer}\nsteps:\n  charge:\n    action: test.charge\n"
        "    with: {amount: '${inputs.order}'}\n",
        "flow.yaml:8:30: steps.charge.with.amount: unknown input 'order' (did you mean "
        "'order_id'?): declare it under inputs:",
    ),
    (
        "steps:\n  charge:\n    action: test.charge\n    with: {amount: '${input.x}'}\n",
        "flow.yaml:7:23: steps.charge.with.amount: unknown name 'input' (did you mean 'inputs'?): "
        "an expression reads inputs, steps, state, run (and item, index in a for_each's with:; "
        "output in a post:; error in a catching step)",
    ),
    (
        "fail_fast: yes please\n" + STEP,
        "flow.yaml:4:12: fail_fast: must be true or false, got 'yes please'",
    ),
    (
        STEP + "    post: {sett: {k: 1}}\n",
        "flow.yaml:8:12: steps.charge.post.sett: unknown key 'sett' (did you mean 'set'?); a post "
        "takes: set, append",
    ),
    (
        STEP + "    post: {}\n",
        "flow.yaml:8:11: steps.charge.post: a post needs set: or append: (KEY: VALUE, ...)",
    ),
    (
        STEP + "    post: {append: [1]}\n",
        "flow.yaml:8:20: steps.charge.post.append: must be a mapping of session state keys to "
        "values, got a list",
    ),
    (
        STEP + "    post: {set: {'': x}}\n",
        "flow.yaml:8:18: steps.charge.post.set.: a session state key is a string of 1 to 256 "
        "characters, got ''",
    ),
    (
        STEP + "    post: {set: {total: '${output.charged + outpt}'}}\n",
        "flow.yaml:8:45: steps.charge.post.set.total: unknown name 'outpt' (did you mean "
        "'output'?): an expression reads inputs, steps, state, run (and item, index in a "
        "for_each's with:; output in a post:; error in a catching step)",
    ),
    (
        "steps:\n  double:\n    action: test.async_double\n    with: {n: 1}\n"
        "    post: {set: {total: '${output.value}'}}\n",
        "flow.yaml:8:35: steps.double.post.set.total: steps.double.output is a number: it has no "
        "field 'value'",
    ),
    (
        "steps:\n  charge:\n    action: test.charge\n    with: {amount: '${output}'}\n",
        "flow.yaml:7:23: steps.charge.with.amount: 'output' is what the step's action returned: "
        "only its post: may read it (elsewhere, steps.NAME.output)",
    ),
    (
        "steps:\n  each:\n    action: test.echo\n    for_each: ${[1]}\n"
        "    with: {value: '${item}'}\n    post: {append: {seen: '${output}'}}\n",
        "flow.yaml:9:5: steps.each.post: a for_each step cannot post: put the post on a step "
        "after it",
    ),
    (
        "steps:\n  charge:\n    action: test.charge\n    with: {amount: '${item}'}\n",
        "flow.yaml:7:23: steps.charge.with.amount: 'item' is the item of a for_each: only its "
        "step's with: can read it",
    ),
    (
        "steps:\n  charge:\n    action: test.charge\n    when: steps.charge.output\n"
        "    with: {amount: 1}\n",
        "flow.yaml:7:17: steps.charge.when: step 'charge' cannot read its own output here",
    ),
    (
        "steps:\n  charge:\n    action: test.charge\n    with: {amount: '${"
        + "1 + " * 400
        + "1}'}\n",
        "flow.yaml:7:621: steps.charge.with.amount: invalid expression: the expression is too long "
        "(more than 300 nodes)",
    ),
    (
        "steps:\n  charge:\n    action: test.charge\n    with: {amount: '${"
        + "(" * 40
        + "1"
        + ")" * 40
        + "}'}\n",
        "flow.yaml:7:55: steps.charge.with.amount: invalid expression: the expression nests more "
        "than 32 deep",
    ),
    (  # fields of a step's output, from its action's return annotation
        "steps:\n  o: {action: test.order, with: {order_id: 1}}\n  e:\n    action: test.echo\n"
        "    with: {value: '${steps.o.output.quote.prise}'}\n",
        "flow.yaml:8:43: steps.e.with.value: steps.o.output.quote has no field 'prise' (did you "
        "mean 'price'?) (its type Quote has: price, currency)",
    ),
    (
        "steps:\n  o: {action: test.order, with: {order_id: 1}}\n  e:\n    action: test.echo\n"
        "    with: {value: '${steps.o.output.note.text}'}\n",
        "flow.yaml:8:42: steps.e.with.value: steps.o.output.note is a string: it has no field 'text'",
    ),
    (
        "steps:\n  f: {action: test.fetch, with: {order_id: 1}, for_each: '${[1]}'}\n  e:\n"
        "    action: test.echo\n    with: {value: '${steps.f.output.total}'}\n",
        "flow.yaml:8:37: steps.e.with.value: steps.f.output is a list: it has no field 'total'",
    ),
    (
        "steps:\n  a:\n    action: test.echo\n    with: {value: '${run.idd}'}\n",
        "flow.yaml:7:26: steps.a.with.value: run has no field 'idd' (did you mean 'id'?) (it has: "
        "id, attempt, iteration)",
    ),
    (
        "steps:\n  a:\n    action: test.echo\n    when: ${run.attempt > 1}\n",
        "flow.yaml:7:13: steps.a.when: 'run' is known when the step runs: its with:, for_each and "
        "a goto's when: may read it, its when: may not",
    ),
    (  # the graph
        "steps:\n  a:\n    action: test.echo\n    depends_on: [b]\n  b:\n    action: test.echo\n"
        "    with: {value: '${steps.a.output}'}\n",
        "flow.yaml:5:3: steps.a: cycle: a -> b -> a (each step waits for the next)",
    ),
    (
        "steps:\n  a:\n    action: test.echo\n    goto: [{step: nowhere}]\n",
        "flow.yaml:7:19: steps.a.goto[0].step: unknown step 'nowhere'",
    ),
    (
        "steps:\n  a: {action: test.echo}\n  b:\n    action: test.echo\n    depends_on: [a]\n"
        "  c:\n    action: test.echo\n    goto: [{step: b}]\n",
        "flow.yaml:11:19: steps.c.goto[0].step: goto 'b': a goto runs again the step itself or a "
        "step upstream of it (one 'c' waits for), or jumps to a step downstream of it (one that "
        "waits for 'c'); 'b' is neither",
    ),
    (
        "steps:\n  a: {action: test.echo}\n  b:\n    action: test.echo\n    defaults: {a: 0}\n",
        "flow.yaml:8:16: steps.b.defaults.a: defaults names 'a', which this step neither reads "
        "(${steps.a.output}) nor depends_on",
    ),
    (
        "steps:\n  my-step: {action: test.echo}\n",
        "flow.yaml:5:3: steps.my-step: invalid step name 'my-step': use 1-128 letters, digits or "
        "'_', starting with a letter or '_' (so that expressions can name it), and not a Python "
        "keyword, 'ctx' or one of inputs, steps, state, item, index, run, output, error",
    ),
    (
        "inputs: {n: {type: int}}\n" + STEP,
        "flow.yaml:4:20: inputs.n.type: unknown type 'int' (did you mean 'integer'?); types: string, integer, number, "
        "boolean, object, array, any",
    ),
    (
        "inputs: {n: {type: integer, default: ten}}\n" + STEP,
        "flow.yaml:4:38: inputs.n.default: the default 'ten' is not of type integer",
    ),
    (
        "steps:\n  a:\n    action: test.echo\n    approval: {on_expiry: later}\n",
        "flow.yaml:7:27: steps.a.approval.on_expiry: must be 'reject' or 'approve', got 'later'",
    ),
    (
        "steps:\n  a:\n    action: test.echo\n    approval: {expires: 1h}\n",
        "flow.yaml:7:16: steps.a.approval.expires: unknown key 'expires' (did you mean "
        "'expires_after'?); approval (or true) takes: expires_after, on_expiry",
    ),
    (
        "steps:\n  a:\n    action: test.echo\n    max_parallel: 2\n",
        "flow.yaml:7:5: steps.a.max_parallel: max_parallel limits a for_each: add for_each",
    ),
    (
        "plait: 2\n" + STEP,
        "flow.yaml:4:8: plait: unknown format 2: this plait reads format 1",
    ),
    (
        "steps: []\n",
        "flow.yaml:4:8: steps: a workflow file needs steps: a mapping of step names to steps",
    ),
    (
        "steps:\n  a: !!python/name:os.system {}\n",
        "flow.yaml:5:6: steps.a: tag 'tag:yaml.org,2002:python/name:os.system' is not allowed: "
        "use plain JSON-like values",
    ),
    (
        "steps:\n  a:\n    action: test.echo\n    with: {value: !!binary aGVsbG8=}\n",
        "flow.yaml:7:19: steps.a.with.value: tag 'tag:yaml.org,2002:binary' is not allowed: use "
        "plain JSON-like values",
    ),
    (
        "steps:\n  a:\n    action: test.echo\n    with: {value: .nan}\n",
        "flow.yaml:7:19: steps.a.with.value: .nan is not a JSON number",
    ),
]


CATCHING = """
steps:
  charge:
    action: test.charge
    with: {amount: 1}
    catch: refund
  refund:
    action: test.echo
"""

CASES += [  # catch: and finally:
    (
        CATCHING.replace("catch: refund", "catch: refnud"),
        "flow.yaml:8:12: steps.charge.catch: unknown step 'refnud' (did you mean 'refund'?)",
    ),
    (
        CATCHING.replace("catch: refund", "catch: charge"),
        "flow.yaml:8:12: steps.charge.catch: step 'charge' cannot catch its own failure",
    ),
    (
        CATCHING + "  ship:\n    action: test.fail\n    catch: refund\n",
        "flow.yaml:13:12: steps.ship.catch: step 'refund' already catches the failure of step "
        "'charge'; a step catches one step's failure",
    ),
    (
        CATCHING + "    with: {value: '${steps.charge.output}'}\n",
        "flow.yaml:9:3: steps.refund: step 'refund' catches the failure of 'charge': it runs "
        "only if 'charge' failed, so there is no output of it to read (read ${error} instead)",
    ),
    (
        CATCHING + "    depends_on: [charge]\n",
        "flow.yaml:11:18: steps.refund.depends_on[0]: step 'refund' catches the failure of "
        "'charge': it runs only if 'charge' failed, so it cannot depend on it",
    ),
    (
        CATCHING + "    with: {value: '${error.cdoe}'}\n",
        "flow.yaml:11:28: steps.refund.with.value: error has no field 'cdoe' (did you mean "
        "'code'?) (it has: step, code, message)",
    ),
    (
        CATCHING + "    when: ${error.code == 'x'}\n",
        "flow.yaml:11:13: steps.refund.when: 'error' is known when the step runs: its with: and "
        "post: may read it, its when: may not",
    ),
    (
        "steps:\n  a:\n    action: test.echo\n    with: {value: '${error.code}'}\n",
        "flow.yaml:7:22: steps.a.with.value: 'error' is the failure a catching step "
        "handles: only a step that another's catch: names, or a step under catch:, may read it",
    ),
    (
        STEP + "finally:\n  cleanup:\n    action: test.echo\n    depends_on: [charge]\n",
        "flow.yaml:11:5: finally.cleanup.depends_on: a step under finally: cannot have "
        "depends_on: it runs once every other step has ended",
    ),
    (
        STEP + "catch: []\n",
        "flow.yaml:8:8: catch: catch: is a mapping of step names to steps (as steps: is), got a "
        "list",
    ),
    (
        STEP + "finally:\n  charge: {action: test.echo}\n",
        "flow.yaml:9:3: finally.charge: step 'charge' is declared under steps: already; step "
        "names are unique across steps:, catch: and finally:",
    ),
    (
        "steps:\n  a:\n    action: test.echo\n    with: {value: '${steps.cleanup.output}'}\n"
        "finally:\n  cleanup: {action: test.echo}\n",
        "flow.yaml:7:28: steps.a.with.value: step 'cleanup' is under finally: and runs "
        "after every other step: step 'a' cannot wait for it",
    ),
    (
        STEP
        + "catch:\n  alert:\n    action: test.echo\n    with: {value: '${steps.late.output}'}\n"
        "finally:\n  late: {action: test.echo}\n",
        "flow.yaml:11:28: catch.alert.with.value: step 'late' is under finally: and runs after "
        "every other step: step 'alert' cannot wait for it",
    ),
    (
        STEP + "    goto: [{step: cleanup}]\nfinally:\n  cleanup: {action: test.echo}\n",
        "flow.yaml:8:19: steps.charge.goto[0].step: goto 'cleanup': it is under finally: and runs "
        "at the end; a goto names a step under steps:",
    ),
    (
        CATCHING.replace("catch: refund", "catch: alert")
        + "catch:\n  alert: {action: test.echo}\n",
        "flow.yaml:8:12: steps.charge.catch: step 'alert' is under catch: and runs at the end "
        "anyway; a catch: names a step under steps:",
    ),
]


@pytest.mark.parametrize(("body", "message"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_a_mistake_is_an_error_at_its_line(body: str, message: str) -> None:
    with pytest.raises(plait.DeclarationError) as caught:
        flow(body)
    assert str(caught.value) == message


def test_an_unimportable_module_under_imports_is_an_error_at_its_line() -> None:
    with pytest.raises(plait.DeclarationError) as caught:
        loads("name: f\nimports: [ok_not, no_such_module_either]\nsteps: {}\n", file="f.yaml")
    assert str(caught.value) == (
        "f.yaml:2:11: imports[0]: cannot import module 'ok_not': No module named 'ok_not'"
    )


def test_an_empty_file_and_a_file_without_a_name() -> None:
    with pytest.raises(plait.DeclarationError, match=r"^f.yaml:1:1: \(top\): the file is empty$"):
        loads("# nothing\n", file="f.yaml")
    with pytest.raises(plait.DeclarationError) as caught:
        loads("steps: {}\n", file="f.yaml")
    assert (
        str(caught.value)
        == "f.yaml:1:1: (top): a workflow file needs a name: (the workflow's name)"
    )


def test_an_alias_bomb_is_refused() -> None:
    lines = ["name: f", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    with pytest.raises(plait.DeclarationError, match="more than 100000 nodes"):
        loads("\n".join(lines) + "\n", file="f.yaml")


def test_errors_are_definition_errors_with_their_position() -> None:
    with pytest.raises(plait.DefinitionError) as caught:
        flow(STEP + "    retry: {attempts: 0}\n")
    error = caught.value
    assert isinstance(error, plait.DeclarationError)
    assert (error.file, error.line, error.column, error.path) == (
        "flow.yaml",
        8,
        23,
        "steps.charge.retry.attempts",
    )


def test_the_mistakes_of_several_steps_are_reported_together() -> None:
    with pytest.raises(plait.DeclarationError) as caught:
        flow(
            "steps:\n"
            "  a: {action: test.echo, retry: {attempts: 0}}\n"
            "  b: {action: test.chrage}\n"
            "  c: {action: test.echo, timeout: never}\n"
        )
    error = caught.value
    assert [(e.line, e.path) for e in error.errors] == [
        (5, "steps.a.retry.attempts"),
        (6, "steps.b.action"),
        (7, "steps.c.timeout"),
    ]
    assert error.errors[0] is error
    assert str(error) == (
        f"{error.detail} (and 2 more mistakes in the file: DeclarationError.errors, or plait "
        "validate, lists them)"
    )
    assert error.detail.startswith("flow.yaml:5:44: steps.a.retry.attempts: must be an integer")


def test_references_are_checked_once_every_step_reads_well() -> None:
    with pytest.raises(plait.DeclarationError) as caught:
        flow(
            "steps:\n"
            "  a: {action: test.echo, with: {value: '${steps.zz.output}'}}\n"
            "  b: {action: test.echo, depends_on: [yy]}\n"
        )
    assert [e.path for e in caught.value.errors] == ["steps.a.with.value", "steps.b.depends_on[0]"]
