"""PostgreSQL servers for the tests.

Tests use the server at $PLAIT_TEST_POSTGRES_URL (default: a local trust-auth `postgres`). When
nothing answers there, a throwaway cluster is made from the installed binaries, so the PostgreSQL
tests run on any machine with the server packages and no setup. `Cluster` is also for tests that
stop and restart a server themselves. Each test gets its own schema or database, so tests never
see each other's rows, and leftovers (from an interrupted session) are dropped by name prefix.
"""

from __future__ import annotations

import atexit
import functools
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal, LiteralString, NoReturn
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import TupleRow

ENV_URL = "PLAIT_TEST_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
HOW_TO = (
    "set PLAIT_TEST_POSTGRES_URL=postgresql://user@host:port/db "
    "or install PostgreSQL server binaries (initdb, pg_ctl)"
)
SERVICE_USER = "postgres"  # initdb refuses to run as root, so root runs the binaries as this user
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,40}")
Auth = Literal["trust", "scram-sha-256"]
StopMode = Literal["smart", "fast", "immediate"]


class ClusterError(RuntimeError):
    """initdb or pg_ctl failed; the message carries their output and the server log's tail."""


def find_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl: PATH first, else the highest /usr/lib version."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    found = [p for p in found if (p / "pg_ctl").exists() and p.parent.name.isdigit()]
    return max(found, key=lambda p: int(p.parent.name), default=None)


def _as_service_user(cmd: list[str]) -> list[str]:
    """Root runs the PostgreSQL binaries as SERVICE_USER (runuser, else su)."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", SERVICE_USER, "--", *cmd]
    return ["su", SERVICE_USER, "-s", "/bin/sh", "-c", shlex.join(cmd)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str, **kwargs: Any) -> psycopg.Connection[TupleRow]:
    """A psycopg connection; a `schema=` query parameter (ours, not libpq's) is left out."""
    parts = urlsplit(url)
    query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("schema="))
    return psycopg.connect(urlunsplit(parts._replace(query=query)), **kwargs)


_LIVE: dict[int, Cluster] = {}  # clusters not destroyed yet, by id(), for the atexit handler


class Cluster:
    """A PostgreSQL cluster in its own temporary directory, listening on 127.0.0.1:port only."""

    def __init__(self, directory: Path, bin_dir: Path, port: int, password: str | None) -> None:
        self.directory, self.bin_dir, self.port, self.password = directory, bin_dir, port, password
        self.data, self.log = directory / "data", directory / "server.log"
        self._owner_pid = os.getpid()  # a forked child must not tear down its parent's server

    @classmethod
    def create(cls, auth: Auth = "trust", password: str | None = None) -> Cluster:
        """initdb into a fresh temporary directory and pick a free port; the server is not started."""
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise ClusterError(f"initdb and pg_ctl not found; {HOW_TO}")
        if auth != "trust" and password is None:
            raise ValueError(f"auth={auth!r} needs a password")
        root = os.geteuid() == 0
        users = {u.pw_name: u for u in pwd.getpwall()} if root else {}
        if root and SERVICE_USER not in users:
            raise ClusterError(f"initdb refuses root, and there is no user {SERVICE_USER}")
        user = users.get(SERVICE_USER)
        parent = tempfile.gettempdir()
        if root and not os.stat(parent).st_mode & 0o001:  # the service user could not reach it
            parent = "/tmp"
        directory = Path(tempfile.mkdtemp(prefix="plait-pg-", dir=parent))
        cluster = cls(directory, bin_dir, _free_port(), password)
        _LIVE[id(cluster)] = cluster
        try:
            if user is not None:
                os.chown(directory, user.pw_uid, user.pw_gid)
            cmd = [str(bin_dir / "initdb"), "-D", str(cluster.data), "-U", "postgres", "-A", auth]
            cmd += ["-E", "UTF8", "--locale=C", "--no-sync"]  # initdb's own sync only
            if password is not None:
                pwfile = directory / "pwfile"
                pwfile.write_text(password + "\n")
                if user is not None:
                    os.chown(pwfile, user.pw_uid, user.pw_gid)
                cmd.append(f"--pwfile={pwfile}")
            cluster._run(cmd)
            (directory / "pwfile").unlink(missing_ok=True)
            with (cluster.data / "postgresql.conf").open("a") as conf:
                conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {cluster.port}\n")
                conf.write(f"unix_socket_directories = '{directory}'\n")  # fsync stays on
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    @property
    def url(self) -> str:
        """postgresql://postgres[:password]@127.0.0.1:PORT/postgres"""
        secret = f":{quote(self.password, safe='')}" if self.password is not None else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        """Whether the postmaster is up (pg_ctl status)."""
        return self._pg_ctl("status", check=False).returncode == 0

    def start(self, timeout: int = 60) -> None:
        """pg_ctl start -w: returns once the server accepts connections (postmaster.pid says so)."""
        self._pg_ctl("start", "-w", "-t", str(timeout), "-l", str(self.log))

    def stop(self, mode: StopMode = "fast") -> None:
        """pg_ctl stop -m mode ("immediate": as after a crash); a no-op when not running."""
        if self.data.exists() and self.running:
            self._pg_ctl("stop", "-w", "-m", mode)

    def restart(self, mode: StopMode = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        """Stop the server if it runs and remove the directory; safe to call more than once."""
        _LIVE.pop(id(self), None)
        if os.getpid() != self._owner_pid:
            return
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(
            [str(self.bin_dir / "pg_ctl"), args[0], "-D", str(self.data), *args[1:]], check
        )

    def _run(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        # cwd: the service user may not be able to read the caller's working directory.
        proc = subprocess.run(
            _as_service_user(cmd), cwd=self.directory, capture_output=True, text=True, timeout=120
        )
        if check and proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise ClusterError(f"{shlex.join(cmd)} failed:\n{proc.stdout}{proc.stderr}{log}")
        return proc

    def __repr__(self) -> str:
        return f"Cluster({self.directory}, port={self.port})"


def shutdown() -> None:
    """Destroy every cluster still alive (registered with atexit; call it at session end too)."""
    for cluster in list(_LIVE.values()):
        cluster.destroy()


atexit.register(shutdown)


@functools.cache
def _resolve() -> tuple[str | None, str | None]:
    """(url, None) for a usable server, else (None, reason); decided once per session."""
    url = os.environ.get(ENV_URL) or DEFAULT_URL
    try:
        connect(url, connect_timeout=3).close()
        return url, None
    except psycopg.Error as exc:
        failure = f"no PostgreSQL server at {_redact(url)} ({' '.join(str(exc).split())})"
    if find_bin_dir() is None:
        return None, f"{failure}; {HOW_TO}"
    try:
        cluster = Cluster.create()
        cluster.start()
    except (ClusterError, OSError, psycopg.Error, subprocess.SubprocessError) as exc:
        return None, f"{failure}, and no throwaway cluster could be started ({exc}); {HOW_TO}"
    return cluster.url, None


def server_url() -> str | None:
    """The base URL of a usable server (env/default, else a throwaway cluster), or None."""
    return _resolve()[0]


def unavailable_reason() -> str | None:
    """Why no server is available (and how to provide one), or None when there is one."""
    return _resolve()[1]


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test, except under CI=true where a missing PostgreSQL is a failure."""
    __tracebackhide__ = True  # report the test's line, not this one
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def require_server_url() -> str:
    """server_url(), or skip (fail under CI) with the reason."""
    __tracebackhide__ = True
    url = server_url()
    if url is None:
        skip_or_fail(unavailable_reason() or "no PostgreSQL server")
    return url


def _check_prefix(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"prefix must match {_PREFIX.pattern}: {prefix!r}")
    return prefix


def fresh_schema_url(base_url: str, prefix: str = "plait_t_") -> str:
    """base_url with `schema=<prefix><12 hex>`; the store creates the schema when it opens."""
    parts = urlsplit(base_url)
    extra = urlencode({"schema": _check_prefix(prefix) + secrets.token_hex(6)})
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def _dropping(base_url: str) -> psycopg.Connection[TupleRow]:
    """A connection for dropping leftovers. Its commits do not wait for the WAL to reach the disk
    (a crash could only bring a dropped test schema back, to be dropped again): a session's
    ~1,000 schemas go in a third of the time (about 50 s otherwise at the session's end)."""
    conn = connect(base_url, autocommit=True)
    conn.execute("set synchronous_commit = off")
    return conn


def _drop(base_url: str, names_query: LiteralString, drop: LiteralString, prefix: str) -> list[str]:
    with _dropping(base_url) as conn:
        rows = conn.execute(names_query, (_check_prefix(prefix),)).fetchall()
        names = [str(row[0]) for row in rows]
        for name in names:
            conn.execute(sql.SQL(drop).format(sql.Identifier(name)))
    return names


def drop_schemas(base_url: str, prefix: str = "plait_t_") -> list[str]:
    """Drop every schema whose name starts with prefix (leftovers); returns their names."""
    query = "select nspname from pg_namespace where starts_with(nspname, %s)"
    return _drop(base_url, query, "drop schema if exists {} cascade", prefix)


def drop_stale_schemas(base_url: str, prefix: str) -> list[str]:
    """Drop the schemas `<prefix><pid>_…` of test sessions whose process has ended (a session
    drops its own when it ends; an interrupted one leaves them behind)."""
    query = "select nspname from pg_namespace where starts_with(nspname, %s)"
    with _dropping(base_url) as conn:
        names = [str(row[0]) for row in conn.execute(query, (_check_prefix(prefix),)).fetchall()]
        stale = [n for n in names if not _alive(n[len(prefix) :].split("_", 1)[0])]
        for name in stale:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))
    return stale


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fresh_database_url(base_url: str, prefix: str = "plait_tdb_") -> str:
    """Create the database <prefix><12 hex> and return base_url pointing at it."""
    name = _check_prefix(prefix) + secrets.token_hex(6)
    with connect(base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))


def drop_databases(base_url: str, prefix: str = "plait_tdb_") -> list[str]:
    """Drop every database whose name starts with prefix, connected or not (PostgreSQL 13+)."""
    query = (
        "select datname from pg_database"
        " where starts_with(datname, %s) and datname <> current_database()"
    )
    return _drop(base_url, query, "drop database if exists {} with (force)", prefix)
