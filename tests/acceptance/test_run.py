"""`plait run`: the example to completion, failures (exit 1), and every bad input (exit 2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import EXAMPLES, Cli

ORDERS = str(EXAMPLES / "orders.py")

FAILING_APP = """
    import plait

    wf = plait.Workflow("breaks")

    @wf.step()
    def prepare(n: int) -> int:
        return n + 1

    @wf.step()
    def explode(prepare: int) -> int:
        raise ValueError(f"boom at {prepare}")

    @wf.step()
    def after(explode: int) -> int:
        return explode
"""


def test_example_runs_to_completion(cli: Cli) -> None:
    result = cli("run", f"{ORDERS}:wf", "--input", '{"order_id": 42}')

    assert result.code == 0, result.stderr
    assert result.json() == {
        "finish": {
            "order_id": 42,
            "status": "confirmed",
            "charged_cents": 1650,
            "charge_attempts": 2,
            "notified": True,
        }
    }
    # progress goes to stderr, one plain line per step (not a TTY here)
    assert "[5/5]" in result.stderr
    assert "charge attempt 1 failed: [gateway_timeout]" in result.stderr


def test_optional_step_failure_uses_the_default(cli: Cli) -> None:
    result = cli("run", f"{ORDERS}:wf", "--input", '{"order_id": 47, "options": {"express": true}}')

    assert result.code == 0, result.stderr
    finish = result.json()["finish"]
    assert finish["notified"] is False
    assert finish["charged_cents"] == 3 * 450 + 1200 + 990
    assert "email failed: [no_email]" in result.stderr


def test_run_id_makes_the_run_idempotent(cli: Cli) -> None:
    first = cli("run", f"{ORDERS}:wf", "--input", '{"order_id": 5}', "--run-id", "order-5")
    again = cli("run", f"{ORDERS}:wf", "--input", '{"order_id": 5}', "--run-id", "order-5")

    assert first.code == 0 and again.code == 0, first.stderr + again.stderr
    assert again.json() == first.json()
    listed = cli("runs", "list", "--json").json()
    assert [r["id"] for r in listed["runs"]] == ["order-5"]


def test_a_run_id_of_another_workflow_names_the_flag(
    cli: Cli, write_app: Callable[[str, str], Path]
) -> None:
    app = write_app(
        "other_app.py",
        "import plait\nwf = plait.Workflow('other')\n@wf.step\ndef a() -> int:\n    return 1\n",
    )
    assert cli("run", f"{app}:wf", "--run-id", "shared").code == 0

    taken = cli("run", f"{ORDERS}:wf", "--input", '{"order_id": 5}', "--run-id", "shared")

    assert taken.code == 2
    assert taken.stderr.strip() == (
        "plait: error: run id 'shared' is already used by a run of workflow 'other', not "
        "'orders'; choose another --run-id"
    )


def test_db_option_overrides_the_environment(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    result = cli("run", f"{ORDERS}:wf", "--input", '{"order_id": 1}', "--db", f"sqlite:///{other}")

    assert result.code == 0, result.stderr
    assert other.exists()
    assert len(cli("runs", "list", "--json", "--db", f"sqlite:///{other}").json()["runs"]) == 1


def test_input_from_a_file_and_from_stdin(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "input.json").write_text('{"order_id": 3}')
    from_file = cli("run", f"{ORDERS}:wf", "--input", "@input.json")
    from_stdin = cli("run", f"{ORDERS}:wf", "--input", "-", stdin='{"order_id": 3}')

    assert from_file.code == 0, from_file.stderr
    assert from_stdin.code == 0, from_stdin.stderr
    assert from_file.json()["finish"]["order_id"] == from_stdin.json()["finish"]["order_id"] == 3


def test_a_workflow_is_named_by_its_variable_or_its_name(
    cli: Cli, write_app: Callable[[str, str], Path]
) -> None:
    by_name = cli("run", f"{ORDERS}:orders", "--input", '{"order_id": 7}', "--run-id", "o-7")
    assert by_name.code == 0, by_name.stderr
    assert "run o-7 of orders v1" in by_name.stderr

    app = write_app(
        "versions.py",
        """
        import plait

        old = plait.Workflow("report", version="1")
        new = plait.Workflow("report", version="2")
        other = plait.Workflow("old")  # a variable wins over a workflow's name

        for wf in (old, new, other):
            @wf.step()
            def only() -> str:
                return "ok"
        """,
    )
    ambiguous = cli("run", f"{app}:report")
    assert ambiguous.code == 2
    assert ambiguous.stderr == (
        f"plait: error: {app} defines several workflows named 'report'; name one by its "
        f"variable: {app}:old (v1), {app}:new (v2)\n"
    )
    by_variable = cli("run", f"{app}:old", "--run-id", "v-1")
    assert by_variable.code == 0, by_variable.stderr
    assert "run v-1 of report v1" in by_variable.stderr
    help_text = " ".join(cli("run", "--help").stdout.split())
    assert "WORKFLOW is the variable that holds the plait.Workflow, or its name" in help_text


def test_the_only_workflow_of_a_file_needs_no_name(cli: Cli) -> None:
    result = cli("run", ORDERS, "--input", '{"order_id": 8}')

    assert result.code == 0, result.stderr
    assert result.json()["finish"]["order_id"] == 8


def test_failed_run_exits_1_with_the_step_errors(
    cli: Cli, write_app: Callable[[str, str], Path]
) -> None:
    app = write_app("breaks.py", FAILING_APP)
    result = cli("run", f"{app}:wf", "--input", '{"n": 1}', "--run-id", "broken")

    assert result.code == 1
    assert result.stdout == ""
    assert "run broken failed" in result.stderr
    assert "explode: [ValueError] boom at 2" in result.stderr
    assert "Traceback" not in result.stderr
    shown = cli("runs", "show", "broken", "--json").json()
    assert shown["run"]["status"] == "failed"
    status = {s["name"]: s["status"] for s in shown["steps"]}
    assert status == {"prepare": "done", "explode": "failed", "after": "skipped"}


def test_failed_example_order(cli: Cli) -> None:
    result = cli("run", f"{ORDERS}:wf", "--input", '{"order_id": 0}')

    assert result.code == 1
    assert "fetch: [order_not_found] order 0 does not exist" in result.stderr


def test_timeout_leaves_the_run_resumable(cli: Cli, write_app: Callable[[str, str], Path]) -> None:
    app = write_app(
        "slow.py",
        """
        import asyncio
        import plait

        wf = plait.Workflow("slow")

        @wf.step()
        async def nap() -> str:
            await asyncio.sleep(30)
            return "rested"
        """,
    )
    result = cli("run", f"{app}:wf", "--run-id", "napping", "--timeout", "0.5", "--grace", "0")

    assert result.code == 1
    assert "run napping did not finish within 0.5s" in result.stderr
    assert f"plait worker {app}" in result.stderr
    shown = cli("runs", "show", "napping", "--json").json()
    assert shown["run"]["status"] in ("pending", "running")
    assert shown["steps"][0]["status"] == "ready"  # released at once for another worker


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        pytest.param(
            "ORDERS:wf",
            ["--input", "{order_id: 42}"],
            "plait: error: --input is not valid JSON: Expecting property name",
            id="invalid-json",
        ),
        pytest.param(
            "ORDERS:wf",
            ["--input", "[42]"],
            "plait: error: --input must be a JSON object",
            id="input-not-an-object",
        ),
        pytest.param(
            "ORDERS:wf",
            ["--input", '{"order_id": 1, "order_id": 2}'],
            "plait: error: --input: key 'order_id' appears twice in one object",
            id="duplicate-key",
        ),
        pytest.param(
            "ORDERS:wf",
            ["--input", '{"order_id": 1, "x": {"a": 1, "a": 1}}'],
            "plait: error: --input: key 'a' appears twice in one object",
            id="duplicate-nested-key",
        ),
        pytest.param(
            "ORDERS:wf",
            ["--input", '{"order_id": 1, "price": NaN}'],
            "plait: error: --input: NaN is not JSON (JSON has no NaN or infinity)",
            id="nan",
        ),
        pytest.param(
            "ORDERS:wf",
            ["--input", '{"order_id": 1, "price": -Infinity}'],
            "plait: error: --input: -Infinity is not JSON (JSON has no NaN or infinity)",
            id="infinity",
        ),
        pytest.param(
            "ORDERS:wf",
            ["--input", '{"id": 42}'],
            "plait: error: run input of 'orders' misses field 'order_id', required by step 'fetch'",
            id="missing-field",
        ),
        pytest.param(
            "ORDERS:wf",
            ["--input", '{"order_id": "forty-two"}'],
            "plait: error: run input field 'order_id' (step 'fetch') is invalid",
            id="field-of-wrong-type",
        ),
        pytest.param(
            "ORDERS:wff",
            ["--input", '{"order_id": 42}'],
            "has no workflow 'wff', as a variable or a workflow's name (workflows defined there: "
            "wf (named 'orders'))",
            id="unknown-attribute",
        ),
        pytest.param(
            "ORDERS:Order",
            ["--input", '{"order_id": 42}'],
            "orders.py:Order is a class (Order), not a plait.Workflow",
            id="not-a-workflow",
        ),
        pytest.param(
            "nowhere/app.py:wf",
            ["--input", "{}"],
            "plait: error: file not found: nowhere/app.py",
            id="file-not-found",
        ),
        pytest.param(
            "ORDERS:wf",
            ["--input", "@missing.json"],
            "plait: error: --input: cannot read missing.json",
            id="input-file-not-found",
        ),
        pytest.param(
            "ORDERS:wf",
            ["--input", '{"order_id": 1}', "--run-id", "bad id!"],
            "plait: error: invalid run id 'bad id!'",
            id="invalid-run-id",
        ),
        pytest.param(
            "ORDERS:wf",
            ["--input", '{"order_id": 1}', "--db", "postgres-ish://x"],
            "plait: error: unsupported store URL 'postgres-ish://x'",
            id="unsupported-db-url",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    cli: Cli, target: str, options: list[str], message: str
) -> None:
    result = cli("run", target.replace("ORDERS", ORDERS), *options)

    assert result.code == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "no such command 'nope'; see plait --help"),
        (["runs", "nope"], "no such command 'nope'; see plait runs --help"),
        (["runs", "list", "--foo"], "no such option '--foo'; see plait runs list --help"),
        (["runs", "show"], "missing argument 'ID'; see plait runs show --help"),
        (
            ["runs", "list", "--limit", "0"],
            "invalid value for '--limit': 0 is not in the range 1<=x<=10000; see plait runs "
            "list --help",
        ),
        (["run"], "missing argument 'FILE.py:WORKFLOW'; see plait run --help"),
    ],
)
def test_usage_mistakes_are_one_line_in_the_same_style(
    cli: Cli, args: list[str], message: str
) -> None:
    result = cli(*args)

    assert result.code == 2
    assert result.stderr == f"plait: error: {message}\n"  # not click's "Usage: … Error: …"
    assert result.stdout == ""


def test_help_is_not_an_error(cli: Cli) -> None:
    assert cli("runs", "list", "--help").stdout.startswith("Usage: plait runs list [OPTIONS]")
    alone = cli("runs")  # a group alone prints its help
    assert alone.code == 2 and "Commands:" in alone.stdout + alone.stderr


def test_a_run_id_is_made_of_ascii_letters_and_says_so(cli: Cli) -> None:
    result = cli("run", f"{ORDERS}:wf", "--input", '{"order_id": 1}', "--run-id", "café")

    assert result.code == 2
    assert result.stderr == (
        "plait: error: invalid run id 'café': use 1-200 ASCII letters, digits or any of _ . : @ -\n"
    )


def test_bad_input_writes_no_run(cli: Cli) -> None:
    assert cli("run", f"{ORDERS}:wf", "--input", "{}").code == 2
    assert cli("runs", "list", "--json").json()["runs"] == []


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param("import plait\n", "defines no plait.Workflow", id="no-workflow"),
        pytest.param(
            "import plait\nwf = plait.Workflow('a')\nother = plait.Workflow('b')\n",
            "defines several workflows; name one:",
            id="several-workflows",
        ),
        pytest.param("def broken(:\n", "cannot import", id="syntax-error"),
        pytest.param(
            "import plait\nraise RuntimeError('no config')\n",
            "cannot import",
            id="raises-on-import",
        ),
        pytest.param(
            """
import plait
wf = plait.Workflow("loop")

@wf.step()
def a(b): ...

@wf.step()
def b(a): ...
""",
            "cycle",
            id="definition-error",
        ),
    ],
)
def test_unusable_file_exits_2(
    cli: Cli, write_app: Callable[[str, str], Path], source: str, message: str
) -> None:
    app = write_app("app.py", source)
    result = cli("run", str(app))

    assert result.code == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_import_error_names_the_line(cli: Cli, write_app: Callable[[str, str], Path]) -> None:
    app = write_app("app.py", "import plait\n\nx = 1\nraise RuntimeError('no config')\n")
    result = cli("run", f"{app}:wf")

    assert result.code == 2
    assert "RuntimeError: no config (app.py, line 4)" in result.stderr


def test_a_file_imports_its_siblings(cli: Cli, write_app: Callable[[str, str], Path]) -> None:
    write_app("helpers.py", "def double(x: int) -> int:\n    return 2 * x\n")
    app = write_app(
        "app.py",
        """
        import plait
        from helpers import double

        wf = plait.Workflow("siblings")

        @wf.step()
        def twice(x: int) -> int:
            return double(x)
        """,
    )
    result = cli("run", f"{app}:wf", "--input", '{"x": 21}')

    assert result.code == 0, result.stderr
    assert result.json() == {"twice": 42}


def test_generated_fanout_example(cli: Cli) -> None:
    result = cli("run", f"{EXAMPLES / 'fanout.py'}:wf", "--input", '{"day": "2024-05-01"}')

    assert result.code == 0, result.stderr
    merged = result.json()["merge"]
    assert set(merged["by_region"]) == {"eu", "us", "apac", "latam", "africa", "mena"}
    assert merged["total"] == sum(merged["by_region"].values())
    assert "[8/8] merge done" in result.stderr
