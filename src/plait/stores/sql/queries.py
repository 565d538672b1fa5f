"""The query layer shared by the SQL stores (SQLite and PostgreSQL): named queries read from the
`.sql` files, a small dialect hook, migrations and the checks made before a schema is touched.
(Records to rows and back: `stores.sql.rows`.)

All SQL lives next to this module, in `stores/sql/`:

    schema.sql                  the schema as it is now
    migrations/NNNN_name.sql    numbered steps from an empty database to schema.sql
    <topic>.sql                 named queries, one file per topic (runs, steps, claims, blobs, …)

A query file is a list of blocks. Each block starts with `-- name: <name>`, then a one-line
`-- description`, then its SQL; comments between blocks belong to none. A query is written once
with `:name` parameters, and a `Dialect` rewrites the parameter style for its driver (`:name`
stays for sqlite3, becomes `%(name)s` for psycopg). Where the common text cannot serve a dialect,
a block named `-- name: <name> [<dialect>]`, placed right after the common one, overrides it for
that dialect only. So the stores share one copy of their SQL, not one per database. Every `.sql`
file of the folder but schema.sql is loaded, and a name is defined once across them.

A condition or a column list that several queries share is a *fragment*: a block named
`-- fragment: <name>` (overridden per dialect the same way), which a query or another fragment
includes with `/*include <name>*/`. The claimable filter of the claim queries is one.

Lists: a parameter ending in `_list` is a list, passed as a JSON array (`Dialect.list_param`) and
read with json_each() on SQLite. PostgreSQL unpacks it so that every lookup is an index probe
whatever the table size: `= ANY(ARRAY(SELECT jsonb_array_elements_text(...)))` for ids, a LATERAL
subquery per [run_id, name] pair (the planner would otherwise guess 100 rows for a JSON function
and hash-join a scan of the whole table). A parameter that may be NULL is cast there: PostgreSQL
cannot infer the type of a parameter that is only compared with NULL.

Locks: a `/*for update*/` marker says where a query that loads rows for a transition locks them
on PostgreSQL (`Queries.locked`); it stays a comment elsewhere and in plain reads.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from ..._errors import SchemaVersionError

Params = dict[str, Any]


_NAME_LINE = re.compile(
    r"^--\s*(?P<kind>name|fragment):\s*(?P<name>\w+)\s*(?:\[(?P<dialect>\w+)\])?\s*$"
)
_INCLUDE = re.compile(r"/\*\s*include\s+(\w+)\s*\*/")
_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_MIGRATION = re.compile(r"^(\d{4})_\w+\.sql$")
_BLOB = re.compile(r"\bBLOB\b")
_LOCK_MARKER = re.compile(r"/\*\s*(for update[^*]*)\*/", re.IGNORECASE)


# -- dialects ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between SQL drivers in the way queries are sent.

    `paramstyle` is "named" (`:name`, sqlite3) or "pyformat" (`%(name)s`, psycopg). A list
    parameter is passed as a JSON array when `json_lists` is set (SQLite reads it with
    json_each), else as a Python list (a PostgreSQL array).
    """

    name: str
    paramstyle: str = "named"
    json_lists: bool = True
    row_locks: bool = False  # `/*for update…*/` markers become row locks (see Queries.locked)
    binary_type: str = "BLOB"  # what schema.sql's BLOB columns are called in this dialect

    def convert(self, sql: str) -> str:
        if self.paramstyle == "named":
            return sql
        if self.paramstyle == "pyformat":
            return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))
        raise ValueError(f"unknown paramstyle {self.paramstyle!r}")

    def positional(self, sql: str) -> tuple[str, tuple[str, ...]]:
        """The query with positional placeholders, and the parameter names in their order."""
        names = tuple(_PARAM.findall(sql))
        marker = "?" if self.paramstyle == "named" else "%s"
        text = sql if self.paramstyle == "named" else sql.replace("%", "%%")
        return _PARAM.sub(marker, text), names

    def ddl(self, script: str) -> str:
        """schema.sql and the migrations as this dialect writes them."""
        return _BLOB.sub(self.binary_type, script)

    def list_param(self, values: Iterable[Any]) -> Any:
        items = list(values)
        return orjson.dumps(items).decode() if self.json_lists else items


SQLITE = Dialect("sqlite")
# Lists travel as JSON text on both (jsonb_array_elements on PostgreSQL), so one rule serves
# plain lists and [run_id, name] pairs alike.
POSTGRES = Dialect("postgres", paramstyle="pyformat", row_locks=True, binary_type="BYTEA")


# -- reading .sql files --------------------------------------------------------------------------


def read_sql(relative: str) -> str:
    """The text of a file under stores/sql/."""
    return (resources.files("plait.stores") / "sql" / relative).read_text(encoding="utf-8")


def query_files() -> dict[str, str]:
    """The packaged query files: every `.sql` file of stores/sql/ but schema.sql, by name."""
    folder = resources.files("plait.stores") / "sql"
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.is_file() and entry.name.endswith(".sql") and entry.name != "schema.sql"
    }


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    description: str
    sql: str
    fragment: bool = False  # a piece of SQL that queries include, not a query


Blocks = dict[tuple[str, str | None], Query]


def parse_queries(text: str) -> Blocks:
    """Split a query file into its named blocks (queries and fragments), keyed by (name,
    dialect or None)."""
    blocks: Blocks = {}
    key: tuple[str, str | None] | None = None
    fragment = False
    description: str | None = None
    body: list[str] = []

    def flush() -> None:
        if key is None:
            return
        while body and (not body[-1].strip() or body[-1].strip().startswith("--")):
            body.pop()  # comments between queries belong to no query
        sql = "\n".join(body).strip().rstrip(";").strip()
        what = "fragment" if fragment else "query"
        if not description:
            raise ValueError(f"{what} {key[0]!r}: a `-- description` line must follow its name")
        if not sql:
            raise ValueError(f"{what} {key[0]!r} has no SQL")
        blocks[key] = Query(key[0], description, sql, fragment)

    for line in text.splitlines():
        match = _NAME_LINE.match(line.strip())
        if match:
            flush()
            key, fragment = (match["name"], match["dialect"]), match["kind"] == "fragment"
            if key in blocks:
                raise ValueError(f"query {key[0]!r} is defined twice")
            description, body = None, []
        elif key is None:
            continue  # the file's header
        elif description is None:
            stripped = line.strip()
            description = stripped[2:].strip() if stripped.startswith("--") else ""
            if not stripped.startswith("--"):
                body.append(line)
        else:
            body.append(line)
    flush()
    return blocks


def parse_query_files(files: Mapping[str, str]) -> Blocks:
    """The blocks of several query files (file name → text); a name is defined in one only."""
    blocks: Blocks = {}
    found_in: dict[tuple[str, str | None], str] = {}
    for file, text in files.items():
        for key, query in parse_queries(text).items():
            if key in blocks:
                raise ValueError(
                    f"query {key[0]!r} is defined twice: in {found_in[key]} and in {file}"
                )
            blocks[key], found_in[key] = query, file
    return blocks


def _include(name: str, sql: str, fragments: Mapping[str, str], seen: tuple[str, ...] = ()) -> str:
    """`sql` with its `/*include <fragment>*/` markers replaced by the fragments' text."""

    def fragment(match: re.Match[str]) -> str:
        included = match[1]
        if included not in fragments:
            raise ValueError(f"query {name!r} includes {included!r}, which is no fragment")
        if included in seen:
            raise ValueError(f"query {name!r}: fragment {included!r} includes itself")
        return _include(name, fragments[included], fragments, (*seen, included))

    return _INCLUDE.sub(fragment, sql)


class Queries:
    """The named queries of the query files as one dialect runs them: `queries["get_run"]`."""

    def __init__(self, dialect: Dialect, files: Mapping[str, str] | None = None) -> None:
        """`files`: file name → text; the packaged query files if None."""
        self.dialect = dialect
        blocks = parse_query_files(query_files() if files is None else files)
        self.descriptions = {
            name: q.description for (name, d), q in blocks.items() if d is None and not q.fragment
        }
        chosen: dict[str, str] = {}
        fragments: dict[str, str] = {}
        for (name, d), query in blocks.items():
            into = fragments if query.fragment else chosen
            if d is None:
                into.setdefault(name, query.sql)
            elif d == dialect.name:
                into[name] = query.sql  # an override wins over the common text
        self._raw = {name: _include(name, sql, fragments) for name, sql in chosen.items()}
        self._sql = {name: dialect.convert(sql) for name, sql in self._raw.items()}

    @staticmethod
    @functools.cache
    def of(dialect: Dialect) -> Queries:
        """The queries of the packaged query files for a dialect, read once per process."""
        return Queries(dialect)

    def __getitem__(self, name: str) -> str:
        try:
            return self._sql[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} in the query files") from None

    def get(self, name: str) -> str | None:
        """A query only some dialects have, or None."""
        return self._sql.get(name)

    def locked(self, name: str, *, skip_locked: bool = False) -> str:
        """The query with its `/*for update…*/` marker made a row lock where the dialect has
        them (PostgreSQL), passing over rows others hold with `skip_locked`; elsewhere the
        marker stays a comment."""
        sql = self._sql[name]
        if not _LOCK_MARKER.search(sql):
            raise ValueError(f"query {name!r} has no /*for update*/ marker")
        if not self.dialect.row_locks:
            return sql
        suffix = " skip locked" if skip_locked else ""
        return _LOCK_MARKER.sub(lambda m: m[1].strip() + suffix, sql)

    def positional(self, name: str, order: Sequence[str]) -> str:
        """The query with positional placeholders, for the hot path's tuples (cheaper to build
        and bind than dicts). Its `:name` parameters must appear once each, in `order`."""
        sql, names = self.dialect.positional(self._raw[name])
        if names != tuple(order):
            raise ValueError(
                f"query {name!r}: parameters {list(names)} are not in the expected order {list(order)}"
            )
        return sql

    def __contains__(self, name: object) -> bool:
        return name in self._sql

    def names(self) -> list[str]:
        return sorted(self._sql)


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every numbered migration, in order; versions are 1, 2, 3… without gaps."""
    folder = resources.files("plait.stores") / "sql" / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match[1]), entry.read_text(encoding="utf-8")))
    found.sort()
    if [v for v, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {[v for v, _ in found]}")
    return found


def check_schema(
    where: str, tables: set[str], raw_version: str | None, *, current: int
) -> int | None:
    """What to do with a database holding `tables` and plait_meta's schema_version: None to
    create the schema, a version to migrate from (or current), or SchemaVersionError when the
    database is not plait's or is newer than this code. Decided before anything is written."""
    if "plait_meta" not in tables:
        if tables:
            shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
            raise SchemaVersionError(
                f"{where} is not a plait database: it holds other tables ({shown}) and no "
                "plait_meta table; it was left untouched. Point plait at another database."
            )
        return None
    if raw_version is None or not raw_version.isdigit():
        raise SchemaVersionError(
            f"{where}: plait_meta has no valid schema_version ({raw_version!r}); the database is "
            "damaged or not plait's, and was left untouched"
        )
    version = int(raw_version)
    if version > current:
        raise SchemaVersionError(
            f"{where} has plait schema version {version}, newer than this plait knows "
            f"(version {current}); upgrade plait to use it. It was left untouched."
        )
    return version


def cannot_migrate(where: str, version: int, *, current: int) -> SchemaVersionError:
    """A read-only open of a plait database older than this code: it would need a migration."""
    return SchemaVersionError(
        f"{where} has plait schema version {version}, older than this plait's (version "
        f"{current}): reading it needs a migration, which a read-only open cannot make; open it "
        "read-write once (a worker or `plait run` migrates it), or read it with the plait that "
        "wrote it. It was left untouched."
    )


def split_statements(script: str) -> list[str]:
    """Split a SQL script into statements (by `;` at line ends; schema files keep to that)."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current.append(line)
        if stripped.endswith(";"):
            statements.append("\n".join(current).strip())
            current = []
    if any(line.strip() and not line.strip().startswith("--") for line in current):
        statements.append("\n".join(current).strip())
    return statements
