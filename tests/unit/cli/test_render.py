"""What the command line prints, as pure functions: durations for people, waiting steps."""

from __future__ import annotations

import pytest

import plait
from plait.cli import queues, render
from plait.engine.queues import Queue


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3.0, "0s"),
        (0.4, "0s"),
        (59.9, "59s"),
        (60.0, "1min 0s"),
        (1578.3, "26min 18s"),
        (3599.7, "59min 59s"),
        (3600.0, "1h 0min"),
        (86_399.0, "23h 59min"),
        (2 * 86_400 + 4 * 3600 + 59, "2d 4h"),
    ],
)
def test_span_is_for_people(seconds: float, text: str) -> None:
    assert render.span(seconds) == text


def test_waits_for_names_the_command() -> None:
    assert render.waits_for("r-1", "publish", "approval") == (
        "waits for approval: plait runs approve r-1 publish, or plait runs reject r-1 publish"
    )
    assert render.waits_for("r-1", "publish", "approval", 90.0).startswith(
        "waits for approval (expires in 1min 30s): plait runs approve r-1 publish"
    )
    assert render.waits_for("r-1", "payment", "signal") == (
        "waits for a signal: plait runs signal r-1 payment JSON"
    )
    assert render.waits_for("r 1", "p/x", "signal") == (
        "waits for a signal: plait runs signal 'r 1' p/x JSON"
    )


def test_some_names_fit_on_a_line() -> None:
    assert render.some([]) == ""
    assert render.some(["fetch", "total"]) == "fetch, total"
    ten = [f"s{i}" for i in range(10)]
    assert render.some(ten) == ", ".join(ten)
    assert render.some([f"s{i}" for i in range(4999)]) == "4,999 steps: s0, s1, s2 and 4,996 more"
    assert render.first_names(["a", "b"]) == "a, b"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0.0"), (3.45, "3.5"), (12_000.0, "12,000.0"), (1e9, "1e+09"), (1e308, "1e+308")],
)
def test_amount_stays_short(value: float, text: str) -> None:
    assert render.amount(value) == text


def test_a_queue_line_has_no_309_digit_token_count() -> None:
    # plait.Rate is bounded (1e9), but a bucket stored before the bound may hold anything
    rate = plait.Rate(1e9, per=1.0, burst=1e9)
    text = queues._line(Queue("flood", None, rate, 1e308))
    assert text == ("flood  concurrency -  rate 1e+09 per 1s, burst 1e+09, 1e+308 token(s) left")


def test_user_events_have_a_progress_line() -> None:
    from datetime import UTC, datetime

    def line(step: str | None, payload: dict[str, object]) -> str | None:
        event = plait.Event("r", 5, "user.progress", step, payload, datetime.now(UTC))
        return render.event_line(event)

    assert line("work", {"step": "work", "attempt": 1, "data": {"done": 1}}) == (
        'work: user.progress {"done": 1}'
    )
    assert line(None, {"by": "eve", "data": None}) == "by eve: user.progress"
