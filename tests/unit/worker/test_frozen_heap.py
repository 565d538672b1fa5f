"""While a worker runs, the objects that existed when it started are out of the cyclic GC's
passes (`gc.freeze`), and they are back in them once the last worker of the process stops."""

from __future__ import annotations

import gc

import plait


def test_a_running_worker_freezes_the_heap_and_its_stop_thaws_it() -> None:
    wf = plait.Workflow("frozen", version="1")

    @wf.step()
    def seen() -> int:
        return gc.get_freeze_count()

    assert gc.get_freeze_count() == 0
    with plait.Engine("memory://") as engine:
        run = engine.start(wf, {})
        engine.run_worker(until=run)
        assert run.result(timeout=10)["seen"] > 0  # the definition among the frozen objects
    assert gc.get_freeze_count() == 0


def test_a_worker_cancelled_while_it_stops_thaws_the_heap_too() -> None:
    """explore_crashes ends each dead worker by cancelling it inside its own stopping (its store
    calls hang): the heap is thawed all the same."""
    from plait.testing import explore_crashes

    wf = plait.Workflow("crashed", version="1")

    @wf.step()
    def one() -> int:
        return 1

    @wf.step()
    def two(one: int) -> int:
        return one + 1

    explore_crashes(wf, {})
    assert gc.get_freeze_count() == 0
