"""Workflow-state documents on every store (`engine.states`): create, get, transition,
increment_iteration up to max_iterations, complete, fail, delete, list by phase; every change
compare-and-set on the revision, none lost to a concurrent writer, none after the end."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def race(make: Callable[[int], Coroutine[Any, Any, Any]], n: int = 5) -> list[Any]:
    """Run make(i) for n × 2 values of i, n at a time on each of two threads' own loops, so
    that the calls really race in the store; their results, or the exceptions they raised."""
    outcomes: list[Any] = []

    def in_thread(base: int) -> None:
        async def all_of() -> list[Any]:
            return await asyncio.gather(*(make(base + i) for i in range(n)), return_exceptions=True)

        outcomes.extend(asyncio.run(all_of()))

    threads = [threading.Thread(target=in_thread, args=(t * n,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == 2 * n
    return outcomes


def test_create_and_get_carry_every_field(engine: plait.Engine) -> None:
    orders = engine.states("orders")
    before = datetime.now(UTC)
    created = orders.create("o-1", "received", context={"total": 9}, max_iterations=3)

    assert created.id == "o-1"
    assert created.phase == "received"
    assert (created.iteration, created.max_iterations) == (0, 3)
    assert created.context == {"total": 9}
    assert created.error is None and created.completed_at is None and not created.ended
    assert created.revision == 1
    assert before <= created.created_at == created.updated_at <= datetime.now(UTC)
    assert orders.get("o-1") == created
    assert orders.get("o-2") is None
    # defaults: phase "created", no context, no limit
    plain = orders.create("o-2")
    assert (plain.phase, plain.context, plain.max_iterations) == ("created", {}, None)


def test_a_second_create_is_refused_and_changes_nothing(engine: plait.Engine) -> None:
    orders = engine.states("orders")
    first = orders.create("o-1", "received", context={"n": 1})
    with pytest.raises(plait.RevisionConflict) as caught:
        orders.create("o-1", "other", context={"n": 2})
    assert str(caught.value) == (
        "state 'o-1' of collection 'orders' is at revision 1, but the write expected to create it "
        "(expected_revision=0); nothing was written. Read it again and retry."
    )
    assert orders.get("o-1") == first


def test_transition_moves_the_phase_and_checks_the_revision(engine: plait.Engine) -> None:
    orders = engine.states("orders")
    s = orders.create("o-1", "received", context={"a": 1})
    moved = orders.transition("o-1", "paying", expected_revision=s.revision)
    assert (moved.phase, moved.revision, moved.context) == ("paying", 2, {"a": 1})
    assert moved.updated_at >= s.updated_at and moved.created_at == s.created_at
    with pytest.raises(plait.RevisionConflict) as caught:
        orders.transition("o-1", "shipping", expected_revision=1)
    assert str(caught.value) == (
        "state 'o-1' of collection 'orders' is at revision 2, but the write expected revision "
        "1; nothing was written. Read it again and retry."
    )
    assert orders.get("o-1") == moved
    again = orders.transition("o-1", "shipping", context={"b": 2})  # over whatever is there
    assert (again.phase, again.revision, again.context) == ("shipping", 3, {"b": 2})


def test_of_ten_transitions_expecting_one_revision_exactly_one_wins(
    engine: plait.Engine,
) -> None:
    states = engine.states("race")
    states.create("k", "start")

    outcomes = race(lambda i: states.transition_async("k", f"by-{i}", expected_revision=1))

    wins = [o for o in outcomes if isinstance(o, plait.State)]
    conflicts = [o for o in outcomes if isinstance(o, plait.RevisionConflict)]
    assert len(wins) == 1 and len(conflicts) == 9
    final = states.get("k")
    assert final is not None and final.revision == 2 and final.phase == wins[0].phase


def test_concurrent_increments_without_a_revision_lose_none(engine: plait.Engine) -> None:
    states = engine.states("loops")
    states.create("k", "looping")

    outcomes = race(lambda _i: states.increment_iteration_async("k"))

    assert all(isinstance(o, plait.State) for o in outcomes), outcomes
    final = states.get("k")
    assert final is not None and final.iteration == 10 and final.revision == 11
    assert sorted(o.iteration for o in outcomes) == list(range(1, 11))


def test_increment_iteration_refuses_past_max_iterations(engine: plait.Engine) -> None:
    states = engine.states("loops")
    states.create("k", "looping", max_iterations=2)
    assert states.increment_iteration("k").iteration == 1
    last = states.increment_iteration("k", expected_revision=2)
    assert (last.iteration, last.revision) == (2, 3)
    with pytest.raises(plait.StateError) as caught:
        states.increment_iteration("k")
    assert str(caught.value) == (
        "state 'k' of collection 'loops' is at iteration 2 of max_iterations 2: "
        "increment_iteration refused; complete or fail it instead"
    )
    assert states.get("k") == last
    states.create("none", max_iterations=0)
    with pytest.raises(plait.StateError, match="is at iteration 0 of max_iterations 0"):
        states.increment_iteration("none")


def test_complete_and_fail_end_a_document_which_then_refuses_changes(
    engine: plait.Engine,
) -> None:
    states = engine.states("jobs")
    states.create("a", "working")
    done = states.complete("a")
    assert done.phase == "completed" and done.ended and done.error is None
    assert done.completed_at == done.updated_at
    states.create("b", "working")
    failed = states.fail("b", "card declined", expected_revision=1)
    assert (failed.phase, failed.error, failed.ended) == ("failed", "card declined", True)

    assert done.completed_at is not None
    ended_a = (
        f"state 'a' of collection 'jobs' has ended (completed, at {done.completed_at.isoformat()})"
    )
    changes: list[tuple[Callable[[], object], str]] = [
        (lambda: states.transition("a", "again"), "move to phase 'again'"),
        (lambda: states.increment_iteration("a"), "increment its iteration"),
        (lambda: states.complete("a"), "complete"),
        (lambda: states.fail("a", "late"), "fail"),
    ]
    for change, doing in changes:
        with pytest.raises(plait.StateError) as caught:
            change()
        assert str(caught.value) == f"{ended_a}: it cannot {doing}; delete it or create another"
    with pytest.raises(plait.StateError, match=r"has ended \(failed: card declined, at "):
        states.transition("b", "again")
    assert states.get("a") == done and states.get("b") == failed


def test_unknown_ids_are_refused_by_every_change(engine: plait.Engine) -> None:
    states = engine.states("jobs")
    message = (
        "no state 'nope' in collection 'jobs': create it first (engine.states('jobs').create), "
        "or check the id"
    )
    changes: list[Callable[[], object]] = [
        lambda: states.transition("nope", "x"),
        lambda: states.transition("nope", "x", expected_revision=1),
        lambda: states.increment_iteration("nope"),
        lambda: states.complete("nope"),
        lambda: states.fail("nope", "why"),
        lambda: states.delete("nope"),
        lambda: states.delete("nope", expected_revision=2),
    ]
    for change in changes:
        with pytest.raises(plait.StateNotFound) as caught:
            change()
        assert str(caught.value) == message


def test_delete_removes_a_document_and_its_id_can_be_created_again(
    engine: plait.Engine,
) -> None:
    states = engine.states("jobs")
    states.create("a", "working")
    states.transition("a", "more")
    with pytest.raises(plait.RevisionConflict, match="is at revision 2, but the write expected"):
        states.delete("a", expected_revision=1)
    states.delete("a", expected_revision=2)
    assert states.get("a") is None
    with pytest.raises(plait.StateNotFound):
        states.delete("a")
    again = states.create("a", "fresh")
    assert again.iteration == 0 and again.revision == 4  # revisions never repeat
    states.complete("a")
    states.delete("a")  # an ended document can be deleted
    assert states.list().items == []


def test_list_pages_by_id_and_filters_by_phase_and_prefix(engine: plait.Engine) -> None:
    states = engine.states("jobs")
    for i in range(7):
        states.create(f"j-{i}", "even" if i % 2 == 0 else "odd")
    states.create("other", "even")
    states.complete("j-4")

    page = states.list(limit=3)
    assert [s.id for s in page.items] == ["j-0", "j-1", "j-2"] and page.next_after == "j-2"
    rest = states.list(after=page.next_after, limit=10)
    assert [s.id for s in rest.items] == ["j-3", "j-4", "j-5", "j-6", "other"]
    assert rest.next_after is None

    evens = states.list("even", limit=2)
    assert [s.id for s in evens.items] == ["j-0", "j-2"] and evens.next_after == "j-2"
    more = states.list("even", after=evens.next_after, limit=2)
    assert [s.id for s in more.items] == ["j-6", "other"] and more.next_after is None
    assert [s.id for s in states.list("completed").items] == ["j-4"]
    assert [s.id for s in states.list("even", prefix="j-").items] == ["j-0", "j-2", "j-6"]
    assert states.list("nothing").items == []


def test_states_are_apart_from_records_of_the_same_name(engine: plait.Engine) -> None:
    engine.records("orders").put("o-1", {"a": 1})
    engine.states("orders").create("o-1", "received")
    assert engine.records("orders").get("o-1") == ({"a": 1}, 1)
    assert [r.key for r in engine.records("orders").list().items] == ["o-1"]
    with pytest.raises(
        plait.InputError, match=r"collection name 'plait\.states\.orders' is reserved"
    ):
        engine.records("plait.states.orders")


def test_bad_names_phases_and_values_are_refused(engine: plait.Engine) -> None:
    with pytest.raises(plait.InputError) as bad_name:
        engine.states("bad name!")
    assert str(bad_name.value) == (
        "invalid collection name 'bad name!': a collection name is 1-100 letters, digits, '_', "
        "'.' or '-', starting with a letter"
    )
    with pytest.raises(plait.InputError, match=r"collection name 'plait\.x' is reserved"):
        engine.states("plait.x")
    states = engine.states("jobs")
    states.create("a", "working")
    cases: list[tuple[Callable[[], Any], str]] = [
        (
            lambda: states.create("b", "no spaces"),
            "invalid phase 'no spaces': a phase is 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter",
        ),
        (lambda: states.transition("a", ""), "invalid phase '': a phase is 1-100 letters"),
        (lambda: states.list("9lives"), "invalid phase '9lives'"),
        (
            lambda: states.transition("a", "completed"),
            "phase 'completed' ends a state document: use complete(id), which also sets "
            "completed_at",
        ),
        (
            lambda: states.create("b", "failed"),
            "phase 'failed' ends a state document: use fail(id, error), which also sets "
            "completed_at",
        ),
        (
            lambda: states.create("b", max_iterations=-1),
            "max_iterations must be None (no limit) or an integer >= 0, got -1",
        ),
        (
            lambda: states.create("b", context=[1, 2]),  # type: ignore[arg-type]  # on purpose
            "a state's context must be a JSON object (a dict), got list",
        ),
        (
            lambda: states.transition("a", "x", context={"f": object()}),
            "a state's context must be JSON: ",
        ),
        (lambda: states.create(""), "invalid state id '': an id is 1-1024 characters, without NUL"),
        (lambda: states.get(7), "a state id must be a string, got int 7"),  # type: ignore[arg-type]  # on purpose
        (
            lambda: states.transition("a", "x", expected_revision=0),
            "expected_revision=0 means 'create only': use create()",
        ),
        (
            lambda: states.increment_iteration("a", expected_revision=-2),
            "expected_revision must be None (write whatever is there), 0 (create only) or the "
            "revision last read (an integer >= 1), got -2",
        ),
        (
            lambda: states.fail("a", ""),
            "fail() needs an error message (a non-empty string), got ''",
        ),
        (lambda: states.list(limit=0), "limit must be an integer from 1 to 1000, got 0"),
    ]
    for call, message in cases:
        with pytest.raises(plait.InputError) as caught:
            call()
        assert str(caught.value).startswith(message), (str(caught.value), message)
    assert [s.id for s in states.list().items] == ["a"]
    assert states.get("a") is not None and states.get("a").revision == 1  # type: ignore[union-attr]


def test_states_survive_a_new_engine_on_the_same_store(durable_backend: Any, tmp_path: Any) -> None:
    url = durable_backend.url(tmp_path)
    with plait.Engine(url) as first:
        states = first.states("jobs")
        states.create("a", "working", context={"k": [1, 2]}, max_iterations=5)
        states.increment_iteration("a")
        written = states.fail("a", "gave up")
    with plait.Engine(url) as second:
        assert second.states("jobs").get("a") == written
