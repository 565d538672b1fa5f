"""Property-based requests from the API's own OpenAPI document (schemathesis), valid and
invalid: whatever it sends, the server answers without a server error (5xx), with a status
the document lists for that operation, the content type it lists, the headers it says are
required, and a body that conforms to the documented schema (the models of
plait/server/responses.py); it refuses what the document says is invalid, and a call the
document says needs the token is refused without it. So a response that drifts from its
schema fails here (and in every API test: conftest's CheckedClient). The live feeds never
end, so they are tested by tests/server/test_live.py instead."""

from __future__ import annotations

import pytest

import plait

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from plait.server.app import create_app  # noqa: E402

from .conftest import AUTH, workflows  # noqa: E402

# the checks this test must run, whatever schemathesis's defaults become: each would have
# caught a way the document and the server have disagreed
REQUIRED = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
# A request the schema allows may still be refused with a 422, and rightly: a cursor is
# opaque, a cron string, a timezone or a run's input are checked by the Engine, not by a
# JSON Schema. So "valid by the schema, therefore accepted" does not hold for this API.
EXCLUDED = [positive_data_acceptance]


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
schema.config.generation.update(modes=list(GenerationMode))  # valid and invalid requests


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_answers_conform_to_the_document(case: schemathesis.Case) -> None:
    # no `checks=`: every check schemathesis enables by default, and the required ones
    case.call_and_validate(headers=AUTH, additional_checks=REQUIRED, excluded_checks=EXCLUDED)
