"""Rate limits: a token bucket whose state the caller persists. Pure (no clock reads).

A queue's `Rate` says how many steps may start per period; its `Bucket` (tokens left, when they
were counted) lives in the store, so a restart neither refills nor loses tokens. Every function
here is a function of (rate, bucket, now): loading a bucket, saving it and loading it again
between two calls changes nothing.

Tokens refill continuously at `count / per` a second, up to `burst`. Over any window of `elapsed`
seconds at most `burst + count / per × elapsed` tokens are granted. A clock that goes backwards
mints nothing: `updated_at` never decreases, so the same interval is never refilled twice.
Times are float epoch seconds, which today resolve to about 0.2 µs: a token due at t may be
counted a hair later, so ask `available_at` when to come back rather than computing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The bounds of a Rate: a billion starts per period (or at once) limits nothing a worker could
# do, and a period between a millisecond and a year keeps the refill arithmetic well inside a
# float's precision (a count of 1e308 printed a 309-digit token count and limited nothing).
MAX_COUNT = 1e9
MIN_PER, MAX_PER = 0.001, 31_536_000


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` starts per `per` seconds, with bursts of up to `burst` (default: count,
    and at least 1). `Rate(10, per=1.0, burst=10)`: 10 a second, 10 at once after a quiet spell.
    `count` is > 0 and `burst` >= 1, both at most 1e9; `per` is from 0.001 s to a year.
    """

    count: float
    per: float = 1.0
    burst: float | None = None

    def __post_init__(self) -> None:
        if not _number(self.count) or not 0 < self.count <= MAX_COUNT:
            raise ValueError(
                f"rate count must be a finite number > 0 and <= 1e9, got {self.count!r}"
            )
        if not _number(self.per) or not MIN_PER <= self.per <= MAX_PER:
            raise ValueError(
                f"rate per must be a finite number of seconds >= {MIN_PER} and <= {MAX_PER} "
                f"(a year), got {self.per!r}"
            )
        if self.burst is None:
            object.__setattr__(self, "burst", max(self.count, 1))  # frozen: set once, here
        elif not _number(self.burst) or not 1 <= self.burst <= MAX_COUNT:
            # Below 1, not even a single step could ever start.
            raise ValueError(
                f"rate burst must be a finite number >= 1 and <= 1e9, got {self.burst!r}"
            )

    @property
    def capacity(self) -> float:
        """The bucket's size: `burst`, once defaulted."""
        return max(self.count, 1) if self.burst is None else self.burst

    @property
    def per_second(self) -> float:
        return self.count / self.per

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "per": self.per, "burst": self.capacity}


@dataclass(frozen=True, slots=True)
class Bucket:
    """The persisted state of a rate limit: `tokens` left as counted at epoch seconds `updated_at`."""

    tokens: float
    updated_at: float

    def __post_init__(self) -> None:
        if not _number(self.tokens) or self.tokens < 0:
            raise ValueError(f"bucket tokens must be a finite number >= 0, got {self.tokens!r}")
        if not _number(self.updated_at):
            raise ValueError(
                f"bucket updated_at must be finite epoch seconds, got {self.updated_at!r}"
            )

    @classmethod
    def full(cls, rate: Rate, now: float) -> Bucket:
        """A new bucket, as full as the rate allows."""
        return cls(rate.capacity, _time(now))


def refill(rate: Rate, bucket: Bucket, now: float) -> Bucket:
    """The bucket as it stands at `now`: refilled for the time elapsed since it was counted."""
    now = _time(now)
    if now <= bucket.updated_at:
        return bucket  # no time has passed, or the clock went back: nothing to add
    tokens = min(rate.capacity, bucket.tokens + (now - bucket.updated_at) * rate.per_second)
    return Bucket(tokens, now)


def take(rate: Rate, bucket: Bucket, now: float, n: float = 1) -> tuple[bool, Bucket]:
    """Take `n` tokens if they are there at `now`: (taken, the bucket to store).

    The returned bucket is refilled to `now` even when nothing is taken, and storing it is
    optional then: refilling is idempotent.
    """
    _check_n(rate, n)
    current = refill(rate, bucket, now)
    if current.tokens < n:
        return False, current
    return True, Bucket(current.tokens - n, current.updated_at)


def take_many(rate: Rate, bucket: Bucket, now: float, wanted: int) -> tuple[int, Bucket]:
    """Take as many whole tokens as are there, up to `wanted` (to claim several steps at once)."""
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 0:
        raise ValueError(f"take_many wants an integer >= 0, got {wanted!r}")
    current = refill(rate, bucket, now)
    granted = min(wanted, math.floor(current.tokens))
    return granted, Bucket(current.tokens - granted, current.updated_at)


def available_at(rate: Rate, bucket: Bucket, now: float, n: float = 1) -> float:
    """The earliest time >= `now` at which `n` tokens will be there (`now` if they already are).

    A rate-limited step sleeps until then without holding a worker slot; `take` at that time
    succeeds unless someone else took the tokens first.
    """
    _check_n(rate, n)
    current = refill(rate, bucket, now)
    if current.tokens >= n:
        return _time(now)
    at = current.updated_at + (n - current.tokens) / rate.per_second
    # Rounding may leave the refill a hair short of n at `at`: step forward until it is not, so
    # that a caller who wakes at `at` is not refused and made to spin, whether it takes from the
    # bucket as stored or as refilled to `now` (the two round differently).
    for _ in range(64):
        if min(refill(rate, bucket, at).tokens, refill(rate, current, at).tokens) >= n:
            return at
        at = math.nextafter(at, math.inf)
    return at + 1e-6 * max(1.0, abs(at))  # not reached in practice; err on the late side


def rebase(bucket: Bucket, rate: Rate) -> Bucket:
    """The bucket under a new rate (a queue reconfigured at run time): tokens capped to its burst.

    Refill under the old rate first (`refill(old_rate, bucket, now)`) so that the time before the
    change is counted at the rate that applied then.
    """
    return Bucket(min(bucket.tokens, rate.capacity), bucket.updated_at)


def _check_n(rate: Rate, n: float) -> None:
    if not _number(n) or n <= 0:
        raise ValueError(f"the number of tokens to take must be a finite number > 0, got {n!r}")
    if n > rate.capacity:
        raise ValueError(
            f"cannot take {n} tokens at once from a bucket whose burst is {rate.capacity}: "
            "they would never be there"
        )


def _time(now: float) -> float:
    if not _number(now):
        raise ValueError(f"now must be finite epoch seconds, got {now!r}")
    return float(now)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
