"""Recorded histories: export_run writes a run to a file, assert_replays checks today's code
against it; and the runs recorded by earlier releases (histories/) still replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import plait
from plait import testing
from plait.testing import ReplayMismatch
from tests.testing import recorded

HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.name)
def test_every_recorded_run_replays_on_todays_code(path: Path) -> None:
    replays = testing.assert_replays(path, recorded.orders())
    assert {r.step for r in replays} >= {"fetch", "prices", "review", "charge", "notify"}


def test_the_histories_of_this_release_are_kept() -> None:
    assert (HISTORIES / "orders-0.1.0.dev0.json").exists()


def exported(tmp_path: Path, wf: plait.Workflow | None = None) -> Path:
    path = tmp_path / "orders.json"
    with plait.Engine("memory://") as engine:
        testing.run(
            wf or recorded.orders(),
            recorded.INPUT,
            approve={"review": True},
            signals={"shipped": {"carrier": "post"}},
            engine=engine,
            run_id="r-1",
        )
        assert testing.export_run(engine, "r-1", path) == path
    return path


def test_an_exported_run_holds_the_plan_the_run_its_steps_and_events(tmp_path: Path) -> None:
    history = testing.load_history(exported(tmp_path))
    assert history.workflow["fingerprint"] == recorded.orders().fingerprint
    assert history.workflow["steps"][4] == {
        "name": "charge",
        "dependencies": {"fetch": "data", "prices": "data", "review": "data"},
    }
    assert history.run["status"] == "completed"
    assert history.run["input"] == recorded.INPUT
    steps = {s["name"]: s for s in history.steps}
    assert steps["prices/price-1"]["task"] == "price"
    assert steps["prices/price-1"]["input"] == "scones"
    assert steps["prices"]["gather"] == ["prices/price-0", "prices/price-1", "prices/price-2"]
    assert steps["fraud_check"]["status"] == "skipped"
    assert history.events[-1]["type"] == "run_completed"


def changed_charge() -> plait.Workflow:
    wf = recorded.orders()
    old = wf["charge"].fn

    def charge(
        fetch: dict[str, Any], prices: list[int], review: dict[str, Any], ctx: plait.StepContext
    ) -> dict[str, Any]:
        return {**old(fetch, prices, review, ctx), "total": sum(prices) + 1}

    wf._steps["charge"].fn = charge
    wf._plan = None
    return wf


def test_a_step_that_now_returns_something_else_fails_the_check(tmp_path: Path) -> None:
    path = exported(tmp_path)
    with pytest.raises(ReplayMismatch) as err:
        testing.assert_replays(path, changed_charge())
    message = str(err.value)
    assert message.startswith("today's code of workflow 'orders' (version 1, ")
    assert message.endswith("  charge:\n    /output/total changed: recorded 36, now 37"), message
    assert list(err.value.mismatches) == ["charge"]
    assert testing.assert_replays(path, changed_charge(), skip=["charge"])


def test_a_step_or_task_todays_code_lacks_fails_the_check(tmp_path: Path) -> None:
    path = exported(tmp_path)
    wf = recorded.orders()
    del wf._tasks["price"]
    wf._task_fns.clear()
    wf._plan = None
    with pytest.raises(ReplayMismatch) as err:
        testing.assert_replays(path, wf, skip=["prices"])
    assert err.value.mismatches == dict.fromkeys(
        ["prices/price-0", "prices/price-1", "prices/price-2"],
        "today's workflow has no task 'price'",
    )


# -- user errors ----------------------------------------------------------------------------------


def test_a_history_of_another_workflow_is_an_error(tmp_path: Path) -> None:
    other = plait.Workflow("refunds")
    other.add_step("a", lambda: 1)
    with pytest.raises(plait.InputError) as err:
        testing.assert_replays(exported(tmp_path), other)
    assert str(err.value) == (
        f"the history {str(tmp_path / 'orders.json')!r} is a run of workflow 'orders', "
        "not 'refunds'"
    )


def test_an_unknown_skip_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(plait.InputError, match=r"^skip= names 'chrage', which the run of .*"):
        testing.assert_replays(exported(tmp_path), recorded.orders(), skip=["chrage"])


def test_a_file_that_is_not_a_history_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}')
    with pytest.raises(plait.InputError) as err:
        testing.assert_replays(path, recorded.orders())
    assert str(err.value) == (
        f"{str(path)!r} is not a plait.testing history (plait.testing.export_run writes them)"
    )
    path.write_bytes(orjson.dumps({"kind": "plait.testing history", "format": 99}))
    with pytest.raises(plait.InputError, match=r"has format 99; this plait reads format 1$"):
        testing.assert_replays(path, recorded.orders())
    with pytest.raises(plait.InputError, match=r"^cannot read the history .*missing.json"):
        testing.assert_replays(tmp_path / "missing.json", recorded.orders())


def test_exporting_an_unknown_run_is_an_error(tmp_path: Path) -> None:
    with plait.Engine("memory://") as engine, pytest.raises(plait.RunNotFound):
        testing.export_run(engine, "nope", tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
