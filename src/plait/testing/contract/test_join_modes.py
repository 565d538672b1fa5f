"""How a step that spawned steps waits for them (`join=`), on every store: "all" (the default)
ends it when every one has ended; "first" at the first that succeeds, with its output; "any_error"
at the first that fails; `join_timeout` fails it (code `timeout`) if they have not ended in time.
Whatever is unfinished when it ends early is cancelled."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def fan_out(name: str, items: list[str], **options: Any) -> plait.Workflow:
    wf = plait.Workflow(name)

    @wf.task
    def work(ctx: plait.StepContext, item: str) -> str:
        if item == "fail":
            raise plait.Permanent("item failed")
        if item == "slow":  # runs until cancelled (or 20 s: then the test fails on time)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if ctx.cancelled:
                    raise plait.Permanent("stopped")
                time.sleep(0.02)
        return f"did {item}"

    @wf.step(optional=True, **options)  # its failure is what the tests look at
    def spread(ctx: plait.StepContext) -> Any:
        """Each item after the one before it (a failed one skips the rest), but "slow", which
        starts at once."""
        handles: list[Any] = []
        for item in items:
            after = [handles[-1]] if handles and item != "slow" else []
            handles.append(ctx.spawn(work, input=item, after=after))
        return handles

    @wf.step(defaults={"spread": None})
    def after(spread: Any) -> Any:
        return spread

    return wf


def children(engine: plait.Engine, run_id: str) -> dict[str, str]:
    return {s.name: s.status.value for s in engine.steps(run_id) if s.name.startswith("spread/")}


def test_join_first_ends_at_the_first_success_with_its_output(engine: plait.Engine) -> None:
    wf = fan_out("join-first", ["ok", "slow"], join="first")
    handle = engine.start(wf, {})
    began = time.monotonic()
    engine.run_worker(until=handle, timeout=60, concurrency=4)

    assert handle.result(timeout=10) == {"after": "did ok"}
    assert time.monotonic() - began < 8  # the slow item did not hold it
    assert children(engine, handle.id) == {"spread/work-0": "done", "spread/work-1": "cancelled"}
    cancelled = [e for e in engine.events(handle.id) if e.type == "step_cancelled"]
    assert [(e.step, e.payload["reason"]) for e in cancelled] == [
        ("spread/work-1", "its parent 'spread' ended: 'spread/work-0' succeeded first")
    ]


def test_join_first_fails_when_none_succeeds(engine: plait.Engine) -> None:
    wf = fan_out("join-first-none", ["fail", "fail"], join="first")
    handle = engine.start(wf, {})
    engine.run_worker(until=handle, timeout=60)

    assert handle.result(timeout=10) == {"after": None}
    spread = {s.name: s for s in engine.steps(handle.id)}["spread"]
    assert spread.error is not None and spread.error.code == "child_failed"


def test_join_any_error_fails_at_the_first_failure(engine: plait.Engine) -> None:
    wf = fan_out("join-any-error", ["ok", "fail", "slow"], join="any_error")
    handle = engine.start(wf, {})
    began = time.monotonic()
    engine.run_worker(until=handle, timeout=60, concurrency=4)

    assert handle.result(timeout=10) == {"after": None}
    assert time.monotonic() - began < 8
    spread = {s.name: s for s in engine.steps(handle.id)}["spread"]
    assert spread.error is not None
    assert (spread.error.code, spread.error.message) == (
        "child_failed",
        "spawned step 'spread/work-1' failed: item failed",
    )
    assert children(engine, handle.id)["spread/work-2"] == "cancelled"


def test_join_all_waits_for_every_item(engine: plait.Engine) -> None:
    wf = fan_out("join-all", ["ok", "fail", "also"])
    handle = engine.start(wf, {})
    engine.run_worker(until=handle, timeout=60)

    assert children(engine, handle.id) == {
        "spread/work-0": "done",
        "spread/work-1": "failed",
        "spread/work-2": "skipped",  # after the failed one (all: nothing is cancelled)
    }


def test_a_join_timeout_fails_the_step_and_cancels_what_is_left(engine: plait.Engine) -> None:
    wf = fan_out("join-timeout", ["ok", "slow"], join_timeout=1.0)
    handle = engine.start(wf, {})
    began = time.monotonic()
    engine.run_worker(until=handle, timeout=60, concurrency=4)

    assert handle.result(timeout=10) == {"after": None}
    assert time.monotonic() - began < 8
    spread = {s.name: s for s in engine.steps(handle.id)}["spread"]
    assert spread.error is not None
    assert (spread.error.code, spread.error.message) == (
        "timeout",
        "step 'spread': the 1 step(s) it spawned did not end within its join timeout of 1.0s",
    )
    assert children(engine, handle.id) == {"spread/work-0": "done", "spread/work-1": "cancelled"}


def test_a_bad_join_is_refused() -> None:
    wf = plait.Workflow("bad-join")
    with pytest.raises(plait.DefinitionError) as info:
        wf.step(name="a", join="some")(lambda: None)
    assert str(info.value) == (
        "workflow 'bad-join', step 'a': join must be 'all' (end when every spawned step has), "
        "'first' (at the first that succeeds) or 'any_error' (at the first that fails), "
        "got 'some'"
    )
