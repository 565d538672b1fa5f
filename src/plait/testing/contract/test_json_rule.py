"""plait's JSON rule (`_codec.py`, README "Python values and JSON") wherever a value is stored:
step outputs, run input, signals, records, fork overrides, spawned steps' input, schedules' input.
A value without a JSON form is refused, naming its type and its path inside the value; nothing
is converted silently and nothing is half written."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def serve(engine: plait.Engine, *handles: plait.RunHandle) -> None:
    engine.run_worker(until=list(handles), timeout=30)


def failure(engine: plait.Engine, run: plait.RunHandle, step: str) -> tuple[str, str, int]:
    found = {s.name: s for s in engine.steps(run.id)}[step]
    assert found.error is not None, found
    return found.error.code, found.error.message, found.attempts


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (
            {"items": [{"price": 1.0}, {"price": math.nan}]},
            "step 'bad' returned a value that is not JSON: float nan at /items/1/price: "
            "JSON has no NaN or infinity",
        ),
        (math.inf, "step 'bad' returned a value that is not JSON: float inf: JSON has no NaN"),
        (
            {"by_id": {1: "a"}},
            "step 'bad' returned a value that is not JSON: dict key 1 (int) at /by_id: "
            "JSON object keys must be str",
        ),
        (
            {"tags": {"a", 1}},
            "step 'bad' returned a value that is not JSON: set at /tags: a set becomes a "
            "sorted array, so its items must be all str or all numbers",
        ),
        (
            [b"raw"],
            "step 'bad' returned a value that is not JSON: type bytes at /0: not JSON "
            "serializable: decode them to str",
        ),
    ],
)
def test_an_output_without_a_json_form_fails_the_step_naming_where(
    engine: plait.Engine, output: Any, message: str
) -> None:
    wf = plait.Workflow("unjson", retry=plait.Retry(attempts=3, delay=0))

    @wf.step
    def bad() -> Any:
        return output

    run = engine.start(wf)
    serve(engine, run)
    code, got, attempts = failure(engine, run, "bad")
    assert (code, attempts) == ("unserializable_output", 1)  # never retried: it would not help
    assert got.startswith(message), got


def test_outputs_are_converted_by_the_documented_rule(engine: plait.Engine) -> None:
    wf = plait.Workflow("converted")

    @wf.step
    def make() -> Any:
        return {
            "tags": {"pear", "apple", "fig"},
            "pair": (1, 2),
            "price": Decimal("1.10"),
            "at": dt.date(2026, 1, 2),
        }

    @wf.step
    def use(make: dict[str, Any]) -> Any:
        return make

    @wf.step
    def typed(make: dict[str, Any], at: dt.date | None = None) -> Any:
        return {"tags": set(make["tags"]) == {"apple", "fig", "pear"}}

    run = engine.start(wf)
    serve(engine, run)
    expected = {
        "tags": ["apple", "fig", "pear"],
        "pair": [1, 2],
        "price": "1.10",
        "at": "2026-01-02",
    }
    assert run.result(timeout=5) == {"use": expected, "typed": {"tags": True}}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"n": math.nan},
            "run input of 'typed' is not JSON: float nan at /n: JSON has no NaN or infinity",
        ),
        (
            {"n": 1, "extra": {"deep": [math.inf]}},
            "run input of 'typed' is not JSON: float inf at /extra/deep/0: JSON has no NaN",
        ),
        (
            {"n": 1, "when": dt.timedelta(seconds=1)},
            "run input of 'typed' is not JSON: type timedelta at /when: not JSON serializable",
        ),
    ],
)
def test_start_refuses_input_without_a_json_form_and_writes_nothing(
    engine: plait.Engine, value: Any, message: str
) -> None:
    wf = plait.Workflow("typed")

    @wf.step
    def s(n: int) -> int:
        return n

    with pytest.raises(plait.InputError) as info:
        engine.start(wf, value)
    assert str(info.value).startswith(message), str(info.value)
    assert engine.list_runs().runs == []
    engine.register(wf)
    with pytest.raises(plait.InputError) as info:
        engine.start("typed", value)  # by name: the same rule
    assert str(info.value).startswith(message), str(info.value)
    assert engine.list_runs().runs == []


def test_start_validates_the_input_the_steps_will_get(engine: plait.Engine) -> None:
    """A set becomes a sorted list, a datetime an ISO string: start checks those, as decoded."""
    wf = plait.Workflow("decoded")

    @wf.step
    def s(names: list[str], at: dt.datetime) -> Any:
        return {"names": names, "at": at.isoformat()}

    when = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    run = engine.start(wf, {"names": {"b", "a"}, "at": when})
    assert engine.get_run(run.id).input == {"names": ["a", "b"], "at": "2026-01-02T03:04:00+00:00"}
    serve(engine, run)
    assert run.result(timeout=5) == {"s": {"names": ["a", "b"], "at": "2026-01-02T03:04:00+00:00"}}


def test_signal_payload_without_a_json_form_is_refused(engine: plait.Engine) -> None:
    wf = plait.Workflow("signalled")
    wf.signal("payment")

    @wf.step
    def ship(payment: dict[str, Any]) -> Any:
        return payment

    run = engine.start(wf)
    with pytest.raises(plait.InputError) as info:
        engine.signal(run.id, "payment", {"amount": math.nan})
    assert str(info.value) == (
        "signal payload for 'payment' is not JSON: float nan at /amount: "
        "JSON has no NaN or infinity"
    )
    assert engine.signal(run.id, "payment", {"amount": 30}) is True  # the refusal kept nothing
    serve(engine, run)
    assert run.result(timeout=5) == {"ship": {"amount": 30}}


def test_record_without_a_json_form_is_refused(engine: plait.Engine) -> None:
    docs = engine.records("prices")
    with pytest.raises(plait.InputError) as info:
        docs.put("p1", {"price": -math.inf})
    assert str(info.value) == (
        "record 'p1' of collection 'prices': the document is not JSON: float -inf at /price: "
        "JSON has no NaN or infinity"
    )
    assert docs.get("p1") is None
    docs.put("p1", {"tags": {"b", "a"}})
    assert docs.get("p1") == ({"tags": ["a", "b"]}, 1)


def test_a_step_recording_a_nan_fails_and_records_nothing(engine: plait.Engine) -> None:
    wf = plait.Workflow("recorder")

    @wf.step
    def write(ctx: plait.StepContext) -> None:
        ctx.record("prices", "p1", {"price": math.nan})

    run = engine.start(wf)
    serve(engine, run)
    code, message, _ = failure(engine, run, "write")
    assert code == "InputError"
    assert message == (
        "record 'p1' of collection 'prices': the document is not JSON: float nan at /price: "
        "JSON has no NaN or infinity"
    )
    assert engine.records("prices").get("p1") is None


def test_fork_override_without_a_json_form_is_refused(engine: plait.Engine) -> None:
    wf = plait.Workflow("forked")

    @wf.step
    def price() -> float:
        return 1.5

    @wf.step
    def total(price: float) -> float:
        return price * 2

    run = engine.start(wf, run_id="p1")
    serve(engine, run)
    with pytest.raises(plait.InputError) as info:
        engine.fork("p1", "total", overrides={"price": math.nan})
    assert str(info.value) == (
        "override of step 'price' is not JSON: float nan: JSON has no NaN or infinity"
    )
    with pytest.raises(plait.InputError) as info:
        engine.fork("p1", "total", input={"x": [math.inf]})
    assert str(info.value).startswith("run input of 'forked' is not JSON: float inf at /x/0")
    assert [r.id for r in engine.list_runs().runs] == ["p1"]


def test_spawn_input_without_a_json_form_fails_the_step(engine: plait.Engine) -> None:
    wf = plait.Workflow("spawner")

    @wf.task
    def child(x: Any) -> Any:
        return x

    @wf.step
    def parent(ctx: plait.StepContext) -> Any:
        return ctx.map(child, [1.0, {"v": math.nan}])

    run = engine.start(wf)
    serve(engine, run)
    code, message, _ = failure(engine, run, "parent")
    assert code == "invalid_spawn"
    assert message == (
        "ctx.spawn('child') in step 'parent': input is not JSON: float nan at /v: "
        "JSON has no NaN or infinity"
    )
    assert [s.name for s in engine.steps(run.id)] == ["parent"]  # nothing was spawned


def test_schedule_input_without_a_json_form_is_refused(engine: plait.Engine) -> None:
    wf = plait.Workflow("scheduled")

    @wf.step
    def s(x: Any = None) -> Any:
        return x

    with pytest.raises(plait.InputError) as info:
        engine.schedule("nightly", wf, cron="@daily", input={"x": math.nan})
    assert str(info.value) == (
        "run input of 'scheduled' is not JSON: float nan at /x: JSON has no NaN or infinity"
    )
    assert engine.schedules() == []
    engine.register(wf)
    stored = engine.schedule("weekly", "scheduled", cron="@weekly", input={"x": {"b", "a"}})
    assert stored.input == {"x": ["a", "b"]}
    assert engine.schedules()[0].input == {"x": ["a", "b"]}
