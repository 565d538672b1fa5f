"""Opening a PostgreSQL store safely: its URL, driver errors in plain words, and creating or
migrating the schema (under an advisory lock, so processes starting together do it once)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._errors import SchemaVersionError, StoreError
from ..core.blobs import DEFAULT_THRESHOLD, THRESHOLD_OPTION, parse_threshold
from .sql import queries as sql
from .sql.queries import POSTGRES, read_sql, split_statements

logger = logging.getLogger("plait.stores.postgres")

SCHEMA_VERSION = len(sql.migrations())
# Our options in the URL's query string; the others go to libpq (sslmode, connect_timeout, …).
# `artifacts` is the engine's (where artifact bytes go), checked there.
OWN_OPTIONS = ("schema", "pool_size", THRESHOLD_OPTION, "artifacts")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DEFAULT_CONNECT_TIMEOUT = "10"


@dataclass(frozen=True, slots=True)
class PostgresURL:
    conninfo: str  # what libpq gets: the URL without plait's own options
    shown: str  # the URL with its password hidden, for messages and logs
    schema: str  # where plait's tables live (created if missing)
    pool_size: int
    blob_threshold: int = DEFAULT_THRESHOLD  # payloads longer than this are stored as blobs

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this store (one per schema)."""
        return f"plait_{self.schema}"


def parse_url(url: str) -> PostgresURL:
    """Split a postgresql:// URL into libpq's part and plait's options, checking both."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StoreError(f"invalid PostgreSQL store URL: {exc}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreError(f"not a PostgreSQL store URL: {hide_password(url)!r}")
    shown = hide_password(url)
    schema, pool_size, passed = "public", 10, []
    blob_threshold = DEFAULT_THRESHOLD
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "schema":
            if not _SCHEMA_NAME.match(value):
                raise StoreError(
                    f"PostgreSQL store URL {shown!r}: schema={value!r} is not a valid schema name "
                    "(lower-case letters, digits and _, starting with a letter or _, at most 63)"
                )
            schema = value
        elif key == "pool_size":
            if not value.isdigit() or not 1 <= int(value) <= 1000:
                raise StoreError(
                    f"PostgreSQL store URL {shown!r}: pool_size={value!r} is not a number of "
                    "connections from 1 to 1000"
                )
            pool_size = int(value)
        elif key == THRESHOLD_OPTION:
            blob_threshold = parse_threshold(value, shown)
        elif key != "artifacts":
            passed.append((key, value))
    if not any(key == "connect_timeout" for key, _ in passed):
        passed.append(("connect_timeout", _DEFAULT_CONNECT_TIMEOUT))
    conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(passed)))
    return PostgresURL(conninfo, shown, schema, pool_size, blob_threshold)


def hide_password(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def describe(exc: BaseException) -> str:
    """A driver error as one line: libpq's message without its layout, plus a hint."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    hints = (
        ("password authentication failed", "check the user and password in the URL"),
        ("no password supplied", "the server wants a password: put it in the URL"),
        ("does not exist", "create it, or fix the name in the URL"),
        ("Connection refused", "is PostgreSQL running and listening at that host and port?"),
        ("timeout expired", "the server did not answer in time; check the host and port"),
        ("permission denied", "grant the user CREATE on the database (or the schema)"),
        ("could not translate host name", "check the host name in the URL"),
        (
            "invalid URI query parameter",
            f"plait's own options are {', '.join(OWN_OPTIONS)}; the others go to libpq, which "
            "knows sslmode, connect_timeout, application_name, …",
        ),
    )
    for needle, hint in hints:
        if needle in text:
            return f"{text} ({hint})"
    return text


def connect_error(shown: str, exc: BaseException) -> StoreError:
    return StoreError(f"cannot connect to PostgreSQL store {shown}: {describe(exc)}")


def check_schema(where: str, tables: set[str], raw_version: str | None) -> int | None:
    """What to do with the schema's tables: None to create, a version to migrate from, or
    SchemaVersionError (decided before anything is written)."""
    if "plait_meta" not in tables:
        # a schema may hold an application's tables too (public often does): share it unless
        # one of plait's table names is taken
        taken = sorted(tables & {"workflows", "runs", "steps", "events", "blobs"})
        if taken:
            raise SchemaVersionError(
                f"{where} already has tables named {', '.join(taken)} that are not plait's (no "
                "plait_meta table); they were left untouched. Give plait its own schema with "
                "?schema=plait in the URL, or another database."
            )
        return None
    return sql.check_schema(where, tables, raw_version, current=SCHEMA_VERSION)


def older(where: str, version: int) -> SchemaVersionError:
    return sql.cannot_migrate(where, version, current=SCHEMA_VERSION)


def schema_statements(version: int | None) -> list[str]:
    """The statements that bring a schema at `version` (None: empty) to SCHEMA_VERSION."""
    ddl = POSTGRES.ddl
    if version is None:
        return split_statements(ddl(read_sql("schema.sql")))
    statements = []
    for _number, script in sql.migrations()[version:]:
        statements.extend(split_statements(ddl(script)))
    return statements
