"""Session state in the state machine (`core.session`): changes applied to the run's state in
the success transaction, in commit order; a change that cannot apply fails the attempt and
nothing of it is committed."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from plait.core import session
from plait.core.fork import state_at_fork
from plait.core.rows import EventRow, RunStatus, StateChange, StepData, StepStatus
from tests.unit.core.test_transitions import RUN, Rows, step


def change(op: str, key: str, value: object) -> StateChange:
    return StateChange(op, key, orjson.dumps(value))


def data(*changes: StateChange) -> StepData:
    return StepData(state=changes)


def test_parallel_successes_apply_in_commit_order() -> None:
    rows = Rows(step("a"), step("b"))
    ta, tb = rows.claim("a"), rows.claim("b")
    rows.complete(
        "b", tb, output=b"1", data=data(change("append", "l", "b"), change("set", "k", 2))
    )
    rows.complete(
        "a", ta, output=b"1", data=data(change("append", "l", "a"), change("set", "k", 1))
    )
    assert session.decode(rows.run.state) == {"l": ["b", "a"], "k": 1}
    changed = [(e.step, e.payload["op"], e.payload["value"]) for e in rows.events
               if e.type == session.CHANGED]  # fmt: skip
    assert changed == [("b", "append", "b"), ("b", "set", 2), ("a", "append", "a"), ("a", "set", 1)]
    assert rows.run.status is RunStatus.COMPLETED


def test_an_append_onto_a_value_another_step_set_fails_the_attempt() -> None:
    rows = Rows(step("a"), step("b"))
    ta, tb = rows.claim("a"), rows.claim("b")
    rows.complete("a", ta, output=b"1", data=data(change("set", "l", "text")))
    rows.complete(
        "b", tb, output=b"1", data=data(change("set", "x", 1), change("append", "l", 2)),
        conflict_retry_at=9.0,
    )  # fmt: skip
    b = rows.steps["b"]
    assert b.status is StepStatus.READY and b.available_at == 9.0  # retried as a conflict
    assert b.error_code == session.STATE_CONFLICT
    assert b.error_message == (
        "step 'b' appended to session state key 'l', which another step set to a string "
        "before this attempt committed; nothing of this attempt was committed"
    )
    assert session.decode(rows.run.state) == {"l": "text"}  # nothing of b's: not even x


def test_a_state_over_its_limit_fails_the_attempt_for_good() -> None:
    rows = Rows(step("a"))
    token = rows.claim("a")
    big = "x" * session.STATE_LIMIT
    rows.complete("a", token, output=b"1", data=data(change("set", "big", big)),
                  conflict_retry_at=9.0)  # fmt: skip
    a = rows.steps["a"]
    assert a.status is StepStatus.FAILED and a.error_code == session.STATE_TOO_LARGE
    assert (a.error_message or "").startswith(
        f"step 'a' would make the session state of run {RUN!r} {session.STATE_LIMIT + 10} bytes"
    )
    assert rows.run.state is None


def test_a_failed_attempt_sends_no_changes_and_a_late_success_changes_nothing() -> None:
    rows = Rows(step("a"))
    token = rows.claim("a")
    rows.complete("a", "stale", output=b"1", data=data(change("set", "k", 1)))  # fenced off
    assert rows.run.state is None
    rows.complete("a", token, error_code="Boom", error_message="boom")
    assert rows.run.state is None and session.CHANGED not in rows.types()


@given(st.lists(st.tuples(st.sampled_from(["set", "append"]), st.sampled_from("kl"),
                          st.integers(-1000, 1000)), max_size=30))  # fmt: skip
def test_appends_never_lose_and_sets_are_last_writer_wins(ops: list[tuple[str, str, int]]) -> None:
    doc: dict[str, object] = {}
    model: dict[str, object] = {}
    for op, key, value in ops:
        try:
            session.apply(doc, [change(op, key, value)], "s")
        except session.SessionConflict:
            assert op == "append" and not isinstance(model.get(key), list | None)
            continue
        if op == "set":
            model[key] = value
        else:
            held = model.get(key)
            model[key] = [value] if held is None else [*held, value]  # type: ignore[misc]
    assert doc == model


def test_a_fork_replays_the_changes_of_its_reused_steps_only() -> None:
    def ev(seq: int, type_: str, step: str | None, **payload: object) -> EventRow:
        return EventRow(RUN, seq, type_, step, payload, 0.0)

    class Plan:
        reused = {"a": None, "b": None}

    events = [
        ev(1, "run_forked", None, state={"from": "grandparent"}),
        ev(2, session.CHANGED, "a", op="append", key="l", value=1),
        ev(3, session.CHANGED, "c", op="append", key="l", value=2),
        ev(4, session.CHANGED, "b", op="set", key="k", value="b"),
    ]
    state = state_at_fork(events, Plan)  # type: ignore[arg-type]  # only .reused is read
    assert session.decode(state) == {"from": "grandparent", "l": [1], "k": "b"}
    assert state_at_fork([], Plan) is None  # type: ignore[arg-type]
