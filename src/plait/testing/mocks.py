"""Mocked steps: a copy of a workflow whose named steps (or tasks) call a mock, not their code.

A mock is what the step returns (any JSON value), an exception it raises (an instance: raised
on every call), or a callable called instead of the handler. A callable receives the arguments
the real handler would, by name, as far as it declares them (`lambda: ...`, `lambda order: ...`,
`lambda **kw: ...` all work); what it returns is the step's output. The copy keeps the real
handler's signature, so the step binds, validates and depends on other steps exactly as before,
and the real workflow's fingerprint: a mocked run records the version of the code it tests (and
the same fingerprint whatever the mocks, in every process). So runs of one Engine with
different mocks of one workflow must not be in flight at once (`testing.run` runs one at a time).
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from .._errors import InputError
from ..workflow.definition import StepDef, Workflow


def names_of(wf: Workflow) -> tuple[list[str], list[str]]:
    """The workflow's step names and task names, in definition order."""
    wf.plan()
    return list(wf._steps), list(wf._tasks)


def check_names(wf: Workflow, option: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """InputError naming the keys of `option` that are not among `allowed`."""
    known = list(allowed)
    unknown = [name for name in given if name not in known]
    if unknown:
        listed = ", ".join(repr(n) for n in known) or "none"
        raise InputError(
            f"{option}= names {', '.join(repr(n) for n in unknown)}, which workflow "
            f"{wf.name!r} does not have as {_what(option)} (it has: {listed})"
        )


def _what(option: str) -> str:
    return {
        "mocks": "a step or task",
        "approve": "an approval gate",
        "signals": "a signal step",
    }.get(option, "a step")


def with_mocks(wf: Workflow, mocks: Mapping[str, Any]) -> Workflow:
    """A copy of `wf` whose steps and tasks named in `mocks` call their mock; `wf` is unchanged.
    InputError for a name that is neither a step nor a task, or names a signal step."""
    steps, tasks = names_of(wf)
    check_names(wf, "mocks", mocks, [*steps, *tasks])
    for name in mocks:
        if name in wf._steps and wf._steps[name].is_signal:
            raise InputError(
                f"mocks= names {name!r}, a signal step of workflow {wf.name!r}: it has no code "
                f"to replace; give its payload with signals={{{name!r}: ...}}"
            )
    if not mocks:
        return wf
    clone = copy.copy(wf)
    clone._steps = {n: _mocked(s, mocks[n]) if n in mocks else s for n, s in wf._steps.items()}
    clone._tasks = {n: _mocked(t, mocks[n]) if n in mocks else t for n, t in wf._tasks.items()}
    clone._task_fns = {fn: clone._tasks[t.name] for fn, t in wf._task_fns.items()}
    clone._plan = None
    clone._fields = None
    clone._plan = replace(clone.plan(), fingerprint=wf.fingerprint)
    return clone


def _mocked(step: StepDef, mock: Any) -> StepDef:
    call = as_callable(mock)
    real = step.fn
    if inspect.iscoroutinefunction(real):

        async def mocked_async(**kwargs: Any) -> Any:
            result = call(kwargs)
            return await result if inspect.isawaitable(result) else result

        fn: Callable[..., Any] = functools.wraps(real)(mocked_async)
    else:

        def mocked(**kwargs: Any) -> Any:
            return call(kwargs)

        fn = functools.wraps(real)(mocked)
    return replace(step, fn=fn)


def as_callable(mock: Any) -> Callable[[dict[str, Any]], Any]:
    """What a mock does with the arguments of one call."""
    if isinstance(mock, BaseException):

        def raise_it(kwargs: dict[str, Any]) -> Any:
            raise mock

        return raise_it
    if not callable(mock):
        return lambda kwargs: copy.deepcopy(mock)
    try:
        params = inspect.signature(mock).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: give it everything
        return lambda kwargs: mock(**kwargs)
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return lambda kwargs: mock(**kwargs)
    wanted = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return lambda kwargs: mock(**{k: v for k, v in kwargs.items() if k in wanted})
