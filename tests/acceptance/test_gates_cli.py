"""Approvals, signals and deadlines from the command line, as an operator uses them."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import plait

from .conftest import Cli, Spawned, import_file, wait_for

APP = """
import asyncio
import plait

wf = plait.Workflow("refund")

@wf.step
def request(amount: int) -> int:
    return amount

@wf.step(approval=plait.Approval(expires_after=3600))
def approve_refund(request: int) -> int:
    return request

wf.signal("bank_ack")

@wf.step
def close(approve_refund: int, bank_ack: dict) -> str:
    return f"refunded {approve_refund} ({bank_ack['ref']})"

slow = plait.Workflow("slow")

@slow.step
async def hang() -> None:
    await asyncio.Event().wait()
"""


def test_approve_signal_and_list_what_waits(cli: Cli, engine: plait.Engine, write_app) -> None:
    app: Path = write_app("refund_app.py", APP)
    wf = import_file(app).wf
    handle = engine.start(wf, {"amount": 25}, run_id="refund-1")
    worker = threading.Thread(
        target=lambda: engine.run_worker(until=handle, workflows=[wf], timeout=60)
    )
    worker.start()
    wait_for(lambda: len(engine.list_waiting()) == 2, "the approval and the signal to wait")

    waiting = cli("runs", "waiting", "--json")
    assert waiting.code == 0, waiting.stderr
    assert sorted((w["run_id"], w["step"], w["gate"]) for w in waiting.json()) == [
        ("refund-1", "approve_refund", "approval"),
        ("refund-1", "bank_ack", "signal"),
    ]
    table = cli("runs", "waiting").stdout
    assert "approve_refund" in table and "signal" in table
    one = cli("runs", "waiting", "--run", "refund-1", "--json").json()
    assert sorted(w["step"] for w in one) == ["approve_refund", "bank_ack"]
    assert all(w["request"] is None for w in one)  # Python steps say nothing of what they ask
    unknown = cli("runs", "waiting", "--run", "refund-2")
    assert unknown.code == 2
    assert unknown.stderr.startswith("plait: error: no run with id 'refund-2' in sqlite:///")
    shown = cli("runs", "show", "refund-1").stdout
    assert "waits for approval (expires in 59min " in shown
    assert (
        "s): plait runs approve refund-1 approve_refund, or plait runs reject refund-1 "
        "approve_refund" in shown
    )
    assert "waits for a signal: plait runs signal refund-1 bank_ack JSON" in shown
    assert "engine." not in shown

    approved = cli("runs", "approve", "refund-1", "approve_refund", "--note", "ok", "--by", "eve")
    assert approved.code == 0, approved.stderr
    assert approved.stdout.startswith("step approve_refund of run refund-1 ")  # ready, or on
    sent = cli("runs", "signal", "refund-1", "bank_ack", '{"ref": "B-7"}')
    assert sent.stdout == "signal bank_ack delivered to run refund-1\n"
    again = cli("runs", "signal", "refund-1", "bank_ack", '{"ref": "B-8"}', "--json")
    assert again.json() == {"run_id": "refund-1", "signal": "bank_ack", "delivered": False}

    worker.join(timeout=60)
    assert handle.result(timeout=5) == {"close": "refunded 25 (B-7)"}
    events = cli("runs", "events", "refund-1", "--json").json()
    [approval] = [e for e in events if e["type"] == "step_approved"]
    assert approval["payload"] == {"step": "approve_refund", "by": "eve", "note": "ok"}
    assert cli("runs", "waiting").stdout == "nothing is waiting\n"


def test_gate_errors_exit_2_with_one_line(cli: Cli, engine: plait.Engine, write_app) -> None:
    app: Path = write_app("refund_app2.py", APP)
    engine.start(import_file(app).wf, {"amount": 5}, run_id="refund-2")

    early = cli("runs", "approve", "refund-2", "approve_refund")
    not_gate = cli("runs", "reject", "refund-2", "request", "--reason", "no")
    not_signal = cli("runs", "signal", "refund-2", "request", "1")
    bad_json = cli("runs", "signal", "refund-2", "bank_ack", "{oops")
    missing = cli("runs", "approve", "nope", "approve_refund")

    assert [r.code for r in (early, not_gate, not_signal, bad_json, missing)] == [2] * 5
    assert early.stderr.strip() == (
        "plait: error: step 'approve_refund' of run 'refund-2' is pending: "
        "only a waiting step can be approved"
    )
    assert not_gate.stderr.strip() == (
        "plait: error: step 'request' of workflow 'refund' is not an approval gate "
        "(declare it with @wf.step(approval=...))"
    )
    assert "is not a signal (declare it with wf.signal('request'))" in not_signal.stderr
    assert bad_json.stderr.startswith("plait: error: signal payload is not valid JSON: ")
    assert "no run with id 'nope'" in missing.stderr
    assert all("Traceback" not in r.stderr for r in (early, not_gate, not_signal, missing))


def test_a_deadline_counts_cancelled_steps_as_not_done(cli: Cli, write_app) -> None:
    app: Path = write_app(
        "partly_app.py",
        """
import asyncio
import plait

wf = plait.Workflow("partly")

@wf.step
def quick() -> int:
    return 1

@wf.step
async def hang() -> None:
    await asyncio.Event().wait()

@wf.step
def later(hang: None) -> None:
    return None
""",
    )

    result = cli("run", f"{app}:wf", "--deadline", "1", "--run-id", "partly-1")

    assert result.code == 1
    assert "run partly-1 of partly v1 (3 steps)" in result.stderr
    assert "[1/3] later cancelled: the run passed its deadline" in result.stderr
    counts = re.findall(r"^\[(\d+)/3\]", result.stderr, re.MULTILINE)
    assert counts and max(counts) == "1", result.stderr  # only quick is done


def test_run_with_a_deadline(cli: Cli, write_app) -> None:
    app: Path = write_app("slow_app.py", APP)

    result = cli("run", f"{app}:slow", "--deadline", "0.3", "--run-id", "slow-1")

    assert result.code == 1
    assert (
        "run slow-1 failed: deadline_exceeded: the run did not finish by its deadline"
        in result.stderr
    )
    shown = cli("runs", "show", "slow-1", "--json").json()
    assert shown["run"]["status"] == "failed" and shown["run"]["deadline"] is not None
    assert [s["status"] for s in shown["steps"]] == ["cancelled"]


def test_signal_payload_from_a_file_or_stdin(
    cli: Cli, engine: plait.Engine, write_app, tmp_path: Path
) -> None:
    app: Path = write_app("refund_app3.py", APP)
    wf = import_file(app).wf
    for run_id in ("refund-f", "refund-s"):
        engine.start(wf, {"amount": 5}, run_id=run_id)
    big = {"ref": "B-9", "lines": ["x" * 1000] * 1000}  # about 1 MB: too long for an argument
    (tmp_path / "ack.json").write_text(json.dumps(big), encoding="utf-8")

    from_file = cli("runs", "signal", "refund-f", "bank_ack", "@ack.json")
    assert from_file.code == 0, from_file.stderr
    assert from_file.stdout == "signal bank_ack delivered to run refund-f\n"
    from_stdin = cli("runs", "signal", "refund-s", "bank_ack", "-", stdin=json.dumps(big))
    assert from_stdin.code == 0, from_stdin.stderr
    for run_id in ("refund-f", "refund-s"):
        [ack] = [s for s in engine.steps(run_id) if s.name == "bank_ack"]
        assert ack.status.value == "done" and ack.output == big

    missing = cli("runs", "signal", "refund-f", "bank_ack", "@nope.json")
    (tmp_path / "bad.json").write_text("{oops", encoding="utf-8")
    bad_file = cli("runs", "signal", "refund-f", "bank_ack", "@bad.json")
    bad_stdin = cli("runs", "signal", "refund-f", "bank_ack", "-", stdin="")
    assert [r.code for r in (missing, bad_file, bad_stdin)] == [2, 2, 2]
    assert missing.stderr.strip() == (
        "plait: error: signal payload: cannot read nope.json: No such file or directory"
    )
    assert bad_file.stderr.strip().startswith(
        "plait: error: signal payload file bad.json is not valid JSON: "
    )
    assert bad_stdin.stderr.strip().startswith(
        "plait: error: signal payload (stdin) is not valid JSON: "
    )


GATES = """
import plait

wf = plait.Workflow("publishing")

@wf.step(approval=True)
def publish() -> str:
    return "published"

wf.signal("payment")

@wf.step
def ship(publish: str, payment: dict) -> str:
    return f"{publish}, paid {payment['amount']}"

expiring = plait.Workflow("expiring")

@expiring.step(approval=plait.Approval(expires_after=0.2, on_expiry="reject"))
def auto_reject() -> None:
    return None
"""


def test_run_says_what_waits_and_how_to_go_on(cli: Cli, write_app, spawned: list[Spawned]) -> None:
    app: Path = write_app("gates_app.py", GATES)
    run = cli.spawn("run", f"{app}:wf", "--run-id", "pub-1")
    spawned.append(run)

    run.wait_for_stderr(
        "publish waits for approval: plait runs approve pub-1 publish, or plait runs reject "
        "pub-1 publish"
    )
    run.wait_for_stderr("payment waits for a signal: plait runs signal pub-1 payment JSON")
    assert cli("runs", "approve", "pub-1", "publish", "--by", "eve").code == 0
    run.wait_for_stderr("publish approved by eve")
    assert cli("runs", "signal", "pub-1", "payment", '{"amount": 30}', "--by", "bank").code == 0
    run.wait_for_stderr("payment done: its signal was delivered")
    assert run.wait(timeout=30) == 0, run.stderr
    assert json.loads("".join(run.out)) == {"ship": "published, paid 30"}


def test_run_says_when_an_expiry_decides(cli: Cli, write_app) -> None:
    app: Path = write_app("gates_app2.py", GATES)

    result = cli("run", f"{app}:expiring", "--run-id", "exp-1")

    assert result.code == 1
    lines = [line.split("] ", 1)[-1] for line in result.stderr.splitlines()]
    assert lines[1].startswith(
        "auto_reject waits for approval (expires in 0s): plait runs approve exp-1 auto_reject"
    )
    assert "auto_reject rejected (expired)" in lines


def test_times_are_iso_in_json_and_zoned_in_tables(
    cli: Cli, engine: plait.Engine, write_app
) -> None:
    wf = import_file(write_app("gates_app3.py", GATES)).expiring
    engine.start(wf, run_id="exp-t")  # waits at once: step_waiting, with its expiry
    cli.env["TZ"] = "Europe/Paris"

    [_, waiting] = cli("runs", "events", "exp-t", "--json").json()
    expires = datetime.fromisoformat(waiting["payload"]["expires_at"])  # not epoch seconds
    assert expires.utcoffset() == timedelta(0)
    # both are epoch floats rounded to microseconds when shown: 1 µs apart at most from exact
    since = expires - datetime.fromisoformat(waiting["ts"])
    assert abs(since - timedelta(seconds=0.2)) <= timedelta(microseconds=1), since

    table = cli("runs", "events", "exp-t").stdout.splitlines()
    local = expires.astimezone(ZoneInfo("Europe/Paris"))
    assert f"expires_at={local:%Y-%m-%d %H:%M:%S %Z}" in table[2]
    assert re.match(r"^ *2 +\d\d:\d\d:\d\d\.\d{3} CES?T +step_waiting ", table[2]), table[2]

    for shown in (cli("runs", "list").stdout, cli("runs", "show", "exp-t").stdout):
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T", shown), shown
