"""Stores: where runs live. `open_store(url)` picks one by URL scheme."""

from __future__ import annotations

from .._errors import StoreError
from .protocol import Store

DEFAULT_URL = "sqlite:///plait.db"  # the store an Engine and the command line open by default
SCHEMES = (
    "memory://, sqlite:///relative.db, sqlite:////absolute/path.db, "
    "postgresql://user@host:5432/dbname, nats://host:4222?namespace=NAME"
)


def open_store(url: str, *, create: bool = True, read_only: bool = False) -> Store:
    """The store for a URL; nothing is connected or created until `open()`. With
    `create=False`, `open()` refuses a store that does not exist yet (no SQLite file, no plait
    tables in the PostgreSQL schema) with StoreError, and creates nothing. `read_only` (which
    implies `create=False`): nothing is ever written, not even a migration; a write raises
    StoreError. A memory store is always new and empty: both are moot there."""
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
    raise StoreError(f"unsupported store URL {url!r}: use one of {SCHEMES}")


__all__ = ["Store", "open_store"]
