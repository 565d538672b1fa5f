"""docs/testing.md runs: its Python blocks, in order, make one test file, run by pytest with
plait's plugin; every test in it must pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)


def test_the_testing_page_runs(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    code = "\n\n".join(blocks())
    tests = re.findall(r"^def (test_\w+)", code, re.M)
    assert len(tests) >= 6
    pytester.makepyfile(test_page=code)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_subprocess(
        "-p", "plait.testing.plugin", "-p", "no:cacheprovider", "-v"
    )
    result.assert_outcomes(passed=len(tests))
