"""JSON in and out: the one rule for which Python values become which JSON (never pickle).

Every value plait stores goes through `dumps`: step outputs, run input, records, signals, fork
overrides, spawned steps' inputs, schedules' input, `defaults=` and artifact metadata. The rule
(README: "Python values and JSON"):

    Python value                          JSON                      a step receives
    None, bool, str                       null, true/false, string  the same
    int, within -2**63 .. 2**64-1         number                    int
    float, finite                         number                    float
    dict with str keys                    object                    dict
    list; tuple (NamedTuple too)          array                     list (tuple if annotated so)
    set, frozenset of str or of numbers   array, sorted             list (set if annotated so)
    enum.Enum                             its value, encoded        the value (enum if annotated)
    datetime, date, time without tzinfo   ISO 8601 string           str (datetime if annotated…)
    uuid.UUID                             string                    str (UUID if annotated)
    decimal.Decimal, finite               string, exactly: "1.10"   str (Decimal if annotated)
    dataclass                             object of its fields      dict (the dataclass if
                                          (not those named _…)      annotated)
    pydantic model                        model_dump(mode="json")   dict (the model if annotated)
    numpy array or scalar                 array, number             list, number

Anything else is refused with an `EncodeError` that names the type and where it is inside the
value, as a JSON pointer ("float nan at /items/3/price: JSON has no NaN or infinity"): NaN and
±infinity, larger integers, dict keys that are not str, sets of anything else (no order to sort
them by), bytes, paths, timedeltas, other objects, strings that are not valid UTF-8, values nested
deeper than 254 levels. Every conversion above is deterministic: the same value always gives the
same bytes, in every process, so replay and diff see no change that is not there. Inside a
pydantic model, pydantic's own JSON rules apply (it keeps a set's iteration order, for one).

`dumps` is on the path of every step, so the rule costs little in the common case: orjson
encodes the value, calling `_default` only for the types it does not know. orjson writes NaN and
infinities as `null`, so an output holding a `null` is encoded again by pydantic-core, which
writes them as NaN and Infinity (`_may_hold_nonfinite`). The Python walk (`_walk`), which knows
where a problem is, runs only when orjson refuses a value or that second look finds a NaN.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic_core import to_json, to_jsonable_python

MESSAGE_LIMIT = 4096  # bytes of an error message kept on the step record

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson encodes
_DEPTH = 254  # orjson refuses deeper nesting
_NO_NAN = "JSON has no NaN or infinity"
_U = ord("u")  # a byte of "null"


class EncodeError(ValueError):
    """A value cannot be represented as JSON; the message names its type and where it is."""


class DecodeError(ValueError):
    """JSON text given by a user repeats a key in an object, or holds NaN or Infinity."""


def dumps(value: Any) -> bytes:
    """`value` as JSON bytes, by the rule above; EncodeError if it has no JSON form."""
    if value is None:
        return b"null"
    try:
        data = orjson.dumps(value, default=_default, option=_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise EncodeError(_explain(value, strings=True) or str(exc)) from None
    # orjson writes NaN and infinities as null: if there is a null, was it one of them? (The
    # search for the byte "u" is a memchr, and output without one skips the slower search for
    # "null"; `int in bytes` and `bytes.find` avoid the buffer set-up of `bytes in bytes`.)
    if _U in data and data.find(b"null") >= 0 and _may_hold_nonfinite(value):
        problem = _explain(value, strings=False)
        if problem is not None:
            raise EncodeError(problem)
    return data


def loads(data: bytes | str | None) -> Any:
    if data is None:
        return None
    if isinstance(data, bytes) and type(data) is not bytes:  # a subclass (a recorded input
        return orjson.loads(memoryview(data))  # marking a part, `core.blobs.Spliced`): a view
    return orjson.loads(data)


def parse(text: str) -> Any:
    """JSON text from a user (`--input`): like `loads`, but a key repeated in one object, and
    the NaN and Infinity that Python's json module accepts, raise DecodeError rather than lose
    data. Text that is not JSON at all raises json.JSONDecodeError (a ValueError too)."""
    return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DecodeError(f"key {key!r} appears twice in one object")
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not JSON ({_NO_NAN})")


def cap_message(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """Cut a message to at most `limit` UTF-8 bytes, saying that it was cut."""
    raw = message.encode("utf-8", "replace")
    if len(raw) <= limit:
        return message
    room = max(limit - len(f"… [{len(raw)} more bytes]".encode()), 0)  # the longest marker
    keep = raw[:room].decode("utf-8", "ignore")  # drops a character cut in the middle
    return f"{keep}… [{len(raw) - len(keep.encode())} more bytes]"


# -- the rule for what orjson does not know (fast path) -------------------------------------------


def _default(value: Any) -> Any:
    """orjson's hook: the JSON-ready form of a type it does not encode itself. A TypeError sends
    the value to `_explain` (the walk below must agree with this function)."""
    if isinstance(value, set | frozenset):
        if _sortable(value):
            return sorted(value)
    elif isinstance(value, tuple):  # a NamedTuple or another tuple subclass
        return list(value)
    elif isinstance(value, float):  # a float subclass
        return float(value)
    elif isinstance(value, Decimal):
        if value.is_finite():
            return str(value)
    elif isinstance(value, BaseModel):
        plain = to_jsonable_python(value)  # NaN stays NaN here (pydantic's JSON would say null)
        if _all_finite(plain):
            return plain
    elif _is_numpy(value):  # what OPT_SERIALIZE_NUMPY leaves: non-contiguous arrays, …
        return value.tolist()
    raise TypeError


def _may_hold_nonfinite(value: Any) -> bool:
    """A quick look before the walk: pydantic-core's encoder, in Rust, writes NaN and infinities
    as the NaN and Infinity of JavaScript. (A string holding those words sends the value to the
    walk too, which finds nothing. pydantic models inside are encoded by their own config, so
    `_default` looks at them itself.)"""
    try:
        text = to_json(value, inf_nan_mode="constants", fallback=_numpy_fallback)
    except Exception:  # a type pydantic-core does not know: let the walk look
        return True
    return text.find(b"NaN") >= 0 or text.find(b"Infinity") >= 0


def _all_finite(plain: Any) -> bool:
    """No NaN or infinity in a pydantic model's JSON-ready fields: `dumps`'s own check, which
    cannot see into a model (pydantic-core encodes one by its config, NaN as null)."""
    try:
        data = orjson.dumps(plain, option=_OPTIONS)
    except TypeError:
        return True  # the encoding of the whole value refuses it, and `_explain` says why
    if _U in data and data.find(b"null") >= 0 and _may_hold_nonfinite(plain):
        return _explain(plain, strings=False) is None
    return True


def _numpy_fallback(value: Any) -> Any:
    if _is_numpy(value):
        return value.tolist()
    raise TypeError


def _sortable(items: set[Any] | frozenset[Any]) -> bool:
    """Strings (str enums too) or numbers (not booleans): a set whose order can be decided."""
    return all(isinstance(x, str) for x in items) or all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in items
    )


def _is_numpy(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "tolist")


# -- finding and naming a problem (slow path) ------------------------------------------------------


class _Bad(Exception):
    """A value with no JSON form: what it is, why, and the path to it (innermost first)."""

    def __init__(self, what: str, why: str) -> None:
        self.what, self.why = what, why
        self.path: list[str] = []


def _explain(value: Any, *, strings: bool) -> str | None:
    """The first thing in `value` that has no JSON form, in words with its JSON pointer; None if
    there is none. `strings`: also check that strings are valid UTF-8 (orjson did not)."""
    try:
        _walk(value, 0, strings)
    except _Bad as bad:
        if not bad.path:
            return f"{bad.what}: {bad.why}"
        parts = [p.replace("~", "~0").replace("/", "~1") for p in reversed(bad.path)]
        if len(parts) > 12:
            parts = [*parts[:6], "…", *parts[-5:]]
        return f"{bad.what} at /{'/'.join(parts)}: {bad.why}"
    return None


def _walk(value: Any, depth: int, strings: bool) -> None:
    t = type(value)
    if t is str:
        if strings:
            _utf8(value)
    elif t is float:
        if value - value:  # nan for NaN and ±inf (true), 0.0 for every finite float
            raise _Bad(f"float {value!r}", _NO_NAN)
    elif t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise _Bad("int", "integers must lie within -2**63 .. 2**64-1 (64 bits)")
    elif value is None or t is bool:
        pass
    elif depth >= _DEPTH:
        raise _Bad(f"a value nested deeper than {_DEPTH} levels", "does it contain itself?")
    elif t is dict:
        _walk_dict(value, depth, strings)
    elif t is list or t is tuple:
        _walk_items(value, depth, strings)
    else:
        _walk_other(value, depth, strings)


def _walk_dict(value: dict[Any, Any], depth: int, strings: bool) -> None:
    for key, item in value.items():
        if type(key) is not str:
            raise _Bad(
                f"dict key {_short(key)} ({type(key).__name__})", "JSON object keys must be str"
            )
        try:
            _walk(item, depth + 1, strings)
        except _Bad as bad:
            bad.path.append(key)
            raise


def _walk_items(value: Any, depth: int, strings: bool) -> None:
    for i, item in enumerate(value):
        try:
            _walk(item, depth + 1, strings)
        except _Bad as bad:
            bad.path.append(str(i))
            raise


def _walk_other(value: Any, depth: int, strings: bool) -> None:
    """The types that are not plain JSON, in the order orjson and `_default` try them."""
    if isinstance(value, enum.Enum):
        _walk(value.value, depth, strings)
    elif isinstance(value, str):
        if strings:
            _utf8(value)
    elif isinstance(value, int):
        _walk(int(value), depth, strings)
    elif isinstance(value, float):
        _walk(float(value), depth, strings)
    elif isinstance(value, dict):
        _walk_dict(value, depth, strings)
    elif isinstance(value, list | tuple):
        _walk_items(value, depth, strings)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _walk_dict(_fields(value), depth, strings)
    elif isinstance(value, dt.time) and value.tzinfo is not None:
        raise _Bad("time with a tzinfo", "pass a datetime, or a time without tzinfo")
    elif isinstance(value, dt.date | dt.time | uuid.UUID):
        pass
    elif isinstance(value, set | frozenset):
        if not _sortable(value):
            raise _Bad(
                type(value).__name__,
                "a set becomes a sorted array, so its items must be all str or all numbers",
            )
        for item in value:
            if type(item) is float and item - item:
                raise _Bad(f"float {item!r} in a {type(value).__name__}", _NO_NAN)
            _walk(item, depth + 1, strings)  # an int beyond 64 bits, a string to check
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise _Bad(f"Decimal {value}", _NO_NAN)
    elif isinstance(value, BaseModel):
        try:
            plain = to_jsonable_python(value)
        except Exception as exc:  # pydantic's own error types, for a field it cannot encode
            raise _Bad(type(value).__name__, f"pydantic cannot encode it: {exc}") from None
        _walk(plain, depth, strings)
    elif _is_numpy(value):
        _walk(value.tolist(), depth, strings)
    else:
        raise _Bad(f"type {type(value).__qualname__}", f"not JSON serializable{_hint(value)}")


def _fields(value: Any) -> dict[str, Any]:
    """A dataclass's fields as orjson encodes them: those whose name does not start with _."""
    kind = type(value)
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(value) if not f.name.startswith("_"))
        _FIELD_NAMES[kind] = names
    return {name: getattr(value, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad("str", "not valid UTF-8 (it holds a lone surrogate)") from None


def _hint(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return ": decode them to str, encode them in base64, or save them as an artifact"
    if isinstance(value, dt.timedelta):
        return ": pass a number of seconds (.total_seconds())"
    if hasattr(value, "__fspath__"):
        return ": pass str(path)"
    return " (give a JSON value, a dataclass or a pydantic model)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
