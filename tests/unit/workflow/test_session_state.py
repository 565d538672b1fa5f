"""`ctx.state` as a step sees it (`plait.SessionState`): reads, its own changes, and the message
of each mistake (raised in the handler, at the call that makes it)."""

from __future__ import annotations

import orjson
import pytest

import plait
from plait.core.rows import StateChange


def test_an_attempt_reads_the_loaded_state_and_its_own_changes() -> None:
    state = plait.SessionState(b'{"n": 1, "l": [1]}', step="s")
    assert state.get("n") == 1 and state.get("missing", 7) == 7
    state.get("l").append(99)  # a copy: the state is not changed behind its back
    state.append("l", 2)
    state.set("n", 2)
    assert state.to_dict() == {"n": 2, "l": [1, 2]}
    assert "n" in state and sorted(state) == ["l", "n"]
    assert state._take() == (
        StateChange("append", "l", orjson.dumps(2)),
        StateChange("set", "n", orjson.dumps(2)),
    )


def test_a_key_is_a_short_string() -> None:
    state = plait.SessionState(step="s")
    with pytest.raises(plait.InputError) as err:
        state.set(3, 1)  # type: ignore[arg-type]  # the mistake under test
    assert (
        str(err.value) == "step 's': a session state key is a string of 1 to 256 characters, got 3"
    )
    with pytest.raises(plait.InputError):
        state.set("", 1)
    with pytest.raises(plait.InputError):
        state.set("k" * 257, 1)


def test_a_value_is_json() -> None:
    state = plait.SessionState(step="s")
    with pytest.raises(plait.InputError) as err:
        state.append("k", object())
    assert str(err.value).startswith(
        "step 's': the value of ctx.state.append('k', ...) is not JSON: "
    )
    assert state._take() == ()


def test_append_needs_a_list() -> None:
    state = plait.SessionState(b'{"k": "text"}', step="s")
    with pytest.raises(plait.InputError) as err:
        state.append("k", 1)
    assert str(err.value) == (
        "step 's': cannot append to session state key 'k': it holds a str, not a list "
        "(set it to a list first)"
    )


def test_a_condition_reads_and_cannot_write() -> None:
    state = plait.SessionState(b'{"k": 1}', step="s", writable=False)
    assert state.get("k") == 1
    with pytest.raises(plait.InputError) as err:
        state.set("k", 2)
    assert str(err.value) == "a when= condition reads the session state; it cannot change it"
