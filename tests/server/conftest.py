"""Fixtures of the server's tests: an Engine on a fresh SQLite store with the example
workflows registered, and the app over it (`plait.server.create_app`) driven in process.

The `client` checks every answer of the API it gets against the OpenAPI document
(`CheckedClient`): its status is one the operation lists, its content type and required
headers are the documented ones, and its body conforms to the operation's schema. So every
test of an endpoint, with real runs, steps, artifacts and errors, is also a test of the
document: a schema that drifts from what the server sends fails them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

import plait

pytest.importorskip("fastapi", reason="the server extra is not installed")

from starlette.testclient import TestClient

from plait.server.app import create_app

TOKEN = "s3cret-token-for-tests"
AUTH = {"X-Plait-Token": TOKEN}


def workflows() -> dict[str, plait.Workflow]:
    shop = plait.Workflow("shop", version="1")

    @shop.step()
    def fetch(order_id: int) -> dict[str, int]:
        return {"id": order_id, "total": 30}

    @shop.step(approval=True)
    def review(fetch: dict[str, int]) -> bool:
        return True

    @shop.step()
    def charge(fetch: dict[str, int], review: bool, ctx: plait.StepContext) -> dict[str, int]:
        ctx.save_artifact("receipt.txt", b"paid 30", content_type="text/plain")
        return {"charged": fetch["total"]}

    flaky = plait.Workflow("flaky", version="1")

    @flaky.step()
    def boom(n: int) -> int:
        raise plait.Permanent(f"no luck with {n}", code="unlucky")

    @flaky.step()
    def after(boom: int) -> int:
        return boom

    waits = plait.Workflow("waits", version="1")
    waits.signal("go")

    @waits.step()
    def done(go: dict[str, int]) -> dict[str, int]:
        return go

    return {"shop": shop, "flaky": flaky, "waits": waits}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[plait.Engine]:
    with plait.Engine(f"sqlite:///{tmp_path / 'plait.db'}", lease=5.0) as eng:
        for wf in workflows().values():
            eng.register(wf)
        yield eng


@cache
def _document() -> Any:
    """The OpenAPI document, loaded by schemathesis (it is the same for every app)."""
    import schemathesis

    with plait.Engine("memory://") as engine:
        return schemathesis.openapi.from_dict(create_app(engine).openapi())


class CheckedClient(TestClient):
    """A TestClient that checks each API answer against the OpenAPI document."""

    checked = 0  # answers checked, so a test can see that checking happened

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().request(method, url, *args, **kwargs)
        path = response.request.url.path
        if path.startswith("/api/v1/"):
            self.check(method, path, response)
        return response

    def check(self, method: str, path: str, response: Any) -> None:
        from schemathesis.checks import (
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
            status_code_conformance,
        )

        operation = _document().find_operation_by_path(method.upper(), path)
        if operation is None:  # no such operation (a 404 or 405 of the router): not documented
            return
        template = re.escape(operation.path).replace(r"\{", "{").replace(r"\}", "}")
        pattern = re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", template)
        found = re.fullmatch(pattern, path)
        assert found is not None, (operation.path, path)
        parameters = {k: unquote(v) for k, v in found.groupdict().items()}
        operation.Case(path_parameters=parameters).validate_response(
            response,
            checks=[
                status_code_conformance,
                content_type_conformance,
                response_headers_conformance,
                response_schema_conformance,
            ],
        )
        self.checked += 1


@pytest.fixture
def client(engine: plait.Engine) -> Iterator[TestClient]:
    pytest.importorskip("schemathesis", reason="the answers are checked with schemathesis")
    app = create_app(engine, token=TOKEN, allowed_hosts=["testserver"])
    with CheckedClient(app) as c:
        yield c


def serve(engine: plait.Engine, *run_ids: str) -> None:
    engine.run_worker(until=list(run_ids), timeout=30)
