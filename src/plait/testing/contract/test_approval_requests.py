"""What waits, on every store: `list_waiting(run_id=)` lists one run's waiting steps, and an
approval of a workflow file's step under an approval policy says what it asks about (its action
and its arguments, expanded from the run's input, the outputs it reads and the session state)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import plait
from plait.core.rows import Gate

pytest.importorskip("yaml", reason="workflow files need PyYAML: pip install 'plait[yaml]'")

FILE = """
name: asks
imports: [plait.testing.contract.actions]
approval_policy: {mode: ask, allow: [contract.fetch]}
inputs:
  order_id: integer
steps:
  fetch:
    action: contract.fetch
    with: {order_id: "${inputs.order_id}"}
    post: {set: {currency: USD}}
  charge:
    action: contract.charge
    with: {amount: "${steps.fetch.output.total}", currency: "${state.currency}"}
"""


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def test_an_approval_shows_its_expanded_arguments_and_waits_per_run(engine: plait.Engine) -> None:
    wf = plait.loads(FILE)
    engine.register(wf)
    first = engine.start(wf, {"order_id": 4})
    other = engine.start(wf, {"order_id": 5})
    worker = threading.Thread(target=lambda: engine.run_worker(until=[first, other], timeout=60))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while len(engine.list_waiting()) < 2:  # fetch runs (allowed), charge waits
            assert time.monotonic() < deadline, "the charges did not come to wait"
            time.sleep(0.01)

        [waiting] = engine.list_waiting(run_id=first.id)
        assert (waiting.run_id, waiting.step, waiting.gate) == (first.id, "charge", Gate.APPROVAL)
        assert waiting.request == {
            "action": "contract.charge",
            "with": {"amount": 40, "currency": "USD"},
        }
        assert [w.request for w in engine.list_waiting(run_id=other.id)] == [
            {"action": "contract.charge", "with": {"amount": 50, "currency": "USD"}}
        ]
    finally:
        engine.approve(first.id, "charge")
        engine.reject(other.id, "charge", reason="no")
        worker.join(60)
    assert first.result(timeout=10) == {"charge": {"charged": 40.0, "currency": "USD"}}
    assert engine.list_waiting(run_id=first.id) == []
