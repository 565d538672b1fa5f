"""Rate limits: the token bucket's bound over any window, persistence, backwards clocks, errors."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from plait.core.rate import Bucket, Rate, available_at, rebase, refill, take, take_many

T0 = 1_800_000_000.0  # epoch seconds of the same magnitude as real clocks


# --- behaviour ------------------------------------------------------------------------------------


def test_burst_defaults_to_count_and_at_least_one() -> None:
    assert Rate(10).burst == 10 and Rate(10).capacity == 10
    assert Rate(0.5, per=60).burst == 1
    assert Rate(10, burst=3).capacity == 3
    assert Rate(10) == Rate(10, per=1.0, burst=10)
    assert Rate(2, per=4).per_second == 0.5
    assert Rate(5, per=2).as_dict() == {"count": 5, "per": 2, "burst": 5}


def test_a_full_bucket_gives_its_burst_then_refills_at_the_rate() -> None:
    rate = Rate(8, per=1.0, burst=3)  # times below are exact in binary: 1/16 s is half a token
    bucket = Bucket.full(rate, T0)
    granted = []
    for _ in range(5):
        ok, bucket = take(rate, bucket, T0)
        granted.append(ok)
    assert granted == [True, True, True, False, False]
    ok, bucket = take(rate, bucket, T0 + 0.0625)
    assert not ok and bucket == Bucket(0.5, T0 + 0.0625)
    ok, bucket = take(rate, bucket, T0 + 0.125)
    assert ok and bucket == Bucket(0, T0 + 0.125)
    assert refill(rate, bucket, T0 + 60) == Bucket(3, T0 + 60)  # capped at the burst


def test_take_many_takes_what_there_is() -> None:
    rate = Rate(5, per=1.0)
    count, bucket = take_many(rate, Bucket.full(rate, T0), T0, 8)
    assert (count, bucket.tokens) == (5, 0)
    count, bucket = take_many(rate, bucket, T0 + 0.5, 8)
    assert count == 2 and bucket.tokens == pytest.approx(0.5)
    count, bucket = take_many(rate, bucket, T0 + 0.5, 0)
    assert count == 0 and bucket.tokens == pytest.approx(0.5)
    assert take_many(rate, Bucket.full(rate, T0), T0, 2) == (2, Bucket(3, T0))


def test_available_at_says_when_to_come_back() -> None:
    rate = Rate(10, per=1.0, burst=5)
    _, empty = take_many(rate, Bucket.full(rate, T0), T0, 5)
    assert available_at(rate, empty, T0) == pytest.approx(T0 + 0.1)
    assert available_at(rate, empty, T0, n=5) == pytest.approx(T0 + 0.5)
    assert available_at(rate, Bucket.full(rate, T0), T0 + 3) == T0 + 3  # there already
    slow = Rate(1, per=3600)
    assert available_at(slow, Bucket(0.25, T0), T0 + 60) == pytest.approx(T0 + 2700)


def test_a_clock_that_goes_back_mints_nothing() -> None:
    rate = Rate(1, per=1.0, burst=1)
    ok, bucket = take(rate, Bucket.full(rate, T0), T0 + 100)
    assert ok and bucket == Bucket(0, T0 + 100)
    # Back an hour, then forward to where it was: no token, because no time has passed since.
    for now in (T0 + 50, T0, T0 + 100):
        ok, bucket = take(rate, bucket, now)
        assert not ok and bucket == Bucket(0, T0 + 100)
    assert available_at(rate, bucket, T0 + 50) == T0 + 101
    ok, bucket = take(rate, bucket, T0 + 101)
    assert ok


def test_rebase_caps_tokens_to_the_new_burst() -> None:
    old, new = Rate(100, burst=100), Rate(1, burst=2)
    bucket = Bucket.full(old, T0)
    assert rebase(bucket, new) == Bucket(2, T0)
    assert rebase(Bucket(1.5, T0), new) == Bucket(1.5, T0)  # never adds
    # Refill under the old rate first, then rebase: the time before the change counts at 100/s.
    assert rebase(refill(old, Bucket(0, T0), T0 + 0.01), new).tokens == pytest.approx(1)


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, r"rate count must be a finite number > 0 and <= 1e9, got 0"),
        ({"count": -1.5}, r"rate count must be a finite number > 0 and <= 1e9, got -1\.5"),
        ({"count": True}, r"rate count must be a finite number > 0 and <= 1e9, got True"),
        ({"count": math.nan}, r"rate count must be a finite number > 0 and <= 1e9, got nan"),
        ({"count": math.inf}, r"rate count must be a finite number > 0 and <= 1e9, got inf"),
        ({"count": "10"}, r"rate count must be a finite number > 0 and <= 1e9, got '10'"),
        (
            {"count": 10, "per": 0},
            r"rate per must be a finite number of seconds >= 0\.001 and <= 31536000 \(a year\), got 0",
        ),
        (
            {"count": 10, "per": -1},
            r"rate per must be a finite number of seconds >= 0\.001 and <= 31536000 \(a year\), got -1",
        ),
        (
            {"count": 10, "per": math.inf},
            r"rate per must be a finite number of seconds >= 0\.001 and <= 31536000 \(a year\), got inf",
        ),
        (
            {"count": 10, "burst": 0.5},
            r"rate burst must be a finite number >= 1 and <= 1e9, got 0\.5",
        ),
        ({"count": 10, "burst": 0}, r"rate burst must be a finite number >= 1 and <= 1e9, got 0"),
        (
            {"count": 10, "burst": False},
            r"rate burst must be a finite number >= 1 and <= 1e9, got False",
        ),
        (
            {"count": 10, "burst": math.nan},
            r"rate burst must be a finite number >= 1 and <= 1e9, got nan",
        ),
        (
            {"count": 1e9 + 1},
            r"rate count must be a finite number > 0 and <= 1e9, got 1000000001\.0",
        ),
        (
            {"count": 10, "burst": 1e308},
            r"rate burst must be a finite number >= 1 and <= 1e9, got 1e\+308",
        ),
        (
            {"count": 10, "per": 1e-300},
            r"rate per must be a finite number of seconds >= 0\.001 and <= 31536000 \(a year\), "
            r"got 1e-300",
        ),
        (
            {"count": 10, "per": 31536001},
            r"rate per must be a finite number of seconds >= 0\.001 and <= 31536000 \(a year\), "
            r"got 31536001",
        ),
    ],
)
def test_invalid_rates(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rate(**kwargs)  # type: ignore[arg-type]  # wrong types on purpose


def test_rates_at_the_bounds_are_accepted() -> None:
    assert Rate(1e9, per=0.001, burst=1e9).per_second == 1e12
    assert Rate(1, per=31_536_000, burst=1).capacity == 1
    assert Rate(0.001).burst == 1


@pytest.mark.parametrize(
    ("tokens", "updated_at", "message"),
    [
        (-1, T0, r"bucket tokens must be a finite number >= 0, got -1"),
        (math.nan, T0, r"bucket tokens must be a finite number >= 0, got nan"),
        (1, math.inf, r"bucket updated_at must be finite epoch seconds, got inf"),
        (1, None, r"bucket updated_at must be finite epoch seconds, got None"),
    ],
)
def test_invalid_buckets(tokens: float, updated_at: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Bucket(tokens, updated_at)


def test_invalid_calls() -> None:
    rate = Rate(10, burst=3)
    bucket = Bucket.full(rate, T0)
    with pytest.raises(ValueError, match=r"now must be finite epoch seconds, got nan"):
        take(rate, bucket, math.nan)
    with pytest.raises(ValueError, match=r"now must be finite epoch seconds, got inf"):
        Bucket.full(rate, math.inf)
    for call in (take, available_at):
        with pytest.raises(
            ValueError, match=r"the number of tokens to take must be a finite number > 0, got 0"
        ):
            call(rate, bucket, T0, 0)
        with pytest.raises(
            ValueError,
            match=r"cannot take 4 tokens at once from a bucket whose burst is 3: they would never be there",
        ):
            call(rate, bucket, T0, 4)
    for wanted in (-1, True, 1.5):
        with pytest.raises(ValueError, match=rf"take_many wants an integer >= 0, got {wanted!r}"):
            take_many(rate, bucket, T0, wanted)  # type: ignore[arg-type]  # wrong types on purpose


# --- properties -----------------------------------------------------------------------------------


rates = st.builds(
    Rate,
    count=st.floats(0.01, 1000),
    per=st.floats(0.001, 3600),
    burst=st.none() | st.floats(1, 100),
)


@dataclass(frozen=True)
class Call:
    """One call in a sequence: `take(n)` when `many` is False, else `take_many(n)`."""

    gap: float  # seconds since the previous call
    n: int
    many: bool


calls = st.lists(
    st.builds(
        Call,
        gap=st.one_of(st.just(0.0), st.floats(0, 5), st.floats(0, 3600)),
        n=st.integers(1, 5),
        many=st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


Store = Callable[[Bucket], Bucket]


def run(rate: Rate, sequence: list[Call], store: Store = lambda b: b) -> list[tuple[float, int]]:
    """Play the calls from a full bucket: (time, tokens granted) per call. `store` stands for
    saving the bucket and loading it back between calls."""
    now, bucket, granted = T0, Bucket.full(rate, T0), []
    for call in sequence:
        now += call.gap
        if call.many:
            count, bucket = take_many(rate, store(bucket), now, call.n)
        elif call.n <= rate.capacity:
            ok, bucket = take(rate, store(bucket), now, call.n)
            count = call.n if ok else 0
        else:
            count = 0
        granted.append((now, count))
    return granted


@settings(max_examples=400)
@given(rate=rates, sequence=calls)
def test_over_any_window_grants_never_exceed_burst_plus_rate_times_elapsed(
    rate: Rate, sequence: list[Call]
) -> None:
    granted = run(rate, sequence)
    for i in range(len(granted)):
        total = 0
        for j in range(i, len(granted)):
            total += granted[j][1]
            elapsed = granted[j][0] - granted[i][0]
            bound = rate.capacity + rate.per_second * elapsed
            assert total <= bound * (1 + 1e-9), (i, j, total, bound)


@settings(max_examples=200)
@given(rate=rates, sequence=calls)
def test_each_call_refills_for_the_time_elapsed_and_takes_what_it_grants(
    rate: Rate, sequence: list[Call]
) -> None:
    # The per-call definition, so that a bucket that grants nothing cannot pass the bound above.
    now, bucket = T0, Bucket.full(rate, T0)
    for call in sequence:
        now += call.gap
        level = min(rate.capacity, bucket.tokens + (now - bucket.updated_at) * rate.per_second)
        count, after = take_many(rate, bucket, now, call.n)
        assert count == min(call.n, math.floor(level))
        assert after.tokens == level - count
        assert after.updated_at == max(now, bucket.updated_at)
        bucket = after


def sqlite_round_trip() -> Store:
    """Save the bucket in a REAL column and read it back, as a store would."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE bucket (tokens REAL NOT NULL, updated_at REAL NOT NULL)")

    def store(bucket: Bucket) -> Bucket:
        db.execute("DELETE FROM bucket")
        db.execute("INSERT INTO bucket VALUES (?, ?)", (bucket.tokens, bucket.updated_at))
        tokens, updated_at = db.execute("SELECT tokens, updated_at FROM bucket").fetchone()
        return Bucket(tokens, updated_at)

    return store


@settings(max_examples=200)
@given(rate=rates, sequence=calls)
def test_persisting_the_bucket_between_calls_changes_nothing(
    rate: Rate, sequence: list[Call]
) -> None:
    assert run(rate, sequence, sqlite_round_trip()) == run(rate, sequence)


@settings(max_examples=200)
@given(
    rate=rates,
    times=st.lists(st.floats(-7200, 7200), min_size=1, max_size=30),
    sizes=st.lists(st.integers(1, 5), min_size=30, max_size=30),
)
def test_a_clock_jumping_back_and_forth_never_mints_tokens(
    rate: Rate, times: list[float], sizes: list[int]
) -> None:
    bucket, total = Bucket.full(rate, T0), 0
    for offset, size in zip(times, sizes, strict=False):
        count, bucket = take_many(rate, bucket, T0 + offset, size)
        total += count
    # Only the time the clock moved beyond its start, at most, can have been refilled.
    latest = max(0.0, *times)
    assert total <= (rate.capacity + rate.per_second * latest) * (1 + 1e-9)


@settings(max_examples=300)
@given(
    rate=rates,
    tokens=st.floats(0, 1),
    since=st.floats(0, 3600),
    n=st.integers(1, 5),
)
# refilled from the bucket as stored, this one was a hair short at available_at (found in CI)
@example(rate=Rate(0.01, per=0.2, burst=1), tokens=0.0, since=1.0, n=1)
def test_take_succeeds_at_available_at_and_not_before(
    rate: Rate, tokens: float, since: float, n: int
) -> None:
    if n > rate.capacity:
        n = 1
    bucket = Bucket(min(tokens * rate.capacity, rate.capacity), T0)
    now = T0 + since
    at = available_at(rate, bucket, now, n)
    assert at >= now
    assert take(rate, bucket, at, n)[0], "woken at available_at, the step is refused"
    if at > now:
        earlier = max(now, at - max(1e-6, 1e-3 / rate.per_second))
        assert not take(rate, bucket, earlier, n)[0]
