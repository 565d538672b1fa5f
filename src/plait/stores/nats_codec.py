"""How the NATS store writes plait's rows as KV entries: key names and values.

Keys are dot-separated tokens (`run.<id>`, `step.<run>.<name>`, `ev.<run>.<seq>`, …); a user's
name becomes a token by keeping letters, digits, `_`, `-` and `/`, and writing every other byte
of its UTF-8 as `=XX` (so `.`, `*`, `>` and spaces can never reach a subject). Values are JSON
of the row's fields, bytes as text ({"s": …}) or, when not UTF-8, base64 ({"b": …}): plain data,
readable with `nats kv get`.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import functools
import re
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, get_args, get_origin

import orjson

T = TypeVar("T")

_PLAIN = re.compile(r"[A-Za-z0-9_/-]")
_ESCAPE = re.compile(r"=([0-9A-F]{2})")


def token(name: str) -> str:
    """A name as one token of a KV key (see the module docstring); reversible by `name_of`."""
    if not name:
        return "="
    if all(_PLAIN.match(c) for c in name):
        return name
    out = []
    for c in name:
        if _PLAIN.match(c):
            out.append(c)
        else:
            out.extend(f"={b:02X}" for b in c.encode())
    return "".join(out)


def name_of(tok: str) -> str:
    if tok == "=":
        return ""
    if "=" not in tok:
        return tok
    raw = bytearray()
    i = 0
    while i < len(tok):
        if tok[i] == "=":
            raw.append(int(tok[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(tok[i].encode())
            i += 1
    return raw.decode()


def key(*names: str) -> str:
    """A KV key of a kind (the first name, never escaped) and names."""
    return ".".join((names[0], *(token(n) for n in names[1:])))


def split(k: str) -> list[str]:
    """A key's kind and names, unescaped."""
    kind, *rest = k.split(".")
    return [kind, *(name_of(t) for t in rest)]


_SIMPLE = (str, int, float, bool)


def plain(value: Any) -> Any:
    """A row (a dataclass, or plain data holding some) as JSON-able data."""
    if value is None or type(value) in _SIMPLE:
        return value
    if isinstance(value, bytes):
        try:  # JSON payloads are UTF-8 text: kept as such, a third shorter than base64
            return {"s": value.decode()}
        except UnicodeDecodeError:
            return {"b": base64.b64encode(value).decode()}
    names = _field_names(type(value))  # type: ignore[arg-type]  # classes are hashable
    if names is not None:
        out = {}
        for name in names:
            v = getattr(value, name)
            out[name] = v if v is None or type(v) in _SIMPLE else plain(v)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


@functools.cache
def _field_names(cls: type) -> tuple[str, ...] | None:
    if not dataclasses.is_dataclass(cls):
        return None
    return tuple(f.name for f in dataclasses.fields(cls))


def encode(value: Any) -> bytes:
    """A row (a dataclass, or plain data holding some) as JSON bytes."""
    return orjson.dumps(plain(value))


def decode(cls: type[T], data: bytes) -> T:
    """The row of type `cls` that `encode` wrote."""
    return build(cls, orjson.loads(data))


def build(cls: type[T], value: Any) -> T:
    """The row of type `cls` from plain data (`plain`'s)."""
    decoder: Callable[[Any], Any] = _decoder(cls)  # type: ignore[arg-type]  # classes hash
    return typing.cast(T, decoder(value))


def _same(value: Any) -> Any:
    return value


def _bytes(value: Any) -> bytes:
    return value["s"].encode() if "s" in value else base64.b64decode(value["b"])


@functools.cache
def _decoder(tp: Any) -> Callable[[Any], Any]:
    """A function from plain data to a value of type `tp` (built once per type)."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        inner = _decoder(options[0])
        return lambda v: None if v is None else inner(v)
    if tp is bytes:
        return _bytes
    if tp is float:
        return lambda v: None if v is None else float(v)
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _decoder(args[0])
            return lambda v: tuple(item(x) for x in v)
        items = [_decoder(a) for a in args]
        return lambda v: tuple(f(x) for f, x in zip(items, v, strict=True))
    if origin is dict:
        return dict
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = {name: _decoder(hint) for name, hint in hints.items()}
        cls = tp

        def build_row(v: Any) -> Any:
            if v is None:
                return None
            return cls(**{k: fields[k](x) for k, x in v.items() if k in fields})

        return build_row
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        enum_type = tp
        return lambda v: None if v is None else enum_type(v)
    return _same
