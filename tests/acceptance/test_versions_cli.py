"""`plait workflows`, `plait workflows diff` and `plait runs fork --fingerprint` (issue 17),
as a user runs them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import plait

from .conftest import Cli, import_file
from .test_fork_cli import GOOD, TRIPLED, recorded_run, shop_app

AUDITED = """
import plait

wf = plait.Workflow("shop", version="3")

@wf.step
def fetch(n: int) -> list:
    return [2] * n

@wf.step(priority=2)
def total(fetch: list) -> dict:
    return {'total': sum(fetch), 'currency': 'EUR'}

@wf.step
def label(total: dict) -> str:
    return f"{total['total']} EUR"

@wf.step
def audit(fetch: list) -> str:
    return "ok"
"""


def test_workflows_lists_versions_with_code_and_runs_in_flight(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    v1 = recorded_run(engine, shop_app(write_app, "shop_app.py", "1", GOOD))
    engine.start(v1, {"n": 1}, run_id="waiting-1")  # no worker: in flight

    listed = cli("workflows", "--json")

    assert listed.code == 0, listed.stderr
    [doc] = listed.json()
    assert (doc["name"], doc["version"], doc["fingerprint"]) == ("shop", "1", v1.fingerprint)
    assert doc["code"] == {name: v1.code_of(name) for name in ("fetch", "total", "label")}
    assert (doc["code_changes"], doc["runs_in_flight"], doc["workers"]) == ("deploy", 1, [])
    table = cli("workflows")
    assert table.code == 0, table.stderr
    assert "IN FLIGHT" in table.stdout and v1.fingerprint in table.stdout


def test_workflows_diff_says_what_changed(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    v1 = recorded_run(engine, shop_app(write_app, "shop_app.py", "1", GOOD))
    v2 = import_file(shop_app(write_app, "shop_v2.py", "2", TRIPLED)).wf
    v3 = import_file(write_app("shop_v3.py", AUDITED)).wf
    engine.register(v2)
    engine.register(v3)

    code_only = cli("workflows", "diff", "shop", "1", "2")
    assert code_only.code == 0, code_only.stderr
    assert code_only.stdout.splitlines() == [
        f"workflow shop: {v1.fingerprint} -> {v2.fingerprint}",
        f"code          total: {v1.code_of('total')} -> {v2.code_of('total')}",
        "same steps, edges and options",
    ]
    graph = cli("workflows", "diff", "shop", "1", v3.fingerprint, "--json")
    assert graph.code == 0, graph.stderr
    doc = graph.json()
    assert (doc["steps_added"], doc["options"], doc["graph_changed"]) == (
        ["audit"],
        {"total": ["priority"]},
        True,
    )
    bad = cli("workflows", "diff", "shop", "1", "9")
    assert bad.code == 2
    assert bad.stderr.strip() == (
        f"plait: error: workflow 'shop' has no version '9'; its versions: 1 ({v1.fingerprint}), "
        f"2 ({v2.fingerprint}), 3 ({v3.fingerprint})"
    )


def test_fork_on_the_version_of_a_fingerprint(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    v1 = recorded_run(engine, shop_app(write_app, "shop_app.py", "1", GOOD))
    engine.register(import_file(shop_app(write_app, "shop_v2.py", "2", TRIPLED)).wf)

    newest = cli("runs", "fork", "p1", "total", "--json")  # no worker serves any: the newest
    assert newest.code == 0, newest.stderr
    assert newest.json()["version"] == "2"
    pinned = cli("runs", "fork", "p1", "total", "--fingerprint", v1.fingerprint, "--json")
    assert pinned.code == 0, pinned.stderr
    assert pinned.json()["version"] == "1"
    runs_before = len(engine.list_runs().runs)
    bad = cli("runs", "fork", "p1", "total", "--fingerprint", "f00")
    assert bad.code == 2
    assert bad.stderr.strip().startswith(
        "plait: error: workflow 'shop' has no version of fingerprint 'f00'; its versions: 1 ("
    )
    assert len(engine.list_runs().runs) == runs_before


WAITING = """
import plait

wf = plait.Workflow("shop", version="{version}", retry=plait.Retry(attempts={attempts}))

@wf.step
def fetch(n: int) -> list:
    return [2] * n

@wf.step(approval=True)
def total(fetch: list) -> dict:
    return {{'total': sum(fetch)}}
"""


def test_runs_upgrade_moves_runs_in_flight(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    v1 = import_file(write_app("wait_v1.py", WAITING.format(version="1", attempts=1))).wf
    v2_app = write_app("wait_v2.py", WAITING.format(version="2", attempts=3))
    v2 = import_file(v2_app).wf
    engine.start(v1, {"n": 1}, run_id="w1")
    engine.start(v1, {"n": 2}, run_id="w2")

    dry = cli("runs", "upgrade", "--workflow", "shop", "--to", str(v2_app), "--dry-run")
    assert dry.code == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"w1: would upgrade {v1.fingerprint} -> {v2.fingerprint}",
        f"w2: would upgrade {v1.fingerprint} -> {v2.fingerprint}",
    ]
    assert engine.get_run("w1").fingerprint == v1.fingerprint
    done = cli("runs", "upgrade", "w1", "--to", str(v2_app), "--json")
    assert done.code == 0, done.stderr
    assert [(u["run_id"], u["status"]) for u in done.json()] == [("w1", "upgraded")]
    assert engine.get_run("w1").fingerprint == v2.fingerprint
    engine.cancel("w2")
    refused = cli("runs", "upgrade", "w2", "--to", str(v2_app))
    assert refused.code == 1
    assert refused.stdout.strip() == (
        f"w2: refused {v1.fingerprint} -> {v2.fingerprint}: run 'w2' is cancelled: only runs "
        "in flight move"
    )
    both = cli("runs", "upgrade", "w1", "--workflow", "shop", "--to", str(v2_app))
    assert both.code == 2
    assert both.stderr.strip() == (
        "plait: error: runs upgrade takes a RUN or --workflow NAME (every run in flight), not both"
    )
    labelled = cli("runs", "upgrade", "w1", "--label", "wave=1", "--to", str(v2_app))
    assert labelled.code == 2
    assert labelled.stderr.strip() == (
        "plait: error: runs upgrade takes --label with --workflow NAME (to select its runs)"
    )
    none = cli("runs", "upgrade", "--workflow", "shop", "--label", "wave=1", "--to", str(v2_app))
    assert (none.code, none.stdout.strip()) == (0, "no run of shop in flight")
