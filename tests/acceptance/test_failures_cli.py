"""`plait failures list|retry`, as a user runs them: failed steps across runs, paged, and
retried many at once after saying how many (asking unless --yes)."""

from __future__ import annotations

from pathlib import Path

import plait

from .conftest import Cli, import_file

APP = """
from pathlib import Path
import plait

wf = plait.Workflow("payments")

@wf.step
def charge(n: int) -> int:
    if not (Path(__file__).parent / "fixed").exists():
        raise plait.Permanent(f"card declined {n}", code="declined")
    return n
"""


def _failed(cli: Cli, engine: plait.Engine, write_app) -> tuple[Path, plait.Workflow]:
    app: Path = write_app("payments_app.py", APP)
    wf = import_file(app).wf
    handles = [engine.start(wf, {"n": n}, run_id=f"pay-{n}") for n in range(3)]
    engine.run_worker(until=handles, workflows=[wf], timeout=30)
    return app, wf


def test_failures_list_pages_newest_first(cli: Cli, engine: plait.Engine, write_app) -> None:
    _failed(cli, engine, write_app)
    listed = cli("failures", "list", "--code", "declined", "--limit", "2")
    assert listed.code == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["RUN", "WORKFLOW", "STEP", "CODE", "ATTEMPTS", "ENDED", "MESSAGE"]
    assert [line.split()[0] for line in lines[1:3]] == ["pay-2", "pay-1"]
    assert "card declined 2" in lines[1]
    more = lines[-1]
    assert more.startswith("more: plait failures list --code declined --limit 2 --cursor ")
    cursor = more.rsplit(" ", 1)[1]
    rest = cli(
        "failures", "list", "--code", "declined", "--limit", "2", "--cursor", cursor, "--json"
    )
    assert [s["run_id"] for s in rest.json()["steps"]] == ["pay-0"]
    assert rest.json()["next_cursor"] is None
    assert cli("failures", "list", "--step", "other").stdout == "no failed steps\n"
    assert cli("failures", "list", "--since", "1h", "--json").json()["steps"][0]["step"] == "charge"


def test_failures_list_bad_input_exits_2(cli: Cli, engine: plait.Engine, write_app) -> None:
    _failed(cli, engine, write_app)
    garbled = cli("failures", "list", "--cursor", "zz!")
    assert garbled.code == 2
    assert garbled.stderr.strip() == (
        "plait: error: invalid --cursor 'zz!': pass the next_cursor of a previous page"
    )
    page = cli("failures", "list", "--limit", "1", "--json").json()
    other = cli(
        "failures", "list", "--limit", "1", "--step", "charge", "--cursor", page["next_cursor"]
    )
    assert other.code == 2 and "belongs to a listing with other filters" in other.stderr
    limit = cli("failures", "retry", "--limit", "0", "--yes")
    assert limit.code == 2
    assert (
        limit.stderr.strip() == "plait: error: limit must be an integer between 1 and 1000, got 0"
    )
    since = cli("failures", "list", "--since", "last tuesday")
    assert since.code == 2
    assert "invalid --since 'last tuesday': give an ISO 8601 date-time" in since.stderr


def test_failures_retry_says_how_many_and_asks(cli: Cli, engine: plait.Engine, write_app) -> None:
    app, wf = _failed(cli, engine, write_app)
    dry = cli("failures", "retry", "--workflow", "payments", "--dry-run")
    assert dry.code == 0 and dry.stdout == "3 failed step(s) in 3 run(s) match\n"
    refused = cli("failures", "retry", "--workflow", "payments", stdin="n\n")
    assert refused.code == 1
    assert "3 failed step(s) in 3 run(s) match: " in refused.stderr and "Aborted" in refused.stderr
    assert len(engine.failures().steps) == 3  # nothing retried
    (app.parent / "fixed").write_text("yes")
    done = cli("failures", "retry", "--code", "declined", "--yes", "--by", "ops")
    assert done.code == 0, done.stderr
    assert done.stdout == "retried 3 failed step(s)\n"
    engine.run_worker(until=[f"pay-{n}" for n in range(3)], workflows=[wf], timeout=30)
    assert [engine.get_run(f"pay-{n}").output for n in range(3)] == [
        {"charge": n} for n in range(3)
    ]
    none = cli("failures", "retry", "--yes")
    assert none.code == 0 and none.stdout == "no failed steps match: nothing to retry\n"


def test_failures_retry_and_list_by_label(cli: Cli, engine: plait.Engine, write_app) -> None:
    app: Path = write_app("payments_app.py", APP)
    wf = import_file(app).wf
    tiers = ["gold", "gold", "free"]
    handles = [
        engine.start(wf, {"n": n}, run_id=f"pay-{n}", labels={"tier": tier, "region": "eu"})
        for n, tier in enumerate(tiers)
    ]
    engine.run_worker(until=handles, workflows=[wf], timeout=30)
    listed = cli("failures", "list", "--label", "tier=gold", "--label", "region=eu", "--json")
    assert listed.code == 0, listed.stderr
    assert [s["run_id"] for s in listed.json()["steps"]] == ["pay-1", "pay-0"]
    page = cli("failures", "list", "--label", "tier=gold", "--limit", "1")
    assert page.stdout.splitlines()[-1].startswith(
        "more: plait failures list --label tier=gold --limit 1 --cursor "
    )
    cursor = page.stdout.splitlines()[-1].rsplit(" ", 1)[1]
    rest = cli("failures", "list", "--label", "tier=gold", "--cursor", cursor, "--json")
    assert [s["run_id"] for s in rest.json()["steps"]] == ["pay-0"]
    other = cli("failures", "list", "--cursor", cursor)  # made for the gold label only
    assert other.code == 2 and "belongs to a listing with other filters" in other.stderr
    dry = cli("failures", "retry", "--label", "tier=gold", "--dry-run")
    assert dry.code == 0 and dry.stdout == "2 failed step(s) in 2 run(s) match\n"
    nobody = cli("failures", "retry", "--label", "tier=gold", "--label", "region=us", "--yes")
    assert nobody.stdout == "no failed steps match: nothing to retry\n"
    (app.parent / "fixed").write_text("yes")
    done = cli("failures", "retry", "--label", "tier=gold", "--yes")
    assert done.code == 0 and done.stdout == "retried 2 failed step(s)\n"
    engine.run_worker(until=["pay-0", "pay-1"], workflows=[wf], timeout=30)
    assert [engine.get_run(f"pay-{n}").status for n in range(3)] == [
        plait.RunStatus.COMPLETED, plait.RunStatus.COMPLETED, plait.RunStatus.FAILED,
    ]  # fmt: skip


def test_failures_bad_labels_exit_2_as_for_runs(cli: Cli, engine: plait.Engine) -> None:
    cases = [
        (["--label", "customer"], "--label: invalid label 'customer': write it as key=value"),
        (
            ["--label", "a b=1"],
            "--label: invalid label key 'a b': use 1-63 ASCII letters, digits or any of _ . - /",
        ),
        (["--label", "k=1", "--label", "k=2"], "--label: label 'k' is given twice"),
    ]
    for args, message in cases:
        for command in (["retry", "--yes"], ["retry", "--dry-run"], ["list"]):
            result = cli("failures", *command, *args)
            assert result.code == 2, (command, args, result.stderr)
            assert result.stderr.strip().startswith(f"plait: error: {message}"), result.stderr
    same = cli("runs", "retry", "--label", "customer")  # the same words as the bulk retry
    assert same.stderr.strip() == (
        "plait: error: --label: invalid label 'customer': write it as key=value"
    )
