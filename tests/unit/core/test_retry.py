"""Retry policy: backoff, cap, jitter, overflow, budget, validation."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait import DefinitionError, Retry
from plait.core.retry import NO_RETRY


def test_delays_grow_by_backoff() -> None:
    policy = Retry(attempts=10, delay=0.5, backoff=3.0, max_delay=1_000, jitter=0)
    assert [policy.delay_after(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 13.5, 40.5]


def test_delays_are_capped() -> None:
    policy = Retry(attempts=10, delay=1, backoff=2, max_delay=5, jitter=0)
    assert [policy.delay_after(n) for n in range(1, 7)] == [1, 2, 4, 5, 5, 5]


def test_constant_delay_with_backoff_one() -> None:
    policy = Retry(attempts=5, delay=2, backoff=1, jitter=0)
    assert {policy.delay_after(n) for n in range(1, 50)} == {2}


@pytest.mark.parametrize("backoff", [2, 2.0, 10.0])
def test_overflow_is_capped(backoff: float) -> None:
    policy = Retry(attempts=10**6, delay=1, backoff=backoff, max_delay=60, jitter=0)
    assert policy.delay_after(50_000) == 60


@pytest.mark.parametrize("backoff", [2, 2.0])
def test_zero_delay_stays_zero_however_many_attempts(backoff: float) -> None:
    policy = Retry(attempts=10**6, delay=0, backoff=backoff, max_delay=60, jitter=0.5)
    assert policy.delay_after(5) == 0
    assert policy.delay_after(50_000) == 0  # 0 × an overflowing power is still no delay


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(1, 2_000),
    delay=st.floats(0, 100),
    backoff=st.floats(1, 10),
    max_delay=st.floats(0, 1_000),
    jitter=st.floats(0, 1),
    seed=st.integers(0, 2**32),
)
def test_jitter_stays_within_bounds(
    attempt: int, delay: float, backoff: float, max_delay: float, jitter: float, seed: int
) -> None:
    policy = Retry(attempts=3, delay=delay, backoff=backoff, max_delay=max_delay, jitter=jitter)
    try:
        base = min(delay * backoff ** (attempt - 1), max_delay)
    except OverflowError:
        base = max_delay if delay else 0.0
    got = policy.delay_after(attempt, random.Random(seed))
    assert math.isfinite(got)
    assert base * (1 - jitter) - 1e-9 <= got <= base * (1 + jitter) + 1e-9
    assert got == policy.delay_after(attempt, random.Random(seed))  # the rng decides, alone


def test_jitter_spreads_delays() -> None:
    policy = Retry(attempts=3, delay=10, jitter=0.5)
    rng = random.Random(1)
    delays = {policy.delay_after(1, rng) for _ in range(50)}
    assert len(delays) > 40
    assert min(delays) < 8 and max(delays) > 12


def test_next_try_honours_retryable_and_budget() -> None:
    policy = Retry(attempts=3, delay=1, backoff=2, jitter=0)
    assert policy.next_try(1, None) == 1
    assert policy.next_try(2, None) == 2
    assert policy.next_try(3, None) is None  # budget spent
    assert policy.next_try(1, True) == 1  # Retryable: retried, within the budget
    assert policy.next_try(3, True) is None
    assert policy.next_try(1, False) is None  # Permanent: never
    assert NO_RETRY.next_try(1, None) is None
    assert NO_RETRY.next_try(1, True) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"attempts": 0},
            "Retry(attempts=0): attempts must be an integer >= 1, or None for no limit",
        ),
        (
            {"attempts": 1.5},
            "Retry(attempts=1.5): attempts must be an integer >= 1, or None for no limit",
        ),
        (
            {"attempts": True},
            "Retry(attempts=True): attempts must be an integer >= 1, or None for no limit",
        ),
        ({"delay": -1}, "Retry(delay=-1): must be a finite number >= 0"),
        ({"delay": math.inf}, "Retry(delay=inf): must be a finite number >= 0"),
        ({"delay": "1"}, "Retry(delay='1'): must be a finite number >= 0"),
        ({"max_delay": math.nan}, "Retry(max_delay=nan): must be a finite number >= 0"),
        ({"backoff": 0.5}, 'Retry(backoff=0.5): must be a finite number >= 1, or "linear"'),
        ({"backoff": math.inf}, 'Retry(backoff=inf): must be a finite number >= 1, or "linear"'),
        ({"jitter": 1.5}, "Retry(jitter=1.5): must be between 0 and 1"),
        ({"jitter": -0.1}, "Retry(jitter=-0.1): must be between 0 and 1"),
    ],
)
def test_invalid_parameters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        Retry(**kwargs)
    assert str(info.value) == message


def test_defaults_and_as_dict() -> None:
    assert NO_RETRY.attempts == 1
    assert Retry(attempts=3).as_dict() == {
        "attempts": 3,
        "delay": 1.0,
        "backoff": 2.0,
        "max_delay": 60.0,
        "jitter": 0.1,
    }


def test_linear_backoff_adds_delay_each_attempt() -> None:
    policy = Retry(attempts=10, delay=2, backoff="linear", max_delay=9, jitter=0)
    assert [policy.delay_after(n) for n in range(1, 7)] == [2, 4, 6, 8, 9, 9]


def test_attempts_none_never_runs_out() -> None:
    policy = Retry(attempts=None, delay=0, jitter=0)
    assert policy.next_try(10**9, None) == 0
    assert policy.next_try(10**9, False) is None  # Permanent still fails at once
    assert policy.as_dict()["attempts"] is None


def test_non_retryable_matches_codes_and_subclasses() -> None:
    policy = Retry(attempts=3, non_retryable=[LookupError, "declined"])
    assert not policy.retries("KeyError", KeyError("k"))
    assert not policy.retries("declined")
    assert policy.retries("ValueError", ValueError("v"))
    assert policy.as_dict()["non_retryable"] == ["builtins.LookupError", "declined"]
    assert "non_retryable" not in Retry(attempts=3).as_dict()  # older fingerprints unchanged


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attempts": 0}, r"Retry\(attempts=0\): attempts must be an integer >= 1, or None"),
        (
            {"backoff": "quadratic"},
            r"Retry\(backoff='quadratic'\): must be a finite number >= 1, or \"linear\"",
        ),
        (
            {"non_retryable": "ValueError"},
            r"Retry\(non_retryable='ValueError'\): must be a list of exception classes and error codes",
        ),
        (
            {"non_retryable": [ValueError, 3]},
            r"Retry\(non_retryable=\[\.\.\., 3, \.\.\.\]\): each entry must be an exception class or a non-empty error code string",
        ),
        ({"non_retryable": [""]}, r"each entry must be an exception class"),
        ({"non_retryable": [int]}, r"each entry must be an exception class"),
    ],
)
def test_bad_options_are_definition_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        Retry(**options)
