"""Workflow definitions: every error a user can cause, parameter binding, input checks,
fingerprints."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
from typing import Any

import pydantic
import pytest

import plait
from plait import DefinitionError, InputError, Retry, StepContext, Workflow
from plait.core.rows import EdgeKind, Gate, OnExpiry, StepOptions


class Order(pydantic.BaseModel):
    id: int
    total: float = 0.0


def noop() -> None:
    pass


def ctx_for(step: str = "s") -> StepContext:
    return StepContext(run_id="r", step=step, workflow="w", attempt=1, run_input={})


def raises(exc: type[Exception], *fragments: str) -> Any:
    """pytest.raises that checks every fragment appears, literally, in the message."""
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


# -- errors ---------------------------------------------------------------------------------------


def test_duplicate_step_name() -> None:
    wf = Workflow("w")

    @wf.step
    def a() -> None: ...

    with raises(DefinitionError, "workflow 'w', step 'a'", "duplicate step name"):
        wf.add_step("a", noop)


def test_cycle_through_parameters_names_the_path() -> None:
    wf = Workflow("w")

    @wf.step
    def a(c: Any) -> None: ...

    @wf.step
    def b(a: Any) -> None: ...

    @wf.step
    def c(b: Any) -> None: ...

    @wf.step
    def d(c: Any) -> None: ...  # downstream of the cycle, not on it

    with pytest.raises(DefinitionError, match="cycle") as info:
        wf.plan()
    message = str(info.value)
    path = message.split("cycle: ")[1].split(" -> ")
    assert path[0] == path[-1]
    assert sorted(path[:-1]) == ["a", "b", "c"]
    # the path follows real edges, in one direction or the other
    edges = {("c", "a"), ("a", "b"), ("b", "c")}
    pairs = set(itertools.pairwise(path))
    assert pairs == edges or {(y, x) for x, y in pairs} == edges, message


def test_cycle_through_after() -> None:
    wf = Workflow("w")
    wf.add_step("a", noop, after=["b"])
    wf.add_step("b", noop, after_any=["a"])
    with raises(DefinitionError, "workflow 'w'", "cycle: ") as info:
        wf.plan()
    assert re.search(r"cycle: (a -> b -> a|b -> a -> b)$", str(info.value))


@pytest.mark.parametrize(
    "add",
    [
        lambda wf: wf.add_step("a", lambda a: None),
        lambda wf: wf.add_step("a", noop, deps=["a"]),
        lambda wf: wf.add_step("a", noop, after=["a"]),
        lambda wf: wf.add_step("a", noop, after_any="a"),
    ],
    ids=["parameter", "deps", "after", "after_any"],
)
def test_self_dependency_is_a_cycle(add: Any) -> None:
    wf = Workflow("w")
    add(wf)
    with raises(DefinitionError, "step 'a'", "cycle: a -> a"):
        wf.plan()


@pytest.mark.parametrize("option", ["after", "after_any", "deps"])
def test_unknown_step_in_dependencies(option: str) -> None:
    wf = Workflow("w")
    wf.add_step("a", noop)
    wf.add_step("b", noop, **{option: ["a", "ghost"]})
    with raises(DefinitionError, "workflow 'w', step 'b'", f"{option} names unknown step 'ghost'"):
        wf.plan()


def test_data_dependency_and_after_any_at_once() -> None:
    wf = Workflow("w")
    wf.add_step("a", noop)
    wf.add_step("b", lambda a: None, after_any=["a"])
    with raises(DefinitionError, "step 'b'", "'a' is both a data dependency and after_any"):
        wf.plan()


@pytest.mark.parametrize(
    "options", [{"defaults": {"c": 1}}, {"after_any": ["a"], "defaults": {"a": 1}}]
)
def test_defaults_must_name_a_data_or_after_dependency(options: dict[str, Any]) -> None:
    wf = Workflow("w")
    wf.add_step("a", noop)
    wf.add_step("c", noop)
    wf.add_step("b", noop, **options)
    name = next(iter(options["defaults"]))
    with raises(
        DefinitionError, "step 'b'", f"defaults names {name!r}", "not a data or after dependency"
    ):
        wf.plan()


def test_default_must_be_json() -> None:
    wf = Workflow("w")
    wf.add_step("a", noop)
    with raises(DefinitionError, "step 'b'", "default for 'a' is not JSON"):
        wf.add_step("b", lambda a: None, defaults={"a": object()})
    assert "b" not in wf


def test_var_positional_parameter() -> None:
    wf = Workflow("w")

    def f(*items: Any) -> None: ...

    with raises(DefinitionError, "step 'f'", "parameter *items is not supported"):
        wf.step(f)


def test_positional_only_parameter() -> None:
    wf = Workflow("w")

    def f(x: int, /) -> None: ...

    with raises(DefinitionError, "step 'f'", "'x' is positional-only"):
        wf.step(f)


BAD_NAMES = ["with space", "../x", "", "x" * 300, "a/b", "a\n", "-a", None, 3]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_step_name(name: Any) -> None:
    wf = Workflow("w")
    with raises(DefinitionError, f"invalid step name {name!r}", "1-128 ASCII letters"):
        wf.add_step(name, noop)
    assert list(wf._steps) == []


@pytest.mark.parametrize("name", ["café", "naïve", "ステップ"])
def test_a_step_name_is_made_of_ascii_letters_and_says_so(name: str) -> None:
    with raises(DefinitionError, f"invalid step name {name!r}: use 1-128 ASCII letters"):
        Workflow("w").add_step(name, noop)


@pytest.mark.parametrize("bad", ["yes", 1, 0, None, "False"])
def test_optional_must_be_a_boolean(bad: Any) -> None:
    wf = Workflow("w")
    for kind, define in (
        ("step 's'", lambda: wf.step(name="s", optional=bad)(noop)),
        ("step 'a'", lambda: wf.add_step("a", noop, optional=bad)),
        ("step 'sig'", lambda: wf.signal("sig", optional=bad)),
        ("task 't'", lambda: wf.task(name="t", optional=bad)(noop)),
    ):
        with pytest.raises(DefinitionError) as info:
            define()
        assert (
            str(info.value) == f"workflow 'w', {kind}: optional must be True or False, got {bad!r}"
        )
    assert list(wf._steps) == [] and wf.task_of("t") is None


def test_a_step_named_ctx_is_refused() -> None:
    """A parameter named ctx receives the StepContext: no step could ever read such a step."""
    message = (
        "workflow 'w', step 'ctx': the name 'ctx' is reserved: a parameter named ctx receives "
        "the StepContext, so no step could read this step's output; choose another name"
    )
    wf = Workflow("w")
    for define in (
        lambda: wf.add_step("ctx", noop),
        lambda: wf.step(name="ctx")(noop),
        lambda: wf.signal("ctx"),
    ):
        with pytest.raises(DefinitionError) as info:
            define()
        assert str(info.value) == message

    def ctx() -> int:
        return 1

    with pytest.raises(DefinitionError) as info:
        wf.step(ctx)
    assert str(info.value) == message
    assert list(wf._steps) == []


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n != "-a"], ids=repr)
def test_bad_workflow_name(name: Any) -> None:
    with raises(DefinitionError, f"invalid workflow name {name!r}"):
        Workflow(name)


@pytest.mark.parametrize("name", ["a", "_a", "a.b-c_1", "x" * 128])
def test_good_names(name: str) -> None:
    wf = Workflow(name)
    wf.add_step(name, noop)
    assert wf.plan().steps[0].name == name


def test_bad_version() -> None:
    with raises(DefinitionError, "workflow 'w'", "version must be a non-empty string"):
        Workflow("w", version="")
    with raises(DefinitionError, "version must be a non-empty string, got 2"):
        Workflow("w", version=2)  # type: ignore[arg-type]  # the error under test


def test_unknown_option() -> None:
    wf = Workflow("w")
    with raises(DefinitionError, "step 'a'", "unknown option(s) ['retries']", "known: ['after'"):
        wf.add_step("a", noop, retries=3)
    with raises(DefinitionError, "unknown option(s) ['bogus']"):
        wf.step(bogus=True)(noop)  # type: ignore[call-overload]  # the error under test


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), "5", True])
def test_bad_timeout(timeout: Any) -> None:
    wf = Workflow("w")
    with raises(DefinitionError, "step 'a'", "timeout must be a positive number of seconds"):
        wf.add_step("a", noop, timeout=timeout)
    with raises(DefinitionError, "workflow 'v'", "timeout must be a positive number"):
        Workflow("v", timeout=timeout)


def test_timeouts() -> None:
    wf = Workflow("w", timeout=dt.timedelta(minutes=1))
    a = wf.add_step("a", noop, timeout=dt.timedelta(seconds=1.5))
    b = wf.add_step("b", noop)
    c = wf.add_step("c", noop, timeout=3)
    assert [wf.timeout_for(s) for s in (a, b, c)] == [1.5, 60.0, 3.0]


@pytest.mark.parametrize("retry", [3, {"attempts": 3}, "Retry(3)"])
def test_bad_retry_type(retry: Any) -> None:
    wf = Workflow("w")
    with raises(DefinitionError, "step 'a'", "retry must be a plait.Retry", repr(retry)):
        wf.add_step("a", noop, retry=retry)
    with raises(DefinitionError, "workflow 'v'", "retry must be a plait.Retry"):
        Workflow("v", retry=retry)


def test_retry_policy_inheritance() -> None:
    wf = Workflow("w", retry=Retry(attempts=3))
    a = wf.add_step("a", noop)
    b = wf.add_step("b", noop, retry=Retry(attempts=5))
    assert wf.retry_for(a).attempts == 3
    assert wf.retry_for(b).attempts == 5
    assert Workflow("v").retry.attempts == 1  # no retry unless asked


@pytest.mark.parametrize("priority", ["1", 1.5, True])
def test_bad_priority(priority: Any) -> None:
    with raises(DefinitionError, "step 'a'", "priority must be an integer"):
        Workflow("w").add_step("a", noop, priority=priority)


def test_bad_handler_and_names_in_options() -> None:
    wf = Workflow("w")
    with raises(DefinitionError, "step 'a'", "handler must be callable"):
        wf.add_step("a", 42)  # type: ignore[arg-type]  # the error under test
    with raises(DefinitionError, "step 'a'", "after must list step names (str), got 1"):
        wf.add_step("a", noop, after=[1])


def test_empty_workflow() -> None:
    with raises(DefinitionError, "workflow 'w' has no steps"):
        Workflow("w").plan()


# -- binding --------------------------------------------------------------------------------------


def test_step_decorator_with_and_without_parentheses_returns_the_function() -> None:
    wf = Workflow("w")

    def a() -> int:
        return 1

    def b(a: int) -> int:
        return a

    def c(b: int) -> int:
        return b

    assert wf.step(a) is a
    assert wf.step()(b) is b
    assert wf.step(name="renamed", optional=True)(c) is c
    assert [s.name for s in wf.steps] == ["a", "b", "renamed"]
    assert wf["renamed"].optional and wf["renamed"].fn is c
    assert dict(wf.plan().steps[2].dependencies) == {"b": EdgeKind.DATA}


def test_add_step_deps_with_named_parameters_and_kwargs() -> None:
    wf = Workflow("w")
    wf.add_step("a", noop)
    wf.add_step("b", noop)
    named = wf.add_step("named", lambda a, b: None, deps=["a", "b"])
    spread = wf.add_step("spread", lambda **kw: kw, deps="a")
    ordering = wf.add_step("ordering", noop, deps=["a"])  # neither: orders and cascades only
    wf.plan()
    outputs = {"a": 1, "b": 2}
    assert named.data_deps == ("a", "b")
    assert named.build_kwargs(ctx_for(), {}, outputs) == {"a": 1, "b": 2}
    assert spread.accepts_kwargs
    assert spread.build_kwargs(ctx_for(), {}, outputs) == {"a": 1}
    assert ordering.build_kwargs(ctx_for(), {}, outputs) == {}
    assert dict(wf.plan().steps[4].dependencies) == {"a": EdgeKind.DATA}


def test_edge_kinds() -> None:
    wf = Workflow("w")
    for n in "abc":
        wf.add_step(n, noop)
    wf.add_step("d", lambda a: None, after=["b", "b"], after_any=["c"], defaults={"b": 0})
    plan = wf.plan().steps[3]
    assert dict(plan.dependencies) == {
        "a": EdgeKind.DATA,
        "b": EdgeKind.AFTER,
        "c": EdgeKind.AFTER_ANY,
    }
    assert plan.defaults == ("b",)


def test_context_by_annotation_and_by_name() -> None:
    wf = Workflow("w")

    def by_type(context: plait.StepContext, x: int) -> None: ...

    def by_name(ctx, x: int) -> None: ...  # type: ignore[no-untyped-def]  # untyped on purpose

    def annotated_ctx_name(ctx: int) -> None: ...  # annotated otherwise: an input field

    for fn in (by_type, by_name, annotated_ctx_name):
        wf.step(fn)
    wf.plan()
    ctx = ctx_for()
    assert wf["by_type"].ctx_param == "context"
    assert wf["by_type"].build_kwargs(ctx, {"x": 1}, {}) == {"context": ctx, "x": 1}
    assert wf["by_name"].ctx_param == "ctx"
    assert wf["by_name"].build_kwargs(ctx, {"x": 1}, {}) == {"ctx": ctx, "x": 1}
    assert wf["annotated_ctx_name"].ctx_param is None
    assert [f.name for f in wf["annotated_ctx_name"].inputs] == ["ctx"]


def test_input_fields_required_and_optional() -> None:
    wf = Workflow("w")

    @wf.step
    def a(order_id: int, region: str = "eu", note: Any = None) -> None: ...

    plan = wf.plan()
    assert plan.steps[0].inputs == (("order_id", True), ("region", False), ("note", False))
    step = wf["a"]
    assert step.build_kwargs(ctx_for(), {"order_id": 1}, {}) == {
        "order_id": 1,
        "region": "eu",
        "note": None,
    }
    assert step.build_kwargs(ctx_for(), {"order_id": 1, "region": "us"}, {})["region"] == "us"


# -- validate_input -----------------------------------------------------------------------------


@pytest.fixture
def orders() -> Workflow:
    wf = Workflow("orders")

    @wf.step
    def fetch(order_id: int, order: Order | None = None) -> dict[str, Any]:
        return {}

    @wf.step
    def charge(fetch: dict[str, Any], currency: str) -> None: ...

    return wf


@pytest.mark.parametrize(("value", "kind"), [([1, 2], "list"), ("x", "str"), (3, "int")])
def test_input_must_be_an_object(orders: Workflow, value: Any, kind: str) -> None:
    with raises(InputError, "run input of 'orders' must be a JSON object, got " + kind):
        orders.validate_input(value)


def test_input_must_be_json(orders: Workflow) -> None:
    with raises(InputError, "run input of 'orders' is not JSON"):
        orders.validate_input(object())


def test_missing_input_field_names_field_and_step(orders: Workflow) -> None:
    with raises(InputError, "misses field 'currency'", "required by step 'charge'"):
        orders.validate_input({"order_id": 1})
    with raises(InputError, "misses field 'order_id'", "required by step 'fetch'"):
        orders.validate_input(None)


def test_bad_input_value_names_the_field(orders: Workflow) -> None:
    with raises(InputError, "run input field 'order_id' (step 'fetch') is invalid"):
        orders.validate_input({"order_id": "not a number", "currency": "EUR"})
    with raises(InputError, "run input field 'order' (step 'fetch') is invalid", "id"):
        orders.validate_input({"order_id": 1, "currency": "EUR", "order": {"total": 2}})


def test_valid_input(orders: Workflow) -> None:
    value = {"order_id": 1, "currency": "EUR", "order": {"id": 7}}
    assert orders.validate_input(value) == value

    @dataclasses.dataclass
    class In:
        order_id: int
        currency: str

    assert orders.validate_input(In(1, "EUR")) == {"order_id": 1, "currency": "EUR"}


def _typo_workflow(**options: Any) -> Workflow:
    wf = Workflow("orders", **options)

    @wf.step
    def fetch(order_id: int, region: str = "eu") -> None: ...

    @wf.step(when=lambda express=False: express)
    def ship(fetch: None) -> None: ...

    @wf.step(concurrency_key=lambda customer="": customer, key_limit=1)
    def bill(fetch: None) -> None: ...

    return wf


def test_an_input_field_no_step_reads_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wf = _typo_workflow()
    with caplog.at_level("WARNING", logger="plait"):
        value = wf.validate_input({"order_id": 1, "regoin": "us", "customer": "c", "express": True})
    assert value["regoin"] == "us"  # warned about, and kept as given
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        "run input of 'orders' has field 'regoin' that no step reads (the steps read fields "
        "'customer', 'express', 'order_id', 'region'): ignored. Workflow(..., "
        "extra_input='forbid') refuses such input, extra_input='ignore' silences this warning"
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="plait"):
        wf.validate_input({"order_id": 1, "region": "us"})
    assert caplog.records == []


def test_extra_input_forbid_refuses_and_ignore_is_silent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    many = {"order_id": 1, **{f"x{i}": i for i in range(12)}}
    with pytest.raises(InputError) as info:
        _typo_workflow(extra_input="forbid").validate_input(many)
    assert str(info.value) == (
        "run input of 'orders' has fields 'x0', 'x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7', 'x8', "
        "'x9' and 2 more that no step reads (the steps read fields 'customer', 'express', "
        "'order_id', 'region'); extra_input='forbid' refuses them"
    )
    assert _typo_workflow(extra_input="forbid").validate_input({"order_id": 1}) == {"order_id": 1}
    with caplog.at_level("DEBUG", logger="plait"):
        assert _typo_workflow(extra_input="ignore").validate_input(many) == many
    assert caplog.records == []


@pytest.mark.parametrize("bad", ["yes", "Forbid", None, True, ["warn"]])
def test_extra_input_must_be_known(bad: Any) -> None:
    with pytest.raises(DefinitionError) as info:
        Workflow("w", extra_input=bad)
    assert str(info.value) == (
        f"workflow 'w': extra_input must be 'ignore', 'warn' or 'forbid', got {bad!r}"
    )


@pytest.mark.parametrize(
    ("annotation", "value", "error"),
    [
        (int, True, "Value error, true is a boolean, not a number"),
        (float, False, "Value error, false is a boolean, not a number"),
        (int | None, True, "Value error, true is a boolean, not a number"),
        (list[int], [1, True], "1: Value error, true is a boolean, not a number"),
        (dict[str, float], {"a": False}, "a: Value error, false is a boolean, not a number"),
        (tuple[int, ...], [True], "0: Value error, true is a boolean, not a number"),
        (bool, 1, "Value error, 1 is a number, not a boolean"),
        (bool, 0.0, "Value error, 0.0 is a number, not a boolean"),
    ],
)
def test_booleans_are_not_numbers_nor_numbers_booleans(
    annotation: Any, value: Any, error: str
) -> None:
    wf = Workflow("typed")
    wf.add_step("s", _step_taking(annotation))
    with pytest.raises(InputError) as info:
        wf.validate_input({"n": value})
    assert str(info.value) == f"run input field 'n' (step 's') is invalid: {error}"


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (int, "42", 42),  # pydantic's lax mode, kept: a numeric string is a number
        (int, 4.0, 4),
        (float, 3, 3.0),
        (bool, "yes", True),
        (bool, True, True),
        (int | bool, True, True),  # a union that takes booleans takes them
        (list[int], [1, 2], [1, 2]),
    ],
)
def test_other_lax_conversions_are_kept(annotation: Any, value: Any, expected: Any) -> None:
    wf = Workflow("typed")
    wf.add_step("s", _step_taking(annotation))
    wf.validate_input({"n": value})
    got = wf["s"].build_kwargs(ctx_for(), {"n": value}, {})["n"]
    assert got == expected and type(got) is type(expected)


def _step_taking(annotation: Any) -> Any:
    def s(n: Any) -> None: ...

    s.__annotations__ = {"n": annotation, "return": None}
    return s


def test_build_kwargs_decodes_models() -> None:
    wf = Workflow("typed")

    @wf.step
    def make() -> dict[str, Any]:
        return {}

    @wf.step
    def use(make: Order, order: Order, raw: Any) -> None: ...

    wf.plan()
    kwargs = wf["use"].build_kwargs(
        ctx_for(), {"order": {"id": "5"}, "raw": {"id": 1}}, {"make": {"id": 2, "total": 1.5}}
    )
    assert kwargs["make"] == Order(id=2, total=1.5)
    assert kwargs["order"] == Order(id=5)
    assert kwargs["raw"] == {"id": 1}
    assert (
        wf["use"].build_kwargs(ctx_for(), {"order": {"id": 1}, "raw": 0}, {"make": None})["make"]
        is None
    )  # a default of None for a failed dependency is passed as is
    with pytest.raises(pydantic.ValidationError):
        wf["use"].build_kwargs(ctx_for(), {"order": {"id": 1}, "raw": 0}, {"make": {"x": 1}})


# -- fingerprint ------------------------------------------------------------------------------


def make_workflow(
    version: str = "1",
    after: tuple[str, ...] = (),
    retry: Retry | None = None,
    timeout: float | None = None,
    optional: bool = False,
    second: Any = None,
    code_changes: str = "deploy",
) -> Workflow:
    wf = Workflow("fp", version=version, code_changes=code_changes)

    def first() -> int:
        return 1

    def other(first: int) -> int:
        return first

    wf.step(first)
    wf.add_step("zero", noop)
    wf.add_step(
        "other", second or other, after=after, retry=retry, timeout=timeout, optional=optional
    )
    return wf


def other_body(first: int) -> int:
    return first + 1


def test_fingerprint_is_stable() -> None:
    a, b = make_workflow(), make_workflow()
    assert a.fingerprint == b.fingerprint
    assert re.fullmatch(r"[0-9a-f]{16}", a.fingerprint)
    assert a.plan().fingerprint == a.fingerprint


@pytest.mark.parametrize(
    "change",
    [
        {"version": "2"},
        {"after": ("zero",)},
        {"retry": Retry(attempts=2)},
        {"timeout": 5.0},
        {"optional": True},
        {"second": other_body, "code_changes": "pin"},
        {"code_changes": "pin"},
    ],
    ids=lambda c: "-".join(c),
)
def test_fingerprint_changes(change: dict[str, Any]) -> None:
    assert make_workflow(**change).fingerprint != make_workflow().fingerprint


def test_a_change_of_code_alone_keeps_the_version_and_changes_the_step_s_digest() -> None:
    before, after = make_workflow(), make_workflow(second=other_body)
    assert after.fingerprint == before.fingerprint  # code_changes="deploy", the default
    assert after.code_of("other") != before.code_of("other")
    assert after.code_of("first") == before.code_of("first")
    assert after.plan().steps[2].code == after.code_of("other")
    # the pinned fingerprint (runs started before migration 12 carry it) follows the code
    assert after.pinned_fingerprint != before.pinned_fingerprint
    assert after.fingerprints == (after.fingerprint, after.pinned_fingerprint)
    pinned = make_workflow(code_changes="pin")
    assert pinned.fingerprints == (pinned.fingerprint,) == (before.pinned_fingerprint,)


def test_code_changes_must_be_deploy_or_pin() -> None:
    with pytest.raises(
        DefinitionError, match="code_changes must be 'deploy' or 'pin', got 'pinned'"
    ):
        Workflow("fp", code_changes="pinned")


def test_fingerprint_follows_changes_after_planning() -> None:
    wf = make_workflow()
    before = wf.fingerprint
    wf.add_step("late", noop)
    assert wf.fingerprint != before


def test_when_conditions_bind_like_steps_and_are_checked() -> None:
    wf = plait.Workflow("conditions")

    @wf.step
    def a() -> int:
        return 1

    @wf.step(when=lambda a, mode="fast": a > 0 and mode == "fast")
    def b() -> int:
        return 2

    wf.plan()
    assert wf["b"].data_deps == ("a",)  # b now waits for a, whose output its condition reads
    assert wf["b"].when_params == ("a", "mode")
    assert [(f.name, f.required) for f in wf["b"].when_inputs] == [("mode", False)]
    assert wf["b"].inputs == ()  # the handler itself takes no input field
    assert wf["b"].condition_holds({}, {"a": 1}) is True
    assert wf["b"].condition_holds({"mode": "slow"}, {"a": 1}) is False

    other = plait.Workflow("conditions")
    other.add_step("a", a)
    other.add_step("b", b, when=lambda a, mode="fast": a > 1)
    # the condition's code is part of the step's code, not of the graph
    assert other.fingerprint == wf.fingerprint
    assert other.code_of("b") != wf.code_of("b")
    assert other.pinned_fingerprint != wf.pinned_fingerprint

    with pytest.raises(plait.DefinitionError, match="when must be a callable"):
        plait.Workflow("w").add_step("x", a, when=True)
    own = plait.Workflow("w")
    own.add_step("x", a, when=lambda x: True)
    with pytest.raises(plait.DefinitionError, match="when= cannot read the step's own output"):
        own.plan()
    star = plait.Workflow("w")
    star.add_step("x", a, when=lambda **kw: True)
    with pytest.raises(plait.DefinitionError, match="when= takes named parameters only"):
        star.plan()


# -- waiting: delays, approvals, signals --------------------------------------------------------


def test_delay_and_approval_become_the_steps_stored_options() -> None:
    wf = Workflow("gates")
    wf.add_step("a", noop, delay=dt.timedelta(minutes=2))
    wf.add_step("b", noop, ["a"], approval=True)
    wf.add_step("c", noop, approval=plait.Approval(expires_after=60, on_expiry="approve"))
    wf.signal("paid", after=["a"], optional=True)
    steps = {s.name: s for s in wf.plan().steps}

    assert steps["a"].options == StepOptions(delay=120.0)
    assert steps["b"].options == StepOptions(gate=Gate.APPROVAL)
    assert steps["c"].options == StepOptions(
        gate=Gate.APPROVAL, expires_after=60.0, on_expiry=OnExpiry.APPROVE
    )
    assert steps["paid"].options == StepOptions(gate=Gate.SIGNAL)
    assert steps["paid"].dependencies == (("a", EdgeKind.AFTER),) and steps["paid"].optional
    assert wf["paid"].is_signal and not wf["b"].is_signal


def test_gates_change_the_fingerprint() -> None:
    def build(**options: Any) -> str:
        wf = Workflow("fp")
        wf.add_step("a", noop, **options)
        return wf.fingerprint

    prints = {build(), build(delay=1), build(delay=2), build(approval=True)}
    prints.add(build(approval=plait.Approval(expires_after=5)))
    assert len(prints) == 5


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"delay": 0}, "delay must be a positive number of seconds or a timedelta, got 0"),
        ({"delay": "5"}, "delay must be a positive number of seconds or a timedelta, got '5'"),
        ({"approval": "yes"}, "approval must be True or a plait.Approval(...), got 'yes'"),
        (
            {"approval": plait.Approval(on_expiry="maybe")},
            "on_expiry must be 'reject' or 'approve', got 'maybe'",
        ),
        (
            {"approval": plait.Approval(expires_after=-1)},
            "expires_after must be a positive number of seconds or a timedelta, got -1",
        ),
    ],
)
def test_bad_gate_options(options: dict[str, Any], fragment: str) -> None:
    wf = Workflow("bad")
    with raises(DefinitionError, "workflow 'bad', step 'a'", fragment):
        wf.add_step("a", noop, **options)
    assert "a" not in wf


def test_a_signal_name_is_a_step_name() -> None:
    wf = Workflow("sig")
    wf.add_step("a", noop)
    with raises(DefinitionError, "step 'a'", "duplicate step name"):
        wf.signal("a")
    with raises(DefinitionError, "invalid step name 'no way'"):
        wf.signal("no way")


# -- tasks (spawned by steps) --------------------------------------------------------------------


def test_task_registers_with_and_without_parentheses_and_returns_the_function() -> None:
    wf = plait.Workflow("tasks")

    @wf.task
    def plain(x: int) -> int:
        return x

    @wf.task(name="renamed", optional=True, priority=3, timeout=2)
    def other(ctx: plait.StepContext) -> None:
        return None

    @wf.step
    def root() -> None:
        return None

    assert plain(2) == 2  # still the plain function
    assert wf.task_of(plain) is wf.task_of("plain")
    task = wf.task_of("renamed")
    assert task is not None and task is wf.task_of(other)
    assert (task.optional, task.priority, task.timeout, task.ctx_param) == (True, 3, 2.0, "ctx")
    assert task.task_input is None
    assert wf.task_of(root) is None and wf.task_of(len) is None


def test_tasks_are_part_of_the_fingerprint_only_when_there_are_some() -> None:
    def build(with_task: bool, body: int = 1) -> plait.Workflow:
        wf = plait.Workflow("fp")

        @wf.step
        def only() -> int:
            return 1

        if with_task:
            wf.task(name="t")(lambda x: x + body)
        return wf

    assert build(False).fingerprint == build(False).fingerprint
    assert build(True).fingerprint != build(False).fingerprint
    wf = build(False)
    before = wf.fingerprint
    wf.task(name="late")(lambda x: x)  # registering a task changes the version
    assert wf.fingerprint != before


@pytest.mark.parametrize(
    ("register", "message"),
    [
        (
            lambda wf: wf.task(lambda a, b: a),
            "invalid task name '<lambda>': use 1-128 ASCII letters, digits, '_', '-' or '.'",
        ),
        (
            lambda wf: wf.task(name="t", when=lambda: True)(lambda a: a),
            "workflow 'bad', task 't': unknown option(s) ['when']; known: "
            "['optional', 'priority', 'queue', 'retry', 'target', 'timeout']",
        ),
        (
            lambda wf: wf.task(name="t", retry=3)(lambda a: a),
            "workflow 'bad', task 't': retry must be a plait.Retry, got 3",
        ),
        (
            lambda wf: wf.task(name="t")(lambda *items: items),
            "workflow 'bad', task 't': parameter 'items' must be passable by keyword",
        ),
        (
            lambda wf: wf.task(name="a/b")(lambda x: x),
            "invalid task name 'a/b'",
        ),
        (
            lambda wf: [wf.task(name="t")(lambda x: x), wf.task(name="t")(lambda y: y)],
            "workflow 'bad', task 't': duplicate task name",
        ),
    ],
    ids=["lambda-name", "unknown-option", "bad-retry", "varargs", "name", "dup"],
)
def test_bad_tasks_are_definition_errors(register: Any, message: str) -> None:
    wf = plait.Workflow("bad")
    with pytest.raises(plait.DefinitionError) as raised:
        register(wf)
    assert message in str(raised.value)


def test_fail_fast_is_a_flag_marked_on_every_step_row_and_fingerprinted() -> None:
    def build(**options: Any) -> Workflow:
        wf = Workflow("ff", **options)
        wf.add_step("a", lambda: 1)
        wf.add_step("b", lambda: 2, approval=True)
        return wf

    plain, fast = build(), build(fail_fast=True)
    assert all(s.options is None or not s.options.fail_fast for s in plain.plan().steps)
    assert all(s.options is not None and s.options.fail_fast for s in fast.plan().steps)
    assert fast.plan().steps[1].options.gate is not None  # type: ignore[union-attr]
    assert plain.plan().fingerprint != fast.plan().fingerprint
    with pytest.raises(DefinitionError) as err:
        build(fail_fast="yes")
    assert str(err.value) == "workflow 'ff': fail_fast must be True or False, got 'yes'"
