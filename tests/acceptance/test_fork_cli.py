"""`plait runs fork`, `plait runs diff` and `plait replay`, as a user runs them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import plait

from .conftest import Cli, import_file

SHOP = """
import plait

wf = plait.Workflow("shop", version="{version}")

@wf.step
def fetch(n: int) -> list:
    return [2] * n

@wf.step
def total(fetch: list) -> dict:
    {body}

@wf.step
def label(total: dict) -> str:
    return f"{{total['total']}} EUR"
"""
GOOD = "return {'total': sum(fetch), 'currency': 'EUR'}"
TRIPLED = "return {'total': 3 * sum(fetch), 'currency': 'EUR'}"
BROKEN = "raise ValueError('tax table missing')"


def shop_app(write_app: Callable[[str, str], Path], name: str, version: str, body: str) -> Path:
    return write_app(name, SHOP.format(version=version, body=body))


def recorded_run(engine: plait.Engine, app: Path, run_id: str = "p1") -> plait.Workflow:
    wf: plait.Workflow = import_file(app).wf
    handle = engine.start(wf, {"n": 2}, run_id=run_id)
    engine.run_worker(until=handle, workflows=[wf], timeout=30)
    assert handle.result(timeout=5) == {"label": "4 EUR"}
    return wf


def test_fork_then_diff_from_the_command_line(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    wf = recorded_run(engine, shop_app(write_app, "shop_app.py", "1", GOOD))

    forked = cli("runs", "fork", "p1", "total", "--run-id", "f1", "--by", "alice")

    assert forked.code == 0, forked.stderr
    assert forked.stdout == (
        "run f1 forked from p1 at total (shop v1): reused fetch; runs again total, label\n"
    )
    engine.run_worker(until="f1", workflows=[wf], timeout=30)
    assert engine.get_run("f1").output == {"label": "4 EUR"}
    events = cli("runs", "events", "f1", "--json").json()
    assert [e["payload"]["by"] for e in events if e["type"] == "run_forked"] == ["alice"]

    same = cli("runs", "diff", "p1", "f1", "--json")
    assert same.code == 0, same.stderr
    assert same.json() == {
        name: {"status": "same", "diff": []} for name in ("fetch", "total", "label")
    }

    changed = cli("runs", "fork", "p1", "fetch", "--input", '{"n": 3}', "--run-id", "f2", "--json")
    assert changed.code == 0, changed.stderr
    doc = changed.json()
    assert (doc["id"], doc["input"], doc["reused"], doc["runs_again"]) == (
        "f2",
        {"n": 3},
        [],
        ["fetch", "total", "label"],
    )
    engine.run_worker(until="f2", workflows=[wf], timeout=30)
    table = cli("runs", "diff", "p1", "f2")
    assert table.code == 0, table.stderr
    lines = [" ".join(line.split()) for line in table.stdout.splitlines()]
    assert "fetch changed /output/2: added 2" in lines
    assert "total changed /output/total: 4 → 6" in lines
    assert 'label changed /output: "4 EUR" → "6 EUR"' in lines


def test_fork_with_overrides_on_the_newest_version(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    recorded_run(engine, shop_app(write_app, "shop_app.py", "1", GOOD))
    v2: plait.Workflow = import_file(shop_app(write_app, "shop_v2.py", "2", TRIPLED)).wf
    engine.register(v2)  # recorded in the store: the newest version

    forked = cli("runs", "fork", "p1", "total", "--override", "fetch=[1, 1, 1, 1]", "--json")

    assert forked.code == 0, forked.stderr
    fork_id = forked.json()["id"]
    assert forked.json()["version"] == "2"
    engine.run_worker(until=fork_id, workflows=[v2], timeout=30)
    assert engine.get_run(fork_id).output == {"label": "12 EUR"}


def test_fork_mistakes_exit_2_with_one_line(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    wf = recorded_run(engine, shop_app(write_app, "shop_app.py", "1", GOOD))
    runs_before = len(engine.list_runs().runs)

    cases = {
        ("runs", "fork", "nope", "total"): "plait: error: no run with id 'nope'",
        ("runs", "fork", "p1", "zz"): (
            f"plait: error: cannot fork run 'p1' from step 'zz': workflow 'shop' v1 "
            f"({wf.fingerprint}) has no such step; its steps: fetch, total, label"
        ),
        ("runs", "fork", "p1", "total", "--override", "label=1"): (
            "plait: error: cannot override step 'label': the fork of run 'p1' from 'total' "
            "does not reuse it (it is downstream of 'total'); overrides replace the output of "
            "reused steps: 'fetch'"
        ),
        ("runs", "fork", "p1", "total", "--override", "fetch"): (
            "plait: error: --override 'fetch': expected STEP=JSON, as in price='[1, 2]'"
        ),
        ("runs", "fork", "p1", "total", "--override", "fetch=[1,"): (
            "plait: error: --override fetch: the value is not valid JSON: Expecting value: "
            "line 1 column 4 (char 3)"
        ),
        ("runs", "fork", "p1", "total", "--override", 'fetch={"a": 1, "a": 2}'): (
            "plait: error: --override fetch: key 'a' appears twice in one object"
        ),
        ("runs", "fork", "p1", "total", "--override", "fetch=NaN"): (
            "plait: error: --override fetch: NaN is not JSON (JSON has no NaN or infinity)"
        ),
        ("runs", "fork", "p1", "total", "--input", '{"m": 1}'): (
            "plait: error: run input of 'shop' misses field 'n', required by step 'fetch'"
        ),
        ("runs", "diff", "p1", "nope"): "plait: error: no run with id 'nope'",
    }
    for args, message in cases.items():
        result = cli(*args)
        assert result.code == 2, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.strip().startswith(message), (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert len(engine.list_runs().runs) == runs_before


def test_fork_errors_name_the_flags(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    recorded_run(engine, shop_app(write_app, "shop_app.py", "1", GOOD))
    # version 2 reads a field the recorded input lacks: the run's own input no longer fits
    needs_more = SHOP.replace("def fetch(n: int)", "def fetch(n: int, m: int)")
    engine.register(
        import_file(write_app("shop_v2.py", needs_more.format(version="2", body=GOOD))).wf
    )

    own_input = cli("runs", "fork", "p1", "total")
    taken = cli("runs", "fork", "p1", "total", "--input", '{"n": 1, "m": 1}', "--run-id", "p1")

    assert own_input.code == 2 and own_input.stderr.strip() == (
        "plait: error: cannot fork run 'p1' with its own input: run input of 'shop' misses "
        "field 'm', required by step 'fetch'; pass --input JSON"
    )
    assert taken.code == 2 and taken.stderr.strip() == (
        "plait: error: run id 'p1' is already used by another run; choose another --run-id"
    )


def test_replay_shows_what_the_current_code_returns(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    recorded_run(engine, shop_app(write_app, "shop_app.py", "1", GOOD))
    fixed = shop_app(write_app, "shop_fixed.py", "2", TRIPLED)
    events_before = len(engine.events("p1"))
    versions_before = len(engine.workflows())

    replayed = cli("replay", "p1", "total", "--app", str(fixed))

    assert replayed.code == 0, replayed.stderr
    lines = replayed.stdout.splitlines()
    assert lines[0].startswith("replayed step total of run p1 with shop v2 (")
    assert lines[1:] == [
        'recorded  done  {"total": 4, "currency": "EUR"}',
        'replayed  done  {"total": 12, "currency": "EUR"}',
        "differences:",
        "  /output/total: 4 → 12",
    ]
    as_json = cli("replay", "p1", "total", "--app", f"{fixed}:wf", "--json").json()
    assert as_json["recorded"]["output"] == {"total": 4, "currency": "EUR"}
    assert as_json["replayed"] == {
        "status": "done",
        "output": {"total": 12, "currency": "EUR"},
        "error": None,
        "traceback": None,
    }
    assert as_json["changed"] is True
    assert as_json["diff"] == [{"path": "/output/total", "op": "changed", "a": 4, "b": 12}]
    same = cli("replay", "p1", "label", "--app", str(fixed))
    assert same.code == 0 and same.stdout.splitlines()[-1] == "no difference"
    # nothing was written: no event, no workflow version
    assert len(engine.events("p1")) == events_before
    assert len(engine.workflows()) == versions_before


def test_replay_of_a_handler_that_raises_reports_it_and_exits_1(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    recorded_run(engine, shop_app(write_app, "shop_app.py", "1", GOOD))
    broken = shop_app(write_app, "shop_broken.py", "2", BROKEN)

    replayed = cli("replay", "p1", "total", "--app", str(broken))

    assert replayed.code == 1
    assert "replayed  failed  [ValueError] tax table missing" in replayed.stdout
    assert "ValueError: tax table missing" in replayed.stderr  # the traceback, for debugging
    assert engine.get_run("p1").status is plait.RunStatus.COMPLETED


def test_replay_mistakes_exit_2_with_one_line(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path], tmp_path: Path
) -> None:
    app = shop_app(write_app, "shop_app.py", "1", GOOD)
    recorded_run(engine, app)
    other = write_app(
        "other_app.py", "import plait\nwf = plait.Workflow('other')\nwf.add_step('a', lambda: 1)\n"
    )
    cases = {
        ("replay", "p1", "zz", "--app", str(app)): (
            "plait: error: cannot replay step 'zz': workflow 'shop' v1 ("
        ),
        ("replay", "nope", "total", "--app", str(app)): "plait: error: no run with id 'nope'",
        ("replay", "p1", "total", "--app", str(other)): (
            f"plait: error: {other} defines no workflow 'shop' (workflows there: other)"
        ),
        ("replay", "p1", "total", "--app", f"{other}:wf"): (
            "plait: error: cannot replay run 'p1' with workflow 'other': the run is of "
            "workflow 'shop'"
        ),
        ("replay", "p1", "total", "--app", str(tmp_path / "missing.py")): (
            f"plait: error: file not found: {tmp_path / 'missing.py'}"
        ),
    }
    for args, message in cases.items():
        result = cli(*args)
        assert result.code == 2, (args, result.stderr)
        assert result.stderr.strip().startswith(message), (args, result.stderr)
        assert "Traceback" not in result.stderr
    missing_app = cli("replay", "p1", "total")
    assert missing_app.code == 2 and missing_app.stderr == (
        "plait: error: missing option '--app'; see plait replay --help\n"
    )


def test_runs_show_marks_the_parent_and_the_reused_steps(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    recorded_run(engine, shop_app(write_app, "shop_app.py", "1", GOOD))
    assert cli("runs", "fork", "p1", "total", "--run-id", "f1").code == 0

    shown = cli("runs", "show", "f1")
    as_json = cli("runs", "show", "f1", "--json").json()

    assert shown.code == 0, shown.stderr
    lines = [" ".join(line.split()) for line in shown.stdout.splitlines()]
    assert "forked from run p1 at step total" in lines
    assert any(line.startswith("fetch done 0") and "reused from p1" in line for line in lines)
    assert not any("reused" in line for line in lines if line.startswith(("total", "label")))
    assert (as_json["run"]["parent_run"], as_json["run"]["forked_from"]) == ("p1", "total")
    assert [s["reused_from"] for s in as_json["steps"]] == ["p1", None, None]


BIG = """
import plait

wf = plait.Workflow("big")

def root() -> int:
    return 1

def middle(root: int) -> int:
    return root

def sink(**parts: int) -> int:
    return sum(parts.values())

wf.add_step("root", root)
for i in range(1198):
    wf.add_step(f"m{i}", middle, deps=["root"])
wf.add_step("sink", sink, deps=[f"m{i}" for i in range(1198)])
"""


def test_fork_and_diff_of_a_huge_graph_take_a_few_lines(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    wf = import_file(write_app("big_app.py", BIG)).wf
    engine.run_worker(until=engine.start(wf, run_id="b1"), workflows=[wf], timeout=60)
    assert engine.get_run("b1").output == {"sink": 1198}

    forked = cli("runs", "fork", "b1", "sink", "--override", "m0=100", "--run-id", "b2")
    assert forked.code == 0, forked.stderr
    assert forked.stdout == (
        "run b2 forked from b1 at sink (big v1): reused 1,199 steps: root, m0, m1 and 1,196 "
        "more; runs again sink\n"
    )
    as_json = cli("runs", "fork", "b1", "sink", "--override", "m0=100", "--run-id", "b2", "--json")
    assert len(as_json.json()["reused"]) == 1199  # JSON stays complete
    engine.run_worker(until="b2", workflows=[wf], timeout=60)

    diff = cli("runs", "diff", "b1", "b2")
    assert diff.code == 0, diff.stderr
    lines = [" ".join(line.split()) for line in diff.stdout.splitlines()]
    assert lines == [
        "STEP STATUS DIFFERENCES",
        "m0 changed /output: 1 → 100",
        "sink changed /output: 1198 → 1297",
        "1,198 same: root, m1, m2 and 1,195 more",
    ]
    complete = cli("runs", "diff", "b1", "b2", "--json").json()
    assert len(complete) == 1200
    assert sum(1 for entry in complete.values() if entry["status"] == "same") == 1198


def test_replay_in_another_process_sees_no_change_in_a_set(
    cli: Cli, engine: plait.Engine, write_app: Callable[[str, str], Path]
) -> None:
    """A set is encoded sorted, not in hash order, which differs from process to process."""
    app = write_app(
        "tags_app.py",
        """
        import plait

        wf = plait.Workflow("tags")

        @wf.step
        def tags() -> set:
            return {"pear", "apple", "fig", "kiwi", "plum", "lime", "date", "sloe", "yuzu"}
        """,
    )
    cli.env["PYTHONHASHSEED"] = "1"
    ran = cli("run", f"{app}:wf", "--run-id", "t1")
    assert ran.code == 0, ran.stderr
    for seed in ("2", "3"):
        cli.env["PYTHONHASHSEED"] = seed
        replayed = cli("replay", "t1", "tags", "--app", str(app))
        assert replayed.code == 0, replayed.stderr
        assert replayed.stdout.splitlines()[-1] == "no difference", replayed.stdout
    assert engine.get_run("t1").output == {
        "tags": ["apple", "date", "fig", "kiwi", "lime", "pear", "plum", "sloe", "yuzu"]
    }
