"""A store from outside plait, as a store author writes one, for the contract suite to run on
(tests/stores/test_outside.py): it keeps everything in a SQLite file, through plait's SQLite
store, behind a class of its own and a URL scheme of its own. Its factory is what
PLAIT_CONTRACT_STORE names: `tests.contract.outside_store:make`."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from plait.stores.sqlite import SQLiteStore


class WrappedStore:
    """Every operation of the protocol, handed to a SQLite store (what `__getattr__` finds)."""

    def __init__(self, url: str, inner: SQLiteStore) -> None:
        self.url = url
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":  # not set yet (a copy being made): no delegation
            raise AttributeError(name)
        return getattr(self._inner, name)


def make(url: str, *, create: bool = True, read_only: bool = False) -> WrappedStore:
    """The store of a `contract-outside:///dir/?options` URL: the file plait.db in that
    directory, with the options of a SQLite URL (blob_threshold=…)."""
    parts = urlsplit(url)
    inner_url = f"sqlite:///{Path(parts.path) / 'plait.db'}"
    if parts.query:
        inner_url += f"?{parts.query}"
    inner = SQLiteStore(inner_url, create=create, read_only=read_only)
    return WrappedStore(url, inner)
