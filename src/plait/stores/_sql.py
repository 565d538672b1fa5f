"""The query layer shared by the SQL stores (SQLite now, PostgreSQL later): named queries read from
`.sql` files, a small dialect hook, and the conversions between records and rows.

All SQL lives in `stores/sql/`:

    schema.sql                  the schema as it is now
    migrations/NNNN_name.sql    numbered steps from an empty database to schema.sql
    queries.sql                 named queries: `-- name: <name>` then a one-line `-- description`

A query is written once with `:name` parameters. A `Dialect` rewrites the parameter style for its
driver (`:name` stays for sqlite3, becomes `%(name)s` for psycopg) and says how a list parameter
(`:something_list`) is passed; where the common text cannot serve a dialect, a block named
`-- name: <name> [<dialect>]` overrides it for that dialect only. So the stores share one copy of
their SQL, not one per database.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from .._blobs import Blobbing, payload_of
from .._errors import SchemaVersionError
from .._records import (
    Edge,
    EdgeKind,
    Gate,
    NewEvent,
    OnExpiry,
    RecordRow,
    RunRow,
    RunStatus,
    StepOptions,
    StepPlan,
    StepRow,
    StepStatus,
    WorkflowPlan,
)

Params = dict[str, Any]


_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>\w+)\s*(?:\[(?P<dialect>\w+)\])?\s*$")
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


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    description: str
    sql: str


def parse_queries(text: str) -> dict[tuple[str, str | None], Query]:
    """Split a queries file into its named blocks, keyed by (name, dialect or None)."""
    blocks: dict[tuple[str, str | None], Query] = {}
    key: tuple[str, str | None] | None = None
    description: str | None = None
    body: list[str] = []

    def flush() -> None:
        if key is None:
            return
        while body and (not body[-1].strip() or body[-1].strip().startswith("--")):
            body.pop()  # comments between queries belong to no query
        sql = "\n".join(body).strip().rstrip(";").strip()
        if not description:
            raise ValueError(f"query {key[0]!r}: a `-- description` line must follow its name")
        if not sql:
            raise ValueError(f"query {key[0]!r} has no SQL")
        blocks[key] = Query(key[0], description, sql)

    for line in text.splitlines():
        match = _NAME_LINE.match(line.strip())
        if match:
            flush()
            key = (match["name"], match["dialect"])
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


class Queries:
    """The named queries of queries.sql as one dialect runs them: `queries["get_run"]`."""

    def __init__(self, dialect: Dialect, text: str | None = None) -> None:
        self.dialect = dialect
        blocks = parse_queries(read_sql("queries.sql") if text is None else text)
        self.descriptions = {name: q.description for (name, d), q in blocks.items() if d is None}
        chosen: dict[str, str] = {}
        for (name, d), query in blocks.items():
            if d is None:
                chosen.setdefault(name, query.sql)
            elif d == dialect.name:
                chosen[name] = query.sql  # an override wins over the common text
        self._raw = chosen
        self._sql = {name: dialect.convert(sql) for name, sql in chosen.items()}

    @staticmethod
    @functools.cache
    def of(dialect: Dialect) -> Queries:
        """The queries of the packaged queries.sql for a dialect, read once per process."""
        return Queries(dialect)

    def __getitem__(self, name: str) -> str:
        try:
            return self._sql[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} in queries.sql") from None

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


# -- records <-> rows ----------------------------------------------------------------------------

_STEP_STATUS = {s.value: s for s in StepStatus}
_RUN_STATUS = {s.value: s for s in RunStatus}
_EDGE_KIND = {k.value: k for k in EdgeKind}
_EDGES_CACHE: dict[str, tuple[Edge, ...]] = {}
_EDGES_CACHE_MAX = 4096
_SINKS_CACHE: dict[str, tuple[str, ...]] = {}
_EDGES_JSON_CACHE: dict[tuple[Edge, ...], str] = {}


def edges_to_json(edges: tuple[Edge, ...]) -> str:
    if not edges:
        return "[]"
    if len(edges) > 8:
        return orjson.dumps([[e.target, e.kind, e.absorbs] for e in edges]).decode()
    text = _EDGES_JSON_CACHE.get(edges)
    if text is None:
        text = orjson.dumps([[e.target, e.kind, e.absorbs] for e in edges]).decode()
        if len(_EDGES_JSON_CACHE) >= _EDGES_CACHE_MAX:
            _EDGES_JSON_CACHE.clear()
        _EDGES_JSON_CACHE[edges] = text
    return text


def edges_from_json(text: str) -> tuple[Edge, ...]:
    """Decode a `dependents` column; shapes repeat across runs, so decoded tuples are shared."""
    edges: tuple[Edge, ...] = _cached(_EDGES_CACHE, text, _decode_edges)
    return edges


def _decode_edges(text: str) -> tuple[Edge, ...]:
    return tuple(Edge(t, _EDGE_KIND[k], bool(a)) for t, k, a in orjson.loads(text))


def _cached(cache: dict[str, Any], text: str, decode: Callable[[str], Any]) -> Any:
    """Decode `text` once: small JSON columns repeat across runs, so decoded values are shared."""
    value = cache.get(text)
    if value is None:
        value = decode(text)
        if len(text) < 1024:
            if len(cache) >= _EDGES_CACHE_MAX:
                cache.clear()
            cache[text] = value
    return value


# Where the blob hashes are in the rows of the `steps` and `runs` queries (after the fields).
STEP_OUTPUT_BLOB, STEP_INPUT_BLOB = 27, 28
RUN_INPUT_BLOB, RUN_OUTPUT_BLOB = 19, 20
NO_BLOBS: Mapping[str, bytes] = {}


def step_from_row(row: Sequence[Any], blobs: Mapping[str, bytes] = NO_BLOBS) -> StepRow:
    """A StepRow from a row in the column order of the `steps` queries (StepRow's field order,
    then the blob hashes), its payloads taken from `blobs` where the row names a blob."""
    (run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
     skip_reason, output, error_code, error_message, available_at, lease_token, lease_expires_at,
     worker_id, ready_at, started_at, finished_at, options, reused_from, iteration, task, input_,
     gather, output_blob, input_blob) = row  # fmt: skip
    if output_blob is not None:
        output = payload_of(blobs, output_blob, f"the output of step {name!r} of run {run_id!r}")
    if input_blob is not None:
        input_ = payload_of(blobs, input_blob, f"the input of step {name!r} of run {run_id!r}")
    return StepRow(
        run_id, name, idx, _STEP_STATUS[status], unmet, edges_from_json(dependents), bool(optional),
        priority, attempt, recoveries, skip_reason, _bytes(output), error_code, error_message,
        available_at, lease_token, lease_expires_at, worker_id, ready_at, started_at, finished_at,
        None if options is None else options_from_json(options), reused_from, iteration, task,
        _bytes(input_), _bytes(gather),
    )  # fmt: skip


# Column orders of the positional hot-path queries (checked against queries.sql when loaded).
STEP_COLUMNS = (
    "run_id", "name", "idx", "status", "unmet", "dependents", "optional", "priority", "attempt",
    "recoveries", "skip_reason", "output", "error_code", "error_message", "available_at",
    "lease_token", "lease_expires_at", "worker_id", "ready_at", "started_at", "finished_at",
    "options", "reused_from", "iteration", "task", "input", "gather", "queue", "concurrency_key",
    "target", "output_blob", "input_blob",
)  # fmt: skip
STEP_MUTABLE = (
    "status", "unmet", "attempt", "recoveries", "skip_reason", "error_code", "error_message",
    "available_at", "lease_token", "lease_expires_at", "worker_id", "ready_at", "started_at",
    "finished_at", "iteration", "gather",
)  # fmt: skip
UPDATE_STEP = (*STEP_MUTABLE, "run_id", "name")
UPDATE_STEP_OUTPUT = (*STEP_MUTABLE, "output", "output_blob", "run_id", "name")
RUN_MUTABLE = (
    "status", "unfinished", "failures", "next_seq", "error", "started_at", "finished_at",
    "next_idx",
)  # fmt: skip
UPDATE_RUN = (*RUN_MUTABLE, "id")
UPDATE_RUN_OUTPUT = (*RUN_MUTABLE, "output", "output_blob", "id")
EVENT_COLUMNS = ("run_id", "seq", "type", "step", "payload", "ts")
RECORD_WRITE = ("collection", "key", "doc", "revision", "updated_at", "run_id", "step")

# Statuses are StrEnums: drivers bind them as their text, so rows carry them as they are.


def step_insert_row(s: StepRow, blobs: Blobbing) -> tuple[Any, ...]:
    """A new step's columns (STEP_COLUMNS); `blobs` decides which payloads become blobs."""
    output, output_blob = blobs.keep(s.output)
    input_, input_blob = blobs.keep(s.input)
    return (
        s.run_id, s.name, s.idx, s.status, s.unmet, edges_to_json(s.dependents), s.optional,
        s.priority, s.attempt, s.recoveries, s.skip_reason, output, s.error_code,
        s.error_message, s.available_at, s.lease_token, s.lease_expires_at, s.worker_id,
        s.ready_at, s.started_at, s.finished_at, options_to_json(s.options), s.reused_from,
        s.iteration, s.task, input_, s.gather, *_flow_columns(s.options), output_blob, input_blob,
    )  # fmt: skip


def _flow_columns(o: StepOptions | None) -> tuple[str | None, str | None, str | None]:
    """The queue, concurrency key and target columns, which claims filter and count by (the
    options JSON holds them too)."""
    return (None, None, None) if o is None else (o.queue, o.key, o.target)


def step_update_row(s: StepRow) -> tuple[Any, ...]:
    """The mutable fields of a step but its output, then its key (UPDATE_STEP)."""
    return (
        s.status, s.unmet, s.attempt, s.recoveries, s.skip_reason, s.error_code, s.error_message,
        s.available_at, s.lease_token, s.lease_expires_at, s.worker_id, s.ready_at, s.started_at,
        s.finished_at, s.iteration, s.gather, s.run_id, s.name,
    )  # fmt: skip


def step_update_output_row(s: StepRow, output: bytes | None, blob: str | None) -> tuple[Any, ...]:
    """The mutable fields of a step, its output (column and blob hash), then its key
    (UPDATE_STEP_OUTPUT)."""
    return (
        s.status, s.unmet, s.attempt, s.recoveries, s.skip_reason, s.error_code, s.error_message,
        s.available_at, s.lease_token, s.lease_expires_at, s.worker_id, s.ready_at, s.started_at,
        s.finished_at, s.iteration, s.gather, output, blob, s.run_id, s.name,
    )  # fmt: skip


def run_update_row(r: RunRow) -> tuple[Any, ...]:
    return (
        r.status, r.unfinished, r.failures, r.next_seq, r.error, r.started_at, r.finished_at,
        r.next_idx, r.id,
    )  # fmt: skip


def run_update_output_row(r: RunRow, output: bytes | None, blob: str | None) -> tuple[Any, ...]:
    return (
        r.status, r.unfinished, r.failures, r.next_seq, r.error, r.started_at, r.finished_at,
        r.next_idx, output, blob, r.id,
    )  # fmt: skip


def event_row(e: NewEvent) -> tuple[Any, ...]:
    return (e.run_id, e.seq, e.type, e.step, _dumps_payload(e.payload), e.ts)


def sinks_from_json(text: str) -> tuple[str, ...]:
    sinks: tuple[str, ...] = _cached(_SINKS_CACHE, text, lambda t: tuple(orjson.loads(t)))
    return sinks


def run_from_row(
    row: Sequence[Any], blobs: Mapping[str, bytes] = NO_BLOBS, *, with_input: bool = True
) -> RunRow:
    """A RunRow from a row of the `runs` queries, its payloads taken from `blobs` where the row
    names a blob. Without `with_input` (transactions: no transition reads a run's input, nor
    is it ever rewritten), an input kept as a blob is left empty, unread."""
    (id_, workflow, version, fingerprint, status, input_, sinks, unfinished, failures, next_seq,
     output, error, created_at, started_at, finished_at, deadline, parent_run,
     forked_from, next_idx, input_blob, output_blob) = row  # fmt: skip
    if input_blob is not None and with_input:
        input_ = payload_of(blobs, input_blob, f"the input of run {id_!r}")
    if output_blob is not None:
        output = payload_of(blobs, output_blob, f"the output of run {id_!r}")
    return RunRow(
        id_, workflow, version, fingerprint, _RUN_STATUS[status], bytes(input_),
        sinks_from_json(sinks), unfinished, failures, next_seq, _bytes(output), error,
        created_at, started_at, finished_at, deadline, parent_run, forked_from, next_idx,
    )  # fmt: skip


def run_insert_params(run: RunRow, blobs: Blobbing) -> Params:
    input_, input_blob = blobs.keep(run.input)
    output, output_blob = blobs.keep(run.output)
    return {
        "id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "fingerprint": run.fingerprint,
        "status": run.status.value,
        "input": b"" if input_ is None else input_,  # NOT NULL: empty when it is a blob
        "sinks": orjson.dumps(list(run.sinks)).decode(),
        "unfinished": run.unfinished,
        "failures": run.failures,
        "next_seq": run.next_seq,
        "output": output,
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "deadline": run.deadline,
        "parent_run": run.parent_run,
        "forked_from": run.forked_from,
        "next_idx": run.next_idx,
        "input_blob": input_blob,
        "output_blob": output_blob,
    }


def event_from_row(row: Sequence[Any]) -> NewEvent:
    run_id, seq, type_, step, payload, ts = row
    return NewEvent(run_id, seq, type_, step, orjson.loads(payload), ts)


def plan_to_json(plan: WorkflowPlan) -> str:
    return orjson.dumps(
        {
            "name": plan.name,
            "version": plan.version,
            "fingerprint": plan.fingerprint,
            "created_at": plan.created_at,
            "steps": [
                {
                    "name": s.name,
                    "dependencies": [[dep, kind.value] for dep, kind in s.dependencies],
                    "defaults": list(s.defaults),
                    "optional": s.optional,
                    "priority": s.priority,
                    "inputs": [[name, required] for name, required in s.inputs],
                    "options": None if s.options is None else _options_dict(s.options),
                }
                for s in plan.steps
            ],
        }
    ).decode()


def plan_from_json(text: str | bytes) -> WorkflowPlan:
    data = orjson.loads(text)
    return WorkflowPlan(
        name=data["name"],
        version=data["version"],
        fingerprint=data["fingerprint"],
        created_at=data["created_at"],
        steps=tuple(
            StepPlan(
                name=s["name"],
                dependencies=tuple((dep, _EDGE_KIND[kind]) for dep, kind in s["dependencies"]),
                defaults=tuple(s["defaults"]),
                optional=s["optional"],
                priority=s["priority"],
                inputs=tuple((name, required) for name, required in s["inputs"]),
                options=_options_of(s.get("options")),
            )
            for s in data["steps"]
        ),
    )


_OPTIONS_CACHE: dict[str, StepOptions] = {}


def options_to_json(options: StepOptions | None) -> str | None:
    return None if options is None else orjson.dumps(_options_dict(options)).decode()


def options_from_json(text: str) -> StepOptions:
    options: StepOptions = _cached(_OPTIONS_CACHE, text, lambda t: _options_of(orjson.loads(t)))
    return options


def _options_dict(o: StepOptions) -> dict[str, Any]:
    """The options that differ from the defaults, so a row stores only what matters."""
    found = {
        "delay": o.delay,
        "gate": o.gate,
        "expires_after": o.expires_after,
        "queue": o.queue,
        "key": o.key,
        "key_limit": o.key_limit,
        "key_from_outputs": o.key_from_outputs or None,
        "target": o.target,
        "run_priority": o.run_priority or None,
    }
    data: dict[str, Any] = {k: v for k, v in found.items() if v is not None}
    if o.on_expiry is not OnExpiry.REJECT:
        data["on_expiry"] = o.on_expiry.value
    return data


def _options_of(data: Mapping[str, Any] | None) -> StepOptions | None:
    if data is None:
        return None
    gate = data.get("gate")
    return StepOptions(
        delay=data.get("delay"),
        gate=None if gate is None else Gate(gate),
        expires_after=data.get("expires_after"),
        on_expiry=OnExpiry(data.get("on_expiry", "reject")),
        queue=data.get("queue"),
        key=data.get("key"),
        key_limit=data.get("key_limit"),
        key_from_outputs=data.get("key_from_outputs", False),
        target=data.get("target"),
        run_priority=data.get("run_priority", 0),
    )


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _dumps_payload(payload: Mapping[str, object]) -> str:
    try:
        return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return orjson.dumps(payload, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()


def record_from_row(row: Sequence[Any]) -> RecordRow:
    collection, key, doc, revision, updated_at, run_id, step = row
    return RecordRow(collection, key, bytes(doc), revision, updated_at, run_id, step)
