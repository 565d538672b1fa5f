"""A run's name, labels and metadata on the command line: `plait start` and `plait run` give
them, `plait runs list --label` filters by them, `plait runs show` prints them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import plait

from .conftest import Cli

APP = """
    import plait

    wf = plait.Workflow("sq")

    @wf.step()
    def square(n: int) -> int:
        return n * n
"""


@pytest.fixture
def app(write_app: Callable[[str, str], Path]) -> Path:
    return write_app("squares.py", APP)


def test_start_with_identity_then_list_by_label_and_show(
    cli: Cli, app: Path, engine: plait.Engine
) -> None:
    first = cli(
        "start", str(app), "--input", '{"n": 2}', "--run-id", "a", "--name", "Import <b>",
        "--label", "customer=42", "--label", "tier=gold", "--metadata", '{"ticket": "T-1"}',
    )  # fmt: skip
    second = cli("start", str(app), "--input", '{"n": 3}', "--run-id", "b", "--label",
                 "customer=42")  # fmt: skip
    third = cli("start", str(app), "--input", '{"n": 4}', "--run-id", "c")
    assert first.code == second.code == third.code == 0, first.stderr + second.stderr
    run = engine.get_run("a")
    assert (run.name, run.labels, run.metadata) == (
        "Import <b>", {"customer": "42", "tier": "gold"}, {"ticket": "T-1"},
    )  # fmt: skip

    listed = cli("runs", "list", "--label", "customer=42", "--json").json()
    assert sorted(r["id"] for r in listed["runs"]) == ["a", "b"]
    both = cli("runs", "list", "--label", "customer=42", "--label", "tier=gold", "--json").json()
    assert [(r["id"], r["name"], r["labels"]) for r in both["runs"]] == [
        ("a", "Import <b>", {"customer": "42", "tier": "gold"})
    ]
    table = cli("runs", "list", "--label", "customer=42")
    assert "NAME" in table.stdout and "LABELS" in table.stdout
    assert "customer=42, tier=gold" in table.stdout
    assert "Import <b>" in table.stdout
    nothing = cli("runs", "list", "--label", "customer=7")
    assert nothing.stdout.strip() == "no runs"

    shown = cli("runs", "show", "a")
    assert shown.code == 0, shown.stderr
    assert "name      Import <b>" in shown.stdout
    assert "labels    customer=42, tier=gold" in shown.stdout
    assert 'metadata  {"ticket": "T-1"}' in shown.stdout
    doc = cli("runs", "show", "a", "--json").json()
    assert doc["run"]["metadata"] == {"ticket": "T-1"}


def test_start_many_and_run_take_labels(cli: Cli, app: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"n": 1}\n{"n": 2}\n', encoding="utf-8")
    started = cli("start", str(app), "--inputs", str(inputs), "--label", "batch=7")
    assert started.code == 0, started.stderr
    ran = cli("run", str(app), "--input", '{"n": 5}', "--run-id", "r", "--label", "batch=8",
              "--name", "once")  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert len(cli("runs", "list", "--label", "batch=7", "--json").json()["runs"]) == 2
    [one] = cli("runs", "list", "--label", "batch=8", "--json").json()["runs"]
    assert (one["id"], one["name"], one["output"]) == ("r", "once", {"square": 25})


def test_run_again_with_another_input_is_refused(cli: Cli, app: Path) -> None:
    assert cli("run", str(app), "--input", '{"n": 5}', "--run-id", "r").code == 0
    again = cli("run", str(app), "--input", '{"n": 6}', "--run-id", "r")
    assert again.code == 2
    assert again.stderr.strip() == (
        "plait: error: run id 'r' is already a run of workflow 'sq' with a different input; "
        "choose another --run-id, or pass --if-exists return to get that run as it is"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "customer"], "--label: invalid label 'customer': write it as key=value"),
        (
            ["--label", "a b=1"],
            "--label: invalid label key 'a b': use 1-63 ASCII letters, digits or any of _ . - /",
        ),
        (["--label", "k=1", "--label", "k=2"], "--label: label 'k' is given twice"),
        (["--metadata", "[1]"], '--metadata must be a JSON object such as \'{"ticket": "T-1"}\''),
        (["--name", " "], "start: name must be 1-200 characters, not blank, got 1"),
    ],
)
def test_bad_identity_options_are_refused(
    cli: Cli, app: Path, engine: plait.Engine, args: list[str], message: str
) -> None:
    started = cli("start", str(app), "--input", '{"n": 1}', *args)
    assert started.code == 2
    assert started.stderr.strip() == f"plait: error: {message}"
    assert engine.list_runs().runs == []


def test_runs_list_refuses_a_bad_label(cli: Cli, engine: plait.Engine) -> None:
    engine.list_runs()  # the store exists
    listed = cli("runs", "list", "--label", "customer")
    assert listed.code == 2
    assert listed.stderr.strip() == (
        "plait: error: --label: invalid label 'customer': write it as key=value"
    )


def test_bulk_actions_select_runs_by_label(cli: Cli, engine: plait.Engine) -> None:
    wf = plait.Workflow("sq")
    wf.add_step("square", lambda n: n * n)
    engine.start(wf, {"n": 1}, run_id="a", labels={"customer": "42"})
    engine.start(wf, {"n": 2}, run_id="b", labels={"customer": "42", "tier": "gold"})
    engine.start(wf, {"n": 3}, run_id="c")

    dry = cli("runs", "cancel", "--label", "customer=42", "--dry-run")
    assert dry.code == 0, dry.stderr
    assert dry.stdout.strip() == "2 runs match; cancel applies to 2 of the 2 selected"
    gold = cli("runs", "cancel", "--label", "customer=42", "--label", "tier=gold", "--yes",
               "--reason", "churned")  # fmt: skip
    assert gold.code == 0, gold.stderr
    assert gold.stdout.splitlines() == ["run b: done", "cancel: 1 done"]
    no = cli("runs", "cancel", "--workflow", "sq", "--label", "customer=42", stdin="n\n")
    assert no.code == 1 and "cancel 1 runs?" in no.stdout  # asked, and answered no
    assert [engine.get_run(r).status.value for r in "abc"] == ["pending", "cancelled", "pending"]
    yes = cli("runs", "cancel", "--label", "customer=42", stdin="y\n")
    assert yes.code == 0, yes.stderr
    assert "run a: done" in yes.stdout and "run b: skipped: run 'b' is cancelled" in yes.stdout
    deleted = cli("runs", "delete", "--label", "customer=42", "--yes", "--json").json()
    assert sorted((i["run_id"], i["outcome"]) for i in deleted["items"]) == [
        ("a", "done"), ("b", "done"),
    ]  # fmt: skip
    assert [r.id for r in engine.list_runs().runs] == ["c"]

    for args, message in [
        (("cancel", "c", "--label", "customer=42"),
         "runs cancel takes a run ID or filters (--workflow, --status, --label), not both"),
        (("pause",), "runs pause takes a run ID, or filters that select runs"),
        (("resume", "--label", "customer"), "--label: invalid label 'customer': write it as "
         "key=value"),
        (("retry", "c"), "runs retry takes a run ID and the STEP to retry (or filters)"),
        (("delete", "--label", "customer=42", "--force"), "runs delete --force takes one run ID"),
        (("cancel", "--status", "sleepy"), "unknown run status 'sleepy'"),
    ]:  # fmt: skip
        refused = cli("runs", *args)
        assert refused.code == 2 and message in refused.stderr, (args, refused.stderr)
    assert engine.get_run("c").status.value == "pending"
