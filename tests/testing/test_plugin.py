"""The pytest plugin (plait.testing.plugin), run by pytest's own `pytester` on small test files."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests import postgres_server
from tests.unit.test_startup import modules_after

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

WORKFLOW = """
import plait
from plait import testing

wf = plait.Workflow("pay")

@wf.step()
def fetch(order_id: int) -> dict:
    return {"id": order_id, "amount": 10}

@wf.step()
def charge(fetch: dict) -> dict:
    if fetch["amount"] > 5:
        raise plait.Permanent("card declined\\nby the bank", code="card_declined")
    return {"paid": True}
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose runs load the plugin by name, not by the installed entry point (which
    an editable install may not have yet)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # in a subprocess, as a user's run: in-process runs would import plait's modules again
    return pytester.runpytest_subprocess(
        "-p", "plait.testing.plugin", "-p", "no:cacheprovider", *args
    )


def test_plait_engine_is_a_fresh_memory_engine_by_default(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        WORKFLOW
        + """
def test_one(plait_engine):
    assert plait_engine.url == "memory://"
    result = testing.run(wf, {"order_id": 1}, mocks={"charge": {"paid": True}},
                         engine=plait_engine, run_id="r")
    assert result.status == "completed"
    assert [r.id for r in plait_engine.list_runs().runs] == ["r"]

def test_two(plait_engine):
    assert plait_engine.list_runs().runs == []  # a fresh store per test
"""
    )
    run(inner).assert_outcomes(passed=2)


def test_plait_clock_puts_plait_engine_on_a_virtual_clock(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
import datetime
import plait
from plait.testing import TestEngine, VirtualClock

wf = plait.Workflow("later")

@wf.step(delay=datetime.timedelta(days=3))
def wake() -> str:
    return "up"

def test_clocked(plait_engine, plait_clock):
    assert isinstance(plait_clock, VirtualClock)
    assert isinstance(plait_engine, TestEngine) and plait_engine.clock is plait_clock
    run = plait_engine.start(wf)
    plait_engine.run_worker(until=run, timeout=20)
    assert run.result() == {"wake": "up"}
    assert plait_clock.elapsed >= 3 * 86400

def test_alone(plait_clock):
    plait_clock.advance(hours=1)
    assert plait_clock.elapsed == 3600

def test_unclocked(plait_engine):
    assert not isinstance(plait_engine, TestEngine)
"""
    )
    run(inner).assert_outcomes(passed=3)


def test_plait_clock_refuses_a_server_store(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
import pytest

@pytest.mark.plait_store("postgresql://localhost/x")
def test_clocked(plait_engine, plait_clock):
    pass
"""
    )
    result = run(inner)
    result.stdout.fnmatch_lines(
        ["*plait_clock needs the plait_engine store to be 'memory' or 'sqlite', got *postgresql*"]
    )
    assert result.ret != 0


def test_the_option_or_a_marker_chooses_sqlite(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
import pytest

@pytest.mark.plait_store("sqlite")
def test_marked(plait_engine, tmp_path):
    assert plait_engine.url == f"sqlite:///{tmp_path / 'plait.db'}"

@pytest.mark.plait_store("memory")
def test_marked_memory(plait_engine):
    assert plait_engine.url == "memory://"

def test_option(plait_engine, request):
    assert plait_engine.url.startswith("sqlite:///") == (
        request.config.getoption("--plait-store") == "sqlite"
    )
"""
    )
    run(inner, "--strict-markers").assert_outcomes(passed=3)
    run(inner, "--strict-markers", "--plait-store=sqlite").assert_outcomes(passed=3)


def test_a_postgresql_url_gives_each_test_a_schema_dropped_after_it(
    inner: pytest.Pytester,
) -> None:
    base = postgres_server.require_server_url()
    inner.makepyfile(
        """
import plait

SEEN = []

def test_one(plait_engine):
    assert "schema=plait_test_" in plait_engine.url
    wf = plait.Workflow("pg")
    wf.add_step("a", lambda: 1)
    plait_engine.register(wf)
    SEEN.append(plait_engine.url)

def test_two(plait_engine):
    assert plait_engine.workflows() == []
    assert plait_engine.url != SEEN[0]
"""
    )
    run(inner, f"--plait-store={base}").assert_outcomes(passed=2)
    with postgres_server.connect(base) as conn:
        left = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'plait_test_%'"
        ).fetchone()
    assert left == (0,)


def test_a_store_it_does_not_know_is_a_usage_error(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
import pytest

def test_option(plait_engine):
    pass

@pytest.mark.plait_store("sqlite", "memory")
def test_marker(plait_engine):
    pass
"""
    )
    result = run(inner, "--plait-store=mysql://x")
    result.stdout.fnmatch_lines(
        [
            "*UsageError: the plait_engine store must be 'memory', 'sqlite' or a postgresql:// "
            "URL, got 'mysql://x'",
            "*UsageError: @pytest.mark.plait_store takes one store: 'memory', 'sqlite' or a "
            "postgresql:// URL; got ('sqlite', 'memory')",
        ]
    )
    result.assert_outcomes(errors=2)


def test_assert_completed_tells_the_steps_and_their_errors(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        WORKFLOW
        + """
def test_pay():
    testing.assert_completed(testing.run(wf, {"order_id": 3}, run_id="run-3"))
"""
    )
    result = run(inner)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            ">*testing.assert_completed(testing.run(*",
            "E       AssertionError: the run did not complete:",
            "E       run 'run-3' of workflow 'pay' (version 1): failed",
            'E         input: {"order_id":3}',
            "E         error: step 'charge' failed: card declined",
            "E                by the bank",
            "E         fetch   done",
            "E         charge  failed",
            "E             card_declined: card declined",
            "E             by the bank",
            "test_assert_completed_tells_the_steps_and_their_errors.py:17: AssertionError",
        ]
    )


def test_the_plugin_is_declared_and_imports_no_engine() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["entry-points"]["pytest11"] == {"plait": "plait.testing.plugin"}
    modules, _ = modules_after("import plait.testing.plugin")
    assert {m for m in modules if m.startswith("plait")} == {
        "plait",
        "plait._errors",
        "plait.testing",
        "plait.testing.plugin",
    }
