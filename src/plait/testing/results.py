"""A run as a test sees it (`RunResult`), and told readably for a failed assertion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import _codec
from ..core.rows import RunStatus
from ..engine.views import Event, Run, Step

MAX_VALUE = 200  # characters of an output or input shown


@dataclass(frozen=True, slots=True)
class RunResult:
    """A run as a test sees it at its end: the `Run`, its steps by name, its events in order."""

    run: Run
    steps: dict[str, Step] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def status(self) -> RunStatus:
        return self.run.status

    @property
    def output(self) -> Any:
        return self.run.output

    @property
    def error(self) -> str | None:
        return self.run.error

    def __getitem__(self, step: str) -> Step:
        """The step of this name (KeyError naming the steps there are)."""
        try:
            return self.steps[step]
        except KeyError:
            names = ", ".join(self.steps)
            raise KeyError(f"run {self.id!r} has no step {step!r} (it has: {names})") from None

    def __str__(self) -> str:
        return describe(self)

    def __repr__(self) -> str:
        return f"RunResult(id={self.id!r}, status={str(self.status)!r}, steps={len(self.steps)})"


def describe(result: RunResult) -> str:
    """The run's status, input, output or error, then one line per step (and its error)."""
    run = result.run
    lines = [f"run {run.id!r} of workflow {run.workflow!r} (version {run.version}): {run.status}"]
    lines.append(f"  input: {_short(run.input)}")
    if run.error:
        lines.append("  error: " + run.error.replace("\n", "\n         "))
    if run.status is RunStatus.COMPLETED:
        lines.append(f"  output: {_short(run.output)}")
    width = max((len(name) for name in result.steps), default=0)
    for name, step in result.steps.items():
        line = f"  {name:<{width}}  {step.status}"
        if step.attempts > 1:
            line += f" after {step.attempts} attempts"
        if step.skip_reason:
            line += f" ({step.skip_reason})"
        lines.append(line)
        if step.error is not None:
            message = step.error.message.replace("\n", "\n      ")
            lines.append(f"      {step.error.code}: {message}")
    return "\n".join(lines)


def assert_completed(result: RunResult) -> RunResult:
    """Fail the test unless the run completed, showing its steps and their errors; return it."""
    __tracebackhide__ = True  # pytest shows the test's line, not this one
    if result.status is not RunStatus.COMPLETED:
        raise AssertionError(f"the run did not complete:\n{describe(result)}")
    return result


def _short(value: Any) -> str:
    try:
        text = _codec.dumps(value).decode()
    except _codec.EncodeError:
        text = repr(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"
