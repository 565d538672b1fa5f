"""The dashboard at scale, measured (not asserted): a 10,000-step run's page in headless
Chromium, and keyset pages of a list of 100,000 runs, first and deep.

    PYTHONPATH=src python benchmarks/dashboard.py [--steps 10000] [--runs 100000]

Prints one JSON document: the run page's API calls and its load time in the browser until the
graph is drawn, and each list page's time, with the query plan SQLite chose for it."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.server.browser import browser_context, serving  # noqa: E402

import plait  # noqa: E402
from plait.server.app import create_app  # noqa: E402


def big_run(engine: plait.Engine, steps: int) -> str:
    wf = plait.Workflow("big_fanout")

    @wf.task()
    def item(n: int) -> int:
        return n

    @wf.step()
    def plan(size: int) -> list[int]:
        return list(range(size))

    @wf.step()
    def fan(ctx: plait.StepContext, plan: list[int]) -> list[plait.Handle]:
        return ctx.map(item, plan)

    @wf.step()
    def total(fan: list[int]) -> int:
        return sum(fan)

    handle = engine.start(wf, {"size": steps}, run_id="big-run")
    engine.run_worker(until=handle, timeout=600, concurrency=32)
    return handle.id


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return round(time.perf_counter() - start, 4), value


def run_page(url: str, run_id: str) -> dict[str, Any]:
    import httpx

    calls = {}
    for path in ("graph", "timeline", "inspect", "steps"):
        took, response = timed(
            lambda p=path: httpx.get(f"{url}/api/v1/runs/{run_id}/{p}", timeout=60)
        )
        calls[path] = {"seconds": took, "bytes": len(response.content)}
    with browser_context(viewport={"width": 1360, "height": 820}) as context:
        page = context.new_page()
        page.set_default_timeout(60_000)
        loads = []
        for _ in range(3):
            start = time.perf_counter()
            page.goto(f"{url}/#/run/{run_id}")
            page.wait_for_selector("#graph-svg .node.group")
            loads.append(round(time.perf_counter() - start, 3))
            page.goto("about:blank")
    return {"api": calls, "page_load_seconds": loads}


def many_runs(path: Path, engine: plait.Engine, count: int) -> None:
    wf = plait.Workflow("listed")

    @wf.step()
    def one() -> int:
        return 1

    engine.start(wf, None, run_id="seed")
    db = sqlite3.connect(path)
    with db:
        db.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO runs (id, workflow, version, fingerprint, status, input, sinks,
                              unfinished, failures, next_seq, created_at, updated_at, next_idx)
            SELECT printf('run-%07d', i), workflow, version, fingerprint,
                   CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END, input, sinks, 0, 0,
                   1, created_at + i, created_at + i, 0
            FROM n, (SELECT * FROM runs WHERE id = 'seed')
            """,
            (count,),
        )
    db.close()


def list_pages(path: Path, engine: plait.Engine) -> dict[str, Any]:
    out: dict[str, Any] = {}
    took, first = timed(lambda: engine.list_runs(limit=50))
    out["first_page"] = took
    cursor = first.next_cursor
    deep = None
    for _ in range(1000):  # 50,000 runs deep, page by page
        page = engine.list_runs(limit=50, cursor=cursor)
        cursor = page.next_cursor
        deep = cursor
    took, _ = timed(lambda: engine.list_runs(limit=50, cursor=deep))
    out["page_50000_deep"] = took
    took, _ = timed(lambda: engine.list_runs(limit=50, cursor=deep, status="failed"))
    out["failed_page_deep"] = took
    took, _ = timed(
        lambda: engine.list_runs(limit=50, workflow="listed", status="failed", cursor=deep)
    )
    out["workflow_failed_page_deep"] = took
    took, _ = timed(lambda: engine.list_runs(limit=50, text="run-00999"))
    out["text_search"] = took
    took, _ = timed(lambda: engine.count_runs(plait.RunFilter(status="failed")))
    out["count_failed"] = took
    db = sqlite3.connect(path)
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM runs WHERE (created_at, id) < (?, ?) "
        "ORDER BY created_at DESC, id DESC LIMIT 51",
        (1e12, "x"),
    ).fetchall()
    out["plan"] = [row[-1] for row in plan]
    db.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=100_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="plait-bench-dash-"))
    report: dict[str, Any] = {}
    db = folder / "big.db"
    with plait.Engine(f"sqlite:///{db}") as engine:
        took, run_id = timed(lambda: big_run(engine, args.steps))
        report["run"] = {"steps": args.steps + 3, "ran_in_seconds": took}
        with serving(create_app(engine)) as url:
            report["run_page"] = run_page(url, run_id)
    listed = folder / "list.db"
    with plait.Engine(f"sqlite:///{listed}") as engine:
        many_runs(listed, engine, args.runs)
        report["runs_list"] = {"runs": args.runs + 1, **list_pages(listed, engine)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
