"""The HTTP API, every endpoint and its errors, through the real app over a real SQLite store:
statuses, JSON errors carrying the Engine's messages, and state left unchanged by refusals."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

import plait

from .conftest import AUTH, CheckedClient, serve


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: Any, status: int, kind: str, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["type"] == kind, body
    assert message in body["message"], body


# -- runs: start, read, list -----------------------------------------------------------------------


def test_start_read_and_list_runs(client: TestClient, engine: plait.Engine) -> None:
    run = ok(client.post("/api/v1/runs", json={"workflow": "shop", "input": {"order_id": 7},
                                               "run_id": "order-7"}, headers=AUTH), 201)  # fmt: skip
    assert run["id"] == "order-7" and run["status"] == "pending" and run["input"] == {"order_id": 7}
    assert ok(client.get("/api/v1/runs/order-7"))["workflow"] == "shop"
    ok(client.post("/api/v1/runs", json={"workflow": "flaky", "input": {"n": 1},
                                         "run_id": "flaky-1"}, headers=AUTH), 201)  # fmt: skip

    listed = ok(client.get("/api/v1/runs", params={"count": "true"}))
    assert [r["id"] for r in listed["runs"]] == ["flaky-1", "order-7"] and listed["count"] == 2
    assert [r["id"] for r in ok(client.get("/api/v1/runs?workflow=shop"))["runs"]] == ["order-7"]
    assert [r["id"] for r in ok(client.get("/api/v1/runs?q=ORDER"))["runs"]] == ["order-7"]
    assert ok(client.get("/api/v1/runs?status=completed"))["runs"] == []
    created = (datetime.fromisoformat(run["created_at"]) - timedelta(seconds=1)).isoformat()
    later = ok(client.get("/api/v1/runs", params={"created_from": created}))["runs"]
    assert {r["id"] for r in later} == {"order-7", "flaky-1"}
    assert ok(client.get("/api/v1/runs", params={"created_to": created}))["runs"] == []
    page = ok(client.get("/api/v1/runs?limit=1"))
    assert [r["id"] for r in page["runs"]] == ["flaky-1"] and page["next_cursor"]
    rest = ok(client.get("/api/v1/runs", params={"limit": 1, "cursor": page["next_cursor"]}))
    assert [r["id"] for r in rest["runs"]] == ["order-7"] and rest["next_cursor"] is None
    assert isinstance(client, CheckedClient) and client.checked == 11  # each answer was checked


def test_run_list_errors(client: TestClient) -> None:
    refused(client.get("/api/v1/runs?limit=501"), 422, "ValidationError", "limit")
    refused(client.get("/api/v1/runs?limit=0"), 422, "ValidationError", "limit")
    refused(client.get("/api/v1/runs?limit=abc"), 422, "ValidationError", "valid integer")
    refused(client.get("/api/v1/runs?cursor=garbage"), 422, "InputError",
            "invalid cursor 'garbage': pass the next_cursor of a previous page")  # fmt: skip
    refused(client.get("/api/v1/runs?status=sleepy"), 422, "InputError",
            "unknown run status 'sleepy'")  # fmt: skip
    refused(client.get("/api/v1/runs?created_from=yesterday"), 422, "ValidationError",
            "created_from")  # fmt: skip
    refused(client.get("/api/v1/runs/nope"), 404, "RunNotFound", "no run with id 'nope'")


def test_start_errors(client: TestClient, engine: plait.Engine) -> None:
    refused(client.post("/api/v1/runs", json={"workflow": "ghost"}, headers=AUTH), 404,
            "WorkflowNotFound", "unknown workflow 'ghost'")  # fmt: skip
    refused(client.post("/api/v1/runs", json={"workflow": "shop", "input": {}}, headers=AUTH),
            422, "InputError", "misses field 'order_id'")  # fmt: skip
    refused(client.post("/api/v1/runs", json={"workflow": "shop", "run_id": "bad id!"},
                        headers=AUTH), 422, "InputError", "invalid run id")  # fmt: skip
    refused(client.post("/api/v1/runs", json={"workflow": 5}, headers=AUTH), 422,
            "ValidationError", "workflow")  # fmt: skip
    refused(client.post("/api/v1/runs", json={"workflow": "shop", "typo": 1}, headers=AUTH),
            422, "ValidationError", "typo")  # fmt: skip
    refused(client.post("/api/v1/runs", content=b"{not json", headers={**AUTH,
            "Content-Type": "application/json"}), 400, "MalformedJSON", "not valid JSON")  # fmt: skip
    engine.start("flaky", {"n": 1}, run_id="taken")
    refused(client.post("/api/v1/runs", json={"workflow": "shop", "input": {"order_id": 1},
                        "run_id": "taken"}, headers=AUTH), 409, "RunConflict",
            "already used by a run of workflow 'flaky'")  # fmt: skip
    assert engine.count_runs() == 1  # nothing else was written


def test_start_with_a_run_approval_policy(client: TestClient, engine: plait.Engine) -> None:
    body = {"workflow": "shop", "input": {"order_id": 7}, "run_id": "asks",
            "approval_policy": {"mode": "ask", "allow": ["Review", "charge"]}}  # fmt: skip
    ok(client.post("/api/v1/runs", json=body, headers=AUTH), 201)
    assert [w.step for w in engine.list_waiting(run_id="asks")] == ["fetch"]
    assert engine.events("asks")[0].payload["approval_policy"]["allow"] == ["charge", "review"]
    body = {"workflow": "shop", "input": {"order_id": 8}, "run_id": "denies",
            "approval_policy": {"mode": "deny", "block": ["charge"], "allow": ["fetch"]}}  # fmt: skip
    ok(client.post("/api/v1/runs", json=body, headers=AUTH), 201)
    assert engine.list_waiting(run_id="denies") == []  # review is refused: it asks no one
    serve(engine, "denies")
    assert {s.name: s.error.code for s in engine.steps("denies") if s.error} == {
        "review": "action_denied",
    }
    for policy, field in (({"mode": "maybe"}, "mode"), ({"allow": [""]}, "allow"),
                          ({"mode": "ask", "typo": 1}, "typo")):  # fmt: skip
        bad = {"workflow": "shop", "input": {"order_id": 1}, "approval_policy": policy}
        refused(client.post("/api/v1/runs", json=bad, headers=AUTH), 422, "ValidationError", field)
    assert engine.count_runs() == 2


def test_start_with_identity_and_list_by_labels(client: TestClient, engine: plait.Engine) -> None:
    body = {"workflow": "shop", "input": {"order_id": 7}, "run_id": "o-7", "name": "seven",
            "labels": {"customer": "42", "tier": "gold"}, "metadata": {"ticket": "T-1"}}  # fmt: skip
    run = ok(client.post("/api/v1/runs", json=body, headers=AUTH), 201)
    assert (run["name"], run["labels"], run["metadata"]) == (
        "seven", {"customer": "42", "tier": "gold"}, {"ticket": "T-1"},
    )  # fmt: skip
    again = ok(client.post("/api/v1/runs", json=body, headers=AUTH), 200)  # it existed
    assert again["id"] == "o-7"
    ok(client.post("/api/v1/runs", json={"workflow": "shop", "input": {"order_id": 8},
                                         "labels": {"customer": "42"}}, headers=AUTH), 201)  # fmt: skip
    by_customer = ok(client.get("/api/v1/runs?label=customer=42&count=true"))
    assert len(by_customer["runs"]) == 2 and by_customer["count"] == 2
    both = ok(client.get("/api/v1/runs", params=[("label", "customer=42"), ("label", "tier=gold")]))
    assert [r["id"] for r in both["runs"]] == ["o-7"]
    assert ok(client.get("/api/v1/runs?q=SEVEN"))["runs"][0]["id"] == "o-7"
    gold = {"action": "cancel", "filter": {"labels": {"tier": "gold"}}}  # bulk, by labels
    assert ok(client.post("/api/v1/bulk", json=gold, headers=AUTH))["sample"] == ["o-7"]
    refused(client.post("/api/v1/bulk", json={"action": "cancel", "filter": {"labels": {"a b": "1"}}},
            headers=AUTH), 422, "InputError", "invalid label key 'a b'")  # fmt: skip
    refused(client.post("/api/v1/runs", json={**body, "input": {"order_id": 9}}, headers=AUTH),
            409, "RunConflict", "already a run of workflow 'shop' with a different input")  # fmt: skip
    returned = {**body, "input": {"order_id": 9}, "if_exists": "return"}
    assert ok(client.post("/api/v1/runs", json=returned, headers=AUTH), 200)["input"] == {
        "order_id": 7
    }


def test_identity_errors(client: TestClient, engine: plait.Engine) -> None:
    start = {"workflow": "shop", "input": {"order_id": 7}}
    refused(client.post("/api/v1/runs", json={**start, "labels": {"customer": 42}}, headers=AUTH),
            422, "ValidationError", "labels")  # fmt: skip
    refused(client.post("/api/v1/runs", json={**start, "labels": {"a b": "1"}}, headers=AUTH),
            422, "InputError", "start: invalid label key 'a b'")  # fmt: skip
    refused(client.post("/api/v1/runs", json={**start, "if_exists": "no"}, headers=AUTH),
            422, "ValidationError", "if_exists")  # fmt: skip
    refused(client.get("/api/v1/runs?label=customer"), 422, "InputError",
            "invalid label 'customer': write it as key=value")  # fmt: skip
    refused(client.get("/api/v1/runs?label=k=1&label=k=2"), 422, "InputError",
            "label 'k' is given twice")  # fmt: skip
    assert engine.count_runs() == 0


# -- a run's steps, events, graph, timeline, artifacts ----------------------------------------------


def test_steps_events_inspect_graph_timeline(client: TestClient, engine: plait.Engine) -> None:
    engine.start("shop", {"order_id": 3}, run_id="o3")
    serve_until_waiting(engine, "o3")
    steps = ok(client.get("/api/v1/runs/o3/steps"))["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [
        ("fetch", "done"), ("review", "waiting"), ("charge", "pending"),
    ]  # fmt: skip
    assert steps[0]["output"] == {"id": 3, "total": 30} and steps[0]["attempts"] == 1

    detail = ok(client.get("/api/v1/runs/o3/steps/review"))
    assert detail["inputs"] == {"fetch": {"id": 3, "total": 30}}
    assert detail["step"]["gate"] == "approval"
    assert any("approval" in w for w in detail["why"])
    assert [a["outcome"] for a in ok(client.get("/api/v1/runs/o3/steps/fetch"))["attempts"]] == [
        "done"
    ]
    refused(client.get("/api/v1/runs/o3/steps/ghost"), 404, "NotFound",
            "run 'o3' has no step 'ghost'")  # fmt: skip

    events = ok(client.get("/api/v1/runs/o3/events"))
    seqs = [e["seq"] for e in events["events"]]
    assert seqs == list(range(1, len(seqs) + 1)) and events["last_seq"] == seqs[-1]
    after = ok(client.get("/api/v1/runs/o3/events", params={"after_seq": 2, "limit": 1}))
    assert [e["seq"] for e in after["events"]] == [3]
    refused(client.get("/api/v1/runs/o3/events?after_seq=-1"), 422, "ValidationError", "after_seq")
    refused(client.get("/api/v1/runs/zz/events"), 404, "RunNotFound", "no run with id 'zz'")

    seen = ok(client.get("/api/v1/runs/o3/inspect"))
    assert seen["counts"]["waiting"] == 1 and "review" in seen["blockers"]

    graph = ok(client.get("/api/v1/runs/o3/graph"))
    assert {n["id"]: n["status"] for n in graph["nodes"]} == {
        "fetch": "done", "review": "waiting", "charge": "pending",
    }  # fmt: skip
    assert {(e["from"], e["to"]) for e in graph["edges"]} == {
        ("fetch", "review"), ("fetch", "charge"), ("review", "charge"),
    }  # fmt: skip
    x = {n["id"]: n["x"] for n in graph["nodes"]}
    assert x["fetch"] < x["review"] < x["charge"]  # layered left to right

    timeline = ok(client.get("/api/v1/runs/o3/timeline"))
    (bar,) = timeline["bars"]
    assert bar["step"] == "fetch" and bar["outcome"] == "done"
    assert bar["queued_at"] <= bar["started_at"] <= bar["ended_at"]
    for path in ("steps", "inspect", "graph", "timeline", "artifacts"):
        refused(client.get(f"/api/v1/runs/nope/{path}"), 404, "RunNotFound", "no run with id")


def serve_until_waiting(engine: plait.Engine, run_id: str) -> None:
    """Run a worker until the run's approval gate waits (the worker stops by its timeout)."""
    import threading

    stop = threading.Event()

    def watch() -> None:
        for event in engine.watch(run_id):
            if event.type == "step_waiting":
                break
        stop.set()
        engine.stop_workers()

    t = threading.Thread(target=watch)
    t.start()
    engine.run_worker(timeout=30)
    t.join(30)
    assert stop.is_set()


# -- operator actions --------------------------------------------------------------------------------


def test_approve_then_artifact_download_and_blob(client: TestClient, engine: plait.Engine) -> None:
    engine.start("shop", {"order_id": 5}, run_id="o5")
    serve_until_waiting(engine, "o5")
    refused(client.post("/api/v1/runs/o5/steps/fetch/approve", json={}, headers=AUTH), 409,
            "RunStateError", "")  # fmt: skip
    step = ok(client.post("/api/v1/runs/o5/steps/review/approve", json={"note": "fine"},
                          headers=AUTH))  # fmt: skip
    assert step["name"] == "review" and step["status"] in ("ready", "running", "done")
    serve(engine, "o5")
    assert ok(client.get("/api/v1/runs/o5"))["status"] == "completed"

    (artifact,) = ok(client.get("/api/v1/runs/o5/artifacts"))["artifacts"]
    assert artifact["name"] == "receipt.txt" and artifact["step"] == "charge"
    got = client.get(f"/api/v1/artifacts/{artifact['id']}")
    assert got.status_code == 200 and got.content == b"paid 30"
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"] == 'attachment; filename="receipt.txt"'
    refused(client.get("/api/v1/artifacts/" + "0" * 32), 404, "ArtifactNotFound", "no artifact")


def test_path_traversal_and_bad_names_on_data_routes(client: TestClient) -> None:
    for bad in ("....", "..%5C..%5Cwin.ini", "%2e%2e%00", "ABCDEF", "0" * 31 + "g"):
        refused(client.get(f"/api/v1/artifacts/{bad}"), 422, "InputError",
                "an artifact id is 32 lowercase hex digits")  # fmt: skip
    for bad in ("..%5C..%5Cwin.ini", "x" * 64, "A" * 64, "0" * 63):
        refused(client.get(f"/api/v1/blobs/{bad}"), 422, "InputError",
                "a blob is named by its SHA-256")  # fmt: skip
    for route in ("artifacts", "blobs"):  # a slash, even encoded, is no id: no such route
        for bad in ("..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fpyproject.toml"):
            response = client.get(f"/api/v1/{route}/{bad}")
            refused(response, 404, "NotFound", "Not Found")
            assert b"root:" not in response.content and b"[project]" not in response.content
    absent = hashlib.sha256(b"never stored").hexdigest()
    refused(client.get(f"/api/v1/blobs/{absent}"), 404, "BlobNotFound", absent)
    # an encoded slash never reaches another route or a file
    response = client.get("/api/v1/artifacts/..%2F..%2Fpyproject.toml")
    assert response.status_code in (404, 422) and b"[project]" not in response.content
    response = client.get("/static/..%2F..%2F..%2Fpyproject.toml")
    assert response.status_code == 404 and b"[project]" not in response.content


def test_blob_by_hash(tmp_path: Any) -> None:
    from plait.server.app import create_app

    with plait.Engine(f"sqlite:///{tmp_path / 'b.db'}?blob_threshold=16") as engine:
        wf = plait.Workflow("big")

        @wf.step()
        def make(n: int) -> str:
            return "x" * n

        engine.start(wf, {"n": 100}, run_id="big-1")
        serve(engine, "big-1")
        with CheckedClient(create_app(engine, allowed_hosts=["testserver"])) as client:
            payload = b'"' + b"x" * 100 + b'"'
            digest = hashlib.sha256(b'{"make":' + payload + b"}").hexdigest()
            step_digest = hashlib.sha256(payload).hexdigest()
            got = [client.get(f"/api/v1/blobs/{d}") for d in (digest, step_digest)]
            assert any(r.status_code == 200 and r.content.endswith(b'x"') for r in got), [
                r.text for r in got
            ]


def test_reject_retry_cancel_pause_resume_signal(client: TestClient, engine: plait.Engine) -> None:
    engine.start("shop", {"order_id": 9}, run_id="o9")
    serve_until_waiting(engine, "o9")
    step = ok(client.post("/api/v1/runs/o9/steps/review/reject", json={"reason": "no"},
                          headers=AUTH))  # fmt: skip
    assert step["status"] == "failed" and step["error"]["code"] == "rejected"
    refused(client.post("/api/v1/runs/o9/steps/review/reject", headers=AUTH), 409,
            "RunStateError", "")  # fmt: skip
    run = ok(client.post("/api/v1/runs/o9/steps/review/retry", headers=AUTH))
    assert run["status"] in ("running", "pending")
    refused(client.post("/api/v1/runs/o9/steps/fetch/retry", headers=AUTH), 409,
            "RunStateError", "")  # fmt: skip
    refused(client.post("/api/v1/runs/o9/steps/nope/retry", headers=AUTH), 404, "NotFound",
            "has no step 'nope'")  # fmt: skip

    paused = ok(client.post("/api/v1/runs/o9/pause", headers=AUTH))
    assert paused["status"] in ("paused", "pausing")
    assert ok(client.post("/api/v1/runs/o9/resume", headers=AUTH))["status"] == "running"
    cancelled = ok(client.post("/api/v1/runs/o9/cancel", json={"reason": "test"}, headers=AUTH))
    assert cancelled["status"] == "cancelled" and cancelled["error"]
    refused(client.post("/api/v1/runs/o9/pause", headers=AUTH), 409, "RunStateError",
            "cancelled")  # fmt: skip
    refused(client.post("/api/v1/runs/o9/resume", headers=AUTH), 409, "RunStateError",
            "cancelled")  # fmt: skip
    assert ok(client.post("/api/v1/runs/o9/resume-failed", headers=AUTH))["status"] == "running"
    refused(client.post("/api/v1/runs/o9/resume-failed", headers=AUTH), 409, "RunStateError",
            "only a failed or cancelled run can be resumed")  # fmt: skip
    client.post("/api/v1/runs/o9/cancel", headers=AUTH)
    for action in ("cancel", "pause", "resume", "resume-failed"):
        refused(client.post(f"/api/v1/runs/ghost/{action}", headers=AUTH), 404, "RunNotFound",
                "no run with id 'ghost'")  # fmt: skip
    refused(client.post("/api/v1/runs/o9/cancel", json={"reason": 5}, headers=AUTH), 422,
            "ValidationError", "reason")  # fmt: skip

    engine.start("waits", {}, run_id="w1")
    assert ok(client.post("/api/v1/runs/w1/signals/go", json={"payload": {"v": 1}},
                          headers=AUTH)) == {"delivered": True}  # fmt: skip
    assert ok(client.post("/api/v1/runs/w1/signals/go", json={"payload": {"v": 2}},
                          headers=AUTH)) == {"delivered": False}  # fmt: skip
    refused(client.post("/api/v1/runs/w1/signals/nope", json={}, headers=AUTH), 404,
            "NotFound", "has no step 'nope'")  # fmt: skip
    serve(engine, "w1")
    assert ok(client.get("/api/v1/runs/w1"))["output"] == {"done": {"v": 1}}


def test_annotate_a_run(client: TestClient, engine: plait.Engine) -> None:
    engine.start("waits", {}, run_id="a1")
    assert ok(client.post("/api/v1/runs/a1/events", json={"type": "deploy", "payload": {"v": 2}},
                          headers=AUTH)) == {"run_id": "a1", "type": "user.deploy"}  # fmt: skip
    [event] = [e for e in engine.events("a1") if e.type == "user.deploy"]
    assert event.payload["data"] == {"v": 2} and event.payload["by"]
    listed = ok(client.get("/api/v1/runs/a1/events"))["events"]
    assert [e["type"] for e in listed][-1] == "user.deploy"
    before = len(engine.events("a1"))
    refused(client.post("/api/v1/runs/ghost/events", json={"type": "x"}, headers=AUTH), 404,
            "RunNotFound", "no run with id 'ghost'")  # fmt: skip
    refused(client.post("/api/v1/runs/a1/events", json={"type": "no spaces"}, headers=AUTH),
            422, "ValidationError", "type")  # fmt: skip
    refused(client.post("/api/v1/runs/a1/events", json={"type": "big", "payload": "x" * 70_000},
                        headers=AUTH), 422, "InputError", "more than the 65536")  # fmt: skip
    refused(client.post("/api/v1/runs/a1/events", json={"payload": 1}, headers=AUTH), 422,
            "ValidationError", "type")  # fmt: skip
    assert client.post("/api/v1/runs/a1/events", json={"type": "x"}).status_code == 401
    assert len(engine.events("a1")) == before


def test_fork_diff_and_delete(client: TestClient, engine: plait.Engine) -> None:
    engine.start("flaky", {"n": 2}, run_id="f2")
    serve(engine, "f2")
    fork = ok(client.post("/api/v1/runs/f2/fork", json={"from_step": "boom", "input": {"n": 5},
              "new_run_id": "f2-fork"}, headers=AUTH), 201)  # fmt: skip
    assert fork["id"] == "f2-fork" and fork["parent_run"] == "f2"
    serve(engine, "f2-fork")
    diff = ok(client.get("/api/v1/runs/f2/diff/f2-fork"))["steps"]
    assert diff["boom"]["status"] == "changed" and diff["after"]["status"] == "same"
    assert any(d["path"] == "/error/message" for d in diff["boom"]["diff"])
    refused(client.post("/api/v1/runs/f2/fork", json={"from_step": "ghost"}, headers=AUTH),
            422, "InputError", "ghost")  # fmt: skip
    refused(client.post("/api/v1/runs/nope/fork", json={"from_step": "after"}, headers=AUTH),
            404, "RunNotFound", "no run with id 'nope'")  # fmt: skip
    refused(client.get("/api/v1/runs/f2/diff/nope"), 404, "RunNotFound", "nope")

    engine.start("flaky", {"n": 3}, run_id="f3")
    refused(client.delete("/api/v1/runs/f3", headers=AUTH), 409, "RunStateError",
            "delete_run deletes finished runs only")  # fmt: skip
    assert ok(client.delete("/api/v1/runs/f3?force=true", headers=AUTH)) == {"deleted": "f3"}
    assert ok(client.delete("/api/v1/runs/f2-fork", headers=AUTH)) == {"deleted": "f2-fork"}
    refused(client.get("/api/v1/runs/f2-fork"), 404, "RunNotFound", "f2-fork")
    refused(client.delete("/api/v1/runs/f2-fork", headers=AUTH), 404, "RunNotFound", "f2-fork")


def test_bulk_dry_run_then_act(client: TestClient, engine: plait.Engine) -> None:
    for n in range(3):
        engine.start("flaky", {"n": n}, run_id=f"bulk-{n}")
    engine.start("shop", {"order_id": 1}, run_id="keep")
    dry = ok(client.post("/api/v1/bulk", json={"action": "cancel",
                                               "filter": {"workflow": "flaky"}}, headers=AUTH))  # fmt: skip
    assert dry["dry_run"] and (dry["matched"], dry["eligible"]) == (3, 3) and dry["items"] == []
    assert ok(client.get("/api/v1/runs?status=cancelled"))["runs"] == []  # nothing done
    done = ok(client.post("/api/v1/bulk", json={"action": "cancel", "dry_run": False,
              "filter": {"workflow": "flaky"}, "reason": "bulk"}, headers=AUTH))  # fmt: skip
    assert sorted(i["outcome"] for i in done["items"]) == ["done"] * 3
    assert ok(client.get("/api/v1/runs/keep"))["status"] == "pending"
    by_ids = ok(client.post("/api/v1/bulk", json={"action": "delete", "dry_run": False,
                "run_ids": ["bulk-0", "keep"]}, headers=AUTH))  # fmt: skip
    assert [(i["run_id"], i["outcome"]) for i in by_ids["items"]] == [
        ("bulk-0", "done"), ("keep", "skipped"),
    ]  # fmt: skip
    refused(client.post("/api/v1/bulk", json={"action": "explode", "run_ids": ["keep"]},
                        headers=AUTH), 422, "ValidationError", "action")  # fmt: skip
    refused(client.post("/api/v1/bulk", json={"action": "cancel", "run_ids": ["ghost"],
                        "dry_run": False}, headers=AUTH), 422, "InputError",
            "no run with id 'ghost'")  # fmt: skip
    refused(client.post("/api/v1/bulk", json={"action": "cancel"}, headers=AUTH), 422,
            "InputError", "either run_ids or a filter")  # fmt: skip
    refused(client.post("/api/v1/bulk", json={"action": "cancel", "filter": {"status": "x"}},
                        headers=AUTH), 422, "InputError", "unknown run status 'x'")  # fmt: skip
    refused(client.post("/api/v1/bulk", json={"action": "cancel", "limit": 1001,
                        "filter": {}}, headers=AUTH), 422, "ValidationError", "limit")  # fmt: skip
    assert ok(client.get("/api/v1/runs/keep"))["status"] == "pending"


def test_waiting_and_failed_steps(client: TestClient, engine: plait.Engine) -> None:
    engine.start("flaky", {"n": 1}, run_id="fl-1")
    engine.start("waits", {}, run_id="wt-1")
    serve(engine, "fl-1")
    failed = ok(client.get("/api/v1/failed-steps"))
    assert [(s["run_id"], s["step"], s["error"]["code"]) for s in failed["steps"]] == [
        ("fl-1", "boom", "unlucky")
    ]
    assert ok(client.get("/api/v1/failed-steps?workflow=shop"))["steps"] == []
    assert len(ok(client.get("/api/v1/failed-steps?step=boom&code=unlucky&since=0"))["steps"]) == 1
    assert ok(client.get("/api/v1/failed-steps?code=other"))["steps"] == []
    refused(client.get("/api/v1/failed-steps?cursor=zz"), 422, "InputError", "invalid cursor")
    refused(client.get("/api/v1/failed-steps?since=soon"), 422, "ValidationError", "since")
    count = ok(client.post("/api/v1/failed-steps/retry", json={"step": "boom"}, headers=AUTH))
    assert (count["dry_run"], count["matched"], count["runs"], count["sample"]) == (
        True, 1, 1, ["fl-1/boom"])  # fmt: skip
    assert len(ok(client.get("/api/v1/failed-steps"))["steps"]) == 1  # a dry run by default
    refused(client.post("/api/v1/failed-steps/retry", json={"limit": 0}, headers=AUTH), 422,
            "ValidationError", "limit")  # fmt: skip
    refused(client.post("/api/v1/failed-steps/retry", json={"dry_run": "no"}, headers=AUTH),
            422, "ValidationError", "dry_run")  # fmt: skip
    refused(client.post("/api/v1/failed-steps/retry", json={}), 401, "Unauthorized", "")
    done = ok(client.post("/api/v1/failed-steps/retry", json={"code": "unlucky",
              "dry_run": False}, headers=AUTH))  # fmt: skip
    assert done["items"] == [{"run_id": "fl-1", "step": "boom", "outcome": "done",
                              "message": None}]  # fmt: skip
    assert ok(client.get("/api/v1/runs/fl-1"))["status"] == "running"
    refused(client.get("/api/v1/failed-steps?limit=100000"), 422, "ValidationError", "limit")
    waiting = ok(client.get("/api/v1/waiting"))["waiting"]
    assert [(w["run_id"], w["step"], w["gate"]) for w in waiting] == [("wt-1", "go", "signal")]
    assert waiting[0]["request"] is None  # a Python step says nothing of what it asks
    by_run = ok(client.get("/api/v1/waiting?run_id=wt-1"))["waiting"]
    assert [w["step"] for w in by_run] == ["go"]
    assert ok(client.get("/api/v1/waiting?run_id=fl-1"))["waiting"] == []
    refused(client.get("/api/v1/waiting?run_id=ghost"), 404, "RunNotFound", "ghost")


# -- queues, schedules, workers, workflows, records -------------------------------------------------


def test_queues(client: TestClient) -> None:
    queue = ok(client.put("/api/v1/queues/emails", json={"concurrency": 2,
               "rate": {"count": 5, "per": 60}}, headers=AUTH))  # fmt: skip
    assert queue["name"] == "emails" and queue["concurrency"] == 2
    assert queue["rate"]["count"] == 5
    listed = ok(client.get("/api/v1/queues"))["queues"]
    assert [q["name"] for q in listed] == ["emails"] and listed[0]["ready"] == 0
    assert ok(client.get("/api/v1/queues/emails"))["concurrency"] == 2
    refused(client.get("/api/v1/queues/ghost"), 404, "NotFound", "no queue named 'ghost'")
    refused(client.put("/api/v1/queues/emails", json={"concurrency": 0}, headers=AUTH), 422,
            "ValidationError", "concurrency")  # fmt: skip
    refused(client.put("/api/v1/queues/bad%20name", json={}, headers=AUTH), 422, "ConfigError",
            "")  # fmt: skip
    refused(client.put("/api/v1/queues/emails", json={"rate": {"count": 1, "per": 1,
            "burst": 0.5}}, headers=AUTH), 422, "ConfigError", "rate burst must be")  # fmt: skip


def test_schedules(client: TestClient) -> None:
    made = ok(client.put("/api/v1/schedules/nightly", json={"workflow": "flaky",
              "cron": "0 3 * * *", "input": {"n": 1}}, headers=AUTH))  # fmt: skip
    assert made["name"] == "nightly" and made["paused"] is False
    assert [s["name"] for s in ok(client.get("/api/v1/schedules"))["schedules"]] == ["nightly"]
    assert ok(client.post("/api/v1/schedules/nightly/pause", headers=AUTH))["paused"] is True
    assert ok(client.post("/api/v1/schedules/nightly/resume", headers=AUTH))["paused"] is False
    assert ok(client.get("/api/v1/schedules/nightly"))["cron"] == "0 3 * * *"
    refused(client.put("/api/v1/schedules/bad", json={"workflow": "flaky", "cron": "nope"},
                       headers=AUTH), 422, "CronError", "invalid cron expression 'nope'")  # fmt: skip
    for method, path in (("get", ""), ("post", "/pause"), ("post", "/resume"), ("delete", "")):
        response = getattr(client, method)(f"/api/v1/schedules/ghost{path}", headers=AUTH)
        refused(response, 404, "NotFound", "no schedule named 'ghost'")
    assert ok(client.delete("/api/v1/schedules/nightly", headers=AUTH)) == {"deleted": "nightly"}
    assert ok(client.get("/api/v1/schedules"))["schedules"] == []


def test_workers_workflows_topology_records(client: TestClient, engine: plait.Engine) -> None:
    assert ok(client.get("/api/v1/workers"))["workers"] == []
    names = {w["name"] for w in ok(client.get("/api/v1/workflows"))["workflows"]}
    assert names == {"shop", "flaky", "waits"}
    topology = ok(client.get("/api/v1/workflows/shop/topology"))
    assert {s["step"] for s in topology["steps"]} == {"fetch", "review", "charge"}
    refused(client.get("/api/v1/workflows/ghost/topology"), 404, "NotFound", "ghost")

    engine.records("customers").put("c1", {"name": "Ada"})
    assert ok(client.get("/api/v1/records/customers/c1")) == {
        "key": "c1", "doc": {"name": "Ada"}, "revision": 1,
    }  # fmt: skip
    assert [r["key"] for r in ok(client.get("/api/v1/records/customers"))["records"]] == ["c1"]
    refused(client.get("/api/v1/records/customers/c2"), 404, "NotFound", "no document 'c2'")
    refused(client.get("/api/v1/records/plait.workers"), 422, "InputError", "")


def test_states(client: TestClient, engine: plait.Engine) -> None:
    states = engine.states("orders")
    states.create("o-1", "paying", context={"total": 9}, max_iterations=3)
    states.create("o-2", "shipped")
    states.fail("o-2", "lost")
    got = ok(client.get("/api/v1/states/orders/o-1"))
    assert {k: got[k] for k in ("id", "phase", "iteration", "max_iterations", "context")} == {
        "id": "o-1", "phase": "paying", "iteration": 0, "max_iterations": 3,
        "context": {"total": 9},
    }  # fmt: skip
    assert (got["revision"], got["error"], got["completed_at"]) == (1, None, None)
    listed = ok(client.get("/api/v1/states/orders", params={"phase": "failed"}))
    assert [(s["id"], s["error"]) for s in listed["states"]] == [("o-2", "lost")]
    assert listed["next_after"] is None
    page = ok(client.get("/api/v1/states/orders", params={"limit": 1}))
    assert [s["id"] for s in page["states"]] == ["o-1"] and page["next_after"] == "o-1"
    refused(client.get("/api/v1/states/orders/o-3"), 404, "NotFound", "no state 'o-3'")
    refused(client.get("/api/v1/states/orders", params={"phase": "9"}), 422, "InputError", "")
    refused(client.get("/api/v1/states/plait.x"), 422, "InputError", "")


# -- the token, hosts, headers ------------------------------------------------------------------------


def test_mutating_calls_need_the_token_and_change_nothing_without_it(
    client: TestClient, engine: plait.Engine
) -> None:
    engine.start("flaky", {"n": 1}, run_id="guarded")
    refused(client.post("/api/v1/runs/guarded/cancel"), 401, "Unauthorized", "X-Plait-Token")
    refused(client.post("/api/v1/runs/guarded/cancel", headers={"X-Plait-Token": "wrong"}), 403,
            "Forbidden", "wrong token")  # fmt: skip
    refused(client.post("/api/v1/runs/guarded/cancel",
                        headers={"Authorization": "Bearer wrong"}), 403, "Forbidden", "")  # fmt: skip
    refused(client.delete("/api/v1/runs/guarded?force=true"), 401, "Unauthorized", "")
    assert engine.get_run("guarded").status.value == "pending"
    ok(
        client.post(
            "/api/v1/runs/guarded/cancel",
            headers={"Authorization": f"Bearer {AUTH['X-Plait-Token']}"},
        )
    )
    assert engine.get_run("guarded").status.value == "cancelled"
    # reads need no token
    ok(client.get("/api/v1/runs/guarded"))


def test_without_a_token_mutations_need_the_header_and_hosts_are_checked(
    engine: plait.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    from plait.server.app import create_app

    engine.start("flaky", {"n": 1}, run_id="local")
    app = create_app(engine)  # loopback names only
    with CheckedClient(app, base_url="http://127.0.0.1") as client:
        refused(client.post("/api/v1/runs/local/cancel"), 401, "Unauthorized", "")
        ok(client.post("/api/v1/runs/local/cancel", headers={"X-Plait-Token": "x"}))
    with TestClient(app, base_url="http://evil.example") as client:  # DNS rebinding
        response = client.get("/api/v1/runs")
        assert response.status_code == 400


def test_the_token_is_never_logged(engine: plait.Engine, caplog: pytest.LogCaptureFixture) -> None:
    from plait.server.app import create_app

    caplog.set_level("DEBUG")
    app = create_app(engine, token="t0ps3cr3t-value", allowed_hosts=["testserver"])
    with CheckedClient(app) as c:
        c.post("/api/v1/runs/x/cancel", headers={"X-Plait-Token": "t0ps3cr3t-value"})
        c.post("/api/v1/runs/x/cancel", headers={"X-Plait-Token": "guess-value"})
    assert "t0ps3cr3t" not in caplog.text and "guess-value" not in caplog.text


def test_unknown_routes_and_methods_are_json(client: TestClient) -> None:
    refused(client.get("/api/v1/nothing-here"), 404, "NotFound", "Not Found")
    response = client.put("/api/v1/runs", json={}, headers=AUTH)
    refused(response, 405, "MethodNotAllowed", "")
    assert response.headers["Allow"] == "GET, POST"  # every route of the path, not the first's
    assert client.options("/api/v1/schedules/nightly").headers["Allow"] == "DELETE, GET, PUT"


def test_bodies_take_numbers_and_booleans_as_they_are(
    client: TestClient, engine: plait.Engine
) -> None:
    engine.start("flaky", {"n": 1}, run_id="stays")
    for dry_run in (0, "false", "no"):  # never guessed to mean "act"
        refused(client.post("/api/v1/bulk", json={"action": "cancel", "run_ids": ["stays"],
                                                  "dry_run": dry_run}, headers=AUTH),
                422, "ValidationError", "body.dry_run: Input should be a valid boolean")  # fmt: skip
    assert ok(client.get("/api/v1/runs/stays"))["status"] == "pending"
    refused(client.post("/api/v1/runs", json={"workflow": "flaky", "input": {"n": 1},
                                              "priority": "5"}, headers=AUTH),
            422, "ValidationError", "body.priority: Input should be a valid integer")  # fmt: skip
    refused(client.put("/api/v1/queues/q", json={"concurrency": 2.5}, headers=AUTH),
            422, "ValidationError", "body.concurrency: Input should be a valid integer")  # fmt: skip
    refused(client.put("/api/v1/queues/q", json={"rate": {"count": "5"}}, headers=AUTH),
            422, "ValidationError", "body.rate.count: Input should be a valid number")  # fmt: skip
    assert [r["id"] for r in ok(client.get("/api/v1/runs"))["runs"]] == ["stays"]


def test_created_range_takes_a_date_time_or_epoch_seconds(
    client: TestClient, engine: plait.Engine
) -> None:
    engine.start("flaky", {"n": 1}, run_id="now")
    for after in ("2001-01-01T00:00:00", "978307200", 978307200.5):
        found = ok(client.get("/api/v1/runs", params={"created_from": after}))["runs"]
        assert [r["id"] for r in found] == ["now"], after
        assert ok(client.get("/api/v1/runs", params={"created_to": after}))["runs"] == []
    dry = ok(client.post("/api/v1/bulk", json={"action": "cancel",
             "filter": {"created_from": 978307200}}, headers=AUTH))  # fmt: skip
    assert dry["matched"] == 1
    refused(client.get("/api/v1/runs", params={"created_from": "yesterday"}), 422,
            "ValidationError", "query.created_from")  # fmt: skip


def test_openapi_document_and_docs_page(client: TestClient) -> None:
    spec = ok(client.get("/openapi.json"))
    paths = spec["paths"]
    for path in ("/api/v1/runs", "/api/v1/runs/{run_id}/fork", "/api/v1/bulk",
                 "/api/v1/failed-steps", "/api/v1/failed-steps/retry", "/api/v1/queues/{name}", "/api/v1/schedules/{name}",
                 "/api/v1/blobs/{sha256}", "/api/v1/artifacts/{artifact_id}",
                 "/api/v1/stream/runs", "/api/v1/runs/{run_id}/stream"):  # fmt: skip
        assert path in paths, path
    page = client.get("/api/docs")
    assert page.status_code == 200 and "openapi.json" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from the network


def test_every_operation_documents_its_answers(client: TestClient) -> None:
    from plait.server import responses

    spec = ok(client.get("/openapi.json"))
    schemas = spec["components"]["schemas"]
    error = {"$ref": "#/components/schemas/Error"}
    count = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            count += 1
            where = f"{method.upper()} {path}"
            answers = operation["responses"]
            successes = [status for status in answers if status.startswith("2")]
            assert successes, where  # one, or two (POST /runs: 201 created, 200 existed)
            for success in successes:
                content = answers[success].get("content")
                assert content, where
                for media, entry in content.items():
                    assert entry.get("schema") not in (None, {}), (where, media)
                if "application/json" in content:
                    schema = content["application/json"]["schema"]
                    assert "$ref" in schema or schema.get("description"), where
            failures = {status for status in answers if not status.startswith("2")}
            assert "503" in failures, where
            if method != "get":  # the token, in either header
                assert {"401", "403"} <= failures, where
                assert operation["security"] == [{"token": []}, {"bearer": []}], where
            else:
                assert "security" not in operation, where
            if path.count("{") or operation.get("parameters"):
                assert "422" in failures, where
            for status in failures:  # every error is the API's JSON error, not FastAPI's shape
                assert answers[status]["content"]["application/json"]["schema"] == error, where
    assert count == 46
    assert "HTTPValidationError" not in schemas
    token = spec["components"]["securitySchemes"]["token"]
    assert token == {"type": "apiKey", "in": "header", "name": "X-Plait-Token",
                     "description": token["description"]}  # fmt: skip
    models = {m.__name__ for m in vars(responses).values()
              if isinstance(m, type) and issubclass(m, responses.Answer)} - {"Answer"}  # fmt: skip
    assert models <= set(schemas), models - set(schemas)
    for name in models:  # a field the server adds and the model lacks fails the schema
        assert schemas[name]["additionalProperties"] is False, name


def test_graph_groups_alike_steps_and_expands_them(
    client: TestClient, engine: plait.Engine
) -> None:
    wide = plait.Workflow("wide")
    wide.add_step("source", lambda: 1)
    for n in range(30):
        wide.add_step(f"part_{n:02d}", lambda source: source, deps=["source"])
    wide.add_step("sink", lambda **parts: len(parts), deps=[f"part_{n:02d}" for n in range(30)])
    engine.start(wide, None, run_id="wide-1")
    graph = ok(client.get("/api/v1/runs/wide-1/graph"))
    assert graph["steps"] == 32
    (group,) = [n for n in graph["nodes"] if n["group"]]
    assert group["size"] == 30 and group["counts"] == {"pending": 30}
    assert {n["id"] for n in graph["nodes"] if not n["group"]} == {"source", "sink"}
    assert {(e["from"], e["to"]) for e in graph["edges"]} == {
        ("source", group["id"]), (group["id"], "sink"),
    }  # fmt: skip
    expanded = ok(client.get("/api/v1/runs/wide-1/graph", params={"expand": group["id"]}))
    assert len(expanded["nodes"]) == 32 and not any(n["group"] for n in expanded["nodes"])
