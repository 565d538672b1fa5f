"""Workflows and steps as the user defines them: validation, parameter binding, fingerprint. Pure."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from types import FunctionType
from typing import Any, TypeVar, overload

import orjson
from pydantic import TypeAdapter, ValidationError

from .. import _codec
from .._errors import DefinitionError, InputError
from ..core.placement import PLACEMENT_OPTIONS, step_target
from ..core.policy import Policy, Subject
from ..core.queues import FLOW_OPTIONS, check_key_params, flow_options, key_params
from ..core.retry import NO_RETRY, Retry
from ..core.rows import AtEnd, EdgeKind, JoinMode, StepOptions, StepPlan, WorkflowPlan
from .acyclic import check_acyclic
from .context import StepContext
from .digests import code_digest
from .options import (
    SIGNAL,
    Approval,
    ApprovalPolicy,
    awaits_signal,
    flag,
    gate_options,
    handler_options,
    seconds,
)
from .options import approval_policy as approval_policy_of
from .params import CONTEXT_NAME, adapter, is_context, type_hints
from .session import SessionState

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)

EXTRA_INPUT = ("ignore", "warn", "forbid")  # what start does with a field no step reads
CODE_CHANGES = ("deploy", "pin")  # what a change of a step's code does to runs in flight

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")
WORKFLOW_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_EMPTY = inspect.Parameter.empty


def check_name(kind: str, name: object, pattern: re.Pattern[str] = NAME_RE) -> str:
    if not isinstance(name, str) or not pattern.fullmatch(name):
        start = "a letter, digit or '_'" if pattern is WORKFLOW_NAME_RE else "a letter or '_'"
        raise DefinitionError(
            f"invalid {kind} name {name!r}: use 1-128 ASCII letters, digits, '_', '-' or '.', "
            f"starting with {start}"
        )
    return name


# The `defaults` of every step without any and the `dep_params` of a step not yet bound: one
# shared empty dict each (a generated graph has 100,000 steps), never written to.
_NO_DEFAULTS: dict[str, Any] = {}
_NO_PARAMS: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class InputField:
    name: str
    required: bool
    default: Any
    adapter: TypeAdapter[Any] | None


@dataclass(slots=True)
class StepDef:
    """One step of a workflow: its handler, how its parameters bind, and its options. (Slots:
    a generated graph holds 100,000 of them for as long as its worker serves.)"""

    name: str
    fn: Callable[..., Any]
    deps: tuple[str, ...] = ()  # explicit data dependencies (add_step)
    after: tuple[str, ...] = ()
    after_any: tuple[str, ...] = ()
    # a step without defaults shares one empty dict (never written: `_add` gives a step with
    # options its own)
    defaults: dict[str, Any] = field(default_factory=lambda: _NO_DEFAULTS)
    optional: bool = False
    retry: Retry | None = None
    timeout: float | None = None
    priority: int = 0
    when: Callable[..., Any] | None = None  # run the step only if this returns true
    options: StepOptions | None = None  # delay, approval gate, signal, queue, key limit
    concurrency_key: Callable[..., Any] | None = None  # of run-input fields and dependency outputs
    catches: str | None = None  # runs only if this step fails, and handles its failure
    # (code, message): the workflow's approval_policy blocks or denies it: it fails, unrun (its
    # rows' options carry it, `_row_options`; here it is fingerprinted)
    refusal: tuple[str, str] | None = None
    # what an approval policy judges the step by (`core.policy.Subject`): the name it matches
    # (the step's; a workflow file's step: its action; None: no policy is about it, a signal or
    # a sub-workflow call), the word its refusals use, and whether its approval gate is the
    # workflow policy's doing (a run's policy replaces it) rather than its own
    policy_name: str | None = None
    policy_what: str = "step"
    policy_gate: bool = False
    # filled in by Workflow._bind once every step is known
    # steps whose errors the step reads (`ctx.error`): what it catches, or, at a failing run's
    # end, every step it waits for
    error_sources: tuple[str, ...] = ()
    when_params: tuple[str, ...] = ()  # the condition's parameters (steps' outputs, input fields)
    when_inputs: tuple[InputField, ...] = ()  # the run-input fields among them
    when_state: str | None = None  # the condition's parameter annotated plait.SessionState, if any
    data_deps: tuple[str, ...] = ()
    inputs: tuple[InputField, ...] = ()
    ctx_param: str | None = None
    signature: inspect.Signature | None = None
    # set by _bind to the dict the steps of one handler share (read only)
    dep_params: dict[str, TypeAdapter[Any] | None] = field(default_factory=lambda: _NO_PARAMS)
    accepts_kwargs: bool = False
    # a task (@wf.task), spawned by steps: the parameter its input binds to (see workflow.tasks)
    is_task: bool = False
    task_input: str | None = None
    task_input_required: bool = False
    task_adapter: TypeAdapter[Any] | None = None

    @property
    def is_signal(self) -> bool:
        return self.options is SIGNAL

    is_async: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.is_async = _is_async(self.fn)

    def dependencies(self) -> dict[str, EdgeKind]:
        edges: dict[str, EdgeKind] = {}
        for name in self.after_any:
            edges[name] = EdgeKind.AFTER_ANY
        for name in self.after:
            edges[name] = EdgeKind.AFTER
        for name in self.data_deps:
            edges[name] = EdgeKind.DATA
        if self.catches is not None:
            edges[self.catches] = EdgeKind.CATCH
        return edges

    @property
    def at_end(self) -> AtEnd | None:
        return None if self.options is None else self.options.at_end

    @property
    def reads(self) -> tuple[str, ...]:
        """The steps whose ends the handler reads: outputs of its data dependencies, errors of
        the steps it catches."""
        if not self.error_sources:
            return self.data_deps
        return (*self.data_deps, *(n for n in self.error_sources if n not in self.data_deps))

    def condition_holds(
        self, run_input: Mapping[str, Any], outputs: Mapping[str, Any], state: bytes | None = None
    ) -> bool:
        """Evaluate `when=` with its parameters bound like the step's (True without one); a
        parameter annotated `plait.SessionState` gets the run's session state (`state`, read-only)."""
        if self.when is None:
            return True
        kwargs: dict[str, Any] = {}
        if self.when_state is not None:
            kwargs[self.when_state] = SessionState(state, step=self.name, writable=False)
        for spec in self.when_inputs:
            if spec.name in run_input:
                kwargs[spec.name] = run_input[spec.name]
            elif not spec.required:
                kwargs[spec.name] = spec.default
        for name in self.when_params:
            if name in outputs:
                kwargs[name] = outputs[name]
        return bool(self.when(**kwargs))

    def build_kwargs(
        self, ctx: StepContext, run_input: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Arguments for one call. `outputs` holds each data dependency's output or default.

        Raises pydantic's ValidationError when a value does not fit its annotation.
        """
        kwargs: dict[str, Any] = {}
        if self.ctx_param:
            kwargs[self.ctx_param] = ctx
        for dep in self.data_deps:
            value = outputs.get(dep)
            if dep in self.dep_params:
                adapter = self.dep_params[dep]
                kwargs[dep] = (
                    adapter.validate_python(value) if adapter and value is not None else value
                )
            elif self.accepts_kwargs:
                kwargs[dep] = value
        for spec in self.inputs:
            if spec.name in run_input:
                value = run_input[spec.name]
                kwargs[spec.name] = spec.adapter.validate_python(value) if spec.adapter else value
            elif not spec.required:
                kwargs[spec.name] = spec.default
            # a missing required field was refused at start; a call without it raises TypeError
        return kwargs


class Workflow:
    """A named, versioned DAG of steps.

    >>> wf = Workflow("orders", version="1", retry=Retry(attempts=3))
    >>> @wf.step()
    ... def fetch(order_id: int) -> dict: ...

    `extra_input`: what starting a run does with an input field that no step reads (a typo of
    an optional field, say): "warn" (the default) logs a warning naming it, "forbid" refuses
    the input with an InputError, "ignore" says nothing. Not part of the fingerprint.

    `code_changes`: what a change of a step's code (not of the graph) means. "deploy" (the
    default): the fingerprint covers the name, the version, the steps, their edges and options,
    not the code, so workers running fixed code serve the runs in flight, whose steps not yet
    run take the code deployed now; each attempt records the digest of the code that ran it.
    "pin": the fingerprint covers each step's code too, so only workers with the exact code
    serve a run (a changed handler is a new version).
    """

    def __init__(
        self,
        name: str,
        version: str = "1",
        *,
        retry: Retry | None = None,
        timeout: float | None = None,
        extra_input: str = "warn",
        fail_fast: bool = False,
        code_changes: str = "deploy",
        calls: Iterable[Workflow] = (),
        approval_policy: str | ApprovalPolicy | None = None,
    ) -> None:
        self.name = check_name("workflow", name, WORKFLOW_NAME_RE)
        # which steps run, wait for an approval or fail, by step name (`ApprovalPolicy`)
        self.approval_policy = approval_policy_of(f"workflow {name!r}", approval_policy)
        self._policy_rule = self.approval_policy.rule() if self.approval_policy else Policy("auto")
        # the workflows its steps call (`ctx.call`): a worker serving this one serves them too,
        # so that a child run started before a restart finds a worker
        self.calls: tuple[Workflow, ...] = tuple(calls)
        for called in self.calls:
            if not isinstance(called, Workflow):
                raise DefinitionError(
                    f"workflow {name!r}: calls must list plait.Workflow objects, got {called!r}"
                )
        if not isinstance(code_changes, str) or code_changes not in CODE_CHANGES:
            raise DefinitionError(
                f"workflow {name!r}: code_changes must be 'deploy' or 'pin', got {code_changes!r}"
            )
        self.code_changes = code_changes
        # the first failure that fails a run ends it: its other steps cancelled (running ones
        # interrupted), the run failed
        self.fail_fast = flag(f"workflow {name!r}", "fail_fast", fail_fast)
        if not isinstance(extra_input, str) or extra_input not in EXTRA_INPUT:
            raise DefinitionError(
                f"workflow {name!r}: extra_input must be 'ignore', 'warn' or 'forbid', "
                f"got {extra_input!r}"
            )
        self.extra_input = extra_input
        if not isinstance(version, str) or not version or len(version) > 64:
            raise DefinitionError(
                f"workflow {name!r}: version must be a non-empty string, got {version!r}"
            )
        if retry is not None and not isinstance(retry, Retry):
            raise DefinitionError(f"workflow {name!r}: retry must be a plait.Retry, got {retry!r}")
        self.version = version
        self.retry = retry or NO_RETRY
        self.timeout = seconds(f"workflow {name!r}", "timeout", timeout)
        self._steps: dict[str, StepDef] = {}
        self._tasks: dict[str, StepDef] = {}
        self._task_fns: dict[Callable[..., Any], StepDef] = {}
        # a generated graph gives thousands of steps one handler: its signature is read once
        self._signatures: dict[Callable[..., Any], inspect.Signature] = {}
        self._deps: dict[tuple[str, ...], tuple[str, ...]] = {}  # shared dependency tuples
        self._plan: WorkflowPlan | None = None
        self._pinned: str | None = None  # the fingerprint with the code (pinned_fingerprint)
        self._fields: frozenset[str] | None = None  # run-input fields read (_input_fields)

    # -- defining -----------------------------------------------------------------------------

    @overload
    def step(self, fn: F, /) -> F: ...
    @overload
    def step(
        self,
        /,
        *,
        name: str | None = None,
        after: Iterable[str] = (),
        after_any: Iterable[str] = (),
        defaults: Mapping[str, Any] | None = None,
        optional: bool = False,
        retry: Retry | None = None,
        timeout: float | None = None,
        priority: int = 0,
        when: Callable[..., Any] | None = None,
        delay: float | timedelta | None = None,
        approval: bool | Approval = False,
        queue: str | None = None,
        concurrency_key: Callable[..., Any] | None = None,
        key_limit: int | None = None,
        target: str | None = None,
        colocate_with: str | None = None,
        catches: str | None = None,
        at_end: str | None = None,
        join: str | None = None,
        join_timeout: float | timedelta | None = None,
    ) -> Callable[[F], F]: ...

    def step(
        self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any
    ) -> Any:
        """Decorate a function as a step; usable as `@wf.step` or `@wf.step(**options)`."""
        if fn is not None:
            self._add(name or str(getattr(fn, "__name__", "")), fn, (), options)
            return fn

        def decorate(f: F) -> F:
            self._add(name or str(getattr(f, "__name__", "")), f, (), options)
            return f

        return decorate

    def add_step(
        self, name: str, fn: Callable[..., Any], deps: Iterable[str] = (), **options: Any
    ) -> StepDef:
        """Add a step programmatically (for generated graphs). `deps` are data dependencies:
        each output is passed to the parameter of that name, or in `**kwargs`; a dependency with
        neither still orders and cascades like `after`."""
        if isinstance(deps, str):
            deps = (deps,)
        return self._add(name, fn, tuple(deps), options)

    def signal(self, name: str, *, after: Iterable[str] = (), optional: bool = False) -> StepDef:
        """Declare a step whose output comes from outside: `engine.signal(run_id, name, payload)`.

        It waits in `waiting` once the steps in `after` are done; steps that take a parameter
        of this name receive the payload. A signal sent earlier is kept until then; the first
        delivery wins."""
        step = self._add(name, awaits_signal, (), {"after": after, "optional": optional})
        step.options = SIGNAL
        step.refusal = None  # no action: the approval_policy is not about it
        step.policy_name = None
        return step

    @overload
    def task(self, fn: F, /) -> F: ...
    @overload
    def task(
        self,
        /,
        *,
        name: str | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        optional: bool = False,
        priority: int = 0,
        queue: str | None = None,
        target: str | None = None,
    ) -> Callable[[F], F]: ...

    def task(
        self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any
    ) -> Any:
        """Register a function that steps may spawn (`ctx.spawn`, `ctx.map`); usable as
        `@wf.task` or `@wf.task(**options)`. It takes at most one input: its first parameter
        after `ctx`."""

        def decorate(f: F) -> F:
            # tasks.py builds on this module (a task is a StepDef): imported when first used,
            # the one import cycle of the workflow wing (a Workflow holds its tasks)
            from .tasks import make_task

            task = make_task(self, name or str(getattr(f, "__name__", "")), f, options)
            if task.name in self._tasks:
                raise DefinitionError(
                    f"workflow {self.name!r}, task {task.name!r}: duplicate task name"
                )
            self._tasks[task.name] = self._task_fns[f] = task
            self._plan = None
            return f

        return decorate(fn) if fn is not None else decorate

    def task_of(self, fn: Callable[..., Any] | str) -> StepDef | None:
        """The task registered for this function (or of this name), or None."""
        if isinstance(fn, str):
            return self._tasks.get(fn)
        try:
            return self._task_fns.get(fn)
        except TypeError:  # unhashable: not a registered function
            return None

    def handler(self, step: str, task: str | None) -> StepDef:
        """What runs a claimed step: the static step, or the task a spawned step runs."""
        return self._steps[step] if task is None else self._tasks[task]

    def _add(
        self, name: str, fn: Callable[..., Any], deps: tuple[str, ...], options: dict[str, Any]
    ) -> StepDef:
        if (
            not options
            and self.approval_policy is None
            and type(name) is str
            and name != CONTEXT_NAME
            and name not in self._steps
            and NAME_RE.fullmatch(name)
            and callable(fn)
        ):  # the common case of generated graphs: a plain step, checked as below, in short
            shared = self._deps.get(deps)  # dependencies seen before were checked then
            if shared is None:
                names = tuple(_names(f"workflow {self.name!r}, step {name!r}", "deps", deps))
                shared = self._deps.setdefault(names, names)
            step = StepDef(name=name, fn=fn, deps=shared)
            if fn is not awaits_signal:
                step.policy_name = name
            try:
                step.signature = self._signatures[fn]
            except (KeyError, TypeError):
                self._inspect_signature(f"workflow {self.name!r}, step {name!r}", step)
            self._steps[name] = step
            self._plan = self._fields = None
            return step
        check_name("step", name)
        where = f"workflow {self.name!r}, step {name!r}"
        if name == CONTEXT_NAME:
            raise DefinitionError(
                f"{where}: the name 'ctx' is reserved: a parameter named ctx receives the "
                "StepContext, so no step could read this step's output; choose another name"
            )
        retry, priority = handler_options(where, fn, options, _OPTIONS)
        if name in self._steps:
            raise DefinitionError(f"{where}: duplicate step name (each step name must be unique)")
        policy = self.approval_policy
        signal = fn is awaits_signal  # no action: the approval_policy is not about it
        asked = False
        if policy is not None and not signal and not options.get("approval"):
            asked = self._policy_rule.asks(name)
            if asked:
                options = {**options, "approval": policy.approval}  # a step's own is kept
        subject = None if signal else name
        if not options:  # the common case of generated graphs: nothing more to check
            names = tuple(_names(where, "deps", deps))
            # steps with the same dependencies share one tuple (a fan-out's 100,000)
            step = StepDef(name=name, fn=fn, deps=self._deps.setdefault(names, names))
            step.policy_name = subject
            self._inspect_signature(where, step)
            self._steps[name] = self._policed(step)
            self._plan = self._fields = None
            return step
        when = options.get("when")
        if when is not None and not callable(when):
            raise DefinitionError(f"{where}: when must be a callable returning true or false")
        defaults = dict(options.get("defaults") or {})
        for dep, value in defaults.items():
            try:
                _codec.dumps(value)
            except _codec.EncodeError as exc:
                raise DefinitionError(f"{where}: default for {dep!r} is not JSON: {exc}") from None
        queue, key, key_limit = flow_options(where, options)
        target, colocated = step_target(where, options)
        gates = gate_options(where, options)
        if queue is not None or key_limit is not None or target is not None:
            gates = replace(gates or StepOptions(), queue=queue, key_limit=key_limit, target=target)
        catches, at_end = _ending_options(where, options)
        join, join_timeout = _join_options(where, options)
        if join is not None or join_timeout is not None:
            gates = replace(gates or StepOptions(), join=join, join_timeout=join_timeout)
        if at_end is not None:
            if options.get("after") or options.get("after_any"):
                raise DefinitionError(
                    f"{where}: a step at_end waits for every other step itself: "
                    "drop after= and after_any="
                )
            gates = replace(gates or StepOptions(), at_end=at_end)
        after = _names(where, "after", options.get("after", ()))
        if colocated is not None and colocated not in after:
            after.append(colocated)  # it runs where that step ran: after it
        step = StepDef(
            name=name,
            fn=fn,
            deps=tuple(_names(where, "deps", deps)),
            after=tuple(after),
            after_any=tuple(_names(where, "after_any", options.get("after_any", ()))),
            defaults=defaults,
            optional=flag(where, "optional", options.get("optional", False)),
            retry=retry,
            timeout=seconds(where, "timeout", options.get("timeout")),
            options=gates,
            priority=priority,
            when=when,
            concurrency_key=key,
            catches=catches,
            policy_name=subject,
            policy_gate=asked,
        )
        self._inspect_signature(where, step)
        self._steps[name] = self._policed(step)
        self._plan = self._fields = None
        return step

    def _policed(self, step: StepDef) -> StepDef:
        """The step, refused if the workflow's approval_policy blocks or denies its name."""
        if self.approval_policy is not None:
            step.refusal = self._policy_rule.refusal(step.name, "step")
        return step

    def _inspect_signature(self, where: str, step: StepDef) -> None:
        """Read and check the handler's signature (once per handler: a generated graph gives
        thousands of steps the same function)."""
        try:
            step.signature = self._signatures[step.fn]
            return
        except (KeyError, TypeError):  # not seen yet, or an unhashable callable
            pass
        try:
            sig = step.signature = inspect.signature(step.fn)
        except (TypeError, ValueError) as exc:
            raise DefinitionError(f"{where}: cannot read the handler's signature: {exc}") from None
        for p in sig.parameters.values():
            if p.kind is p.VAR_POSITIONAL:
                raise DefinitionError(
                    f"{where}: parameter *{p.name} is not supported; name each parameter"
                )
            if p.kind is p.POSITIONAL_ONLY:
                raise DefinitionError(
                    f"{where}: parameter {p.name!r} is positional-only; steps are called by keyword"
                )
        with contextlib.suppress(TypeError):
            self._signatures[step.fn] = sig

    # -- reading --------------------------------------------------------------------------------

    @property
    def steps(self) -> tuple[StepDef, ...]:
        self.plan()
        return tuple(self._steps.values())

    def __getitem__(self, name: str) -> StepDef:
        return self._steps[name]

    def __contains__(self, name: object) -> bool:
        return name in self._steps

    @property
    def fingerprint(self) -> str:
        return self.plan().fingerprint

    @property
    def pinned_fingerprint(self) -> str:
        """The fingerprint this workflow has with code_changes="pin" (the graph and the code):
        its runs started before plait recorded code apart (migration 12) carry it, and a
        worker of this code serves them still."""
        self.plan()  # made with the plan
        assert self._pinned is not None
        return self._pinned

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """The fingerprints whose runs this code serves: its own, and the pinned one."""
        return tuple(dict.fromkeys((self.fingerprint, self.pinned_fingerprint)))

    def code_of(self, step: str, task: str | None = None) -> str:
        """The digest of the code that runs a step (or a task): its handler's, with its
        condition's and concurrency key's when it has them."""
        return _step_code(self.handler(step, task))

    def retry_for(self, step: StepDef) -> Retry:
        return step.retry or self.retry

    def timeout_for(self, step: StepDef) -> float | None:
        return step.timeout if step.timeout is not None else self.timeout

    def plan(self) -> WorkflowPlan:
        """Bind parameters, check the graph, and compute the fingerprint (cached until changed).
        Linear in the steps: what a handler's signature and type hints give is worked out
        once per handler, and each step's dependencies once."""
        if self._plan is None:
            if not self._steps:
                raise DefinitionError(f"workflow {self.name!r} has no steps")
            with _no_collection():
                self._plan = self._make_plan()
        return self._plan

    def _edges(self) -> Iterator[tuple[str, tuple[tuple[str, EdgeKind], ...]]]:
        for step in self.plan().steps:
            yield step.name, step.dependencies

    def _make_plan(self) -> WorkflowPlan:
        binding = _Binding()
        for step in self._steps.values():
            self._bind(step, binding)
        # each step's dependencies as the tuple its StepPlan keeps, made once per shape; the
        # steps of a generated graph share their dependencies' and inputs' tuples, their
        # options and code digests: one copy each, not one per step (memory a worker holds for
        # as long as it serves)
        made: dict[tuple[Any, ...], tuple[tuple[str, EdgeKind], ...]] = {}
        edges: dict[str, tuple[tuple[str, EdgeKind], ...]] = {}
        for n, s in self._steps.items():
            deps_key: tuple[Any, ...] = (s.after_any, s.after, s.data_deps, s.catches)
            found = made.get(deps_key)
            if found is None:
                found = made[deps_key] = tuple(s.dependencies().items())
            edges[n] = found
        names: dict[tuple[Any, ...], tuple[str, ...]] = {}
        # each handler's code digest once per plan (a generated graph's steps share a handler;
        # code_digest's own cache is a weak dictionary, slow to ask 200,000 times)
        digests: dict[int, str] = {}

        def digest(fn: Callable[..., Any]) -> str:
            found = digests.get(id(fn))  # the functions live as long as the plan is made
            if found is None:
                found = digests[id(fn)] = code_digest(fn)
            return found

        check_acyclic(
            self.name,
            {
                n: names.get(e) or names.setdefault(e, tuple(d for d, _ in e))
                for n, e in edges.items()
            },
        )
        # what a StepPlan holds besides its name, by the objects it is made of (alive for
        # the whole plan, so their ids are theirs)
        shapes: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        inputs: dict[tuple[Any, ...], tuple[tuple[str, bool], ...]] = {}
        steps = []
        for s in self._steps.values():
            key = (
                id(edges[s.name]), id(s.defaults), s.optional, s.priority, id(s.inputs),
                id(s.when_inputs), id(s.options), s.refusal, id(s.fn), id(s.when),
                id(s.concurrency_key),
            )  # fmt: skip
            shape = shapes.get(key)
            if shape is None:
                fields = tuple((f.name, f.required) for f in (*s.inputs, *s.when_inputs))
                fields = inputs.setdefault(fields, fields)
                shape = shapes[key] = (
                    edges[s.name],
                    tuple(sorted(s.defaults)) if s.defaults else (),
                    s.optional,
                    s.priority,
                    fields,
                    self._row_options(s),
                    _step_code(s, digest),
                )
            steps.append(StepPlan(s.name, *shape))
        del shapes
        graph, self._pinned = self._fingerprints(edges, digest)
        return WorkflowPlan(
            name=self.name,
            version=self.version,
            fingerprint=self._pinned if self.code_changes == "pin" else graph,
            steps=tuple(steps),
            code_changes=self.code_changes,
            graph=graph,
        )

    def _row_options(self, step: StepDef) -> StepOptions | None:
        """A step's options as its rows keep them: with `fail_fast` in a fail-fast workflow,
        and the workflow policy's refusal (`StepDef.refusal`) if it has one."""
        options = step.options
        if step.refusal is not None and (options is None or options.refusal != step.refusal):
            options = replace(options or StepOptions(), refusal=step.refusal)
        if not self.fail_fast:
            return options
        return replace(options or StepOptions(), fail_fast=True)

    def policy_subjects(self) -> dict[str, Subject]:
        """What a run's approval policy judges each of the steps by (`core.policy.police`)."""
        return {
            name: Subject(s.policy_name, s.policy_what, s.policy_gate)
            for name, s in self._steps.items()
            if s.policy_name is not None
        }

    def validate_input(self, value: Any) -> dict[str, Any]:
        """Check a run input against every step's input fields; return it as the JSON object
        the steps will see: encoded by plait's JSON rule (`_codec`), decoded, then checked, so
        that what passes here is exactly what the steps get."""
        self.plan()
        try:
            value = {} if value is None else _codec.loads(_codec.dumps(value))
        except _codec.EncodeError as exc:
            raise InputError(f"run input of {self.name!r} is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise InputError(
                f"run input of {self.name!r} must be a JSON object, got {type(value).__name__}"
            )
        for step in self._steps.values():
            for spec in (*step.inputs, *step.when_inputs):
                if spec.name not in value:
                    if spec.required:
                        raise InputError(
                            f"run input of {self.name!r} misses field {spec.name!r}, "
                            f"required by step {step.name!r}"
                        )
                    continue
                if spec.adapter is not None:
                    try:
                        spec.adapter.validate_python(value[spec.name])
                    except ValidationError as exc:
                        raise InputError(
                            f"run input field {spec.name!r} (step {step.name!r}) is invalid: "
                            f"{_short(exc)}"
                        ) from None
        if self.extra_input != "ignore":
            self._check_extra_fields(value)
        return value

    def _check_extra_fields(self, value: dict[str, Any]) -> None:
        read = self._input_fields()
        extra = [name for name in value if name not in read]
        if not extra:
            return
        what = (
            f"run input of {self.name!r} has {_listed('field', extra)} that no step reads "
            f"(the steps read {_listed('field', sorted(read)) if read else 'no field'})"
        )
        if self.extra_input == "forbid":
            raise InputError(f"{what}; extra_input='forbid' refuses them")
        log.warning(
            "%s: ignored. Workflow(..., extra_input='forbid') refuses such input, "
            "extra_input='ignore' silences this warning",
            what,
            extra={"workflow": self.name},
        )

    def _input_fields(self) -> frozenset[str]:
        """The run-input fields some step reads: its parameters, its condition's and its
        concurrency key's (the ones that name no step)."""
        if self._fields is None:
            fields: set[str] = set()
            for step in self._steps.values():
                fields.update(f.name for f in (*step.inputs, *step.when_inputs))
                if step.concurrency_key is not None:
                    where = f"workflow {self.name!r}, step {step.name!r}"
                    params = key_params(where, step.concurrency_key)
                    fields.update(n for n in params if n not in self._steps)
            self._fields = frozenset(fields)
        return self._fields

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, version={self.version!r}, steps={list(self._steps)})"

    # -- internals ------------------------------------------------------------------------------

    def _bind(self, step: StepDef, binding: _Binding) -> None:
        bound = binding.params(step, self._steps)
        plain = (
            step.options is None  # no at_end, no key limit
            and step.when is None
            and step.concurrency_key is None
            and not step.after
            and not step.after_any
            and step.catches is None
            and not step.defaults
        )
        if plain:  # bound as the last step with this handler and these deps was, if any
            try:
                known = binding.plain.get((step.fn, step.deps))
            except TypeError:  # an unhashable callable
                known = None
            if known is not None and known[0] is bound and step.name not in known[1]:
                step.data_deps = known[1]
                step.inputs = bound.inputs
                step.ctx_param = bound.ctx_param
                step.dep_params = bound.dep_params
                step.accepts_kwargs = bound.accepts_kwargs
                return
        where = f"workflow {self.name!r}, step {step.name!r}"
        if step.name in bound.dep_params:
            raise DefinitionError(f"{where}: cycle: {step.name} -> {step.name}")
        data: dict[str, None] = dict.fromkeys(step.deps)
        data.update(bound.data)
        if step.when is not None:
            # the condition's parameters bind like the step's: outputs of steps (which the step
            # then waits for) or run-input fields
            try:
                when_sig = inspect.signature(step.when)
            except (TypeError, ValueError):
                raise DefinitionError(f"{where}: when= has no inspectable signature") from None
            params, when_inputs = [], []
            when_hints = (
                type_hints(step.when) if getattr(step.when, "__annotations__", None) else {}
            )
            for p in when_sig.parameters.values():
                if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    raise DefinitionError(f"{where}: when= takes named parameters only")
                if when_hints.get(p.name) is SessionState:
                    step.when_state = p.name
                    continue
                params.append(p.name)
                if p.name in self._steps:
                    if p.name == step.name:
                        raise DefinitionError(f"{where}: when= cannot read the step's own output")
                    data.setdefault(p.name, None)
                else:
                    when_inputs.append(InputField(p.name, p.default is _EMPTY, p.default, None))
            step.when_params = tuple(params)
            step.when_inputs = tuple(when_inputs)
        if step.concurrency_key is not None and step.options is not None:
            reads = check_key_params(where, step.concurrency_key, self._steps, data)
            step.options = replace(step.options, key_from_outputs=reads)
        for dep in data:
            if dep not in self._steps:
                raise DefinitionError(f"{where}: deps names unknown step {dep!r}")
        for option, names in (("after", step.after), ("after_any", step.after_any)):
            for dep in names:
                if dep not in self._steps:
                    raise DefinitionError(f"{where}: {option} names unknown step {dep!r}")
        for dep in step.after_any:
            if dep in data:
                raise DefinitionError(
                    f"{where}: {dep!r} is both a data dependency and after_any; "
                    "use defaults= to run despite its failure"
                )
        if step.name in step.after or step.name in step.after_any:
            raise DefinitionError(f"{where}: cycle: {step.name} -> {step.name}")
        self._bind_ending(where, step, data)
        for dep in step.defaults:
            if dep not in data and dep not in step.after:
                raise DefinitionError(
                    f"{where}: defaults names {dep!r}, which is not a data or after dependency"
                )
        step.data_deps = binding.shared(tuple(data))
        step.inputs = bound.inputs
        step.ctx_param = bound.ctx_param
        step.dep_params = bound.dep_params  # shared by the steps of one handler: read only
        step.accepts_kwargs = bound.accepts_kwargs
        if plain:  # every check above passed for this handler and these deps
            with contextlib.suppress(TypeError):  # an unhashable callable: not remembered
                binding.plain[(step.fn, step.deps)] = (bound, step.data_deps)

    def _bind_ending(self, where: str, step: StepDef, data: dict[str, None]) -> None:
        """Check `catches=` and give a step `at_end` its dependencies: an `after_any` on every
        step it comes after (with a default of None for each output it reads, so that it runs
        however they ended)."""
        if step.catches is not None:
            caught = self._steps.get(step.catches)
            if caught is None:
                raise DefinitionError(f"{where}: catches names unknown step {step.catches!r}")
            if step.catches == step.name:
                raise DefinitionError(f"{where}: a step cannot catch its own failure")
            if step.catches in data or step.catches in (*step.after, *step.after_any):
                raise DefinitionError(
                    f"{where}: catches {step.catches!r}, so it cannot also depend on it "
                    "(it runs only if that step failed: there is no output to read)"
                )
            if caught.at_end is not None or step.at_end is not None:
                raise DefinitionError(
                    f"{where}: a step at_end cannot catch or be caught; it runs at the end anyway"
                )
            other = None  # a step defined before it that catches the same step
            for s in self._steps.values():
                if s is step:
                    break
                if s.catches == step.catches:
                    other = s.name
            if other is not None:
                raise DefinitionError(
                    f"{where}: step {step.catches!r} is already caught by step {other!r}; "
                    "a step has at most one catching step"
                )
            step.error_sources = (step.catches,)
        if step.at_end is None:
            return
        before = [
            s.name
            for s in self._steps.values()
            if s.at_end is None or (step.at_end is AtEnd.ALWAYS and s.at_end is AtEnd.FAILED)
        ]
        for dep in data:
            if self._steps[dep].at_end is not None and dep not in before:
                raise DefinitionError(
                    f"{where}: it reads the output of {dep!r}, which runs at the end too"
                )
            step.defaults.setdefault(dep, None)
        step.after_any = tuple(n for n in before if n not in data)
        if step.at_end is AtEnd.FAILED:
            step.error_sources = tuple(before)

    def _fingerprints(
        self,
        edges: Mapping[str, tuple[tuple[str, EdgeKind], ...]],
        digest: Callable[[Callable[..., Any]], str] = code_digest,
    ) -> tuple[str, str]:
        """The SHA-256 of the canonical definition as JSON with sorted keys: the name, the
        version, the workflow's retry and timeout, each step's, and the tasks' (only if there
        are any, so that workflows without tasks keep their fingerprint). Hashed a step at a
        time, never made whole: the JSON of 100,000 steps' dicts is large.

        Two at once, each step's dict made once for both: the graph's (code_changes="deploy"),
        in which whether a step has a condition or a key stands for their code and
        "code_changes":"deploy" keeps the two kinds apart; and the pinned one (`with_code`,
        code_changes="pin"), with each handler's, condition's and key's code digest, exactly
        as before code_changes existed (old runs keep their fingerprint). A worker serves both."""
        graph, pinned = hashlib.sha256(), hashlib.sha256()

        def put(*pieces: bytes) -> None:
            for piece in pieces:
                graph.update(piece)
                pinned.update(piece)

        def dump(value: Any) -> bytes:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)

        # keys in sorted order; fail_fast only when set, so other workflows keep their fingerprint
        graph.update(b'{"code_changes":"deploy",')
        pinned.update(b"{")
        put(b'"fail_fast":true,' if self.fail_fast else b"")
        put(b'"name":', dump(self.name), b',"retry":', dump(self.retry.as_dict()), b',"steps":[')
        # the pieces to hash, joined and hashed a few thousand steps at a time
        gparts: list[bytes] = []
        pparts: list[bytes] = []
        # a generated graph's steps differ only by name: each shape's JSON is dumped once, and
        # a step's is its shape's with its name spliced in (`_shape_print`)
        shapes: dict[tuple[Any, ...], tuple[bytes, bytes, bytes] | None] = {}
        for i, s in enumerate(self._steps.values()):
            comma = b"," if i else b""
            if len(gparts) > 16384:
                graph.update(b"".join(gparts))
                pinned.update(b"".join(pparts))
                gparts.clear()
                pparts.clear()
            if s.when is None and not s.concurrency_key and not s.defaults:
                key = (
                    id(edges[s.name]), s.optional, id(s.retry), s.timeout, s.priority,
                    id(s.inputs), id(s.when_inputs), id(s.options), s.refusal, id(s.fn),
                )  # fmt: skip
                try:
                    shape = shapes[key]
                except KeyError:
                    shape = shapes[key] = _shape_print(_step_print(s, edges), digest(s.fn))
                if shape is not None:
                    head, tail, pinned_head = shape
                    name = s.name.encode()  # ASCII without quotes or escapes (NAME_RE)
                    gparts += (comma, head, name, tail)
                    pparts += (comma, pinned_head, name, tail)
                    continue
            step = _step_print(s, edges)
            data = dump(step)
            gparts += (comma, data)
            if s.when is None and not s.concurrency_key:
                # the same object with "code" first (keys are sorted): spliced, not dumped again
                pparts += (comma, b'{"code":', dump(digest(s.fn)), b",", data[1:])
                continue
            step["code"] = digest(s.fn)
            if s.when is not None:
                step["when"] = digest(s.when)
            if s.concurrency_key:
                step["key"] = digest(s.concurrency_key)
            pparts += (comma, dump(step))
        graph.update(b"".join(gparts))
        pinned.update(b"".join(pparts))
        put(b"]")
        if self._tasks:
            for sha, with_code in ((graph, False), (pinned, True)):
                tasks = [
                    {
                        "name": t.name,
                        "optional": t.optional,
                        "retry": t.retry.as_dict() if t.retry else None,
                        "timeout": t.timeout,
                        "priority": t.priority,
                        **({"code": code_digest(t.fn)} if with_code else {}),
                        **({"options": _options_print(t.options)} if t.options else {}),
                    }
                    for t in sorted(self._tasks.values(), key=lambda t: t.name)
                ]
                sha.update(b',"tasks":')
                sha.update(dump(tasks))
        put(b',"timeout":', dump(self.timeout), b',"version":', dump(self.version), b"}")
        return graph.hexdigest()[:16], pinned.hexdigest()[:16]


def _step_print(
    s: StepDef, edges: Mapping[str, tuple[tuple[str, EdgeKind], ...]]
) -> dict[str, Any]:
    """A step as its workflow's fingerprint hashes it (`Workflow._fingerprints`)."""
    return {
        "name": s.name,
        "deps": sorted(edges[s.name]),
        "defaults": {k: _codec.loads(_codec.dumps(v)) for k, v in sorted(s.defaults.items())},
        "optional": s.optional,
        "retry": s.retry.as_dict() if s.retry else None,
        "timeout": s.timeout,
        "priority": s.priority,
        "inputs": [(f.name, f.required) for f in (*s.inputs, *s.when_inputs)],
        "when": True if s.when is not None else None,
        "options": None if s.options is None else _options_print(s.options),
        **({"refused": s.refusal[0]} if s.refusal is not None else {}),
        **({"key": True} if s.concurrency_key else {}),
    }


_NAME_MARK = b'"name":"\\u0000"'  # a name no step has (NAME_RE), as orjson writes it


def _shape_print(step: dict[str, Any], code: str) -> tuple[bytes, bytes, bytes] | None:
    """A step's printed JSON cut around its name, for the steps that differ from it only by
    name: (what comes before the name's value, what comes after, the first with the code
    first, as the pinned fingerprint has it); None if the cut is not clear."""
    data = orjson.dumps({**step, "name": "\x00"}, option=orjson.OPT_SORT_KEYS)
    if data.count(_NAME_MARK) != 1:
        return None
    at = data.index(_NAME_MARK) + len(b'"name":"')  # the quotes stay in head and tail
    head, tail = data[:at], data[at + len(b"\\u0000") :]
    code_json = orjson.dumps(code)
    return head, tail, b'{"code":' + code_json + b"," + head[1:]


def _step_code(step: StepDef, digest: Callable[[Callable[..., Any]], str] = code_digest) -> str:
    """The digest of the code that runs a step: its handler's, alone when it has neither a
    condition nor a concurrency key, else with theirs."""
    code = digest(step.fn)
    if step.when is None and step.concurrency_key is None:
        return code
    parts = [code, *(digest(f) for f in (step.when, step.concurrency_key) if f is not None)]
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:16]


def _is_async(fn: Callable[..., Any]) -> bool:
    """`inspect.iscoroutinefunction`, asked directly of a plain function (a third of
    `add_step`'s time went to inspect's unwrapping layers); anything else, or a function marked
    by `inspect.markcoroutinefunction` (Python 3.12), is left to inspect."""
    # the marker is in the function's __dict__ (a failed hasattr costs an AttributeError)
    if type(fn) is FunctionType and "_is_coroutine_marker" not in fn.__dict__:
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """No cyclic garbage collection while a plan is made: it makes a few objects per step and
    frees none, and each full collection walks all of them (half the time of a 100,000-step
    plan went there)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class _Params:
    """How a handler's parameters bind, in one plan (which names are steps is known)."""

    data: dict[str, None]  # the parameters that name steps: data dependencies, in order
    dep_params: dict[str, TypeAdapter[Any] | None]  # their validators
    inputs: tuple[InputField, ...]  # the others: run-input fields
    ctx_param: str | None
    accepts_kwargs: bool


class _Binding:
    """What one `plan()` works out once per handler (how its parameters bind, its type hints)
    and once per type (its validator), however many steps share them: a generated graph has
    thousands of steps with one function, and a pydantic TypeAdapter costs far more than a
    step."""

    def __init__(self) -> None:
        self._hints: dict[Callable[..., Any], dict[str, Any]] = {}
        self._adapters: dict[Any, TypeAdapter[Any] | None] = {}
        self._params: dict[Callable[..., Any], _Params] = {}
        self._tuples: dict[tuple[str, ...], tuple[str, ...]] = {}
        # (handler, deps) of a step without options -> (how its parameters bound, its data
        # dependencies): the checks `Workflow._bind` made hold for every such step
        self.plain: dict[tuple[Any, ...], tuple[_Params, tuple[str, ...]]] = {}

    def shared(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """One tuple for the steps that have the same one (a fan-out's dependency lists)."""
        return self._tuples.setdefault(names, names)

    def params(self, step: StepDef, steps: Mapping[str, StepDef]) -> _Params:
        try:
            return self._params[step.fn]
        except KeyError:
            found = self._params[step.fn] = self._bind_params(step, steps)
            return found
        except TypeError:  # an unhashable callable
            return self._bind_params(step, steps)

    def _bind_params(self, step: StepDef, steps: Mapping[str, StepDef]) -> _Params:
        sig = step.signature or inspect.signature(step.fn)
        hints = self.hints(step.fn)
        data: dict[str, None] = {}
        inputs: list[InputField] = []
        dep_params: dict[str, TypeAdapter[Any] | None] = {}
        ctx_param = None
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                continue
            hint = hints.get(p.name, _EMPTY)
            if is_context(p.name, hint):
                ctx_param = p.name
            elif p.name in steps:
                data[p.name] = None
                dep_params[p.name] = self.adapter(hint)
            else:
                default = p.default
                inputs.append(InputField(p.name, default is _EMPTY, default, self.adapter(hint)))
        accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        return _Params(data, dep_params, tuple(inputs), ctx_param, accepts_kwargs)

    def hints(self, fn: Callable[..., Any]) -> dict[str, Any]:
        if not getattr(fn, "__annotations__", None):
            return {}
        try:
            return self._hints[fn]
        except KeyError:
            found = self._hints[fn] = type_hints(fn)
            return found
        except TypeError:  # an unhashable callable
            return type_hints(fn)

    def adapter(self, hint: Any) -> TypeAdapter[Any] | None:
        try:
            return self._adapters[hint]
        except KeyError:
            made = self._adapters[hint] = adapter(hint)
            return made
        except TypeError:  # an unhashable type hint (Annotated with a list, say)
            return adapter(hint)


_OPTIONS = frozenset(
    {"after", "after_any", "defaults", "optional", "retry", "timeout", "priority", "when"}
    | {"delay", "approval", "catches", "at_end", "join", "join_timeout"}
    | FLOW_OPTIONS
    | PLACEMENT_OPTIONS
)


def _options_print(options: StepOptions) -> dict[str, Any]:
    """Step options as fingerprinted: flow options only when set, so that the fingerprints of
    workflows defined before them do not change."""
    data = asdict(options)
    for name in (
        *("queue", "key", "key_limit", "target", "key_from_outputs", "fail_fast", "at_end"),
        *("join", "join_timeout", "reads", "refusal", "policed"),
    ):
        if data[name] in (None, False):
            del data[name]
    return data


def _ending_options(where: str, options: Mapping[str, Any]) -> tuple[str | None, AtEnd | None]:
    """`catches=` (a step name) and `at_end=` ("always" or "failed"), checked."""
    catches = options.get("catches")
    if catches is not None and (not isinstance(catches, str) or not catches):
        raise DefinitionError(f"{where}: catches must name one step, got {catches!r}")
    at_end = options.get("at_end")
    if at_end is None:
        return catches, None
    try:
        return catches, AtEnd(at_end)
    except ValueError:
        raise DefinitionError(
            f"{where}: at_end must be 'always' (a finally step) or 'failed' (a step that runs "
            f"when the run fails), got {at_end!r}"
        ) from None


def _join_options(where: str, options: Mapping[str, Any]) -> tuple[JoinMode | None, float | None]:
    """`join=` ("all", "first" or "any_error") and `join_timeout=` (seconds), checked."""
    join = options.get("join")
    timeout = seconds(where, "join_timeout", options.get("join_timeout"))
    if join is None or join == "all":
        return None, timeout
    try:
        return JoinMode(join), timeout
    except ValueError:
        raise DefinitionError(
            f"{where}: join must be 'all' (end when every spawned step has), 'first' (at the "
            f"first that succeeds) or 'any_error' (at the first that fails), got {join!r}"
        ) from None


def _names(where: str, option: str, names: Iterable[str]) -> list[str]:
    if isinstance(names, str):
        names = (names,)
    out: dict[str, None] = {}  # ordered and O(1) membership: a fan-in may list 100,000 names
    for n in names:
        if not isinstance(n, str):
            raise DefinitionError(f"{where}: {option} must list step names (str), got {n!r}")
        out[n] = None
    return list(out)


def _short(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc + ': ' if loc else ''}{err.get('msg')}")
    return "; ".join(parts)


def _listed(noun: str, names: Iterable[str], most: int = 10) -> str:
    """ "field 'a'", "fields 'a', 'b'", or the first `most` and how many more."""
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:most])
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"{noun}{'s' if len(names) > 1 else ''} {shown}{more}"
