"""Stores: where runs live. `open_store(url)` picks one by URL scheme: plait's own (memory,
sqlite, postgresql, nats), or a third party's, registered with `register_store` or through the
entry point group `plait.stores` (docs/stores.md). `check_store` refuses an object that lacks
some operation of the protocol, naming each."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

from .._errors import StoreError
from .protocol import Store

DEFAULT_URL = "sqlite:///plait.db"  # the store an Engine and the command line open by default
SCHEMES = (
    "memory://, sqlite:///relative.db, sqlite:////absolute/path.db, "
    "postgresql://user@host:5432/dbname, nats://host:4222?namespace=NAME"
)
BUILT_IN = ("memory", "sqlite", "postgresql", "postgres", "nats", "tls")
ENTRY_POINTS = "plait.stores"  # the entry point group of third-party stores: scheme = factory

# A third-party store: called as factory(url, create=…, read_only=…), it returns the store for
# that URL, connecting to nothing until `open()` (as `open_store` promises).
StoreFactory = Callable[..., Any]

_registered: dict[str, StoreFactory] = {}
_lock = threading.Lock()


def register_store(scheme: str, factory: StoreFactory) -> None:
    """Make `open_store` (so `Engine(url)` and `--db`) open URLs `scheme://…` with `factory`,
    in this process (an installed package does the same with an entry point of the group
    `plait.stores`). A scheme of plait's own stores cannot be taken; registering a scheme
    again replaces its factory."""
    if not isinstance(scheme, str) or not scheme.isascii() or not _is_scheme(scheme):
        raise StoreError(
            f"invalid store URL scheme {scheme!r}: use a letter, then letters, digits, + - or ."
        )
    if scheme.lower() in BUILT_IN:
        raise StoreError(f"the store URL scheme {scheme!r} is plait's own; choose another")
    if not callable(factory):
        raise StoreError(
            f"the factory of store scheme {scheme!r} must be callable, got {factory!r}"
        )
    with _lock:
        _registered[scheme.lower()] = factory


def _is_scheme(text: str) -> bool:
    return bool(text) and text[0].isalpha() and all(c.isalnum() or c in "+-." for c in text)


def _factory(scheme: str) -> StoreFactory | None:
    """The factory of a third-party scheme: registered here, or an installed entry point."""
    with _lock:
        found = _registered.get(scheme)
    if found is not None:
        return found
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINTS):
        if entry.name.lower() == scheme:
            try:
                loaded = entry.load()
            except Exception as exc:
                raise StoreError(
                    f"the store of scheme {scheme!r} (entry point {entry.value!r} of group "
                    f"{ENTRY_POINTS!r}) cannot be loaded: {type(exc).__name__}: {exc}"
                ) from None
            if not callable(loaded):
                raise StoreError(
                    f"entry point {entry.value!r} of group {ENTRY_POINTS!r} is not a store "
                    f"factory (a callable), got {loaded!r}"
                )
            return loaded  # type: ignore[no-any-return]  # a callable, checked above
    return None


def third_party_schemes() -> list[str]:
    """The schemes registered here or installed, for messages."""
    from importlib.metadata import entry_points

    with _lock:
        names = set(_registered)
    names.update(e.name.lower() for e in entry_points(group=ENTRY_POINTS))
    return sorted(names)


# What a store object must have: the protocol's operations and attributes, by name.
OPERATIONS = tuple(
    name for name, value in vars(Store).items() if not name.startswith("_") and callable(value)
)
ATTRIBUTES = ("url", "capabilities", "blob_threshold")


def check_store(store: object) -> Store:
    """`store`, if it has every operation (callable) and attribute of the `Store` protocol;
    StoreError naming each one missing otherwise (nothing is called)."""
    if isinstance(store, str | bytes) or store is None:
        raise StoreError(f"expected a store object, got {type(store).__name__} {store!r:.80}")
    kind = type(store).__name__
    missing = [name for name in ATTRIBUTES if not hasattr(store, name)]
    missing += [name for name in OPERATIONS if not callable(getattr(store, name, None))]
    if missing:
        raise StoreError(
            f"{kind} is not a plait store: it lacks {len(missing)} of the protocol's "
            f"operations and attributes: {', '.join(missing)} (docs/stores.md says what each "
            "must do)"
        )
    not_async = [
        name
        for name in OPERATIONS
        if inspect.iscoroutinefunction(getattr(Store, name)) and not _async(getattr(store, name))
    ]
    if not_async:
        raise StoreError(
            f"{kind} is not a plait store: these operations must be async (async def): "
            f"{', '.join(not_async)}"
        )
    url, capabilities = getattr(store, "url"), getattr(store, "capabilities")  # noqa: B009
    if not isinstance(url, str) or not isinstance(capabilities, frozenset | set):
        raise StoreError(
            f"{kind} is not a plait store: its url must be a string and its capabilities a "
            f"frozenset of names, got {url!r} and {capabilities!r}"
        )
    return store  # type: ignore[return-value]  # checked: it has what the protocol asks


def _async(operation: Any) -> bool:
    """An operation that returns an awaitable: an async def (or a wrapper marked as one)."""
    return inspect.iscoroutinefunction(operation) or inspect.iscoroutinefunction(
        getattr(operation, "__func__", None)
    )


def open_store(url: str, *, create: bool = True, read_only: bool = False) -> Store:
    """The store for a URL; nothing is connected or created until `open()`. With
    `create=False`, `open()` refuses a store that does not exist yet (no SQLite file, no plait
    tables in the PostgreSQL schema) with StoreError, and creates nothing. `read_only` (which
    implies `create=False`): nothing is ever written, not even a migration; a write raises
    StoreError. A memory store is always new and empty: both are moot there. A scheme of a
    third-party store (`register_store`, entry points `plait.stores`) is opened by its factory,
    and what it returns is checked (`check_store`)."""
    if not isinstance(url, str):
        raise StoreError(f"store URL must be a string, got {url!r}")
    if url == "memory://" or url.startswith("memory://"):
        from .memory import MemoryStore

        return MemoryStore(url)
    if url.startswith("sqlite://"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url, create=create, read_only=read_only)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(
                f"the PostgreSQL store needs psycopg 3 and psycopg-pool ({exc}); install them "
                "with: pip install 'plait[postgres]'"
            ) from None
        return PostgresStore(url, create=create, read_only=read_only)
    if url.startswith(("nats://", "tls://")):
        try:
            from .nats import NatsStore
        except ImportError as exc:
            raise StoreError(
                f"the NATS store needs nats-py ({exc}); install it with: pip install 'plait[nats]'"
            ) from None
        return NatsStore(url, create=create, read_only=read_only)
    scheme, sep, _ = url.partition("://")
    factory = _factory(scheme.lower()) if sep and _is_scheme(scheme) else None
    if factory is not None:
        try:
            made = factory(url, create=create, read_only=read_only)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(
                f"the store of scheme {scheme!r} could not be made for this URL: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        return check_store(made)
    others = third_party_schemes()
    more = f"; installed: {', '.join(s + '://' for s in others)}" if others else ""
    raise StoreError(f"unsupported store URL {url!r}: use one of {SCHEMES}{more}")


__all__ = ["Store", "check_store", "open_store", "register_store"]
