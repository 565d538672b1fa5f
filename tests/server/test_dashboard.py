"""The dashboard in real headless Chromium (Debian's, driven by Playwright), against the real
server (uvicorn on a loopback port) over a real SQLite store, with a real worker: what a person
sees, and what happens when they click. Every wait is on a condition in the page."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plait
from plait.server.app import create_app

from .browser import browser_context, serving
from .conftest import workflows

TIMEOUT = 20_000  # ms a page condition may take


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[plait.Engine, str]]:
    engine = plait.Engine(f"sqlite:///{tmp_path / 'plait.db'}", lease=5.0)
    for wf in workflows().values():
        engine.register(wf)
    try:
        with serving(create_app(engine)) as url:
            yield engine, url
    finally:
        engine.close()


@pytest.fixture
def page(site: tuple[plait.Engine, str]) -> Iterator[Any]:
    with browser_context(viewport={"width": 1300, "height": 850}) as context:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda d: errors.append(f"a native dialog opened: {d.message}"))
        yield page
        assert errors == []


def background_worker(engine: plait.Engine, until: str, **options: Any) -> threading.Thread:
    thread = threading.Thread(
        target=lambda: engine.run_worker(until=until, timeout=60, **options), daemon=True
    )
    thread.start()
    return thread


def confirm(page: Any, **fields: str) -> None:
    for name, value in fields.items():
        page.fill(f"#dialog-form [name={name}]", value)
    page.click("#dialog-ok")


def test_open_a_run_and_watch_it_go_live(site: tuple[plait.Engine, str], page: Any) -> None:
    engine, url = site
    gate = threading.Event()
    slow = plait.Workflow("slow")

    @slow.step()
    def hold() -> int:
        gate.wait(30)
        return 1

    @slow.step()
    def after(hold: int) -> int:
        return hold + 1

    engine.start(slow, None, run_id="slow-1")
    worker = background_worker(engine, "slow-1", workflows=[slow])
    page.goto(f"{url}/#/runs")
    page.click("text=slow-1")
    page.wait_for_selector('[data-node="hold"][data-status="running"]')
    assert page.text_content("#run-status") == "running"
    assert page.get_attribute('[data-node="after"]', "data-status") == "pending"
    gate.set()  # the step ends: the page follows without a reload
    page.wait_for_selector('[data-node="after"][data-status="done"]')
    page.wait_for_selector('#run-status [data-status="completed"]')
    worker.join(30)
    page.click("#tab-timeline")
    page.wait_for_selector('#timeline-svg rect.bar-done[data-step="hold"]')
    page.click("#tab-events")
    assert "run_completed" in page.text_content("#events-body")


def test_approve_a_waiting_step(site: tuple[plait.Engine, str], page: Any) -> None:
    engine, url = site
    engine.start("shop", {"order_id": 4}, run_id="order-4")
    worker = background_worker(engine, "order-4")
    page.goto(f"{url}/#/run/order-4")
    page.wait_for_selector('[data-node="review"][data-status="waiting"]')
    page.click('[data-node="review"]')
    assert "waiting for approval" in page.text_content("#why")
    page.click("#approve-step")
    confirm(page, note="looks right")
    page.wait_for_selector('[data-node="charge"][data-status="done"]')
    page.wait_for_selector('#run-status [data-status="completed"]')
    worker.join(30)
    approved = [e for e in engine.events("order-4") if e.type == "step_approved"]
    assert approved[0].payload["note"] == "looks right"
    assert approved[0].payload["by"] == "api@127.0.0.1"


def test_cancel_a_run(site: tuple[plait.Engine, str], page: Any) -> None:
    engine, url = site
    engine.start("waits", {}, run_id="waiting-1")
    page.goto(f"{url}/#/run/waiting-1")
    page.wait_for_selector('[data-node="go"]')
    page.click("#cancel-run")
    confirm(page, reason="not needed")
    page.wait_for_selector('#run-status [data-status="cancelled"]')
    assert engine.get_run("waiting-1").status.value == "cancelled"
    page.wait_for_selector('[data-node="go"][data-status="cancelled"]')


def test_fork_from_a_step_and_see_the_diff(site: tuple[plait.Engine, str], page: Any) -> None:
    engine, url = site
    engine.start("flaky", {"n": 1}, run_id="flaky-1")
    engine.run_worker(until="flaky-1", timeout=30)
    page.goto(f"{url}/#/run/flaky-1")
    page.click('[data-node="boom"]')
    page.wait_for_selector("#step-error")
    assert "unlucky: no luck with 1" in page.text_content("#step-error")
    assert "Permanent" in page.text_content("#traceback")
    page.click("#fork-step")
    confirm(page, input='{"n": 2}')
    page.wait_for_selector("#diff-card")
    fork_id = page.text_content("#run-id")
    assert fork_id != "flaky-1" and engine.get_run(fork_id).parent_run == "flaky-1"
    worker = background_worker(engine, fork_id)
    page.wait_for_selector('#diff-card tr[data-step="boom"]')
    assert "changed" in page.text_content('#diff-card tr[data-step="boom"]')
    worker.join(30)


def test_runs_list_is_live_and_bulk_cancels_with_a_typed_count(
    site: tuple[plait.Engine, str], page: Any
) -> None:
    engine, url = site
    engine.start("waits", {}, run_id="first")
    page.goto(f"{url}/#/runs")
    page.wait_for_selector('tr[data-run="first"]')
    for n in range(3):
        engine.start("waits", {}, run_id=f"later-{n}")  # appear without a reload
    page.wait_for_selector('tr[data-run="later-2"]')
    page.fill("#search", "later")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("text=3 runs match")
    assert page.locator('tr[data-run="first"]').count() == 0
    page.select_option("#bulk-action", "cancel")
    page.click("#bulk-go")
    page.wait_for_selector("#dialog-form >> text=3 runs match")
    confirm(page, confirm="2")  # the wrong count: nothing is done
    page.wait_for_selector("text=not confirmed: nothing was done")
    assert engine.get_run("later-0").status.value == "pending"
    page.click("#bulk-go")
    confirm(page, confirm="3")
    page.wait_for_selector('tr[data-run="later-0"] [data-status="cancelled"]')
    assert {engine.get_run(f"later-{n}").status.value for n in range(3)} == {"cancelled"}
    assert engine.get_run("first").status.value == "pending"


HOSTILE = "<script>window.__xss=1</script><img src=x onerror=window.__xss=2>"


def test_user_data_is_shown_as_text_never_run(site: tuple[plait.Engine, str], page: Any) -> None:
    engine, url = site
    wf = plait.Workflow("hostile")

    @wf.step()
    def evil(note: str, ctx: plait.StepContext) -> str:
        ctx.save_artifact(HOSTILE[:60].replace("/", "_"), b"x")
        raise plait.Permanent(HOSTILE, code="evil")

    labels = {"team": "red", "note": HOSTILE}  # a run's name and labels are shown as text too
    engine.start(wf, {"note": HOSTILE}, run_id="hostile-1", name=HOSTILE, labels=labels)
    engine.run_worker(until="hostile-1", timeout=30)
    engine.start("waits", {}, run_id="hostile-2")
    engine.signal("hostile-2", "go", {"html": HOSTILE})
    page.goto(f"{url}/#/runs?label=team=red")  # the runs with that label
    page.wait_for_selector('tr[data-run="hostile-1"]')
    row = page.text_content('tr[data-run="hostile-1"]')
    assert HOSTILE in row and "team=red" in row and f"note={HOSTILE}" in row
    assert page.locator("#runs-body tr").count() == 1  # not hostile-2
    assert page.input_value("#label-filter") == "team=red"
    page.goto(f"{url}/#/run/hostile-1")
    page.wait_for_selector("#run-labels")
    assert page.text_content("#run-name") == HOSTILE
    assert "team=red" in page.text_content("#run-labels")
    page.click('[data-node="evil"]')
    page.wait_for_selector("#step-error")
    assert HOSTILE in page.text_content("#step-error")
    page.click("#tab-events")
    assert HOSTILE in page.text_content("#events-body")
    page.goto(f"{url}/#/failed")
    page.wait_for_selector("#failed >> text=evil")
    page.goto(f"{url}/#/run/hostile-2")
    page.click("#tab-events")
    page.wait_for_selector("#events-body tr")
    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src=x]").count() == 0 and page.locator("main script").count() == 0


def test_pages_for_workers_queues_schedules_failed(
    site: tuple[plait.Engine, str], page: Any
) -> None:
    engine, url = site
    engine.configure_queue("emails", concurrency=2)
    engine.schedule("nightly", "flaky", cron="0 3 * * *", input={"n": 1})
    page.goto(f"{url}/#/queues")
    page.wait_for_selector("#queues >> text=emails")
    page.fill("#queue-form [name=name]", "reports")
    page.fill("#queue-form [name=concurrency]", "3")
    page.click("#queue-form button")
    page.wait_for_selector("#queues >> text=reports")
    assert engine.queues()[1].concurrency == 3
    page.goto(f"{url}/#/schedules")
    page.wait_for_selector("#schedules >> text=nightly")
    page.click("#schedules >> text=Pause")
    page.wait_for_selector("#schedules >> text=Resume")
    assert engine.get_schedule("nightly").paused
    page.goto(f"{url}/#/workers")
    page.wait_for_selector("text=No worker is registered")
    page.goto(f"{url}/#/run/ghost")
    page.wait_for_selector("#page-error >> text=no run with id 'ghost'")


def test_the_api_docs_page_shows_what_each_call_answers(
    site: tuple[plait.Engine, str], page: Any
) -> None:
    _, url = site
    page.goto(f"{url}/api/docs")
    page.wait_for_selector("text=answers: 200 RunPage")
    text = page.text_content("#docs") or ""
    assert "errors (Error): 400, 401, 403, 404, 409, 422, 503" in text  # POST /api/v1/runs
    assert "answers: 200 application/octet-stream" in text  # an artifact's download
    assert "answers: 200 text/event-stream" in text  # a live feed
    assert "one of: pending, running, pausing, paused, completed, failed, cancelled" in text


def test_a_runs_session_state_and_its_history_are_shown_as_text(
    site: tuple[plait.Engine, str], page: Any
) -> None:
    engine, url = site
    wf = plait.Workflow("stateful")

    @wf.step()
    def note(ctx: plait.StepContext) -> None:
        ctx.state.set("note", HOSTILE)
        ctx.state.append("log", "first")

    @wf.step(after=["note"])
    def more(ctx: plait.StepContext) -> None:
        ctx.state.append("log", "second")

    engine.start(wf, {}, run_id="stateful-1")
    engine.run_worker(until="stateful-1", timeout=30)
    page.goto(f"{url}/#/run/stateful-1?tab=state")
    page.wait_for_selector("#state-history tr >> nth=2")
    shown = page.text_content("#run-state")
    assert '"log": [' in shown and '"second"' in shown
    assert HOSTILE in shown  # as text, never markup
    rows = page.locator("#state-history tr").all_text_contents()
    assert len(rows) == 3
    assert "note" in rows[0] and "set" in rows[0] and "more" in rows[2] and "append" in rows[2]
    page.click("#tab-graph")
    page.click("#tab-state")
    page.wait_for_selector("#run-state")
    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src=x]").count() == 0 and page.locator("main script").count() == 0
