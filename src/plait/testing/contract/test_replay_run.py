"""Whole-run replay through the Engine, on every store (issue 18, item 7): every step's current
code on the input the run recorded for it, in dependency order, writing nothing; OK, DIVERGED
(with the diff), FAILED, reused upstream of `from_step`, and a hook before `break_at`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plait
from plait.testing.contract.conftest import Backend
from plait.testing.contract.test_replay import finished, shop, snapshot


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def results(replay: Any) -> dict[str, str]:
    return {s.step: s.result for s in replay.steps}


def test_unchanged_code_reproduces_every_step_and_writes_nothing(engine: plait.Engine) -> None:
    run_id = finished(engine, shop(), {"n": 2}, "r1")
    before = snapshot(engine, run_id)
    replay = engine.replay_run(run_id, workflow=shop())
    assert [s.step for s in replay.steps] == ["fetch", "total", "label"]  # dependency order
    assert results(replay) == {"fetch": "ok", "total": "ok", "label": "ok"} and replay.ok
    assert replay.steps[2].replay is not None and replay.steps[2].replay.output == "4 EUR"
    assert snapshot(engine, run_id) == before


def test_each_step_runs_on_its_recorded_input(engine: plait.Engine) -> None:
    run_id = finished(engine, shop(), {"n": 3}, "r1")
    engine.register(shop(version="2", factor=10))
    replay = engine.replay_run(run_id)  # the newest registered version
    assert replay.version == "2" and not replay.ok
    # total diverges; label still gets the total the run recorded (6), so it reproduces
    assert results(replay) == {"fetch": "ok", "total": "diverged", "label": "ok"}
    total = replay.steps[1].replay
    assert total is not None
    assert total.diff == [{"path": "/output/total", "op": "changed", "a": 6, "b": 60}]


def test_a_failing_step_and_the_steps_its_record_never_ran(engine: plait.Engine) -> None:
    run_id = finished(engine, shop(broken=True), {"n": 1}, "r1")  # total failed, label skipped
    broken = engine.replay_run(run_id, workflow=shop(broken=True))
    assert results(broken) == {"fetch": "ok", "total": "failed", "label": "not_run"}
    assert broken.steps[1].replay is not None and broken.steps[1].replay.error is not None
    assert broken.steps[1].replay.error.code == "down"
    assert broken.steps[2].reason == "its dependency 'total' ended failed in the run"
    fixed = engine.replay_run(run_id, workflow=shop(version="2"))
    assert results(fixed)["total"] == "diverged"  # recorded failed, now done
    assert fixed.steps[1].replay is not None and fixed.steps[1].replay.status == "done"


def test_from_step_reuses_what_lies_upstream(engine: plait.Engine) -> None:
    run_id = finished(engine, shop(), {"n": 1}, "r1")
    replay = engine.replay_run(run_id, workflow=shop(), from_step="total")
    assert replay.from_step == "total"
    assert results(replay) == {"fetch": "reused", "total": "ok", "label": "ok"}
    assert replay.steps[0].replay is None


def test_break_at_calls_the_hook_before_the_step_runs(engine: plait.Engine) -> None:
    run_id = finished(engine, shop(), {"n": 2}, "r1")
    seen: list[tuple[str, dict[str, Any]]] = []
    replay = engine.replay_run(
        run_id, workflow=shop(), break_at="label", on_break=lambda s, i: seen.append((s, i))
    )
    assert seen == [
        (
            "label",
            {
                "run_input": {"n": 2},
                "dependencies": {
                    "total": {"status": "done", "output": {"total": 4, "currency": "EUR"}}
                },
            },
        )
    ]
    assert replay.ok


def test_spawned_steps_replay_after_their_parent(engine: plait.Engine) -> None:
    def squares(factor: int) -> plait.Workflow:
        wf = plait.Workflow("fan")

        @wf.task
        def square(x: int) -> int:
            return x * x * factor

        @wf.step
        def many(ctx: plait.StepContext, n: int) -> list[plait.Handle]:
            return ctx.map(square, range(n))

        @wf.step
        def total(many: list[int]) -> int:
            return sum(many)

        return wf

    handle = engine.start(squares(1), {"n": 3}, run_id="f1")
    engine.run_worker(until=handle, timeout=30)
    same = engine.replay_run("f1", workflow=squares(1))
    names = [s.step for s in same.steps]
    assert names[0] == "many" and names[-1] == "total" and len(names) == 5
    assert set(results(same).values()) == {"ok"}
    changed = engine.replay_run("f1", workflow=squares(2))
    assert results(changed)["many"] == "diverged"  # it gathers its children's new outputs
    assert [results(changed)[n] for n in names[1:4]] == ["ok", "diverged", "diverged"]  # 0*0
    assert results(changed)["total"] == "ok"  # on the recorded list


def test_bad_input_is_refused_and_names_the_problem(engine: plait.Engine) -> None:
    run_id = finished(engine, shop(), {"n": 1}, "r1")
    wf = shop()
    with pytest.raises(plait.RunNotFound, match="no run with id 'nope'"):
        engine.replay_run("nope", workflow=wf)
    with pytest.raises(
        plait.InputError,
        match=r"^cannot replay run 'r1' from step 'zz': workflow 'shop' v1 \(\w+\) has no "
        "such step; its steps: fetch, total, label$",
    ):
        engine.replay_run(run_id, workflow=wf, from_step="zz")
    with pytest.raises(plait.InputError, match=r"^cannot break at step 'zz': run 'r1' and"):
        engine.replay_run(run_id, workflow=wf, break_at="zz")
    with pytest.raises(
        plait.InputError,
        match=r"^cannot break at step 'fetch': it is upstream of 'total', so the replay reuses",
    ):
        engine.replay_run(run_id, workflow=wf, from_step="total", break_at="fetch")
    with pytest.raises(plait.InputError, match="from_step must be a step name, got int"):
        engine.replay_run(run_id, workflow=wf, from_step=3)  # type: ignore[arg-type]  # on purpose
    other = plait.Workflow("other")
    other.add_step("a", lambda: 1)
    with pytest.raises(
        plait.InputError,
        match="cannot replay run 'r1' with workflow 'other': the run is of workflow 'shop'",
    ):
        engine.replay_run(run_id, workflow=other)


def test_whole_run_replay_needs_the_code(durable_backend: Backend, tmp_path: Path) -> None:
    url = durable_backend.url(tmp_path)
    with plait.Engine(url) as first:
        finished(first, shop(), {"n": 1}, "r1")
    with (
        plait.Engine(url) as other,
        pytest.raises(
            plait.WorkflowNotFound,
            match=r"^cannot replay run 'r1': no version of workflow 'shop' is registered",
        ),
    ):
        other.replay_run("r1")
