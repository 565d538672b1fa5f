"""Placement: which worker may run a step. Pure.

A worker carries labels (`plait worker --labels gpu,eu`). A step's `target` (stored with it):

- a label (`@wf.step(target="gpu")`): only a worker with that label claims it;
- `"=" + step` (`colocate_with="fetch"`): only the worker that ran that step of the run (the
  step is also ordered after it);
- `"@" + worker id` (`ctx.spawn(..., colocate=True)`): only the worker that spawned it.

Claims filter by target (every store), so a step is never handed to a worker that may not run
it and no attempt is ever spent on a wrong placement. Each worker registers its labels while it
lives (the worker registry), so that `inspect` can say when no live worker can take a ready step.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any

from .._errors import ConfigError, DefinitionError

_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")


def check_label(where: str, label: Any, *, error: type[Exception] = DefinitionError) -> str:
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise error(
            f"{where}: invalid label {label!r}: use 1-100 letters, digits, '_', '.' or '-' "
            "(no spaces)"
        )
    return label


def worker_labels(labels: Iterable[str] | str) -> frozenset[str]:
    """A worker's labels (`--labels gpu,eu`), checked."""
    if isinstance(labels, str):
        labels = [x.strip() for x in labels.split(",") if x.strip()]
    return frozenset(check_label("worker labels", x, error=ConfigError) for x in labels)


def worker_targets(worker_id: str, labels: Collection[str]) -> list[str]:
    """The targets a worker may take directly: its labels and itself."""
    return [*sorted(labels), "@" + worker_id]


def may_run(
    target: str | None, worker_id: str, labels: Collection[str], colocated_worker: str | None
) -> bool:
    """May this worker run a step of this target? (`colocated_worker`: for a "=step" target,
    the worker that ran that step.)"""
    if target is None:
        return True
    if target.startswith("="):
        return colocated_worker == worker_id
    if target.startswith("@"):
        return target[1:] == worker_id
    return target in labels


def describe(target: str) -> str:
    if target.startswith("="):
        return f"the worker that ran step {target[1:]!r}"
    if target.startswith("@"):
        return f"worker {target[1:]}"
    return f"a worker with label {target!r}"


PLACEMENT_OPTIONS = frozenset({"target", "colocate_with"})


def step_target(where: str, options: dict[str, Any]) -> tuple[str | None, str | None]:
    """The stored target of `@wf.step(target=..., colocate_with=...)`, and the step it must
    come after (colocate_with), checked."""
    label, other = options.get("target"), options.get("colocate_with")
    if label is not None and other is not None:
        raise DefinitionError(f"{where}: give target= or colocate_with=, not both")
    if label is not None:
        return check_label(where, label), None
    if other is not None:
        if not isinstance(other, str) or not other:
            raise DefinitionError(f"{where}: colocate_with must name a step, got {other!r}")
        return "=" + other, other
    return None, None
