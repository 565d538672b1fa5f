"""Cron schedules: parse a 5-field expression, find its ticks in a timezone. Pure (no clock reads).

A tick is a wall-clock time in the schedule's timezone that matches the expression, returned as
epoch seconds. Daylight saving time:

- a wall time that does not exist (the spring-forward gap, e.g. 02:30 in Europe/Paris on the last
  Sunday of March) fires once, at the first instant after the gap (03:00 local), as cronie does;
  every matching time in the gap collapses into that one tick;
- a wall time that occurs twice (fall back) fires once, at its first occurrence. So a schedule
  that matches every minute is silent during the repeated hour; use UTC for even spacing.
"""

from __future__ import annotations

import bisect
import calendar
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .._errors import PlaitError

# what a schedule does with the ticks it missed (engine/schedules.py): start none, or one run;
# here, pure and light, so that `plait schedules add --help` need not import the engine
CATCH_UP = ("skip", "run_once")


class CronError(PlaitError, ValueError):
    """A cron expression or timezone is invalid; the message names the field, the bad value and
    what is allowed. Nothing was stored: correct the schedule and try again."""


_FIELD_LIST = "minute hour day-of-month month day-of-week"
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # Feb 29 exists, in leap years
_ITEM = re.compile(
    r"(?:(?P<star>\*)|(?P<lo>[0-9a-z]+)(?:-(?P<hi>[0-9a-z]+))?)(?:/(?P<step>.*))?",
    re.ASCII | re.IGNORECASE,
)
# IANA names only: letters, digits, '_', '+', '-' and '/' between parts. No '.', so no '..'
# and no file such as 'zone.tab'; no leading '/', so never an absolute path.
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*", re.ASCII)
_TICK_NAME = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
_SEARCH_YEARS = 400  # the Gregorian calendar repeats every 400 years: a possible tick is found


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # value of names[0]

    def allowed(self) -> str:
        if not self.names:
            return f"{self.low}-{self.high}"
        return f"{self.low}-{self.high} or {self.names[0]}..{self.names[-1]}"


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day-of-week", 0, 7, _DAYS, 0),  # 7 is Sunday too
)


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed cron expression: the set of values each field allows.

    `day_or` is classic Vixie cron: when neither day-of-month nor day-of-week starts with `*`, a
    day matches if either field matches; otherwise both must (a `*` field matches every day).
    """

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]  # 0 = Sunday … 6 = Saturday
    day_or: bool

    @classmethod
    def parse(cls, expr: str) -> Cron:
        """Parse `expr` (5 fields, or an alias such as @daily); raise CronError if invalid."""
        if not isinstance(expr, str):
            raise CronError(f"a cron expression must be a string, got {type(expr).__name__}")
        text = expr.strip()
        if text.startswith("@"):
            if text.lower() not in _ALIASES:
                raise CronError(
                    f"invalid cron expression {expr!r}: unknown alias {text!r}, "
                    f"use one of {', '.join(_ALIASES)}"
                )
            text = _ALIASES[text.lower()]
        parts = text.split()
        if len(parts) != 5:
            raise CronError(
                f"invalid cron expression {expr!r}: expected 5 fields ({_FIELD_LIST}), "
                f"got {len(parts)}"
            )
        try:
            sets = [_parse_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
        except _FieldError as e:
            raise CronError(f"invalid cron expression {expr!r}: {e}") from None
        minutes, hours, days, months, weekdays = sets
        weekdays = {day % 7 for day in weekdays}
        day_or = not parts[2].startswith("*") and not parts[4].startswith("*")
        if not day_or and not any(day <= _MAX_DAYS[m - 1] for m in months for day in days):
            raise CronError(
                f"invalid cron expression {expr!r}: day-of-month {parts[2]} never occurs in "
                f"month {parts[3]}, so the schedule would never fire"
            )
        return cls(
            expression=expr,
            minutes=tuple(sorted(minutes)),
            hours=tuple(sorted(hours)),
            days=frozenset(days),
            months=tuple(sorted(months)),
            weekdays=frozenset(weekdays),
            day_or=day_or,
        )

    def __str__(self) -> str:
        return self.expression

    def next_after(self, t: float, tz: tzinfo) -> float:
        """The first tick strictly after epoch seconds `t`, ticks being wall-clock times in `tz`.

        A wall time skipped by a DST gap fires once at the first instant after the gap; a wall time
        repeated when clocks fall back fires once, at its first occurrence (see the module doc).
        """
        if not isinstance(t, int | float) or not math.isfinite(t):
            raise ValueError(f"next_after needs finite epoch seconds, got {t!r}")
        # Whole seconds, floored: fromtimestamp rounds to microseconds, which could carry a t a
        # hair before a minute (or before the end of a DST gap) into it, and skip its tick.
        start = datetime.fromtimestamp(math.floor(t), tz).replace(tzinfo=None, second=0)
        # Ticks never decrease as wall times increase, so walk matching wall times upwards. Those
        # that resolve to <= t (the repeated hour, the end of a gap) are skipped one by one.
        wall = self._next_wall(start, start.year + _SEARCH_YEARS)
        while wall is not None:
            tick = _instant(wall, tz)
            if tick > t:
                return tick
            wall = self._next_wall(wall + timedelta(minutes=1), start.year + _SEARCH_YEARS)
        raise CronError(f"cron expression {self.expression!r} has no tick after {t!r}")

    def ticks_between(self, after: float, until: float, tz: tzinfo, limit: int) -> list[float]:
        """The ticks in (after, until], earliest first, at most `limit` of them (for catch-up)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"ticks_between limit must be an integer >= 0, got {limit!r}")
        if math.isnan(until):
            raise ValueError("ticks_between needs an `until` time, got nan")
        ticks: list[float] = []
        tick = after
        while len(ticks) < limit:
            tick = self.next_after(tick, tz)
            if tick > until:
                break
            ticks.append(tick)
        return ticks

    def _next_wall(self, start: datetime, last_year: int) -> datetime | None:
        """The first matching wall time at or after `start` (naive, whole minutes).

        Skips by field: the next allowed month, then day, hour, minute; never minute by minute.
        """
        for year in range(start.year, min(last_year, datetime.max.year) + 1):
            for month in self.months:
                if (year, month) < (start.year, start.month):
                    continue
                same_month = (year, month) == (start.year, start.month)
                first_weekday, length = calendar.monthrange(year, month)  # Monday = 0
                for day in range(start.day if same_month else 1, length + 1):
                    # Cron counts weekdays from Sunday = 0.
                    if not self._day_matches(day, (first_weekday + day) % 7):
                        continue
                    same_day = same_month and day == start.day
                    hour_from = start.hour if same_day else 0
                    for hour in self.hours[bisect.bisect_left(self.hours, hour_from) :]:
                        minute_from = start.minute if same_day and hour == start.hour else 0
                        i = bisect.bisect_left(self.minutes, minute_from)
                        if i < len(self.minutes):
                            return datetime(year, month, day, hour, self.minutes[i])
        return None

    def _day_matches(self, day: int, weekday: int) -> bool:
        if self.day_or:
            return day in self.days or weekday in self.weekdays
        return day in self.days and weekday in self.weekdays


def timezone(name: str) -> ZoneInfo:
    """The IANA timezone `name`; raise CronError if it is not one."""
    refusal = CronError(
        f"unknown timezone {name!r}: use an IANA name such as 'Europe/Paris' or 'UTC'"
    )
    # Check the shape first: zoneinfo would otherwise open whatever path the name spells.
    if not isinstance(name, str) or len(name) > 255 or not _ZONE_NAME.fullmatch(name):
        raise refusal
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # not found, not a TZif file, a folder
        raise refusal from None


def tick_id(schedule_name: str, tick: float) -> str:
    """The run id of a schedule's tick, such as 'nightly-20261121T000000Z'.

    Derived from the name and the tick's UTC time only, so that two schedulers that both see the
    tick start the same run id, and the store's idempotent start runs it once.
    """
    if not isinstance(schedule_name, str) or not _TICK_NAME.fullmatch(schedule_name):
        raise ValueError(
            f"schedule name {schedule_name!r} must be non-empty and use only letters, digits, "
            "'_', '.' and '-'"
        )
    at = datetime.fromtimestamp(tick, UTC)
    stamp = f"{at.year:04d}{at.month:02d}{at.day:02d}T{at.hour:02d}{at.minute:02d}{at.second:02d}Z"
    return f"{schedule_name}-{stamp}"


class _FieldError(Exception):
    """A field is invalid; Cron.parse adds the expression to the message."""


def _parse_field(text: str, spec: _Field) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise _FieldError(
                f"{spec.name} item {item!r} is not valid: expected *, a value, a range a-b, "
                "or a step */n or a-b/n"
            )
        step = 1
        if match["step"] is not None:
            digits = match["step"]
            if not (digits.isascii() and digits.isdigit()):
                raise _FieldError(f"{spec.name} step {digits!r} is not a number")
            step = int(digits) if len(digits) <= 9 else 10**9  # a step past the range is allowed
            if step < 1:
                raise _FieldError(f"{spec.name} step must be >= 1")
        if match["star"]:
            low, high = spec.low, spec.high
            if spec.name == "day-of-week":
                high = 6  # '*' means 0-6; 7 would only repeat Sunday
        else:
            low = _value(match["lo"], spec)
            if match["hi"] is not None:
                high = _value(match["hi"], spec)
                if low > high:
                    raise _FieldError(
                        f"{spec.name} range {match['lo']}-{match['hi']} is reversed: "
                        f"the start must not be after the end"
                    )
            else:
                high = spec.high if match["step"] is not None else low  # 'a/n' means 'a-max/n'
        values.update(range(low, high + 1, step))
    return values


def _value(token: str, spec: _Field) -> int:
    if token.isdigit():
        value = int(token) if len(token) <= 9 else spec.high + 1
        if not spec.low <= value <= spec.high:
            raise _FieldError(f"{spec.name} value {token} is out of range {spec.low}-{spec.high}")
        return value
    if token.lower() in spec.names:
        return spec.names.index(token.lower()) + spec.name_base
    raise _FieldError(f"{spec.name} value {token!r} is not valid: use {spec.allowed()}")


def _instant(wall: datetime, tz: tzinfo) -> float:
    """Epoch seconds at which the naive wall time `wall` in `tz` fires (see the module doc)."""
    first = wall.replace(tzinfo=tz, fold=0).timestamp()  # with the offset before a transition
    second = wall.replace(tzinfo=tz, fold=1).timestamp()  # with the offset after it
    if first <= second:  # exists once, or twice and `first` is the first occurrence
        return first
    # A gap: `second` lies before the transition and `first` after it. Find the transition,
    # the first instant after the gap, by bisecting whole seconds (tz data changes on seconds).
    lo, hi = math.floor(second), math.ceil(first)
    offset_before = datetime.fromtimestamp(lo, tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == offset_before:
            lo = mid
        else:
            hi = mid
    return float(hi)
