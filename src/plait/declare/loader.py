"""A workflow file → a `Workflow`, checked whole before anything is built.

The file is read with every node's position (source.py), its keys and values checked against
the format (the same one schemas/plait-workflow.schema.json publishes), the modules it lists
under `imports:` imported, its actions resolved, every `${…}` parsed and its references
checked, the graph checked for cycles and goto targets; only then is the Workflow built,
with the options of the Python API: each step's handler is a function made here that expands
the step's `with:` and calls its action. So the same Engine, stores, CLI and operator
actions serve it, and a mistake is a DeclarationError at file:line:col with the path of the
node; nothing is half-loaded.

Loading a file runs the code of the modules it imports and of the functions it names by
import path: a file is as trusted as a module you import.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import keyword
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path as FilePath
from typing import Any

from .. import _codec
from .._errors import DeclarationError, DefinitionError, Permanent
from ..core.loops import Goto
from ..core.queues import check_queue
from ..core.retry import LINEAR, Retry
from ..core.rows import StepOptions
from ..workflow.context import StepContext
from ..workflow.definition import WORKFLOW_NAME_RE, Workflow
from ..workflow.options import POLICY_MODES, Approval, ApprovalPolicy
from ..workflow.params import adapter
from ..workflow.session import SessionState
from .actions import Action, ActionNotFound, Param, import_module, output_problem, resolve
from .expressions import (
    EvaluationError,
    ExpressionError,
    Template,
    did_you_mean,
    has_expression,
    kind_of,
    references,
    render,
    template,
    truthy,
)
from .source import Path, Source, read

FORMAT = 1
TOP_KEYS = (
    "plait",
    "name",
    "version",
    "description",
    "imports",
    "inputs",
    "retry",
    "timeout",
    "fail_fast",
    "approval_policy",
    "steps",
    "catch",
    "finally",
)
STEP_KEYS = (
    "action",
    "workflow",
    "description",
    "with",
    "depends_on",
    "when",
    "retry",
    "timeout",
    "optional",
    "defaults",
    "queue",
    "priority",
    "delay",
    "approval",
    "for_each",
    "max_parallel",
    "await",
    "goto",
    "post",
    "catch",
)
# the sections of steps: `steps:`; `catch:`, steps run when the run fails; `finally:`, steps
# run when every other step has ended, however (Python: at_end="failed" / "always")
SECTIONS = {"steps": None, "catch": "failed", "finally": "always"}
# what a step under catch: or finally: cannot have: it waits for every other step
NOT_AT_END = ("depends_on", "goto", "catch", "optional")
ERROR_FIELDS = ("step", "code", "message")  # what `error` holds in a catching step
POST_KEYS = ("set", "append")
APPROVAL_KEYS = ("expires_after", "on_expiry")
RETRY_KEYS = ("attempts", "delay", "backoff", "max_delay", "jitter", "non_retryable")
INPUT_KEYS = ("type", "default", "description")
GOTO_KEYS = ("when", "step", "max_iterations")
AWAIT_KEYS = ("mode", "timeout")
POLICY_KEYS = ("mode", "allow", "block", "expires_after", "on_expiry")
AWAIT_MODES = ("all", "first", "any_error")  # a for_each's join (Python: join=)
INPUT_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "object": dict[str, Any],
    "array": list[Any],
    "any": Any,
}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ROOTS = ("inputs", "steps", "state", "item", "index", "run", "output", "error")
RUN_FIELDS = ("id", "attempt", "iteration")  # what `run` holds where a step runs
EXPRESSION_ERROR = "expression_error"  # the code of a step whose expression cannot be computed
NOT_A_LIST = "for_each_not_a_list"  # the code of a for_each step whose items are not a list
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def load(path: str | FilePath) -> Workflow:
    """The Workflow a YAML file declares. DeclarationError (a DefinitionError) at the file's
    line and column if anything in it is wrong. The file's directory is put first on
    sys.path, so that it can import the modules beside it."""
    file = FilePath(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeclarationError(
            f"{path}:1:1: cannot read the file: {getattr(exc, 'strerror', None) or exc}",
            file=str(path),
            line=1,
            column=1,
            path="(top)",
        ) from None
    directory = str(file.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    return loads(text, file=str(path))


def loads(text: str, *, file: str = "<string>") -> Workflow:
    """The Workflow the YAML `text` declares (`file` names it in errors; the files its
    `workflow:` steps name are relative to its directory, or to the current one)."""
    chain = () if file.startswith("<") else (FilePath(file).resolve(),)
    return _Loader(read(file, text), chain, {}).build()


@dataclass
class _Called:
    """A workflow file a `workflow:` step calls, loaded: its Workflow and its inputs."""

    workflow: Workflow
    inputs: dict[str, _InputSpec]


@dataclass
class _WorkflowCall(Action):
    """The action of a `workflow:` step: it calls the workflow (`ctx.call`) with its `with:`
    as the input, and returns the child run's output ({sink: output}). Its parameters are the
    called file's inputs, so that `with:` is checked at load as an action's arguments are."""

    called: Workflow | None = None

    @property
    def digest(self) -> str:
        assert self.called is not None
        return self.called.pinned_fingerprint  # the called file's graph and code


# -- what a file declares ------------------------------------------------------------------------


@dataclass
class _Expanding:
    """A `with:` value compiled: Templates where a string holds `${…}`, the rest as given."""

    value: Any
    path: Path


@dataclass
class _GotoSpec:
    when: Template | None
    step: str
    max_iterations: int
    path: Path


@dataclass
class _StepSpec:
    name: str
    action_ref: str
    section: str = "steps"  # steps, catch or finally
    action: Action | None = None
    args: dict[str, Any] = field(default_factory=dict)  # compiled with:
    depends_on: list[str] = field(default_factory=list)
    when: Template | None = None
    retry: Retry | None = None
    timeout: float | None = None
    optional: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int = 0
    delay: float | None = None
    approval: Approval | None = None
    for_each: Template | None = None
    max_parallel: int | None = None
    join: str | None = None  # await: mode (None: all)
    join_timeout: float | None = None  # await: timeout
    gotos: list[_GotoSpec] = field(default_factory=list)
    # post: session state changes made from the step's output, (op, key, compiled value)
    posts: list[tuple[str, str, Any]] = field(default_factory=list)
    data: list[str] = field(default_factory=list)  # steps whose outputs the handler reads
    when_reads: list[str] = field(default_factory=list)  # steps whose outputs `when` reads
    refusal: tuple[str, str] | None = None  # (code, message): the approval policy refuses it
    catch: str | None = None  # `catch:`: the step that runs if this one fails
    catches: str | None = None  # the step whose failure this one handles
    catch_path: Path = ()

    @property
    def path(self) -> Path:
        return (self.section, self.name)

    @property
    def at_end(self) -> str | None:
        return SECTIONS[self.section]

    @property
    def reads_error(self) -> bool:
        return self.catches is not None or self.section == "catch"


@dataclass
class _InputSpec:
    name: str
    kind: str
    required: bool
    default: Any


class _Loader:
    def __init__(
        self, source: Source, chain: tuple[FilePath, ...], called: dict[FilePath, _Called]
    ) -> None:
        self.src = source
        self.chain = chain  # the files being loaded, the file that named this one last
        self.called = called  # the files `workflow:` steps name, loaded once per load()
        self.callees: list[Workflow] = []
        self.steps: dict[str, _StepSpec] = {}
        self.inputs: dict[str, _InputSpec] = {}
        self.policy: ApprovalPolicy | None = None
        self.digest = hashlib.sha256(source.text.encode()).hexdigest()[:16]

    # -- checking -------------------------------------------------------------------------------

    def error(
        self, path: Path, message: str, *, key: bool = False, offset: int | None = None
    ) -> DeclarationError:
        return self.src.error(path, message, key=key, offset=offset)

    def mapping(self, path: Path, value: Any, known: tuple[str, ...], what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(path, f"{what} must be a mapping, got {_kind(value)}")
        for name in value:
            if name not in known:
                raise self.error(
                    (*path, name),
                    f"unknown key {name!r}{did_you_mean(name, list(known))}; "
                    f"{what} takes: {', '.join(known)}",
                    key=True,
                )
        return value

    def string(self, path: Path, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(path, f"must be a non-empty string, got {_kind(value)}")
        return value

    def integer(self, path: Path, value: Any, low: int, high: int = 2**31 - 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(path, f"must be an integer from {low} to {high}, got {_shown(value)}")
        return value

    def number(self, path: Path, value: Any, low: float, high: float | None = None) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < low
            or (high is not None and value > high)
        ):
            bound = f"from {low} to {high}" if high is not None else f">= {low}"
            raise self.error(path, f"must be a number {bound}, got {_shown(value)}")
        return float(value)

    def boolean(self, path: Path, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"must be true or false, got {_shown(value)}")
        return value

    def duration(self, path: Path, value: Any) -> float:
        """Seconds: a positive number, or a string of amounts with units, as "1m30s" or "250ms"."""
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        if isinstance(value, str) and value and _DURATION.sub("", value) == "":
            total = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
            if total > 0:
                return total
        raise self.error(
            path,
            "must be a duration: seconds (a number > 0) or text as '30s', '5m', '1h30m', "
            f"'250ms'; got {_shown(value)}",
        )

    def names(self, path: Path, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.error(path, f"must be a list of step names, got {_kind(value)}")
        for i, name in enumerate(value):
            if not isinstance(name, str):
                raise self.error((*path, i), f"must be a step name, got {_kind(name)}")
        return list(value)

    def identifier(self, path: Path, name: str, what: str) -> None:
        if not IDENTIFIER.fullmatch(name) or keyword.iskeyword(name) or name in ("ctx", *ROOTS):
            raise self.error(
                path,
                f"invalid {what} name {name!r}: use 1-128 letters, digits or '_', starting with a "
                "letter or '_' (so that expressions can name it), and not a Python keyword, "
                f"'ctx' or one of {', '.join(ROOTS)}",
                key=True,
            )

    def compile(self, path: Path, text: str) -> Template:
        try:
            return template(text)
        except ExpressionError as exc:
            raise self.error(path, f"invalid expression: {exc}", offset=exc.offset) from None

    def expression(self, path: Path, value: Any) -> Template:
        """A `when:` or `for_each:`: one `${…}` (the wrapper may be left out)."""
        if isinstance(value, bool):
            value = "${true}" if value else "${false}"
        if not isinstance(value, str) or not value.strip():
            raise self.error(
                path, f"must be an expression such as '${{inputs.n > 0}}', got {_kind(value)}"
            )
        text = value.strip()
        if not (text.startswith("${") and text.endswith("}")):
            try:  # the wrapper left out: offsets in the text given are 2 less
                return Template(value, template("${" + value + "}").parts, shift=2)
            except ExpressionError as exc:
                raise self.error(
                    path, f"invalid expression: {exc}", offset=max(exc.offset - 2, 0)
                ) from None
        tmpl = self.compile(path, value)
        if not tmpl.whole:
            raise self.error(path, "must be one expression, '${…}', not text around expressions")
        return tmpl

    # -- reading the file ------------------------------------------------------------------------

    def build(self) -> Workflow:
        doc = self.mapping((), self.src.value, TOP_KEYS, "a workflow file")
        fmt = doc.get("plait", FORMAT)
        if fmt != FORMAT or isinstance(fmt, bool):
            raise self.error(
                ("plait",), f"unknown format {fmt!r}: this plait reads format {FORMAT}"
            )
        if "name" not in doc:
            raise self.error((), "a workflow file needs a name: (the workflow's name)")
        name = self.string(("name",), doc["name"])
        if not WORKFLOW_NAME_RE.fullmatch(name):
            raise self.error(
                ("name",),
                f"invalid workflow name {name!r}: use 1-128 ASCII letters, digits, '_', '-' or '.'",
            )
        version = doc.get("version", "1")
        if isinstance(version, bool) or not isinstance(version, str | int | float):
            raise self.error(("version",), f"must be a string or a number, got {_kind(version)}")
        version = str(version)
        if "description" in doc:
            self.string(("description",), doc["description"])
        for i, module in enumerate(self.names(("imports",), doc.get("imports", []))):
            try:
                import_module(module)
            except ActionNotFound as exc:
                raise self.error(("imports", i), str(exc)) from None
        inputs = doc.get("inputs", {})
        if not isinstance(inputs, dict):
            raise self.error(("inputs",), f"must be a mapping of input names, got {_kind(inputs)}")
        for input_name, spec in inputs.items():
            self.input(input_name, spec)
        retry = self.retry(("retry",), doc["retry"]) if "retry" in doc else None
        timeout = self.duration(("timeout",), doc["timeout"]) if "timeout" in doc else None
        fail_fast = self.boolean(("fail_fast",), doc["fail_fast"]) if "fail_fast" in doc else False
        if "approval_policy" in doc:
            self.policy = self.approval_policy(("approval_policy",), doc["approval_policy"])
        steps = doc.get("steps")
        if not isinstance(steps, dict) or not steps:
            raise self.error(
                ("steps",) if "steps" in doc else (),
                "a workflow file needs steps: a mapping of step names to steps",
            )
        sections: list[tuple[str, dict[str, Any]]] = [("steps", steps)]
        for section in ("catch", "finally"):
            if section in doc:
                if not isinstance(doc[section], dict) or not doc[section]:
                    raise self.error(
                        (section,),
                        f"{section}: is a mapping of step names to steps (as steps: is), "
                        f"got {_kind(doc[section])}",
                    )
                sections.append((section, doc[section]))
        seen: dict[str, str] = {}
        for section, entries in sections:
            for step_name in entries:
                self.identifier((section, step_name), step_name, "step")
                if step_name in self.inputs:
                    raise self.error(
                        (section, step_name),
                        f"step {step_name!r} has the name of an input",
                        key=True,
                    )
                if step_name in seen:
                    raise self.error(
                        (section, step_name),
                        f"step {step_name!r} is declared under {seen[step_name]}: already; "
                        "step names are unique across steps:, catch: and finally:",
                        key=True,
                    )
                seen[step_name] = section
        # each step is checked on its own: the mistakes of one pass are reported together
        errors = []
        for section, entries in sections:
            for step_name, spec in entries.items():
                try:
                    self.steps[step_name] = self.step(step_name, spec, section)
                except DeclarationError as exc:
                    errors.append(exc)
        _raise_all(errors)
        for step in self.steps.values():
            try:
                self.link_catch(step)
            except DeclarationError as exc:
                errors.append(exc)
        _raise_all(errors)
        for step in self.steps.values():
            try:
                self.link(step)
            except DeclarationError as exc:
                errors.append(exc)
        _raise_all(errors)
        self.check_cycles()
        for step in self.steps.values():
            for goto in step.gotos:
                try:
                    self.check_goto(step, goto)
                except DeclarationError as exc:
                    errors.append(exc)
        _raise_all(errors)
        return self.workflow(name, version, retry, timeout, fail_fast)

    def input(self, name: Any, spec: Any) -> None:
        path: Path = ("inputs", name)
        self.identifier(path, str(name), "input")
        if isinstance(spec, str):
            spec = {"type": spec}
        spec = self.mapping(path, spec, INPUT_KEYS, "an input")
        kind = spec.get("type", "any")
        if kind not in INPUT_TYPES:
            raise self.error(
                (*path, "type"),
                f"unknown type {_shown(kind)}{did_you_mean(str(kind), list(INPUT_TYPES))}; "
                f"types: {', '.join(INPUT_TYPES)}",
            )
        if "description" in spec:
            self.string((*path, "description"), spec["description"])
        default = spec.get("default")
        if "default" in spec and default is not None and not _fits(kind, default):
            raise self.error(
                (*path, "default"), f"the default {_shown(default)} is not of type {kind}"
            )
        self.inputs[name] = _InputSpec(name, kind, "default" not in spec, default)

    def retry(self, path: Path, value: Any) -> Retry:
        spec = self.mapping(path, value, RETRY_KEYS, "retry")
        options: dict[str, Any] = {}
        if "attempts" in spec:  # null: no limit (plait.Retry(attempts=None))
            attempts = spec["attempts"]
            if attempts is not None and (
                isinstance(attempts, bool)
                or not isinstance(attempts, int)
                or not 1 <= attempts <= 1000
            ):
                raise self.error(
                    (*path, "attempts"),
                    "must be an integer from 1 to 1000, or null for no limit, "
                    f"got {_shown(attempts)}",
                )
            options["attempts"] = attempts
        for option in ("delay", "max_delay"):
            if option in spec:
                options[option] = self.duration((*path, option), spec[option])
        if "backoff" in spec:
            backoff = spec["backoff"]
            if isinstance(backoff, str):
                if backoff != LINEAR:
                    raise self.error(
                        (*path, "backoff"),
                        f"must be a number from 1 to 100 or 'linear', got {_shown(backoff)}"
                        f"{did_you_mean(backoff, [LINEAR])}",
                    )
                options["backoff"] = LINEAR
            else:
                options["backoff"] = self.number((*path, "backoff"), backoff, 1, 100)
        if "non_retryable" in spec:
            codes = spec["non_retryable"]
            if not isinstance(codes, list):
                raise self.error(
                    (*path, "non_retryable"),
                    "must be a list of error codes (an exception's class name unless it gives "
                    f"a code, timeout, ...), got {_kind(codes)}",
                )
            for i, code in enumerate(codes):
                if not isinstance(code, str) or not code:
                    raise self.error(
                        (*path, "non_retryable", i),
                        f"must be an error code (a non-empty string), got {_shown(code)}",
                    )
            options["non_retryable"] = codes
        if "jitter" in spec:
            options["jitter"] = self.number((*path, "jitter"), spec["jitter"], 0, 1)
        return Retry(**options)

    def approval(self, path: Path, value: Any) -> Approval | None:
        """`approval: true`, or `{expires_after, on_expiry}`: a plait.Approval gate."""
        if value is False:
            return None
        if value is True:
            return Approval()
        spec = self.mapping(path, value, APPROVAL_KEYS, "approval (or true)")
        expires = spec.get("expires_after")
        on_expiry = spec.get("on_expiry", "reject")
        if on_expiry not in ("reject", "approve"):
            raise self.error(
                (*path, "on_expiry"), f"must be 'reject' or 'approve', got {_shown(on_expiry)}"
            )
        return Approval(
            expires_after=None
            if expires is None
            else self.duration((*path, "expires_after"), expires),
            on_expiry=on_expiry,
        )

    def step(self, name: str, value: Any, section: str = "steps") -> _StepSpec:
        path: Path = (section, name)
        spec = self.mapping(path, value, STEP_KEYS, "a step")
        if "action" in spec and "workflow" in spec:
            raise self.error(
                (*path, "workflow"),
                "a step calls an action or a workflow, not both: drop action: or workflow:",
                key=True,
            )
        if "action" not in spec and "workflow" not in spec:
            raise self.error(
                path,
                "a step needs an action: (a registered action's name or module:function) "
                "or a workflow: (a workflow file to call)",
            )
        if section != "steps":
            for key in NOT_AT_END:
                if key in spec:
                    raise self.error(
                        (*path, key),
                        f"a step under {section}: cannot have {key}: it runs once every other "
                        "step has ended",
                        key=True,
                    )
        if "workflow" in spec:
            ref = self.string((*path, "workflow"), spec["workflow"])
            step = _StepSpec(name, f"workflow:{ref}", section)
            step.action = self.call((*path, "workflow"), ref)
        else:
            step = _StepSpec(name, self.string((*path, "action"), spec["action"]), section)
            try:
                step.action = resolve(step.action_ref)
            except ActionNotFound as exc:
                raise self.error((*path, "action"), str(exc)) from None
        if "description" in spec:
            self.string((*path, "description"), spec["description"])
        args = spec.get("with", {})
        if not isinstance(args, dict):
            raise self.error(
                (*path, "with"), f"must be a mapping of argument names, got {_kind(args)}"
            )
        step.args = {k: self.expand((*path, "with", k), v) for k, v in args.items()}
        for argument, problem in step.action.problems(list(args)):
            where = (
                (*path, "with", argument)
                if argument
                else (*path, "with")
                if "with" in spec
                else (*path, "workflow" if "workflow" in spec else "action")
            )
            raise self.error(where, problem, key=argument is not None)
        for argument, param in step.action.params.items():
            literal = args.get(argument)
            if argument in args and param.adapter is not None and not _holds_expression(literal):
                try:
                    param.adapter.validate_python(literal)
                except Exception as exc:
                    raise self.error(
                        (*path, "with", argument),
                        f"action {step.action.name!r}, argument {argument!r}: {_first_line(exc)}",
                    ) from None
        step.depends_on = self.names((*path, "depends_on"), spec.get("depends_on", []))
        if "when" in spec:
            step.when = self.expression((*path, "when"), spec["when"])
        if "retry" in spec:
            step.retry = self.retry((*path, "retry"), spec["retry"])
        if "timeout" in spec:
            step.timeout = self.duration((*path, "timeout"), spec["timeout"])
        if "delay" in spec:
            step.delay = self.duration((*path, "delay"), spec["delay"])
        if "optional" in spec:
            step.optional = self.boolean((*path, "optional"), spec["optional"])
        if "priority" in spec:
            step.priority = self.integer((*path, "priority"), spec["priority"], -(2**31), 2**31 - 1)
        if "queue" in spec:
            queue = self.string((*path, "queue"), spec["queue"])
            try:
                step.queue = check_queue("queue", queue)
            except DefinitionError as exc:
                raise self.error((*path, "queue"), str(exc).removeprefix("queue: ")) from None
        if "approval" in spec:
            step.approval = self.approval((*path, "approval"), spec["approval"])
        defaults = spec.get("defaults", {})
        if not isinstance(defaults, dict):
            raise self.error(
                (*path, "defaults"),
                f"must be a mapping of step names to values, got {_kind(defaults)}",
            )
        step.defaults = dict(defaults)
        if "for_each" in spec:
            step.for_each = self.expression((*path, "for_each"), spec["for_each"])
        if "max_parallel" in spec:
            if "for_each" not in spec:
                raise self.error(
                    (*path, "max_parallel"),
                    "max_parallel limits a for_each: add for_each",
                    key=True,
                )
            step.max_parallel = self.integer(
                (*path, "max_parallel"), spec["max_parallel"], 1, 10_000
            )
        if "await" in spec:
            self.await_(step, (*path, "await"), spec["await"])
        gotos = spec.get("goto", [])
        if isinstance(gotos, dict):
            gotos = [gotos]
        if not isinstance(gotos, list):
            raise self.error(
                (*path, "goto"), f"must be a list of {{when, step}}, got {_kind(gotos)}"
            )
        if gotos and step.for_each is not None:
            raise self.error(
                (*path, "goto"),
                "a for_each step cannot goto: put the goto on a step after it",
                key=True,
            )
        for i, entry in enumerate(gotos):
            gpath = (*path, "goto", i) if isinstance(spec.get("goto"), list) else (*path, "goto")
            entry = self.mapping(gpath, entry, GOTO_KEYS, "a goto")
            if "step" not in entry:
                raise self.error(gpath, "a goto needs step: (the step to run again)")
            step.gotos.append(
                _GotoSpec(
                    when=self.expression((*gpath, "when"), entry["when"])
                    if "when" in entry
                    else None,
                    step=self.string((*gpath, "step"), entry["step"]),
                    max_iterations=self.integer(
                        (*gpath, "max_iterations"), entry.get("max_iterations", 10), 1, 1_000_000
                    ),
                    path=gpath,
                )
            )
        if "post" in spec:
            self.post(step, (*path, "post"), spec["post"])
        if "catch" in spec:
            step.catch = self.string((*path, "catch"), spec["catch"])
            step.catch_path = (*path, "catch")
        return step

    def call(self, path: Path, ref: str) -> _WorkflowCall:
        """The action of a step that calls the workflow file `ref` (relative to this file's
        directory): loaded once per load, refused if it is missing or includes itself."""
        base = self.chain[-1].parent if self.chain else FilePath.cwd()
        target = (base / ref).resolve()
        if target in self.chain:
            loop = " -> ".join(f.name for f in (*self.chain[self.chain.index(target) :], target))
            raise self.error(path, f"workflow file {ref!r} includes itself: {loop}")
        found = self.called.get(target)
        if found is None:
            try:
                text = target.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                why = getattr(exc, "strerror", None) or str(exc)
                raise self.error(
                    path, f"cannot read workflow file {ref!r} ({target}): {why}"
                ) from None
            directory = str(target.parent)  # its imports: may name the modules beside it
            if directory not in sys.path:
                sys.path.insert(0, directory)
            loader = _Loader(read(str(target), text), (*self.chain, target), self.called)
            found = self.called[target] = _Called(loader.build(), loader.inputs)
        child = found.workflow
        if all(c is not child for c in self.callees):
            self.callees.append(child)

        def call(ctx: StepContext, **values: Any) -> Any:
            return ctx.call(child, values)

        params = {
            spec.name: Param(spec.name, spec.required, adapter(INPUT_TYPES[spec.kind]))
            for spec in found.inputs.values()
        }
        return _WorkflowCall(
            f"workflow:{ref}", call, params, ctx_param="ctx", returns=Any, called=child
        )

    def link_catch(self, step: _StepSpec) -> None:
        """`catch: NAME` on a step: NAME (a step under steps:) runs only if this one fails, and
        reads its error (`${error}`); it cannot wait for this step otherwise."""
        if step.catch is None:
            return
        path, name = step.catch_path, step.catch
        handler = self.steps.get(name)
        if handler is None:
            raise self.error(path, f"unknown step {name!r}{did_you_mean(name, list(self.steps))}")
        if name == step.name:
            raise self.error(path, f"step {name!r} cannot catch its own failure")
        if handler.section != "steps":
            raise self.error(
                path,
                f"step {name!r} is under {handler.section}: and runs at the end anyway; "
                "a catch: names a step under steps:",
            )
        if handler.catches is not None:
            raise self.error(
                path,
                f"step {name!r} already catches the failure of step {handler.catches!r}; "
                "a step catches one step's failure",
            )
        handler.catches = step.name

    def approval_policy(self, path: Path, value: Any) -> ApprovalPolicy:
        """`approval_policy: MODE` or `{mode, allow, block, expires_after, on_expiry}`."""
        spec = {"mode": value} if isinstance(value, str) else value
        spec = self.mapping(path, spec, POLICY_KEYS, "approval_policy (or a mode)")
        mode = spec.get("mode", "ask")
        if mode not in POLICY_MODES:
            where = (*path, "mode") if isinstance(value, dict) else path
            raise self.error(
                where,
                f"unknown approval_policy mode {_shown(mode)}"
                f"{did_you_mean(str(mode), list(POLICY_MODES))}; modes: auto (every action "
                "runs), ask (each step waits for an approval, but the allowed actions), deny "
                "(only the allowed actions run)",
            )
        lists: dict[str, frozenset[str]] = {}
        for key in ("allow", "block"):
            names = spec.get(key, [])
            if isinstance(names, str):
                names = [names]
            if not isinstance(names, list):
                raise self.error(
                    (*path, key), f"must be a list of action names, got {_kind(names)}"
                )
            for i, name in enumerate(names):
                self.string((*path, key, i), name)
            lists[key] = frozenset(n.lower() for n in names)
        approval = (
            self.approval(path, {k: spec[k] for k in APPROVAL_KEYS if k in spec}) or Approval()
        )
        return ApprovalPolicy(
            mode, lists["allow"], lists["block"], approval.expires_after, approval.on_expiry
        )

    def await_(self, step: _StepSpec, path: Path, value: Any) -> None:
        """`await: MODE` or `{mode, timeout}`: how a for_each waits for its items."""
        if step.for_each is None:
            raise self.error(path, "await says how a for_each waits: add for_each", key=True)
        spec = {"mode": value} if isinstance(value, str) else value
        spec = self.mapping(path, spec, AWAIT_KEYS, "await (or a mode)")
        mode = spec.get("mode", "all")
        if mode not in AWAIT_MODES:
            where = (*path, "mode") if isinstance(value, dict) else path
            raise self.error(
                where,
                f"unknown await mode {_shown(mode)}{did_you_mean(str(mode), list(AWAIT_MODES))}; "
                "modes: all (every item), first (the first item that succeeds), any_error "
                "(fail at the first item that fails)",
            )
        step.join = None if mode == "all" else mode
        if "timeout" in spec:
            step.join_timeout = self.duration((*path, "timeout"), spec["timeout"])

    def post(self, step: _StepSpec, path: Path, value: Any) -> None:
        """`post: {set: {KEY: VALUE}, append: {KEY: VALUE}}`: session state changes made when
        the step's action returned, its values expanded (`${output}` is what it returned)."""
        if step.for_each is not None:
            raise self.error(
                path, "a for_each step cannot post: put the post on a step after it", key=True
            )
        spec = self.mapping(path, value, POST_KEYS, "a post")
        if not spec:
            raise self.error(path, "a post needs set: or append: (KEY: VALUE, ...)")
        for op in (op for op in POST_KEYS if op in spec):
            entries = spec[op]
            if not isinstance(entries, dict) or not entries:
                raise self.error(
                    (*path, op),
                    f"must be a mapping of session state keys to values, got {_kind(entries)}",
                )
            for key, entry in entries.items():
                if not isinstance(key, str) or not 1 <= len(key) <= 256:
                    raise self.error(
                        (*path, op, key),
                        f"a session state key is a string of 1 to 256 characters, got {key!r}",
                        key=True,
                    )
                step.posts.append((op, key, self.expand((*path, op, key), entry)))

    def expand(self, path: Path, value: Any) -> Any:
        if isinstance(value, str):
            return _Expanding(self.compile(path, value), path) if has_expression(value) else value
        if isinstance(value, dict):
            return {k: self.expand((*path, k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.expand((*path, i), v) for i, v in enumerate(value)]
        return value

    # -- references ------------------------------------------------------------------------------

    def link(self, step: _StepSpec) -> None:
        """Check every name a step refers to, and find the steps whose outputs it reads."""
        path: Path = step.path
        for i, dep in enumerate(step.depends_on):
            self.known_step((*path, "depends_on", i), dep, step)
            if dep == step.catches:
                raise self.error(
                    (*path, "depends_on", i),
                    f"step {step.name!r} catches the failure of {dep!r}: it runs only if "
                    f"{dep!r} failed, so it cannot depend on it",
                )
        data: dict[str, None] = {}
        for value_path, tmpl in _templates(step.args):
            allowed = ("item", "index") if step.for_each is not None else ()
            data.update(dict.fromkeys(self.refs(value_path, tmpl, step, allowed)))
        if step.for_each is not None:
            data.update(dict.fromkeys(self.refs((*path, "for_each"), step.for_each, step)))
        for goto in step.gotos:
            if goto.when is not None:
                data.update(
                    dict.fromkeys(self.refs((*goto.path, "when"), goto.when, step, own=True))
                )
        for value_path, tmpl in _templates([value for _, _, value in step.posts]):
            data.update(dict.fromkeys(self.refs(value_path, tmpl, step, ("output",), own=True)))
        data.pop(step.name, None)
        if step.catches is not None and step.catches in data:
            raise self.error(
                path,
                f"step {step.name!r} catches the failure of {step.catches!r}: it runs only if "
                f"{step.catches!r} failed, so there is no output of it to read "
                "(read ${error} instead)",
                key=True,
            )
        step.data = list(data)
        if step.when is not None:
            step.when_reads = list(
                dict.fromkeys(self.refs((*path, "when"), step.when, step, run=False))
            )
        for dep in step.defaults:
            if dep not in (*step.data, *step.when_reads, *step.depends_on):
                why = f"{did_you_mean(dep, list(self.steps))}" if dep not in self.steps else ""
                raise self.error(
                    (*path, "defaults", dep),
                    f"defaults names {dep!r}{why}, which this step neither reads "
                    f"(${{steps.{dep}.output}}) "
                    "nor depends_on",
                    key=True,
                )

    def known_step(self, path: Path, name: str, step: _StepSpec, offset: int | None = None) -> None:
        if name not in self.steps:
            raise self.error(
                path, f"unknown step {name!r}{did_you_mean(name, list(self.steps))}", offset=offset
            )
        if name == step.name:
            raise self.error(path, f"step {name!r} cannot depend on itself", offset=offset)
        other = self.steps[name]
        if other.section != "steps" and not (
            step.section == "finally" and other.section == "catch"
        ):
            raise self.error(
                path,
                f"step {name!r} is under {other.section}: and runs after "
                f"{'every other step' if other.section == 'finally' else 'the steps'}: "
                f"step {step.name!r} cannot wait for it",
                offset=offset,
            )

    def refs(
        self,
        path: Path,
        tmpl: Template,
        step: _StepSpec,
        allowed: tuple[str, ...] = (),
        *,
        own: bool = False,
        run: bool = True,
    ) -> list[str]:
        """The steps whose outputs `tmpl` reads; DeclarationError for a name it cannot read."""
        found: list[str] = []
        for tree in tmpl.expressions():
            for root, named, at_root in references(tree):
                chain = [(name, at - tmpl.shift) for name, at in named]
                offset = at_root - tmpl.shift
                if root == "inputs":
                    if not chain:
                        continue  # the whole input
                    field_name, at = chain[0]
                    if field_name not in self.inputs:
                        hint = did_you_mean(field_name, list(self.inputs))
                        raise self.error(
                            path,
                            f"unknown input {field_name!r}{hint}: declare it under inputs:",
                            offset=at,
                        )
                elif root == "steps":
                    if not chain:
                        raise self.error(path, "name a step: steps.NAME.output", offset=offset)
                    name, at = chain[0]
                    if name == step.name and own:
                        pass
                    elif name == step.name:
                        raise self.error(
                            path, f"step {name!r} cannot read its own output here", offset=at
                        )
                    else:
                        self.known_step(path, name, step, offset=at)
                    if len(chain) < 2 or chain[1][0] != "output":
                        at = chain[1][1] if len(chain) > 1 else at
                        raise self.error(
                            path,
                            f"write steps.{name}.output: a step's output is all an expression "
                            "reads of it",
                            offset=at,
                        )
                    self.check_fields(path, self.steps[name], chain[2:])
                    found.append(name)
                elif root == "error":
                    if step.reads_error and not run:
                        raise self.error(
                            path,
                            "'error' is known when the step runs: its with: and post: may read "
                            "it, its when: may not",
                            offset=offset,
                        )
                    if not step.reads_error:
                        raise self.error(
                            path,
                            "'error' is the failure a catching step handles: only a step that "
                            "another's catch: names, or a step under catch:, may read it",
                            offset=offset,
                        )
                    if chain and chain[0][0] not in ERROR_FIELDS:
                        name, at = chain[0]
                        raise self.error(
                            path,
                            f"error has no field {name!r}{did_you_mean(name, list(ERROR_FIELDS))}"
                            f" (it has: {', '.join(ERROR_FIELDS)})",
                            offset=at,
                        )
                elif root == "output" and root in allowed:
                    self.check_fields(path, step, chain)  # what the step's action returns
                elif root in allowed or root == "state":
                    continue  # state: any key, since actions write it too (ctx.state)
                elif root == "output":
                    raise self.error(
                        path,
                        "'output' is what the step's action returned: only its post: may read it "
                        "(elsewhere, steps.NAME.output)",
                        offset=offset,
                    )
                elif root == "run":
                    if not run:
                        raise self.error(
                            path,
                            "'run' is known when the step runs: its with:, for_each and a goto's "
                            "when: may read it, its when: may not",
                            offset=offset,
                        )
                    if chain and chain[0][0] not in RUN_FIELDS:
                        name, at = chain[0]
                        raise self.error(
                            path,
                            f"run has no field {name!r}{did_you_mean(name, list(RUN_FIELDS))} "
                            f"(it has: {', '.join(RUN_FIELDS)})",
                            offset=at,
                        )
                elif root in ("item", "index"):
                    raise self.error(
                        path,
                        f"{root!r} is the item of a for_each: only its step's with: can read it",
                        offset=offset,
                    )
                else:
                    raise self.error(
                        path,
                        f"unknown name {root!r}{did_you_mean(root, list(ROOTS))}: an "
                        "expression reads "
                        "inputs, steps, state, run (and item, index in a for_each's with:; "
                        "output in a post:; error in a catching step)",
                        offset=offset,
                    )
        return found

    def check_fields(self, path: Path, source: _StepSpec, fields: list[tuple[str, int]]) -> None:
        """The fields an expression reads of a step's output exist in its action's return
        annotation (where the annotation lists fields)."""
        assert source.action is not None
        what = f"steps.{source.name}.output"
        hint = source.action.returns
        if source.for_each is not None and source.join != "first":
            hint = list[hint]  # type: ignore[valid-type]  # a list of the items' outputs
        problem = output_problem(hint, fields, what)
        if problem is not None:
            message, offset = problem
            raise self.error(path, message, offset=offset)

    def check_cycles(self) -> None:
        edges = {
            s.name: [*s.data, *s.when_reads, *s.depends_on, *([s.catches] if s.catches else [])]
            for s in self.steps.values()
        }
        state: dict[str, int] = {}
        for root in edges:
            if root in state:
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            trail: list[str] = []
            while stack:
                node, i = stack.pop()
                if i == 0:
                    if state.get(node) == 1:
                        cycle = [*trail[trail.index(node) :], node]
                        raise self.error(
                            self.steps[cycle[0]].path,
                            f"cycle: {' -> '.join(cycle)} (each step waits for the next)",
                            key=True,
                        )
                    if state.get(node) == 2:
                        continue
                    state[node] = 1
                    trail.append(node)
                if i < len(edges[node]):
                    stack.append((node, i + 1))
                    stack.append((edges[node][i], 0))
                else:
                    state[node] = 2
                    trail.pop()

    def upstream(self, name: str) -> set[str]:
        seen: set[str] = set()
        stack = [name]
        while stack:
            step = self.steps[stack.pop()]
            for dep in (
                *step.data,
                *step.when_reads,
                *step.depends_on,
                *([step.catches] if step.catches else []),
            ):
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return seen

    def check_goto(self, step: _StepSpec, goto: _GotoSpec) -> None:
        path = (*goto.path, "step")
        if goto.step not in self.steps:
            raise self.error(
                path, f"unknown step {goto.step!r}{did_you_mean(goto.step, list(self.steps))}"
            )
        target = self.steps[goto.step]
        if target.section != "steps":
            raise self.error(
                path,
                f"goto {goto.step!r}: it is under {target.section}: and runs at the end; "
                "a goto names a step under steps:",
            )
        if (
            goto.step != step.name
            and goto.step not in self.upstream(step.name)
            and step.name not in self.upstream(goto.step)
        ):
            raise self.error(
                path,
                f"goto {goto.step!r}: a goto runs again the step itself or a step upstream of it "
                f"(one {step.name!r} waits for), or jumps to a step downstream of it (one that "
                f"waits for {step.name!r}); {goto.step!r} is neither",
            )

    # -- building --------------------------------------------------------------------------------

    def workflow(
        self, name: str, version: str, retry: Retry | None, timeout: float | None, fail_fast: bool
    ) -> Workflow:
        try:
            wf = Workflow(
                name, version, retry=retry, timeout=timeout, fail_fast=fail_fast,
                calls=self.callees,
            )  # fmt: skip
        except DefinitionError as exc:
            raise self.error(("name",), str(exc)) from None
        for step in self.steps.values():
            try:
                self.add(wf, step)
            except DefinitionError as exc:
                raise self.error(step.path, str(exc), key=True) from None
        try:
            wf.plan()
        except DefinitionError as exc:
            raise self.error(("steps",), str(exc), key=True) from None
        return wf

    def add(self, wf: Workflow, step: _StepSpec) -> None:
        assert step.action is not None
        # the policy is about actions: a called workflow's own policy governs its actions
        policed = not isinstance(step.action, _WorkflowCall)
        asked = False
        if self.policy is not None and policed:
            step.refusal = self.policy.refusal(step.action.name)
            if (
                step.refusal is None
                and step.approval is None
                and self.policy.asks(step.action.name)
            ):
                step.approval = self.policy.approval
                asked = True
        options: dict[str, Any] = {
            "after": [d for d in step.depends_on if d not in step.data],
            "defaults": step.defaults,
            "optional": step.optional,
            "retry": step.retry,
            "timeout": step.timeout,
            "priority": step.priority,
            "delay": step.delay,
            "approval": step.approval or False,
            "queue": step.queue,
            "catches": step.catches,
            "at_end": step.at_end,
            "join": step.join,
            "join_timeout": step.join_timeout,
        }
        inputs = list(self.inputs.values())
        digest = self.fingerprint(step, "step")
        if step.when is not None:
            options["when"] = _condition(self.src, step, inputs, self.fingerprint(step, "when"))
        if step.for_each is not None:
            task = f"{step.name}.item"
            item_fn = _item_handler(self.src, step, self.fingerprint(step, "item"))
            wf.task(
                name=task,
                retry=step.retry,
                timeout=step.timeout,
                queue=step.queue,
                priority=step.priority,
            )(item_fn)
            handler = _fan_out(self.src, step, inputs, task, digest)
            options["timeout"] = None  # the step itself only spawns; each item has the timeout
        else:
            handler = _handler(self.src, step, inputs, digest)
        if step.approval is not None or policed:  # what its approval asks about (a run's
            # policy may ask too: engine.list_waiting)
            handler.__plait_request__ = _request(self.src, step, inputs)  # type: ignore[attr-defined]  # read by engine.operator
        added = wf.add_step(step.name, handler, **options)
        if policed:  # a run's approval policy judges it by its action (`core.policy`)
            added.policy_name, added.policy_what, added.policy_gate = (
                step.action.name,
                "action",
                asked,
            )
        if step.refusal is not None:  # the worker fails it, unrun (its rows' options say so)
            added.options = replace(added.options or StepOptions(), refusal=step.refusal)

    def fingerprint(self, step: _StepSpec, part: str) -> str:
        """What stands for a generated function's code in the workflow's fingerprint: the file's
        content, the step and the action's own code."""
        assert step.action is not None
        seed = f"{self.digest}:{step.name}:{part}:{step.action.name}:{step.action.digest}"
        return hashlib.sha256(seed.encode()).hexdigest()[:16]


# -- the functions a file's steps run -------------------------------------------------------------


def _signature(
    fn: Callable[..., Any], reads: list[str], inputs: list[_InputSpec], *, ctx: bool, digest: str
) -> None:
    """Give a generated function the parameters plait binds: `ctx`, the outputs of the steps it
    reads, and the run's declared inputs (typed, with their defaults)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("ctx", kind)] if ctx else []
    params += [inspect.Parameter(name, kind) for name in reads]
    annotations: dict[str, Any] = {}
    for spec in inputs:
        default = inspect.Parameter.empty if spec.required else spec.default
        params.append(inspect.Parameter(spec.name, kind, default=default))
        annotations[spec.name] = INPUT_TYPES[spec.kind]
        if spec.kind != "any" and not spec.required and spec.default is None:
            annotations[spec.name] = INPUT_TYPES[spec.kind] | None  # default: null
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # inspect reads it
    fn.__annotations__ = annotations
    fn.__plait_digest__ = digest  # type: ignore[attr-defined]  # read by workflow.digests
    fn.__qualname__ = fn.__name__ = f"yaml_{digest}"


def _env(
    kwargs: Mapping[str, Any], inputs: list[_InputSpec], reads: list[str], ctx: Any = None
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "inputs": {s.name: copy.deepcopy(kwargs.get(s.name, s.default)) for s in inputs},
        "steps": {name: {"output": kwargs.get(name)} for name in reads},
    }
    if ctx is not None:
        env["run"] = {"id": ctx.run_id, "attempt": ctx.attempt, "iteration": ctx.iteration}
        env["state"] = ctx.state.to_dict()
        env["error"] = None if ctx.error is None else ctx.error.to_dict()
    return env


def _post(src: Source, step: _StepSpec, env: dict[str, Any], ctx: Any, output: Any) -> None:
    """Make the session state changes of the step's `post:`, from what its action returned
    (committed with the step's success, as ctx.state's)."""
    if not step.posts:
        return
    if isinstance(output, Goto):  # the action itself looped back: it returned no output
        output = None
    plain = _codec.loads(_codec.dumps(output))
    env["output"] = plain
    env["steps"][step.name] = {"output": plain}
    env["state"] = ctx.state.to_dict()  # with what the action changed
    for op, key, value in step.posts:
        expanded = _expand(src, value, env)
        getattr(ctx.state, op)(key, expanded)
        env["state"] = ctx.state.to_dict()


def _fail(src: Source, path: Path, exc: EvaluationError) -> Permanent:
    line, column = src.at(path)
    return Permanent(f"{src.file}:{line}:{column}: {_dotted(path)}: {exc}", code=EXPRESSION_ERROR)


def _expand(src: Source, value: Any, env: Mapping[str, Any]) -> Any:
    if isinstance(value, _Expanding):
        try:
            return render(value.value, env)
        except EvaluationError as exc:
            raise _fail(src, value.path, exc) from None
    if isinstance(value, dict):
        return {k: _expand(src, v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(src, v, env) for v in value]
    return value


def _value(src: Source, path: Path, tmpl: Template, env: Mapping[str, Any]) -> Any:
    try:
        return render(tmpl, env)
    except EvaluationError as exc:
        raise _fail(src, path, exc) from None


def _goto(src: Source, step: _StepSpec, env: dict[str, Any], output: Any) -> Any:
    if not step.gotos:
        return output
    env["steps"][step.name] = {"output": output}
    for goto in step.gotos:
        if goto.when is None or truthy(_value(src, (*goto.path, "when"), goto.when, env)):
            return Goto(goto.step, max_iterations=goto.max_iterations)
    return output


def _request(src: Source, step: _StepSpec, inputs: list[_InputSpec]) -> Callable[..., Any]:
    """What an approval of the step asks about: its action and its arguments, expanded from the
    run as it is now (`engine.list_waiting`); a value not yet computable is said so."""
    action = step.action
    assert action is not None

    def request(
        run_input: Mapping[str, Any], outputs: Mapping[str, Any], state: Mapping[str, Any]
    ) -> dict[str, Any]:
        kwargs = {**run_input, **{n: outputs.get(n) for n in step.data}}
        env = _env(kwargs, inputs, step.data)
        env["state"] = dict(state)
        asked: dict[str, Any] = {"action": action.name}
        if step.for_each is not None:
            return asked
        try:
            asked["with"] = _expand(src, step.args, env)
        except Permanent as exc:
            asked["with"], asked["error"] = None, str(exc)
        return asked

    return request


def _handler(
    src: Source, step: _StepSpec, inputs: list[_InputSpec], digest: str
) -> Callable[..., Any]:
    action = step.action
    assert action is not None
    fn = action.fn

    if action.is_async:

        async def run_async(ctx: Any, **kwargs: Any) -> Any:
            env = _env(kwargs, inputs, step.data, ctx)
            args = action.arguments(_expand(src, step.args, env), ctx)
            output = await fn(**args)
            _post(src, step, env, ctx, output)
            return _goto(src, step, env, output)

        _signature(run_async, step.data, inputs, ctx=True, digest=digest)
        return run_async

    def run(ctx: Any, **kwargs: Any) -> Any:
        env = _env(kwargs, inputs, step.data, ctx)
        args = action.arguments(_expand(src, step.args, env), ctx)
        output = fn(**args)
        _post(src, step, env, ctx, output)
        return _goto(src, step, env, output)

    _signature(run, step.data, inputs, ctx=True, digest=digest)
    return run


def _fan_out(
    src: Source, step: _StepSpec, inputs: list[_InputSpec], task: str, digest: str
) -> Callable[..., Any]:
    assert step.for_each is not None
    each, cap = step.for_each, step.max_parallel

    def spawn(ctx: Any, **kwargs: Any) -> Any:
        env = _env(kwargs, inputs, step.data, ctx)
        path = (*step.path, "for_each")
        items = _value(src, path, each, env)
        if not isinstance(items, list):
            line, column = src.at(path)
            raise Permanent(
                f"{src.file}:{line}:{column}: {_dotted(path)}: for_each needs a list, "
                f"got {kind_of(items)}",
                code=NOT_A_LIST,
            )
        handles: list[Any] = []
        for index, item in enumerate(items):
            args = _expand(src, step.args, {**env, "item": item, "index": index})
            after = [handles[index - cap]] if cap is not None and index >= cap else []
            handles.append(ctx.spawn(task, input=args, after=after))
        return handles

    _signature(spawn, step.data, inputs, ctx=True, digest=digest)
    return spawn


def _item_handler(src: Source, step: _StepSpec, digest: str) -> Callable[..., Any]:
    action = step.action
    assert action is not None
    fn = action.fn

    if action.is_async:

        async def item_async(ctx: StepContext, args: Any) -> Any:
            return await fn(**action.arguments(args, ctx))

        item_async.__plait_digest__ = digest  # type: ignore[attr-defined]  # workflow.digests
        return item_async

    def item(ctx: StepContext, args: Any) -> Any:
        return fn(**action.arguments(args, ctx))

    item.__plait_digest__ = digest  # type: ignore[attr-defined]  # read by workflow.digests
    return item


def _condition(
    src: Source, step: _StepSpec, inputs: list[_InputSpec], digest: str
) -> Callable[..., Any]:
    assert step.when is not None
    tmpl, reads = step.when, step.when_reads
    path = (*step.path, "when")

    taken = {*reads, *(s.name for s in inputs)}
    state_param = next(n for n in ("state", "state_", "session_state__") if n not in taken)

    def holds(**kwargs: Any) -> bool:
        state = kwargs.pop(state_param)
        env = _env(kwargs, inputs, reads)
        env["state"] = state.to_dict()
        return truthy(_value(src, path, tmpl, env))

    _signature(holds, reads, inputs, ctx=False, digest=digest)
    # the session state, read-only (workflow.definition binds a parameter annotated so)
    kind = inspect.Parameter.KEYWORD_ONLY
    signature = inspect.signature(holds)
    holds.__signature__ = signature.replace(  # type: ignore[attr-defined]  # inspect reads it
        parameters=[*signature.parameters.values(), inspect.Parameter(state_param, kind)]
    )
    holds.__annotations__ = {state_param: SessionState}  # inputs are validated as the step's
    return holds


# -- small helpers ---------------------------------------------------------------------------------


def _raise_all(errors: list[DeclarationError]) -> None:
    """Raise the first of `errors`, holding them all, if there is any."""
    if not errors:
        return
    first = errors[0]
    first.errors = list(errors)
    if len(errors) > 1:
        more = len(errors) - 1
        first.args = (
            f"{first.detail} (and {more} more mistake{'s' if more > 1 else ''} in the file: "
            "DeclarationError.errors, or plait validate, lists them)",
        )
    raise first


def _templates(value: Any) -> list[tuple[Path, Template]]:
    found: list[tuple[Path, Template]] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, _Expanding):
            found.append((v.path, v.value))
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return sorted(found, key=lambda f: str(f[0]))


def _holds_expression(value: Any) -> bool:
    if isinstance(value, str):
        return has_expression(value)
    if isinstance(value, dict):
        return any(_holds_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_expression(v) for v in value)
    return False


def _fits(kind: str, value: Any) -> bool:
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "any": lambda v: True,
    }
    return checks[kind](value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({_shown(value)})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return text if len(text) <= 60 else text[:57] + "..."


def _first_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(x) for x in first.get("loc", ()))
        return f"{loc + ': ' if loc else ''}{first.get('msg')}"
    return str(exc).splitlines()[0]


def _dotted(path: Path) -> str:
    from .source import dotted

    return dotted(path)
