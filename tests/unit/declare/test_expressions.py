"""The expression language: what it computes, what it refuses, and its limits."""

from __future__ import annotations

from typing import Any

import pytest

from plait.declare.expressions import (
    MAX_SIZE,
    MAX_STEPS,
    EvaluationError,
    ExpressionError,
    references,
    render,
    template,
)

ENV: dict[str, Any] = {
    "inputs": {"n": 3, "name": "Ada", "tags": ["a", "b"], "order": {"total": 12.5}},
    "steps": {"fetch": {"output": {"items": [1, 2, 3], "ok": True, "none": None}}},
}


def value(text: str, env: dict[str, Any] | None = None) -> Any:
    return render(template(text), ENV if env is None else env)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${inputs.n}", 3),
        ("${inputs.n + 1}", 4),
        ("${inputs.n * 2 - 1}", 5),
        ("${inputs.n / 2}", 1.5),
        ("${inputs.n % 2}", 1),
        ("${-inputs.n}", -3),
        ("${inputs.order.total > 10 && inputs.n < 5}", True),
        ("${inputs.n > 5 || !steps.fetch.output.ok}", False),
        ("${inputs.n >= 3 and not false}", True),
        ("${inputs.n == 3.0}", True),
        ("${true == 1}", False),  # JSON: a boolean is not a number
        ("${inputs.tags == ['a', 'b']}", True),
        ("${'b' in inputs.tags}", True),
        ("${'d' in inputs.name}", True),
        ("${'total' in inputs.order}", True),
        ("${inputs.n > 2 ? 'big' : 'small'}", "big"),
        ("${steps.fetch.output.items[0]}", 1),
        ("${steps.fetch.output.items[-1]}", 3),
        ("${inputs['name']}", "Ada"),
        ("${len(steps.fetch.output.items)}", 3),
        ("${sum(steps.fetch.output.items) + max([1, 9]) + min([4, 2])}", 17),
        ("${lower(inputs.name) + upper('x') + trim('  y ')}", "adaXy"),
        ("${join(inputs.tags, ',')}", "a,b"),
        ("${split('a-b', '-')}", ["a", "b"]),
        ("${keys(inputs.order)}", ["total"]),
        ("${values(inputs.order)}", [12.5]),
        ("${startswith(inputs.name, 'A') && endswith(inputs.name, 'a')}", True),
        ("${contains(inputs.tags, 'a')}", True),
        ("${int('42') + float('0.5') + abs(-1) + round(2.6)}", 46.5),
        ("${round(2.345, 2)}", 2.35),
        ("${str(inputs.tags)}", '["a","b"]'),
        ("${default(inputs.missing, 'x')}", "x"),
        ("${default(steps.fetch.output.none, 7)}", 7),
        ("${default(inputs.n, 7)}", 3),
        ("${inputs.tags + ['c']}", ["a", "b", "c"]),
        ("${null}", None),
        ("order ${inputs.n} of ${inputs.name}", "order 3 of Ada"),
        ("items: ${steps.fetch.output.items}", "items: [1,2,3]"),
        ("cost $${literal} ${inputs.n}", "cost ${literal} 3"),
        ("plain text", "plain text"),
        ('${"quote \\" and \\n"}', 'quote " and \n'),
    ],
)
def test_values(text: str, expected: Any) -> None:
    assert value(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${inputs.nope}", "no field 'nope' (fields: 'n', 'name', 'tags', 'order')"),
        ("${inputs.__class__}", "no field '__class__'"),  # values are JSON: no Python attributes
        ("${inputs.name.upper}", "cannot read field 'upper' of a string"),
        ("${inputs.tags[5]}", "index 5 is out of range (the list has 2 items)"),
        ("${inputs.tags['x']}", "a list's items are numbered by integers, got a string"),
        ("${inputs.name + 1}", "cannot add a string and a number"),
        ("${inputs.name < 1}", "cannot compare a string with a number"),
        ("${inputs.n / 0}", "division by zero"),
        ("${-inputs.name}", "cannot negate a string"),
        ("${len(inputs.n)}", "len() needs a string, a list or an object, got a number"),
        ("${int('x')}", "int(): invalid literal for int() with base 10: 'x'"),
        ("${max([])}", "max() of an empty list"),
        ("${9223372036854775807 * 2}", "integer out of range (±2**63)"),
        ("${default(inputs.n + 'x', 1)}", "cannot add a number and a string"),
    ],
)
def test_errors_at_run_time(text: str, message: str) -> None:
    with pytest.raises(EvaluationError) as caught:
        value(text)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("${}", "empty expression: write a value between ${ and }", 2),
        ("${1 +}", "expected a value, found '}'", 5),
        ("${(1}", "expected ')', found '}'", 4),
        ("${1", "the expression is not closed: add '}'", 3),
        ("${a < b < c}", "comparisons do not chain: write (a < b) && (b < c)", 8),
        ("${a @ b}", "unexpected character '@'", 4),
        ("${'x\\q'}", "unknown escape \\q in a string", 4),
        ("${nope(1)}", "unknown function 'nope'", 2),
        ("${len()}", "len() takes 1 argument, got 0", 2),
        ("${round(1, 2, 3)}", "round() takes 1 to 2 arguments, got 3", 2),
        ("${a.1}", "expected a field name after '.'", 4),
        ("${99999999999999999999}", "integer out of range (±2**63)", 2),
        ("${" + "x" * 2001 + "}", "the expression is longer than 2000 characters", 2),
    ],
)
def test_parse_errors_say_where(text: str, message: str, offset: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        template(text)
    assert (str(caught.value), caught.value.offset) == (message, offset)


def test_an_evaluation_has_a_budget_of_steps() -> None:
    env = {"inputs": {"big": list(range(MAX_STEPS + 1))}}
    assert value("${len(inputs.big)}", env) == MAX_STEPS + 1  # reading is cheap
    with pytest.raises(EvaluationError, match=f"more than {MAX_STEPS} steps"):
        value("${-1 in inputs.big}", env)


def test_what_an_evaluation_builds_is_bounded() -> None:
    env = {"inputs": {"s": "x" * (MAX_SIZE // 2 + 1)}}
    with pytest.raises(EvaluationError, match="longer than"):
        value("${inputs.s + inputs.s}", env)
    with pytest.raises(EvaluationError, match="longer than"):
        value("${inputs.s}${inputs.s}", env)


def test_references_name_every_root_and_its_constant_fields() -> None:
    tree = template("${steps.fetch.output.items[inputs.n] + len(item)}").parts[0]
    assert not isinstance(tree, str)
    found = sorted((root, [f for f, _ in chain]) for root, chain, _ in references(tree))
    assert found == [
        ("inputs", ["n"]),
        ("item", []),
        ("steps", ["fetch", "output", "items"]),
    ]
