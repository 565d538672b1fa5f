"""A run's identity beside its id: a name, labels and metadata given at start.

- `name`: a human name ("nightly import of 2026-12-07"), shown by lists and `runs show`.
- `labels`: string keys to string values ({"customer": "42"}); run lists filter by them, every
  label given having to match (`matches`). Bounded, so that a label is an index entry and never
  a payload: at most MAX_LABELS, keys of 1-MAX_KEY characters of letters, digits and `_ . - /`,
  values of at most MAX_VALUE characters.
- `metadata`: any JSON object of at most MAX_METADATA bytes, kept with the run as it is and
  never filtered on (what a label cannot hold).

Each is checked here before anything is written (InputError naming what is wrong); the stores
keep them as the run's `name`, `labels` and `metadata` (JSON bytes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .. import _codec
from .._errors import InputError

MAX_NAME = 200
MAX_LABELS = 32
MAX_KEY = 63
MAX_VALUE = 200
MAX_METADATA = 16 * 1024

_KEY = re.compile(r"[A-Za-z0-9_./\-]+")


def check_name(what: str, name: object) -> str | None:
    """A run's name, checked (None: none)."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise InputError(f"{what}: name must be a string, got {type(name).__name__} {name!r}")
    if not name.strip() or len(name) > MAX_NAME:
        raise InputError(
            f"{what}: name must be 1-{MAX_NAME} characters, not blank, got {len(name)}"
        )
    return name


def check_labels(what: str, labels: object) -> dict[str, str] | None:
    """Labels checked, as a new dict (None or empty: no labels)."""
    if labels is None:
        return None
    if not isinstance(labels, Mapping):
        raise InputError(
            f"{what}: labels must be a dict of strings to strings, got {type(labels).__name__}"
        )
    if len(labels) > MAX_LABELS:
        raise InputError(f"{what}: at most {MAX_LABELS} labels, got {len(labels)}")
    checked: dict[str, str] = {}
    for key, value in labels.items():
        check_label_key(what, key)
        if not isinstance(value, str):
            raise InputError(
                f"{what}: label {key!r} must be a string, got {type(value).__name__} {value!r} "
                f"(labels are strings: write {str(value)!r})"
            )
        if len(value) > MAX_VALUE:
            raise InputError(
                f"{what}: label {key!r} is {len(value)} characters long; at most {MAX_VALUE}"
            )
        checked[key] = value
    return checked or None


def check_label_key(what: str, key: object) -> str:
    said = f"{what}: " if what else ""
    if not isinstance(key, str):
        raise InputError(f"{said}label keys must be strings, got {type(key).__name__} {key!r}")
    if len(key) > MAX_KEY or not _KEY.fullmatch(key):
        raise InputError(
            f"{said}invalid label key {key!r}: use 1-{MAX_KEY} ASCII letters, digits or any "
            "of _ . - /"
        )
    return key


def check_metadata(what: str, metadata: object) -> bytes | None:
    """Metadata checked, as its JSON (None or empty: none): a JSON object, not too long."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InputError(
            f"{what}: metadata must be a dict (a JSON object), got {type(metadata).__name__}"
        )
    try:
        encoded = _codec.dumps(dict(metadata))
    except _codec.EncodeError as exc:
        raise InputError(f"{what}: metadata is not JSON: {exc}") from None
    if len(encoded) > MAX_METADATA:
        raise InputError(
            f"{what}: metadata is {len(encoded)} bytes of JSON; at most {MAX_METADATA} "
            "(keep large data in the run input or an artifact)"
        )
    return encoded if metadata else None


def matches(labels: Mapping[str, str] | None, wanted: Mapping[str, str] | None) -> bool:
    """Whether a run of `labels` has every label of `wanted` (None or empty: any run)."""
    if not wanted:
        return True
    if not labels:
        return False
    return all(labels.get(k) == v for k, v in wanted.items())


def parse_label(text: str) -> tuple[str, str]:
    """`key=value` (the command line's and query strings' form of a label), checked."""
    key, sep, value = text.partition("=")
    if not sep:
        raise InputError(f"invalid label {text!r}: write it as key=value")
    check_label_key("", key)
    if len(value) > MAX_VALUE:
        raise InputError(f"label {key!r} is {len(value)} characters long; at most {MAX_VALUE}")
    return key, value
