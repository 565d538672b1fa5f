"""Screenshots of the dashboard's main pages for the docs (docs/img/*.png), taken in Debian's
headless Chromium against a real server over a demo store that a real worker filled.

    PYTHONPATH=src python scripts/screenshots.py [OUT_DIR]     (default docs/img)

tests/server/test_screenshots.py runs it into a temporary folder, so it keeps working."""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.server.browser import browser_context, serving  # noqa: E402

import plait  # noqa: E402
from plait.server.app import create_app  # noqa: E402

PAGES = ["runs", "run", "timeline", "step", "fanout", "failed", "queues", "workers"]


def demo(engine: plait.Engine) -> plait.Workflow:
    shop = plait.Workflow("orders", version="3", retry=plait.Retry(attempts=2, delay=0.01))

    @shop.step()
    def fetch(order_id: int) -> dict[str, int]:
        return {"id": order_id, "total": 30 + order_id}

    @shop.step()
    def fraud_check(fetch: dict[str, int]) -> bool:
        return fetch["total"] < 100

    @shop.step(approval=True)
    def review(fetch: dict[str, int], fraud_check: bool) -> bool:
        return True

    @shop.step(queue="payments")
    def charge(fetch: dict[str, int], review: bool) -> dict[str, int]:
        if fetch["id"] % 4 == 3:
            raise plait.Permanent("card declined", code="declined")
        return {"charged": fetch["total"]}

    @shop.step(optional=True)
    def email(charge: dict[str, int]) -> None:
        return None

    @shop.step(defaults={"email": None})
    def finish(charge: dict[str, int], email: None) -> dict[str, bool]:
        return {"ok": True}

    batch = plait.Workflow("nightly_batch", version="1")

    @batch.task()
    def resize(n: int) -> int:
        return n * 2

    @batch.step()
    def plan(size: int) -> list[int]:
        return list(range(size))

    @batch.step()
    def fan_out(ctx: plait.StepContext, plan: list[int]) -> list[plait.Handle]:
        return ctx.map(resize, plan)

    @batch.step()
    def report(fan_out: list[int]) -> int:
        return sum(fan_out)

    engine.register(shop)
    engine.register(batch)
    engine.configure_queue("payments", concurrency=4, rate=plait.Rate(10, per=1))
    for n in range(8):
        labels = {"customer": str(4200 + n), "region": "eu" if n % 3 else "us"}
        engine.start(shop, {"order_id": n}, run_id=f"order-{n}", labels=labels)
    engine.start(batch, {"size": 400}, run_id="batch-2026-12-07")
    done = threading.Event()

    def approve_some() -> None:
        for event in engine.watch("order-1"):
            if event.type == "step_waiting":
                break
        for n in (1, 2, 3, 5, 6):
            engine.approve(f"order-{n}", "review", by="alice")
        done.set()

    t = threading.Thread(target=approve_some)
    t.start()
    try:
        engine.run_worker(until=["batch-2026-12-07", "order-1", "order-3"], timeout=60)
    finally:
        t.join(30)
    return shop


def shoot(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="plait-shots-")
    engine = plait.Engine(f"sqlite:///{folder}/plait.db", lease=5.0)
    taken: list[Path] = []
    try:
        demo(engine)
        with (
            serving(create_app(engine)) as url,
            browser_context(viewport={"width": 1360, "height": 820}) as context,
        ):
            page = context.new_page()
            page.set_default_timeout(20_000)

            def snap(name: str) -> None:
                path = out / f"{name}.png"
                page.screenshot(path=str(path))
                taken.append(path)

            page.goto(f"{url}/#/runs")
            page.wait_for_selector('tr[data-run="order-7"]')
            snap("runs")
            page.goto(f"{url}/#/run/order-4")
            page.wait_for_selector('[data-node="review"]')
            snap("run")
            page.click('[data-node="review"]')
            page.wait_for_selector("#why")
            snap("step")
            page.click("#close-drawer")
            page.goto(f"{url}/#/run/order-1?tab=timeline")
            page.wait_for_selector("#timeline-svg rect")
            snap("timeline")
            page.goto(f"{url}/#/run/batch-2026-12-07")
            page.wait_for_selector("#graph-svg .node.group")
            snap("fanout")
            page.goto(f"{url}/#/failed")
            page.wait_for_selector("#failed >> text=declined")
            snap("failed")
            page.goto(f"{url}/#/queues")
            page.wait_for_selector("#queues >> text=payments")
            snap("queues")
            page.goto(f"{url}/#/workers")
            page.wait_for_selector("h1")
            snap("workers")
    finally:
        engine.close()
    return taken


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img"
    for path in shoot(target):
        print(path)
