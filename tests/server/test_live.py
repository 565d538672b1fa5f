"""The live feeds (server-sent events): a run's events as a worker commits them, resumed from
Last-Event-ID, and the run-list changes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

import plait


def frames(lines: Iterator[str]) -> Iterator[tuple[str | None, str, Any]]:
    """(id, event, data) of each SSE frame; comments and retry lines are skipped."""
    event_id: str | None = None
    kind = "message"
    for line in lines:
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield event_id, kind, json.loads(line[6:])
            event_id, kind = None, "message"


def test_run_stream_follows_a_worker_live_and_ends(
    client: TestClient, engine: plait.Engine
) -> None:
    engine.start("flaky", {"n": 4}, run_id="live-1")
    worker = threading.Thread(target=lambda: engine.run_worker(until="live-1", timeout=30))
    seen: list[tuple[str | None, str, Any]] = []
    with client.stream("GET", "/api/v1/runs/live-1/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        worker.start()  # the worker runs while the stream is open
        for frame in frames(response.iter_lines()):
            seen.append(frame)
            if frame[1] == "end":
                break
    worker.join(30)
    events = [data for _, kind, data in seen if kind == "event"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [i for i, kind, _ in seen if kind == "event"] == [str(e["seq"]) for e in events]
    assert "step_failed" in [e["type"] for e in events]
    assert events[-1]["type"] == "run_failed"
    assert seen[-1][1:] == ("end", {"run_id": "live-1", "status": "failed"})


def test_run_stream_resumes_after_the_last_event_id(
    client: TestClient, engine: plait.Engine
) -> None:
    engine.start("flaky", {"n": 4}, run_id="done-1")
    engine.run_worker(until="done-1", timeout=30)
    total = len(engine.events("done-1"))
    with client.stream("GET", "/api/v1/runs/done-1/stream",
                       headers={"Last-Event-ID": "2"}) as response:  # fmt: skip
        got = [d["seq"] for _, kind, d in frames(response.iter_lines()) if kind == "event"]
    assert got == list(range(3, total + 1))
    with client.stream("GET", "/api/v1/runs/done-1/stream?after_seq=3") as response:
        got = [d["seq"] for _, kind, d in frames(response.iter_lines()) if kind == "event"]
    assert got == list(range(4, total + 1))


def test_stream_errors(client: TestClient) -> None:
    response = client.get("/api/v1/runs/nope/stream")
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("no run with id 'nope'")
    response = client.get("/api/v1/runs/nope/stream", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 422
    assert "Last-Event-ID" in response.json()["error"]["message"]
    response = client.get("/api/v1/stream/runs", headers={"Last-Event-ID": "soon"})
    assert response.status_code == 422
    assert client.get("/api/v1/stream/runs?since=-1").status_code == 422


def test_runs_stream_tells_of_new_and_ended_runs(client: TestClient, engine: plait.Engine) -> None:
    since = time.time() - 0.5
    statuses: list[tuple[str, str]] = []
    with client.stream("GET", f"/api/v1/stream/runs?since={since}") as response:
        assert response.status_code == 200
        engine.start("flaky", {"n": 1}, run_id="listed-1")
        worker = threading.Thread(target=lambda: engine.run_worker(until="listed-1", timeout=30))
        worker.start()
        for event_id, kind, data in frames(response.iter_lines()):
            assert kind == "run" and event_id is not None and float(event_id) >= since
            statuses.append((data["id"], data["status"]))
            if data["status"] == "failed":
                break
    worker.join(30)
    assert statuses[-1] == ("listed-1", "failed")
    assert {run_id for run_id, _ in statuses} == {"listed-1"}


def test_a_run_started_between_the_list_and_the_stream_is_not_missed(
    client: TestClient, engine: plait.Engine
) -> None:
    """The dashboard reads the list, then opens the stream from the list's `as_of`: a run
    started in between (before the stream's own start) is still delivered."""
    page = client.get("/api/v1/runs").json()
    assert page["runs"] == [] and page["as_of"] <= time.time()
    engine.start("flaky", {"n": 1}, run_id="between-1")
    with client.stream("GET", f"/api/v1/stream/runs?since={page['as_of']}") as response:
        assert response.status_code == 200
        for _, kind, data in frames(response.iter_lines()):
            assert kind == "run"
            if data["id"] == "between-1":
                assert data["status"] == "pending"
                break


@pytest.mark.parametrize("path", ["/api/v1/runs/live-2/stream", "/api/v1/stream/runs"])
def test_streams_send_heartbeats(
    client: TestClient, engine: plait.Engine, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    from plait.server import live

    monkeypatch.setattr(live, "HEARTBEAT", 0.05)
    engine.start("waits", {}, run_id="live-2")  # waits for a signal: its stream stays quiet
    with client.stream("GET", path) as response:
        lines = response.iter_lines()
        for line in lines:
            if line == ": keepalive":
                break
