"""Property-based requests from the API's own OpenAPI document (schemathesis): whatever it
sends, the server answers without a server error (5xx). The live feeds never end, so they are
tested by tests/server/test_live.py instead."""

from __future__ import annotations

import pytest

import plait

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from plait.server.app import create_app  # noqa: E402

from .conftest import AUTH, workflows  # noqa: E402


def _app() -> object:
    import tempfile

    folder = tempfile.mkdtemp(prefix="plait-schemathesis-")
    engine = plait.Engine(f"sqlite:///{folder}/plait.db", lease=5.0)
    for wf in workflows().values():
        engine.register(wf)
    engine.start("shop", {"order_id": 1}, run_id="order-1")
    engine.start("flaky", {"n": 1}, run_id="flaky-1")
    return create_app(engine, token=AUTH["X-Plait-Token"], allowed_hosts=["*"])


schema = schemathesis.openapi.from_asgi("/openapi.json", _app()).exclude(tag="live")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
