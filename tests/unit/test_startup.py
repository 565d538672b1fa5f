"""What starting costs, checked by its structure (never by a clock): `import plait` imports the
exceptions and nothing heavy, every other public name on first use; `plait --help` imports the
command's modules but neither the engine nor pydantic, rich or asyncio. The figures are
benchmarks/startup.py's."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import plait

SRC = Path(plait.__file__).resolve().parents[1]
HEAVY = ("pydantic", "pydantic_core", "rich", "psycopg", "psycopg_pool", "asyncio", "sqlite3")
# what only some commands or stores need: the other stores' drivers, the server, YAML, tracing
OPTIONAL = ("nats", "starlette", "uvicorn", "yaml", "opentelemetry", "jinja2")


def modules_after(code: str) -> tuple[set[str], str]:
    """The modules a fresh interpreter holds after running `code` (which may exit), and what it
    printed."""
    script = (
        "import json, sys\n"
        "try:\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    env["COLUMNS"] = "100"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out, _, listed = proc.stdout.rpartition("\nMODULES ")
    return set(json.loads(listed)), out


def packages(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_import_plait_imports_the_exceptions_and_nothing_heavy() -> None:
    modules, _ = modules_after("import plait")
    assert {m for m in modules if m.startswith("plait")} == {"plait", "plait._errors"}
    assert packages(modules) & {*HEAVY, *OPTIONAL, "click", "orjson"} == set()


def test_a_public_name_is_imported_on_first_use_then_kept() -> None:
    modules, out = modules_after(
        "import plait\n"
        "print('before', 'Workflow' in vars(plait))\n"
        "wf = plait.Workflow('w')\n"
        "print('after', 'Workflow' in vars(plait), plait.Workflow is wf.__class__)\n"
    )
    assert out.split() == ["before", "False", "after", "True", "True"]
    assert "plait.workflow.definition" in modules
    assert "plait.engine.engine" not in modules  # only what was asked for


@pytest.mark.parametrize(
    "args",
    [["--help"], ["runs", "list", "--help"], ["worker", "--help"], ["start", "--help"]],
    ids=["help", "runs-list-help", "worker-help", "start-help"],
)
def test_plait_help_imports_neither_the_engine_nor_heavy_packages(args: list[str]) -> None:
    modules, out = modules_after(
        f"from plait.cli import main\nsys.argv = ['plait', *{args!r}]\nmain()"
    )
    assert "Usage: plait" in out
    assert "plait.cli.runs" in modules and "click" in modules  # the commands are all there
    assert packages(modules) & {*HEAVY, *OPTIONAL} == set()
    heavy_plait = ("plait.engine", "plait.worker", "plait.workflow", "plait.data", "plait._codec")
    assert sorted(m for m in modules if m.startswith(heavy_plait)) == []
    drivers = tuple(f"plait.stores.{name}" for name in ("sql", "sqlite", "postgres", "memory"))
    assert sorted(m for m in modules if m.startswith(drivers)) == []


def test_an_embedded_sqlite_engine_imports_no_other_store_nor_the_server(tmp_path: Path) -> None:
    """Defining, starting and serving a run on SQLite loads neither the PostgreSQL nor the NATS
    driver, nor the HTTP server, YAML or tracing (each is imported by what needs it)."""
    db = tmp_path / "plait.db"
    modules, out = modules_after(
        "import plait\n"
        f"engine = plait.Engine('sqlite:///{db}')\n"
        "wf = plait.Workflow('w')\n"
        "wf.add_step('a', lambda: 1)\n"
        "run = engine.start(wf, {})\n"
        "engine.run_worker(until=run)\n"
        "print(run.result(timeout=10))\n"
        "engine.close()"
    )
    assert "{'a': 1}" in out
    assert "sqlite3" in modules and "plait.stores.sqlite" in modules
    assert packages(modules) & {"psycopg", "psycopg_pool", *OPTIONAL} == set()
    assert sorted(m for m in modules if m.startswith(("plait.server", "plait.declare"))) == []


def test_every_public_name_is_the_object_its_module_defines() -> None:
    for name in plait.__all__:
        if name == "__version__":
            continue
        where = plait._LAZY.get(name, "._errors")
        assert getattr(plait, name) is getattr(importlib.import_module(where, "plait"), name), name
    assert set(plait._LAZY) < set(plait.__all__)
    assert set(dir(plait)) >= set(plait.__all__)


def test_the_lazy_table_says_what_the_type_checking_imports_say() -> None:
    """Type checkers read the imports under `if TYPE_CHECKING:`; the interpreter reads `_LAZY`."""
    tree = ast.parse((SRC / "plait" / "__init__.py").read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    typed = {
        alias.name: "." * node.level + (node.module or "")
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert typed == plait._LAZY


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'plait' has no attribute 'Engin'"):
        _ = plait.Engin  # type: ignore[attr-defined]  # the mistake under test
    with pytest.raises(ImportError, match="cannot import name 'Engin'"):
        from plait import Engin  # type: ignore[attr-defined]  # noqa: F401  # the same
