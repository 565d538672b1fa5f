"""Retry policy: how many attempts, how long between them, which errors are worth another. Pure."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .._errors import DefinitionError

LINEAR = "linear"


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry policy of a step: `attempts` in all (1 = no retry; None = no limit: the step is
    retried until it succeeds, fails for good, or its run passes its deadline — give such a
    run a deadline, or a bug retries forever).

    The delay before attempt n+1 is `delay × backoff^(n-1)`, or `delay × n` with
    `backoff="linear"`, capped at `max_delay`, then spread by ± `jitter` (a fraction) so that
    many failing steps do not retry in lock-step.

    `non_retryable`: exception classes (an error that is an instance of one) and error codes
    (its recorded code: the class name unless given, "timeout", …) that fail the step at once,
    whatever attempts remain. `plait.Retryable` stays retryable: raising it says so.
    """

    attempts: int | None = 1
    delay: float = 1.0
    backoff: float | Literal["linear"] = 2.0
    max_delay: float = 60.0
    jitter: float = 0.1
    non_retryable: Sequence[type[BaseException] | str] = field(default=())

    def __post_init__(self) -> None:
        if self.attempts is not None and (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or self.attempts < 1
        ):
            raise DefinitionError(
                f"Retry(attempts={self.attempts!r}): attempts must be an integer >= 1, "
                "or None for no limit"
            )
        for name in ("delay", "max_delay"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise DefinitionError(f"Retry({name}={value!r}): must be a finite number >= 0")
        if self.backoff != LINEAR and (not _finite(self.backoff) or float(self.backoff) < 1):
            raise DefinitionError(
                f'Retry(backoff={self.backoff!r}): must be a finite number >= 1, or "linear"'
            )
        if not _finite(self.jitter) or not 0 <= self.jitter <= 1:
            raise DefinitionError(f"Retry(jitter={self.jitter!r}): must be between 0 and 1")
        if isinstance(self.non_retryable, str | bytes) or not isinstance(
            self.non_retryable, Sequence | set | frozenset
        ):
            raise DefinitionError(
                f"Retry(non_retryable={self.non_retryable!r}): must be a list of exception "
                "classes and error codes"
            )
        for item in self.non_retryable:
            if isinstance(item, str) and item:
                continue
            if isinstance(item, type) and issubclass(item, BaseException):
                continue
            raise DefinitionError(
                f"Retry(non_retryable=[..., {item!r}, ...]): each entry must be an exception "
                "class or a non-empty error code string"
            )
        object.__setattr__(self, "non_retryable", tuple(self.non_retryable))

    def retries(self, code: str, exc: BaseException | None = None) -> bool:
        """False when `non_retryable` names this error (its code, or a class it is an
        instance of): the step fails now."""
        for item in self.non_retryable:
            if isinstance(item, str):
                if item == code:
                    return False
            elif exc is not None and isinstance(exc, item):
                return False
        return True

    def delay_after(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        exponent = max(attempt - 1, 0)
        try:
            if self.backoff == LINEAR:
                base = self.delay * max(attempt, 1)
            else:
                base = self.delay * float(self.backoff) ** exponent
        except OverflowError:
            base = math.inf if self.delay else 0.0  # 0 × a huge power is still 0
        base = min(base, self.max_delay)
        if self.jitter and base:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(base, 0.0)

    def next_try(
        self, attempt: int, retryable: bool | None, rng: random.Random | None = None
    ) -> float | None:
        """Delay before the next attempt, or None when the step must fail now.

        `retryable` is None for ordinary exceptions (retried within the budget), True for
        `plait.Retryable`, False for `plait.Permanent` and errors that cannot succeed on retry.
        """
        if retryable is False or (self.attempts is not None and attempt >= self.attempts):
            return None
        return self.delay_after(attempt, rng)

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {
            "attempts": self.attempts,
            "delay": self.delay,
            "backoff": self.backoff,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
        }
        if self.non_retryable:  # only when set: the fingerprints of older workflows stay
            found["non_retryable"] = [
                item if isinstance(item, str) else f"{item.__module__}.{item.__qualname__}"
                for item in self.non_retryable
            ]
        return found


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


NO_RETRY = Retry()
