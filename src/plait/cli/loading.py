"""What the CLI reads from the user: the Python file that defines workflows (imported by path,
its workflows found or picked by name), the run input, and the one-line error for a mistake."""

from __future__ import annotations

import importlib.util
import json
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any

import click

from .._errors import PlaitError

if TYPE_CHECKING:
    from ..workflow.definition import Workflow

EXIT_USAGE = 2


class CliError(click.ClickException):
    """A mistake of the user's: one line on stderr, no traceback, exit code 2."""

    exit_code = EXIT_USAGE

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"plait: error: {self.format_message()}", err=True)


# -- loading the user's code ---------------------------------------------------------------------


def split_target(target: str) -> tuple[str, str | None]:
    """'app.py:wf' → ('app.py', 'wf'); 'app.py' → ('app.py', None)."""
    path, sep, attr = target.rpartition(":")
    if not sep or not path or "/" in attr or "\\" in attr:
        return target, None
    if not attr:
        raise CliError(f"{target!r}: name the workflow after the colon, as in {path}:wf")
    return path, attr


def load_module(path: str) -> ModuleType:
    """Import a Python file by path, its directory first on sys.path (so it imports its siblings).
    A YAML workflow file (.yaml, .yml) is loaded instead, as a module holding its one workflow."""
    file = Path(path)
    if not file.exists():
        raise CliError(f"file not found: {path}")
    if not file.is_file():
        raise CliError(f"not a file: {path}")
    if file.suffix in YAML_SUFFIXES:
        return _yaml_module(path)
    file = file.resolve()
    directory = str(file.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = file.stem if file.stem.isidentifier() else "plait_app"
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) != str(file):
        name = f"plait_app_{name}"  # do not shadow a module that is already imported
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except PlaitError as exc:
        sys.modules.pop(name, None)
        raise CliError(f"{path}: {exc}") from None
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise CliError(
            f"cannot import {path}: SyntaxError: {exc.msg} (line {exc.lineno})"
        ) from None
    except Exception as exc:
        sys.modules.pop(name, None)
        raise CliError(
            f"cannot import {path}: {type(exc).__name__}: {exc}{_where(exc, file)}"
        ) from None
    return module


YAML_SUFFIXES = (".yaml", ".yml")


def _yaml_module(path: str) -> ModuleType:
    """A stand-in module whose attribute `workflow` is the workflow the file declares, so that
    FILE.yaml and FILE.yaml:NAME work wherever FILE.py does."""
    try:
        from ..declare.loader import load
    except ImportError as exc:  # PyYAML missing
        raise CliError(
            f"{path}: loading YAML workflows needs PyYAML: pip install 'plait[yaml]' ({exc})"
        ) from None
    from .._errors import DeclarationError

    try:
        workflow = load(path)
    except DeclarationError as exc:  # one line per mistake
        raise CliError("\nplait: error: ".join(e.detail for e in exc.errors)) from None
    except PlaitError as exc:
        raise CliError(str(exc)) from None
    module = ModuleType(f"plait_yaml_{Path(path).stem}")
    module.workflow = workflow  # type: ignore[attr-defined]  # a stand-in module's one workflow
    return module


def _where(exc: BaseException, file: Path) -> str:
    """' (app.py, line 12)': the deepest frame of the user's file in the traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(file):
            line = frame.lineno
    return f" ({file.name}, line {line})" if line is not None else ""


def module_workflows(module: ModuleType) -> dict[str, Workflow]:
    """The module's attributes that are workflows, by attribute name (each object once)."""
    from ..workflow.definition import Workflow

    found: dict[str, Workflow] = {}
    for attr, value in vars(module).items():
        if isinstance(value, Workflow) and all(value is not w for w in found.values()):
            found[attr] = value
    return found


def pick_workflow(module: ModuleType, path: str, attr: str | None) -> Workflow:
    """The workflow FILE.py:WORKFLOW names: WORKFLOW is the variable that holds it or, if no
    variable of that name holds a workflow, the workflow's own name (`Workflow("orders")`).
    Without WORKFLOW, the file's only workflow."""
    from ..workflow.definition import Workflow

    workflows = module_workflows(module)
    if attr is None:
        if len(workflows) == 1:
            return next(iter(workflows.values()))
        if not workflows:
            raise CliError(f"{path} defines no plait.Workflow")
        names = ", ".join(f"{path}:{a}" for a in workflows)
        raise CliError(f"{path} defines several workflows; name one: {names}")
    value = getattr(module, attr, None)
    if isinstance(value, Workflow):
        return value
    named = {a: wf for a, wf in workflows.items() if wf.name == attr}
    if len(named) == 1:
        return next(iter(named.values()))
    if named:
        choices = ", ".join(f"{path}:{a} (v{wf.version})" for a, wf in named.items())
        raise CliError(
            f"{path} defines several workflows named {attr!r}; name one by its variable: {choices}"
        )
    if hasattr(module, attr):
        raise CliError(f"{path}:{attr} is {_kind(value)}, not a plait.Workflow")
    known = ", ".join(f"{a} (named {wf.name!r})" for a, wf in workflows.items()) or "none"
    raise CliError(
        f"{path} has no workflow {attr!r}, as a variable or a workflow's name (workflows defined "
        f"there: {known})"
    )


def _kind(value: object) -> str:
    if isinstance(value, type):
        return f"a class ({value.__name__})"
    if isinstance(value, ModuleType):
        return "a module"
    if callable(value):
        return "a function" if hasattr(value, "__code__") else "a callable"
    return f"a {type(value).__name__}"


def parse_input(text: str) -> dict[str, Any]:
    """The run input: JSON text, '@file.json', or '-' for stdin. Must be a JSON object."""
    value = read_json(text, "--input")
    if not isinstance(value, dict):
        raise CliError(
            f"--input{_from(text)} must be a JSON object such as '{{\"order_id\": 42}}', "
            f"got {_json_kind(value)}"
        )
    return value


def parse_inputs(source: str) -> list[tuple[int, dict[str, Any]]]:
    """Run inputs, one JSON object per line, from a file or '-' (stdin): (line number, input)
    for each line that is not blank. A bad line is an error naming its number."""
    from .. import _codec  # here: plait --help imports no orjson

    if source == "-":
        text, where = sys.stdin.read(), "--inputs (stdin)"
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"--inputs: cannot read {source}: {exc.strerror or exc}") from None
        where = f"--inputs file {source}"
    inputs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = _codec.parse(line)
        except json.JSONDecodeError as exc:
            raise CliError(f"{where} line {number} is not valid JSON: {exc}") from None
        except _codec.DecodeError as exc:  # a key twice in one object, NaN, Infinity
            raise CliError(f"{where} line {number}: {exc}") from None
        if not isinstance(value, dict):
            raise CliError(
                f"{where} line {number} must be a JSON object such as '{{\"order_id\": 42}}', "
                f"got {_json_kind(value)}"
            )
        inputs.append((number, value))
    return inputs


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def read_json(text: str, what: str) -> Any:
    """A JSON value given as text, '@file.json' (read from the file) or '-' (read from stdin):
    how `--input` and a signal's payload are given. `what` names it in messages."""
    from .. import _codec

    source = what
    if text == "-":
        text, source = sys.stdin.read(), f"{what} (stdin)"
    elif text.startswith("@"):
        name = text[1:]
        try:
            text = Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"{what}: cannot read {name}: {exc.strerror or exc}") from None
        source = f"{what} file {name}"
    try:
        return _codec.parse(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{source} is not valid JSON: {exc}") from None
    except _codec.DecodeError as exc:  # a key twice in one object, NaN, Infinity
        raise CliError(f"{source}: {exc}") from None


def _from(text: str) -> str:
    """' (stdin)', ' file x.json' or '': where a JSON value came from, for messages."""
    if text == "-":
        return " (stdin)"
    return f" file {text[1:]}" if text.startswith("@") else ""
