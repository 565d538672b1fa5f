"""plait.testing's face: its names, imported on first use; `import plait` does not import it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import plait.testing
from tests.unit.test_startup import modules_after

INIT = Path(plait.testing.__file__)


def test_its_names_are_all_lazy_and_typed() -> None:
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    typed = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names
    }
    assert typed == set(plait.testing._LAZY) == set(plait.testing.__all__)
    for name, module in plait.testing._LAZY.items():
        assert getattr(importlib.import_module(module, "plait.testing"), name) is getattr(
            plait.testing, name
        )


def test_import_plait_does_not_import_the_kit_and_the_kit_is_light() -> None:
    modules, _ = modules_after("import plait")
    assert not any(m.startswith("plait.testing") for m in modules)
    modules, _ = modules_after("import plait.testing")
    assert {m for m in modules if m.startswith("plait")} == {
        "plait",
        "plait._errors",
        "plait.testing",
    }
