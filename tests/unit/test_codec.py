"""JSON encoding of payloads, and capping of error messages."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid

import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait._codec import MESSAGE_LIMIT, EncodeError, cap_message, dumps, loads


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
    u = uuid.UUID(int=1)
    assert loads(dumps([u, {1: "non-str key"}])) == [str(u), {"1": "non-str key"}]
    assert loads(dumps({3, 1})) in ([1, 3], [3, 1])


def test_round_trip_of_plain_json() -> None:
    value = {"a": [1, 2.5, None, True, "é"], "b": {}}
    assert loads(dumps(value)) == value
    assert loads(dumps(value).decode()) == value
    assert loads(None) is None


class Opaque:
    pass


@pytest.mark.parametrize("value", [Opaque(), {"k": Opaque()}, [lambda: 1]])
def test_unencodable_object_raises_encode_error(value: object) -> None:
    with pytest.raises(EncodeError) as info:
        dumps(value)
    assert isinstance(info.value, ValueError)
    assert "not JSON serializable" in str(info.value)
    assert re.search("Opaque|function", str(info.value))


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
