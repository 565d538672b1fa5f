"""JSON encoding of payloads, and capping of error messages."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import os
import re
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import numpy
import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait import _codec
from plait._codec import MESSAGE_LIMIT, DecodeError, EncodeError, cap_message, dumps, loads, parse


class Item(pydantic.BaseModel):
    sku: str
    at: dt.datetime


@dataclasses.dataclass
class Basket:
    items: list[Item]
    note: str | None = None


WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_pydantic_models_dataclasses_and_datetimes_encode() -> None:
    basket = Basket([Item(sku="a", at=WHEN)])
    decoded = loads(dumps(basket))
    assert decoded["note"] is None
    assert decoded["items"][0]["sku"] == "a"
    assert dt.datetime.fromisoformat(decoded["items"][0]["at"]) == WHEN
    assert Item.model_validate(loads(dumps(Item(sku="b", at=WHEN)))) == Item(sku="b", at=WHEN)
    assert loads(dumps({"d": dt.date(2026, 1, 2), "t": dt.datetime(2026, 1, 2, 3)})) == {
        "d": "2026-01-02",
        "t": "2026-01-02T03:00:00",
    }


class Colour(enum.Enum):
    RED = "red"
    PAIR = (1, 2)


class Size(enum.StrEnum):
    M = "m"
    L = "l"


class Level(enum.IntEnum):
    HIGH = 2


class Point(NamedTuple):
    x: int
    y: int


class Ratio(float):
    pass


@dataclasses.dataclass
class Private:
    shown: int
    _hidden: int = 0


class Noted(pydantic.BaseModel):
    note: str | None = None
    x: float = 1.5


class Measured(pydantic.BaseModel):
    value: float


class NanColour(enum.Enum):
    NAN = math.nan


# The README's table "Python values and JSON", row by row.
TABLE = [
    (None, b"null"),
    ([True, False, "é"], '[true,false,"é"]'.encode()),
    ([-(2**63), 2**64 - 1], b"[-9223372036854775808,18446744073709551615]"),
    ([1.5, -0.0, 1e300], b"[1.5,-0.0,1e+300]"),
    ({"a": {"b": []}}, b'{"a":{"b":[]}}'),
    ((1, "two"), b'[1,"two"]'),
    (Point(1, 2), b"[1,2]"),
    ({"c", "a", "b"}, b'["a","b","c"]'),
    (frozenset({3, 1.5, -2}), b"[-2,1.5,3]"),
    ({Size.L, Size.M}, b'["l","m"]'),  # str enums sort as their strings
    ({Level.HIGH, 1}, b"[1,2]"),
    ({"tags": set()}, b'{"tags":[]}'),
    ([Colour.RED, Colour.PAIR], b'["red",[1,2]]'),
    (WHEN, b'"2026-01-02T03:04:05+00:00"'),
    ([dt.date(2026, 1, 2), dt.time(3, 4)], b'["2026-01-02","03:04:00"]'),
    (uuid.UUID(int=1), b'"00000000-0000-0000-0000-000000000001"'),
    ([Decimal("1.10"), Decimal("1E+2")], b'["1.10","1E+2"]'),
    (Private(1, 2), b'{"shown":1}'),
    (Item(sku="a", at=WHEN), b'{"sku":"a","at":"2026-01-02T03:04:05Z"}'),
    ({"m": [Noted(), Noted(x=2.5)]}, b'{"m":[{"note":null,"x":1.5},{"note":null,"x":2.5}]}'),
    (Ratio(0.5), b"0.5"),
    (numpy.array([[1.5, 2.0]]), b"[[1.5,2.0]]"),
    (numpy.array([[1, 2]])[:, ::-1], b"[[2,1]]"),  # not contiguous: through tolist()
    (numpy.float32(0.25), b"0.25"),
]


@pytest.mark.parametrize(("value", "encoded"), TABLE)
def test_python_values_become_json_by_the_documented_rule(value: object, encoded: bytes) -> None:
    assert dumps(value) == encoded


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "float nan: JSON has no NaN or infinity"),
        ({"items": [{"price": 1}, {"price": math.inf}]}, "float inf at /items/1/price: "),
        ([None, -math.inf], "float -inf at /1: JSON has no NaN or infinity"),
        ({"a/b~c": [math.nan]}, "float nan at /a~1b~0c/0: "),  # JSON pointer escapes
        ((1, (2, math.nan)), "float nan at /1/1: "),
        ({"note": None, "x": 1.5, "s": "NaN and Infinity"}, None),
        ({"b": Private(math.nan)}, "float nan at /b/shown: "),
        ({"m": Measured(value=math.nan)}, "float nan at /m/value: "),
        ({"s": {1.0, math.inf}}, "float inf in a set at /s: "),
        ({"d": Decimal("NaN")}, "Decimal NaN at /d: JSON has no NaN or infinity"),
        ({"d": Decimal("-Infinity")}, "Decimal -Infinity at /d: "),
        ([Ratio(math.nan)], "float nan at /0: "),
        ({"e": NanColour.NAN}, "float nan at /e: "),
        ({"arr": numpy.array([1.0, numpy.nan])}, "float nan at /arr/1: "),
        ({"x": numpy.float64(math.inf)}, "float inf at /x: "),
    ],
)
def test_nan_and_infinities_are_refused_naming_where(value: object, message: str | None) -> None:
    if message is None:  # the control: a value with nulls and no NaN encodes
        assert loads(dumps(value))["note"] is None
        return
    with pytest.raises(EncodeError) as info:
        dumps(value)
    assert str(info.value).startswith(message), str(info.value)


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            Opaque(),
            "type Opaque: not JSON serializable (give a JSON value, a dataclass or a "
            "pydantic model)",
        ),
        ({"k": Opaque()}, "type Opaque at /k: not JSON serializable"),
        ([lambda: 1], "type function at /0: not JSON serializable"),
        ({"counts": {1: "a"}}, "dict key 1 (int) at /counts: JSON object keys must be str"),
        ({Colour.RED: 1}, "dict key <Colour.RED: 'red'> (Colour): JSON object keys must be str"),
        ({"n": [2**64]}, "int at /n/0: integers must lie within -2**63 .. 2**64-1 (64 bits)"),
        ({"n": -(2**63) - 1}, "int at /n: integers must lie within"),
        (
            {"t": {1, "a"}},
            "set at /t: a set becomes a sorted array, so its items must be all str or all numbers",
        ),
        ({"t": frozenset({(1, 2)})}, "frozenset at /t: a set becomes a sorted array"),
        ({"t": {True, False}}, "set at /t: a set becomes a sorted array"),
        (
            {"b": b"\x00"},
            "type bytes at /b: not JSON serializable: decode them to str, encode "
            "them in base64, or save them as an artifact",
        ),
        ({"p": Path("/tmp")}, "type PosixPath at /p: not JSON serializable: pass str(path)"),
        (
            {"t": dt.timedelta(seconds=3)},
            "type timedelta at /t: not JSON serializable: pass a "
            "number of seconds (.total_seconds())",
        ),
        (
            {"t": dt.time(3, tzinfo=dt.UTC)},
            "time with a tzinfo at /t: pass a datetime, or a time without tzinfo",
        ),
        ({"s": "\ud800"}, "str at /s: not valid UTF-8 (it holds a lone surrogate)"),
        ({"g": (x for x in ())}, "type generator at /g: not JSON serializable"),
        ({"n": numpy.array([object()])}, "type object at /n/0: not JSON serializable"),
    ],
)
def test_values_without_a_json_form_are_refused_naming_type_and_path(
    value: object, message: str
) -> None:
    with pytest.raises(EncodeError) as info:
        dumps(value)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(message), str(info.value)


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(EncodeError, match=r"^a value nested deeper than 254 levels at /0/0/"):
        dumps(loop)


def test_sets_encode_the_same_in_every_process() -> None:
    """Hash order differs between processes (PYTHONHASHSEED); the encoding must not."""
    code = "from plait._codec import dumps; print(dumps({'pear', 'apple', 'fig', 'kiwi'}))"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert seen == {'b\'["apple","fig","kiwi","pear"]\'\n'}


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()  # NaN and infinities included
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True


def _as_json(value: object) -> object:
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_json(v) for v in value]
    return value


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_a_value_round_trips_or_is_refused(value: object) -> None:
    if _finite(value):
        assert loads(dumps(value)) == _as_json(value)
    else:
        with pytest.raises(EncodeError, match="JSON has no NaN or infinity"):
            dumps(value)


ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=3)
    | st.decimals()
    | st.uuids()
    | st.datetimes()
    | st.binary(max_size=2)
    | st.sets(st.integers() | st.text(max_size=2) | st.floats(), max_size=3)
    | st.frozensets(st.booleans(), max_size=2),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(st.text(max_size=2) | st.integers(0, 3), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(ANY)
def test_the_walk_that_explains_agrees_with_the_fast_path(value: object) -> None:
    """orjson and `_default` decide; `_explain` must find a problem exactly when they refuse."""
    problem = _codec._explain(value, strings=True)
    if problem is None:
        dumps(value)
    else:
        with pytest.raises(EncodeError) as info:
            dumps(value)
        assert str(info.value) == problem


def test_parse_refuses_duplicate_keys_and_nan() -> None:
    assert parse('{"a": {"b": 1}, "c": [1.5]}') == {"a": {"b": 1}, "c": [1.5]}
    with pytest.raises(DecodeError, match=r"^key 'b' appears twice in one object$"):
        parse('{"a": {"b": 1, "b": 2}}')
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(DecodeError, match=rf"^{constant} is not JSON \(JSON has no NaN"):
            parse(f'{{"x": {constant}}}')
    with pytest.raises(json.JSONDecodeError, match=r"^Expecting value: line 1 column 1"):
        parse("nope")


def test_short_message_unchanged() -> None:
    assert cap_message("boom") == "boom"
    exact = "é" * (MESSAGE_LIMIT // 2)
    assert len(exact.encode()) == MESSAGE_LIMIT
    assert cap_message(exact) == exact


def _check_capped(message: str, limit: int) -> None:
    raw = message.encode("utf-8", "replace")
    capped = cap_message(message, limit)
    if len(raw) <= limit:
        assert capped == message
        return
    assert len(capped.encode()) <= limit
    match = re.fullmatch(r"(?s)(.*)… \[(\d+) more bytes\]", capped)
    assert match, capped[-40:]
    kept, cut = match.group(1), int(match.group(2))
    assert raw.startswith(kept.encode())  # a prefix, no character split or mangled
    assert cut == len(raw) - len(kept.encode())  # says exactly how much was cut
    marker = capped[len(kept) :].encode()
    assert len(kept.encode()) >= limit - len(marker) - 6  # and not much more than needed


@pytest.mark.parametrize("char", ["x", "é", "€", "😀"])
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_long_message_is_capped_without_splitting_a_character(char: str, offset: int) -> None:
    message = "y" * offset + char * 5000
    _check_capped(message, MESSAGE_LIMIT)
    capped = cap_message(message)
    assert len(capped.encode()) <= 4096
    assert "more bytes]" in capped


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=0, max_size=300), st.integers(40, 200))
def test_cap_message_property(message: str, limit: int) -> None:
    _check_capped(message, limit)


def test_cap_message_of_encoding_errors() -> None:
    capped = cap_message("\ud800" * 5000)  # a lone surrogate, as from a bad decode
    assert len(capped.encode()) <= MESSAGE_LIMIT


def test_encoded_payload_is_orjson() -> None:
    assert dumps({"a": 1}) == orjson.dumps({"a": 1})
