"""Fixtures of the server's tests: an Engine on a fresh SQLite store with the example
workflows registered, and the app over it (`plait.server.create_app`) driven in process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def client(engine: plait.Engine) -> Iterator[TestClient]:
    app = create_app(engine, token=TOKEN, allowed_hosts=["testserver"])
    with TestClient(app) as c:
        yield c


def serve(engine: plait.Engine, *run_ids: str) -> None:
    engine.run_worker(until=list(run_ids), timeout=30)
