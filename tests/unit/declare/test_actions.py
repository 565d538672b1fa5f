"""@plait.action: the mistakes it refuses, and what it accepts."""

from __future__ import annotations

from typing import Any

import pytest

import plait
from plait.declare.actions import registered, resolve


def test_an_action_needs_a_name() -> None:
    def charge(amount: float) -> None: ...

    with pytest.raises(plait.DefinitionError) as caught:
        plait.action(charge)  # type: ignore[arg-type]
    assert str(caught.value) == (
        '@plait.action needs the action\'s name: write @plait.action("service.method") above charge'
    )


@pytest.mark.parametrize("name", ["", "orders charge", "orders..charge", ".x", "1x", 5])
def test_an_action_name_is_dotted_identifiers(name: Any) -> None:
    with pytest.raises(plait.DefinitionError) as caught:
        plait.action(name)
    assert str(caught.value) == (
        f"invalid action name {name!r}: use letters, digits, '_' or '-', in parts joined by '.', "
        "as in 'orders.charge'"
    )


def test_a_name_taken_by_another_function_is_refused() -> None:
    @plait.action("test_actions.taken")
    def first() -> None: ...

    def second() -> None: ...

    with pytest.raises(plait.DefinitionError) as caught:
        plait.action("test_actions.taken")(second)
    assert str(caught.value) == (
        "action 'test_actions.taken' is already registered, by "
        f"{__name__}.test_a_name_taken_by_another_function_is_refused.<locals>.first; "
        f"{__name__}.test_a_name_taken_by_another_function_is_refused.<locals>.second "
        "cannot take its name"
    )
    assert registered()["test_actions.taken"].fn is first


def test_the_same_function_again_replaces_it_as_a_reloaded_module_does() -> None:
    def again() -> int:
        return 1

    plait.action("test_actions.again")(again)
    plait.action("test_actions.again")(again)
    assert resolve("test_actions.again").fn is again


def test_parameters_must_be_passable_by_keyword() -> None:
    def positional(a: int, /) -> None: ...

    with pytest.raises(plait.DefinitionError) as caught:
        plait.action("test_actions.positional")(positional)
    assert str(caught.value) == (
        "action 'test_actions.positional': parameter 'a' cannot be passed by keyword; actions "
        "are called with their with: arguments by name"
    )


def test_what_an_action_takes() -> None:
    @plait.action("test_actions.takes")
    def takes(ctx: plait.StepContext, a: int, b: str = "x", **rest: Any) -> dict[str, int]:
        return {}

    action = resolve("test_actions.takes")
    assert list(action.params) == ["a", "b"]
    assert (action.ctx_param, action.accepts_kwargs) == ("ctx", True)
    assert action.problems(["b", "zzz"]) == [
        (None, "action 'test_actions.takes' needs argument 'a' under with:")
    ]  # **rest takes any other name
