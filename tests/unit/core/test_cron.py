"""Cron schedules: parsing, errors, known ticks across DST, and a brute-force reference model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.core import cron as _cron
from plait.core.cron import Cron, CronError, tick_id, timezone


def at(text: str) -> float:
    """Epoch seconds of an ISO time with an offset, e.g. '2026-03-29T01:00:00+00:00'."""
    return datetime.fromisoformat(text).timestamp()


def local(tick: float, zone: str) -> str:
    return datetime.fromtimestamp(tick, ZoneInfo(zone)).isoformat()


def shape(cron: Cron) -> tuple[object, ...]:
    return (cron.minutes, cron.hours, cron.days, cron.months, cron.weekdays, cron.day_or)


def ticks(expr: str, start: str, zone: str, count: int) -> list[str]:
    found = Cron.parse(expr).ticks_between(at(start), at(start) + 10**10, timezone(zone), count)
    return [local(tick, zone) for tick in found]


# --- known examples ---------------------------------------------------------------------------


def test_every_five_minutes() -> None:
    assert ticks("*/5 * * * *", "2026-05-01T10:02:30+00:00", "UTC", 3) == [
        "2026-05-01T10:05:00+00:00",
        "2026-05-01T10:10:00+00:00",
        "2026-05-01T10:15:00+00:00",
    ]
    cron, utc = Cron.parse("*/5 * * * *"), timezone("UTC")
    hour = cron.ticks_between(
        at("2026-05-01T10:00:00+00:00"), at("2026-05-01T11:00:00+00:00"), utc, 100
    )
    assert len(hour) == 12  # (10:00, 11:00]: 10:05 … 11:00


def test_next_after_is_strictly_after() -> None:
    cron, utc = Cron.parse("0 * * * *"), timezone("UTC")
    assert cron.next_after(at("2026-05-01T10:00:00+00:00"), utc) == at("2026-05-01T11:00:00+00:00")
    assert cron.next_after(at("2026-05-01T09:59:59.5+00:00"), utc) == at(
        "2026-05-01T10:00:00+00:00"
    )


def test_weekdays_at_nine_in_paris() -> None:
    # Friday 20 Nov 2026, after 9:00: the next is Monday.
    assert ticks("0 9 * * mon-fri", "2026-11-20T10:00:00+01:00", "Europe/Paris", 2) == [
        "2026-11-23T09:00:00+01:00",
        "2026-11-24T09:00:00+01:00",
    ]
    # In summer, 9:00 Paris is 07:00 UTC.
    tick = Cron.parse("0 9 * * 1-5").next_after(
        at("2026-07-04T00:00:00+00:00"), timezone("Europe/Paris")
    )
    assert tick == at("2026-07-06T07:00:00+00:00")


def test_february_29_yearly() -> None:
    assert ticks("0 0 29 2 *", "2026-01-01T00:00:00+00:00", "UTC", 2) == [
        "2028-02-29T00:00:00+00:00",
        "2032-02-29T00:00:00+00:00",
    ]
    # 2100 is not a leap year.
    assert ticks("0 0 29 feb *", "2096-03-01T00:00:00+00:00", "UTC", 1) == [
        "2104-02-29T00:00:00+00:00"
    ]


def test_paris_spring_forward_fires_once_after_the_gap() -> None:
    # 29 Mar 2026: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that night.
    assert ticks("30 2 * * *", "2026-03-28T00:00:00+01:00", "Europe/Paris", 3) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    # Every quarter hour: the gap's 02:00 … 02:45 and the real 03:00 are one tick.
    assert ticks("*/15 * * * *", "2026-03-29T01:30:00+01:00", "Europe/Paris", 4) == [
        "2026-03-29T01:45:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:15:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]


def test_paris_fall_back_fires_once_at_the_first_occurrence() -> None:
    # 25 Oct 2026: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    assert ticks("30 2 * * *", "2026-10-24T12:00:00+02:00", "Europe/Paris", 2) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    # Starting inside the repeated hour, after its first occurrence, does not fire it again.
    tick = Cron.parse("30 2 * * *").next_after(
        at("2026-10-25T02:10:00+01:00"), timezone("Europe/Paris")
    )
    assert local(tick, "Europe/Paris") == "2026-10-26T02:30:00+01:00"


def test_new_york_spring_forward() -> None:
    # 8 Mar 2026: 02:00 EST becomes 03:00 EDT at 07:00 UTC.
    assert ticks("30 2 * * *", "2026-03-07T12:00:00-05:00", "America/New_York", 2) == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]
    tick = Cron.parse("30 2 * * *").next_after(
        at("2026-03-08T00:00:00-05:00"), timezone("America/New_York")
    )
    assert tick == at("2026-03-08T07:00:00+00:00")


def test_new_york_fall_back() -> None:
    # 1 Nov 2026: 02:00 EDT becomes 01:00 EST at 06:00 UTC; the 01:00 hour repeats.
    hourly = ticks("0 * * * *", "2026-10-31T23:30:00-04:00", "America/New_York", 4)
    assert hourly == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T02:00:00-05:00",  # 01:00 EST is not fired again
        "2026-11-01T03:00:00-05:00",
    ]
    assert ticks("30 1 * * *", "2026-10-31T12:00:00-04:00", "America/New_York", 2) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]


def test_midnight_gap_in_santiago() -> None:
    # Chile springs forward at midnight: 6 Sep 2026 00:00 -04 becomes 01:00 -03.
    assert ticks("@daily", "2026-09-04T12:00:00-04:00", "America/Santiago", 3) == [
        "2026-09-05T00:00:00-04:00",
        "2026-09-06T01:00:00-03:00",
        "2026-09-07T00:00:00-03:00",
    ]


def test_names_are_case_insensitive_and_seven_is_sunday() -> None:
    names = Cron.parse("0 0 * JAN,jul Sun")
    numbers = Cron.parse("0 0 * 1,7 7")
    assert (
        (names.months, names.weekdays)
        == (numbers.months, numbers.weekdays)
        == ((1, 7), frozenset({0}))
    )
    assert Cron.parse("* * * * 5-7").weekdays == frozenset({5, 6, 0})
    assert Cron.parse("* * * * mon-fri/2").weekdays == frozenset({1, 3, 5})


def test_lists_ranges_and_steps() -> None:
    cron = Cron.parse("1,10-12,50-59/4 */6 1/10 * *")
    assert cron.minutes == (1, 10, 11, 12, 50, 54, 58)
    assert cron.hours == (0, 6, 12, 18)
    assert cron.days == frozenset({1, 11, 21, 31})  # 'a/n' is 'a-max/n'


@pytest.mark.parametrize(
    ("alias", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_aliases(alias: str, fields: str) -> None:
    parsed, expanded = Cron.parse(alias), Cron.parse(fields)
    assert parsed.expression == alias and str(parsed) == alias
    assert shape(parsed) == shape(expanded)


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # Vixie cron: the 13th of each month and every Friday.
    fired = ticks("0 0 13 * fri", "2026-02-01T00:00:00+00:00", "UTC", 5)
    assert [day[:10] for day in fired] == [
        "2026-02-06",
        "2026-02-13",
        "2026-02-20",
        "2026-02-27",
        "2026-03-06",
    ]
    # A field starting with '*' is unrestricted, so both must match: odd days that are Fridays.
    fired = ticks("0 0 */2 * fri", "2026-02-01T00:00:00+00:00", "UTC", 3)
    assert [day[:10] for day in fired] == ["2026-02-13", "2026-02-27", "2026-03-13"]
    # Feb 30 never exists, but every Monday of February does.
    assert ticks("0 0 30 2 mon", "2026-01-01T00:00:00+00:00", "UTC", 1) == [
        "2026-02-02T00:00:00+00:00"
    ]


def test_a_yearly_tick_is_found_without_walking_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    cron, paris = Cron.parse("@yearly"), timezone("Europe/Paris")
    leap = Cron.parse("0 0 29 2 *")
    days_looked_at = 0
    day_matches = Cron._day_matches

    def counting(self: Cron, day: int, weekday: int) -> bool:
        nonlocal days_looked_at
        days_looked_at += 1
        return day_matches(self, day, weekday)

    monkeypatch.setattr(Cron, "_day_matches", counting)
    most = 0
    for i in range(200):
        for expression, since in ((cron, "2026-01-01"), (leap, "2096-03-01")):
            days_looked_at = 0
            expression.next_after(at(f"{since}T00:00:00+00:00") + i * 3600, paris)
            most = max(most, days_looked_at)
    # Only the days of allowed months, each once (the leap day: 8 Februaries to 2104, 225 days);
    # minute by minute would be ~500,000 steps a call (~4,000,000 for the leap day).
    assert 0 < most <= 8 * 29


def test_tick_id() -> None:
    tick = at("2026-11-21T00:00:00+00:00")
    assert tick_id("nightly", tick) == "nightly-20261121T000000Z"
    assert tick_id("a.b_c-1", at("2026-03-29T03:00:00+02:00")) == "a.b_c-1-20260329T010000Z"
    assert tick_id("nightly", tick) != tick_id("nightly", tick + 60)


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (
            "* * * *",
            r"invalid cron expression '\* \* \* \*': expected 5 fields \(minute hour day-of-month month day-of-week\), got 4",
        ),
        ("0 * * * * 2026", r"expected 5 fields .*, got 6"),
        ("", r"expected 5 fields .*, got 0"),
        ("*/0 * * * *", r"invalid cron expression '\*/0 \* \* \* \*': minute step must be >= 1"),
        ("0 24 * * *", r"hour value 24 is out of range 0-23"),
        ("60 * * * *", r"minute value 60 is out of range 0-59"),
        ("0 0 0 * *", r"day-of-month value 0 is out of range 1-31"),
        ("0 0 * 13 *", r"month value 13 is out of range 1-12"),
        ("0 0 * * 8", r"day-of-week value 8 is out of range 0-7"),
        ("0 0 * * 99999999999999", r"day-of-week value 99999999999999 is out of range 0-7"),
        ("0 0 * FOO *", r"month value 'FOO' is not valid: use 1-12 or jan\.\.dec"),
        ("0 0 * * monday", r"day-of-week value 'monday' is not valid: use 0-7 or sun\.\.sat"),
        ("x * * * *", r"minute value 'x' is not valid: use 0-59"),
        ("5-3 * * * *", r"minute range 5-3 is reversed"),
        ("0 0 * * fri-mon", r"day-of-week range fri-mon is reversed"),
        ("*/x * * * *", r"minute step 'x' is not a number"),
        ("*/-1 * * * *", r"minute step '-1' is not a number"),
        (
            "1,,2 * * * *",
            r"minute item '' is not valid: expected \*, a value, a range a-b, or a step \*/n or a-b/n",
        ),
        ("1-2-3 * * * *", r"minute item '1-2-3' is not valid"),
        ("-1 * * * *", r"minute item '-1' is not valid"),
        (
            "@reboot",
            r"invalid cron expression '@reboot': unknown alias '@reboot', use one of @yearly, .*@hourly",
        ),
        (
            "0 0 30 2 *",
            r"invalid cron expression '0 0 30 2 \*': day-of-month 30 never occurs in month 2, so the schedule would never fire",
        ),
        ("0 0 31 apr,jun,sep,nov *", r"day-of-month 31 never occurs in month apr,jun,sep,nov"),
    ],
)
def test_invalid_expressions(expr: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        Cron.parse(expr)


def test_cron_error_is_a_value_error_and_a_plait_error() -> None:
    from plait import PlaitError

    with pytest.raises(ValueError, match="minute step"):
        Cron.parse("*/0 * * * *")
    assert issubclass(CronError, PlaitError)


def test_expression_must_be_a_string() -> None:
    with pytest.raises(CronError, match="a cron expression must be a string, got int"):
        Cron.parse(5)  # type: ignore[arg-type]  # the error a caller without mypy gets


@pytest.mark.parametrize(
    "name",
    [
        "Mars/Olympus",
        "../../etc/passwd",
        "/etc/passwd",
        "Europe/../Europe/Paris",
        "zone.tab",
        "America",
        "",
    ],
)
def test_unknown_timezone(name: str) -> None:
    with pytest.raises(
        CronError,
        match=rf"unknown timezone '{name}': use an IANA name such as 'Europe/Paris' or 'UTC'",
    ):
        timezone(name)


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/etc/passwd", "a/./b", "x\\y", "Europe/Paris\x00"]
)
def test_bad_timezone_names_never_reach_the_filesystem(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(key: str) -> ZoneInfo:
        raise AssertionError(f"ZoneInfo({key!r}) was called")

    monkeypatch.setattr(_cron, "ZoneInfo", refuse)
    with pytest.raises(CronError, match="unknown timezone"):
        timezone(name)


def test_known_timezones() -> None:
    assert timezone("Europe/Paris") == ZoneInfo("Europe/Paris")
    assert timezone("UTC").key == "UTC"
    assert timezone("America/Argentina/Buenos_Aires").key == "America/Argentina/Buenos_Aires"
    assert timezone("Etc/GMT+5").key == "Etc/GMT+5"
    with pytest.raises(CronError, match="unknown timezone 3"):
        timezone(3)  # type: ignore[arg-type]  # the error a caller without mypy gets


@pytest.mark.parametrize("name", ["", "night ly", "a/b", "é"])
def test_tick_id_refuses_names_it_cannot_keep_unique(name: str) -> None:
    with pytest.raises(
        ValueError, match=r"must be non-empty and use only letters, digits, '_', '\.' and '-'"
    ):
        tick_id(name, 0.0)


def test_ticks_between_limit_and_next_after_time_are_checked() -> None:
    cron, utc = Cron.parse("* * * * *"), timezone("UTC")
    with pytest.raises(ValueError, match="ticks_between limit must be an integer >= 0, got -1"):
        cron.ticks_between(0.0, 60.0, utc, -1)
    with pytest.raises(ValueError, match="next_after needs finite epoch seconds, got nan"):
        cron.next_after(float("nan"), utc)
    with pytest.raises(ValueError, match="ticks_between needs an `until` time, got nan"):
        cron.ticks_between(0.0, float("nan"), utc, 1)
    assert cron.ticks_between(0.0, 600.0, utc, 0) == []
    assert len(cron.ticks_between(0.0, float("inf"), utc, 3)) == 3  # the next three ticks


# --- the reference model --------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A field as the test generated it: its text, the values it means, whether it starts with '*'."""

    text: str
    values: frozenset[int]
    star: bool


NAMES = {"month": (1, _cron._MONTHS), "day-of-week": (0, _cron._DAYS)}
BOUNDS = {
    "minute": (0, 59),
    "hour": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "day-of-week": (0, 7),
}


@st.composite
def fields(draw: st.DrawFn, name: str, star_weight: int) -> Spec:
    low, high = BOUNDS[name]
    high_star = 6 if name == "day-of-week" else high  # '*' means 0-6: 7 only repeats Sunday

    def word(value: int) -> str:
        if name in NAMES and value - NAMES[name][0] < len(NAMES[name][1]) and draw(st.booleans()):
            word = NAMES[name][1][value - NAMES[name][0]]
            return word.upper() if draw(st.booleans()) else word
        return str(value)

    kind = draw(st.integers(0, 9))
    if kind < star_weight:
        return Spec("*", frozenset(range(low, high_star + 1)), True)
    if kind == star_weight:
        step = draw(st.integers(1, high + 1))
        return Spec(f"*/{step}", frozenset(range(low, high_star + 1, step)), True)
    items, values = [], set()
    for _ in range(draw(st.integers(1, 3))):
        a = draw(st.integers(low, high))
        form = draw(st.sampled_from(["value", "range", "step"]))
        if form == "value":
            items.append(word(a))
            values.add(a)
        else:
            b = draw(st.integers(a, high))
            step = draw(st.integers(1, 5)) if form == "step" else 1
            items.append(f"{word(a)}-{word(b)}" + (f"/{step}" if form == "step" else ""))
            values.update(range(a, b + 1, step))
    if name == "day-of-week":
        values = {v % 7 for v in values}
    return Spec(",".join(items), frozenset(values), False)


expressions = st.tuples(
    fields("minute", 2),
    fields("hour", 4),
    fields("day-of-month", 6),
    fields("month", 7),
    fields("day-of-week", 6),
)
ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Santiago",
]


def transitions(zone: str) -> list[float]:
    """Instants (to the hour) when the zone's UTC offset changed, 2024-2029: where DST bugs live."""
    tz, found = ZoneInfo(zone), []
    start, end = int(at("2024-01-01T00:00:00+00:00")), int(at("2029-01-01T00:00:00+00:00"))
    previous = datetime.fromtimestamp(start, tz).utcoffset()
    for t in range(start, end, 3600):
        offset = datetime.fromtimestamp(t, tz).utcoffset()
        if offset != previous:
            found.append(float(t))
        previous = offset
    return found


TRANSITIONS = {zone: transitions(zone) for zone in ZONES}


@st.composite
def starts(draw: st.DrawFn, zone: str) -> float:
    near = TRANSITIONS[zone]
    if len(near) > 0 and draw(st.booleans()):
        # Mostly just before a transition, so that the next tick often falls in a gap or a fold.
        hours = draw(st.sampled_from([(-3, 1), (-48, 24)]))
        return draw(st.sampled_from(near)) + draw(st.floats(hours[0] * 3600, hours[1] * 3600))
    return draw(st.floats(at("2024-01-01T00:00:00+00:00"), at("2028-12-31T00:00:00+00:00")))


def reference_matches(specs: tuple[Spec, ...], wall: datetime) -> bool:
    minute, hour, dom, month, dow = specs
    weekday = (wall.weekday() + 1) % 7
    if dom.star or dow.star:
        day = wall.day in dom.values and weekday in dow.values
    else:
        day = wall.day in dom.values or weekday in dow.values
    return (
        wall.minute in minute.values
        and wall.hour in hour.values
        and wall.month in month.values
        and day
    )


def reference_next(specs: tuple[Spec, ...], t: float, tz: ZoneInfo, window: int) -> float | None:
    """Walk UTC minutes (every zone here changes offset on whole minutes). A minute is a tick if
    its wall time matches and is not a repeat, or if it ends a gap in which some wall time matched."""
    u = (int(t // 60) + 1) * 60
    before = datetime.fromtimestamp(u - 60, tz).replace(tzinfo=None)
    for _ in range(window):
        aware = datetime.fromtimestamp(u, tz)
        wall = aware.replace(tzinfo=None)
        if aware.fold == 0 and reference_matches(specs, wall):
            return float(u)
        # After a gap the wall clock jumps: the minutes between `before` and `wall` never happened.
        jump = int((wall - before) / timedelta(minutes=1))
        gap = (before + timedelta(minutes=k) for k in range(1, jump))
        if any(reference_matches(specs, skipped) for skipped in gap):
            return float(u)
        before, u = wall, u + 60
    return None


@settings(max_examples=300, deadline=None)
@given(data=st.data(), specs=expressions, zone=st.sampled_from(ZONES))
def test_next_after_agrees_with_minute_by_minute_reference(
    data: st.DataObject, specs: tuple[Spec, ...], zone: str
) -> None:
    expr = " ".join(spec.text for spec in specs)
    _, _, dom, month, dow = specs
    possible = (not dom.star and not dow.star) or any(
        d <= _cron._MAX_DAYS[m - 1] for m in month.values for d in dom.values
    )
    if not possible:
        with pytest.raises(CronError, match="never occurs"):
            Cron.parse(expr)
        return
    cron, tz = Cron.parse(expr), ZoneInfo(zone)
    t = data.draw(starts(zone))
    window = 2 * 24 * 60
    expected = reference_next(specs, t, tz, window)
    actual = cron.next_after(t, tz)
    if expected is None:
        assert actual > (int(t // 60) + window) * 60, (expr, zone, t)
    else:
        assert actual == expected, (expr, zone, t, local(actual, zone), local(expected, zone))


ANY_HOUR = st.just(Spec("*", frozenset(range(24)), True))
around_transitions = st.tuples(
    fields("minute", 1),
    ANY_HOUR,
    fields("day-of-month", 8),
    fields("month", 8),
    fields("day-of-week", 8),
)
DST_ZONES = [zone for zone in ZONES if TRANSITIONS[zone]]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), specs=around_transitions, zone=st.sampled_from(DST_ZONES))
def test_next_after_agrees_with_reference_around_transitions(
    data: st.DataObject, specs: tuple[Spec, ...], zone: str
) -> None:
    # Within two hours of an offset change and with any hour allowed, the next tick often lies in
    # a gap or a repeated hour, which random start times rarely reach.
    cron, tz = Cron.parse(" ".join(spec.text for spec in specs)), ZoneInfo(zone)
    window = data.draw(st.sampled_from([(-3600, 0), (-2 * 3600, 1800)]))  # the hour before, mostly
    t = data.draw(st.sampled_from(TRANSITIONS[zone])) + data.draw(st.floats(*window))
    expected = reference_next(specs, t, tz, 3 * 24 * 60)
    actual = cron.next_after(t, tz)
    if expected is None:
        assert actual > (int(t // 60) + 3 * 24 * 60) * 60
    else:
        assert actual == expected, (specs, zone, t, local(actual, zone), local(expected, zone))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), specs=expressions, zone=st.sampled_from(ZONES), limit=st.integers(0, 30))
def test_ticks_between_chains_next_after(
    data: st.DataObject, specs: tuple[Spec, ...], zone: str, limit: int
) -> None:
    try:
        cron = Cron.parse(" ".join(spec.text for spec in specs))
    except CronError:
        return  # impossible schedules are covered by the reference test
    tz = ZoneInfo(zone)
    after = data.draw(starts(zone))
    until = after + data.draw(st.floats(0, 3 * 86400))
    found = cron.ticks_between(after, until, tz, limit)
    assert len(found) <= limit
    assert all(after < tick <= until for tick in found)
    previous = after
    for tick in found:
        assert tick == cron.next_after(previous, tz)
        previous = tick
    if len(found) < limit:
        assert cron.next_after(previous, tz) > until
    assert found == sorted(set(found))


def test_reference_model_sees_gaps() -> None:
    # The reference's gap rule is itself exercised: 02:30 on the spring-forward night fires at 03:00.
    specs = (
        Spec("30", frozenset({30}), False),
        Spec("2", frozenset({2}), False),
        Spec("*", frozenset(range(1, 32)), True),
        Spec("*", frozenset(range(1, 13)), True),
        Spec("*", frozenset(range(7)), True),
    )
    t = at("2026-03-28T12:00:00+00:00")
    assert reference_next(specs, t, ZoneInfo("Europe/Paris"), 2 * 24 * 60) == at(
        "2026-03-29T01:00:00+00:00"
    )


def test_a_time_a_hair_before_a_gap_end_keeps_the_collapsed_tick() -> None:
    # 00:01 does not exist in Santiago on 2024-09-08 (00:00 -> 01:00): it fires at 01:00. A time
    # one float step before 01:00 must not be rounded into 01:00 (found by the property test).
    tz = timezone("America/Santiago")
    assert Cron.parse("1 * * * *").next_after(1725767999.9999998, tz) == 1725768000.0
