"""Keys read from step outputs, the pure parts: which keys are pending, how their options are
stored and fingerprinted, and how `plait run` tells a step handed back (see _key_admission.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import plait
from plait.cli.render import event_line
from plait.core.rows import StepOptions
from plait.engine.views import Event
from plait.stores.sql.rows import options_from_json, options_to_json
from plait.workflow.definition import _options_print


def _keyed(reads: str) -> plait.Workflow:
    wf = plait.Workflow("keyed")

    @wf.step
    def order(customer: str) -> dict[str, Any]:
        return {"customer": customer}

    if reads == "output":

        @wf.step(concurrency_key=lambda order: order["customer"], key_limit=1)
        def charge(order: dict[str, Any]) -> None:
            return None

    elif reads == "input":

        @wf.step(concurrency_key=lambda customer: customer, key_limit=1)
        def charge(order: dict[str, Any], customer: str) -> None:  # one branch
            return None

    else:  # the dependency is read by when= only, not by the handler

        @wf.step(
            concurrency_key=lambda order: order["customer"],
            key_limit=1,
            when=lambda order: bool(order),
        )
        def charge() -> None:  # one branch
            return None

    return wf


def _charge_options(wf: plait.Workflow) -> StepOptions:
    [options] = [s.options for s in wf.plan().steps if s.name == "charge"]
    assert options is not None
    return options


def test_a_key_reading_a_data_dependency_is_pending_from_outputs() -> None:
    assert _charge_options(_keyed("output")).key_from_outputs
    assert _charge_options(_keyed("when")).key_from_outputs  # when= makes it a data dependency
    assert not _charge_options(_keyed("input")).key_from_outputs


def test_only_keys_read_from_outputs_change_the_fingerprint_options() -> None:
    # the fingerprint prints only options that are set: run-input keys keep their fingerprint
    assert "key_from_outputs" not in _options_print(_charge_options(_keyed("input")))
    assert _options_print(_charge_options(_keyed("output")))["key_from_outputs"] is True


def test_the_pending_flag_is_stored_only_when_set() -> None:
    pending = StepOptions(key_limit=1, key_from_outputs=True)
    assert options_to_json(pending) == '{"key_limit":1,"key_from_outputs":true}'
    assert options_from_json('{"key_limit":1,"key_from_outputs":true}') == pending
    assert options_to_json(StepOptions(key="a", key_limit=1)) == '{"key":"a","key_limit":1}'


def test_plait_run_tells_a_step_handed_back_for_its_key() -> None:
    payload = {"step": "charge", "key": "a", "key_limit": 1, "running": 1, "worker": "w"}
    event = Event("r1", 3, "step_key_full", "charge", payload, datetime.now(UTC))
    assert event_line(event) == "charge waits: concurrency key 'a' runs at most 1 at once"
