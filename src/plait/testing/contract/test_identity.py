"""A run's identity beside its id, on every store: name, labels and metadata given at start,
lists filtered by labels, `RunHandle.created`, and a start of an existing id with another input
refused (`if_exists`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import plait
from plait.testing.contract.conftest import Backend


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def orders() -> plait.Workflow:
    wf = plait.Workflow("orders")

    @wf.step
    def total(order: int) -> int:
        return order * 2

    return wf


def ids(page: plait.RunPage) -> list[str]:
    return sorted(r.id for r in page.runs)


def test_a_run_keeps_its_name_labels_and_metadata(engine: plait.Engine) -> None:
    wf = orders()
    handle = engine.start(
        wf, {"order": 1}, run_id="o-1", name="order one",
        labels={"customer": "42", "tier": "gold"}, metadata={"by": "ann", "n": [1, 2]},
    )  # fmt: skip
    assert handle.created is True
    run = engine.get_run("o-1")
    assert (run.name, run.labels, run.metadata) == (
        "order one", {"customer": "42", "tier": "gold"}, {"by": "ann", "n": [1, 2]},
    )  # fmt: skip
    [listed] = engine.list_runs().runs
    assert (listed.name, listed.labels, listed.metadata) == (run.name, run.labels, run.metadata)
    plain = engine.start(wf, {"order": 2}, run_id="o-2")
    run = engine.get_run(plain.id)
    assert (run.name, run.labels, run.metadata) == (None, {}, {})


def test_durable_stores_keep_identity_across_reopening(
    durable_backend: Backend, tmp_path: Path
) -> None:
    url = durable_backend.url(tmp_path)
    with plait.Engine(url) as engine:
        engine.start(orders(), {"order": 1}, run_id="o-1", name="n", labels={"k": "v"})
    with plait.Engine(url) as engine:
        run = engine.get_run("o-1")
        assert (run.name, run.labels) == ("n", {"k": "v"})
        assert ids(engine.list_runs(labels={"k": "v"})) == ["o-1"]


def test_lists_filter_by_labels_every_one_matching(engine: plait.Engine) -> None:
    wf = orders()
    engine.start(wf, {"order": 1}, run_id="a", labels={"customer": "42", "tier": "gold"})
    engine.start(wf, {"order": 2}, run_id="b", labels={"customer": "42"})
    engine.start(wf, {"order": 3}, run_id="c", labels={"customer": "7", "tier": "gold"})
    engine.start(wf, {"order": 4}, run_id="d")
    assert ids(engine.list_runs(labels={"customer": "42"})) == ["a", "b"]
    assert ids(engine.list_runs(labels={"tier": "gold"})) == ["a", "c"]
    assert ids(engine.list_runs(labels={"customer": "42", "tier": "gold"})) == ["a"]
    assert ids(engine.list_runs(labels={"customer": "42", "tier": "silver"})) == []
    assert ids(engine.list_runs(labels={"customer": "4"})) == []  # values match whole
    assert ids(engine.list_runs(labels={})) == ["a", "b", "c", "d"]
    assert ids(engine.list_runs(labels={"customer": "42"}, workflow="orders")) == ["a", "b"]
    assert ids(engine.list_runs(labels={"customer": "42"}, workflow="other")) == []
    assert ids(engine.list_runs(labels={"customer": "42"}, status="pending")) == ["a", "b"]
    assert engine.count_runs(plait.RunFilter(labels={"tier": "gold"})) == 2
    assert engine.count_runs(plait.RunFilter(labels={"customer": "42", "tier": "gold"})) == 1
    # pages of a filtered list
    first = engine.list_runs(labels={"tier": "gold"}, limit=1)
    assert len(first.runs) == 1 and first.next_cursor is not None
    second = engine.list_runs(labels={"tier": "gold"}, limit=1, cursor=first.next_cursor)
    assert {first.runs[0].id, second.runs[0].id} == {"a", "c"}
    assert second.next_cursor is None


def test_text_finds_a_run_by_its_name(engine: plait.Engine) -> None:
    engine.start(orders(), {"order": 1}, run_id="a", name="Nightly Import")
    engine.start(orders(), {"order": 2}, run_id="b")
    assert ids(engine.list_runs(text="nightly")) == ["a"]


def test_a_deleted_run_leaves_no_labels(engine: plait.Engine) -> None:
    handle = engine.start(orders(), {"order": 1}, run_id="a", labels={"customer": "42"})
    engine.run_worker(until=handle)
    assert handle.result(timeout=10) == {"total": 2}
    engine.delete_run("a")
    assert ids(engine.list_runs(labels={"customer": "42"})) == []
    again = engine.start(orders(), {"order": 5}, run_id="a", labels={"customer": "42"})
    assert again.created is True
    assert ids(engine.list_runs(labels={"customer": "42"})) == ["a"]


def test_a_fork_keeps_its_parents_identity(engine: plait.Engine) -> None:
    handle = engine.start(
        orders(), {"order": 1}, run_id="a", name="n", labels={"customer": "42"}, metadata={"m": 1}
    )
    engine.run_worker(until=handle)
    handle.result(timeout=10)
    forked = engine.fork("a", "total", new_run_id="a2")
    run = engine.get_run(forked.id)
    assert (run.name, run.labels, run.metadata) == ("n", {"customer": "42"}, {"m": 1})
    assert ids(engine.list_runs(labels={"customer": "42"})) == ["a", "a2"]


# -- starting an id that exists -------------------------------------------------------------------


def test_an_existing_id_with_the_same_input_is_that_run(engine: plait.Engine) -> None:
    wf = plait.Workflow("pair")

    @wf.step
    def both(a: int, b: int) -> int:
        return a + b

    first = engine.start(wf, {"a": 1, "b": 2}, run_id="p", labels={"x": "1"})
    again = engine.start(wf, {"b": 2, "a": 1}, run_id="p", labels={"x": "2"})  # same value
    assert (first.created, again.created, again.id) == (True, False, "p")
    assert engine.get_run("p").labels == {"x": "1"}  # the run as it was started
    assert engine.count_runs() == 1


def test_a_big_input_kept_as_a_blob_is_compared_whole(store_url: str) -> None:
    wf = plait.Workflow("big")

    @wf.step
    def size(text: str) -> int:
        return len(text)

    url = f"{store_url}{'&' if '?' in store_url else '?'}blob_threshold=100"
    with plait.Engine(url) as engine:
        first = engine.start(wf, {"text": "x" * 1000}, run_id="big")
        again = engine.start(wf, {"text": "x" * 1000}, run_id="big")
        assert (first.created, again.created) == (True, False)
        with pytest.raises(plait.RunConflict, match="with a different input"):
            engine.start(wf, {"text": "y" * 1000}, run_id="big")
        [handle] = engine.start_many(wf, [{"text": "x" * 1000}], run_ids=["big"])
        assert handle.created is False


def test_an_existing_id_with_another_input_is_refused(engine: plait.Engine) -> None:
    wf = orders()
    engine.start(wf, {"order": 1}, run_id="o-1")
    with pytest.raises(plait.RunConflict) as caught:
        engine.start(wf, {"order": 2}, run_id="o-1")
    assert str(caught.value) == (
        "run id 'o-1' is already a run of workflow 'orders' with a different input; choose "
        "another run id, or pass if_exists='return' to get that run as it is"
    )
    assert caught.value.run_id == "o-1"
    assert engine.get_run("o-1").input == {"order": 1}
    returned = engine.start(wf, {"order": 2}, run_id="o-1", if_exists="return")
    assert (returned.id, returned.created) == ("o-1", False)
    assert engine.get_run("o-1").input == {"order": 1}
    assert engine.count_runs() == 1


def test_another_workflow_is_refused_even_with_if_exists_return(engine: plait.Engine) -> None:
    engine.start(orders(), {"order": 1}, run_id="o-1")
    other = plait.Workflow("other")
    other.add_step("s", lambda: 1)
    with pytest.raises(plait.RunConflict, match="already used by a run of workflow 'orders'"):
        engine.start(other, run_id="o-1", if_exists="return")


def test_start_many_gives_identity_and_created(engine: plait.Engine) -> None:
    wf = orders()
    engine.start(wf, {"order": 1}, run_id="m-0")
    handles = engine.start_many(
        wf, [{"order": 1}, {"order": 2}], run_ids=["m-0", "m-1"], name="batch",
        labels={"batch": "7"}, metadata={"source": "csv"},
    )  # fmt: skip
    assert [(h.id, h.created) for h in handles] == [("m-0", False), ("m-1", True)]
    run = engine.get_run("m-1")
    assert (run.name, run.labels, run.metadata) == ("batch", {"batch": "7"}, {"source": "csv"})
    assert ids(engine.list_runs(labels={"batch": "7"})) == ["m-1"]  # m-0 was started before


def test_start_many_refuses_another_input_before_writing(engine: plait.Engine) -> None:
    wf = orders()
    engine.start(wf, {"order": 1}, run_id="m-0")
    with pytest.raises(plait.RunConflict) as caught:
        engine.start_many(wf, [{"order": 5}, {"order": 2}], run_ids=["m-new", "m-0"])
    assert str(caught.value) == (
        "inputs[1]: run id 'm-0' is already a run of workflow 'orders' with a different input; "
        "choose another run id, or pass if_exists='return' to get that run as it is; no run "
        "was started"
    )
    assert (caught.value.index, caught.value.run_id) == (1, "m-0")
    assert engine.count_runs() == 1
    with pytest.raises(plait.RunConflict) as twice:
        engine.start_many(wf, [{"order": 5}, {"order": 6}], run_ids=["m-2", "m-2"])
    assert str(twice.value) == (
        "inputs[1]: run id 'm-2' is also inputs[0]'s, with a different input; choose another "
        "run id, or pass if_exists='return' to start the first only; no run was started"
    )
    assert engine.count_runs() == 1
    handles = engine.start_many(
        wf, [{"order": 5}, {"order": 2}], run_ids=["m-new", "m-0"], if_exists="return"
    )
    assert [h.created for h in handles] == [True, False]
    assert engine.get_run("m-0").input == {"order": 1}


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"labels": {"customer": 42}},
            "start: label 'customer' must be a string, got int 42 (labels are strings: write '42')",
        ),
        ({"labels": {7: "x"}}, "start: label keys must be strings, got int 7"),
        (
            {"labels": ["customer=42"]},
            "start: labels must be a dict of strings to strings, got list",
        ),
        (
            {"labels": {"a b": "x"}},
            "start: invalid label key 'a b': use 1-63 ASCII letters, digits or any of _ . - /",
        ),
        ({"labels": {"k" * 64: "x"}}, "start: invalid label key 'kkkk"),
        ({"labels": {"k": "v" * 201}}, "start: label 'k' is 201 characters long; at most 200"),
        ({"labels": {f"k{i}": "v" for i in range(33)}}, "start: at most 32 labels, got 33"),
        ({"name": 5}, "start: name must be a string, got int 5"),
        ({"name": " "}, "start: name must be 1-200 characters, not blank, got 1"),
        ({"name": "n" * 201}, "start: name must be 1-200 characters, not blank, got 201"),
        ({"metadata": [1]}, "start: metadata must be a dict (a JSON object), got list"),
        ({"metadata": {"x": object()}}, "start: metadata is not JSON"),
        (
            {"metadata": {"x": "y" * 20_000}},
            "start: metadata is 20008 bytes of JSON; at most 16384 (keep large data in the run "
            "input or an artifact)",
        ),
        (
            {"if_exists": "replace"},
            "start: if_exists must be one of 'check', 'return', got 'replace'",
        ),
    ],
)
def test_bad_identity_is_refused_and_writes_nothing(
    engine: plait.Engine, options: dict[str, object], message: str
) -> None:
    with pytest.raises(plait.InputError) as caught:
        engine.start(orders(), {"order": 1}, run_id="bad", **options)  # type: ignore[arg-type]  # bad on purpose
    assert str(caught.value).startswith(message)
    with pytest.raises(plait.InputError) as many:
        engine.start_many(orders(), [{"order": 1}], **options)  # type: ignore[arg-type]  # bad on purpose
    assert str(many.value).startswith(message.replace("start:", "start_many:"))
    assert engine.count_runs() == 0


def test_a_bad_label_filter_is_refused(engine: plait.Engine) -> None:
    with pytest.raises(
        plait.InputError, match=r"^list_runs: label 'k' must be a string, got int 1"
    ):
        engine.list_runs(labels={"k": 1})  # type: ignore[dict-item]  # bad on purpose
    with pytest.raises(plait.InputError, match=r"^list_runs: invalid label key ''"):
        engine.count_runs(plait.RunFilter(labels={"": "x"}))
