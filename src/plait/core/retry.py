"""Retry policy: how many attempts, how long between them. Pure."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .._errors import DefinitionError


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry policy of a step: `attempts` in all (1 = no retry).

    The delay before attempt n+1 is `delay × backoff^(n-1)`, capped at `max_delay`, then spread
    by ± `jitter` (a fraction) so that many failing steps do not retry in lock-step.
    """

    attempts: int = 1
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or self.attempts < 1
        ):
            raise DefinitionError(
                f"Retry(attempts={self.attempts!r}): attempts must be an integer >= 1"
            )
        for name in ("delay", "max_delay"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise DefinitionError(f"Retry({name}={value!r}): must be a finite number >= 0")
        if not _finite(self.backoff) or self.backoff < 1:
            raise DefinitionError(f"Retry(backoff={self.backoff!r}): must be a finite number >= 1")
        if not _finite(self.jitter) or not 0 <= self.jitter <= 1:
            raise DefinitionError(f"Retry(jitter={self.jitter!r}): must be between 0 and 1")

    def delay_after(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        exponent = max(attempt - 1, 0)
        try:
            base = self.delay * self.backoff**exponent
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
        if retryable is False or attempt >= self.attempts:
            return None
        return self.delay_after(attempt, rng)

    def as_dict(self) -> dict[str, float]:
        return {
            "attempts": self.attempts,
            "delay": self.delay,
            "backoff": self.backoff,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
        }


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


NO_RETRY = Retry()
