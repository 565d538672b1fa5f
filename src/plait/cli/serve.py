"""`plait serve`: the HTTP API, its live feeds, the dashboard and /metrics over a store
(`plait.server`; needs the `server` extra).

It binds 127.0.0.1 by default. Bound anywhere else it refuses to start without a token
(`--token`, or `PLAIT_TOKEN`), which every mutating call must then present in a header. The
token is never printed nor logged."""

from __future__ import annotations

import ipaddress
import logging

import click

from . import render
from .app import cli, db_option, log_option, open_engine, user_errors
from .loading import CliError

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@cli.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--token",
    envvar="PLAIT_TOKEN",
    metavar="TOKEN",
    help="What mutating calls must present (header X-Plait-Token or Authorization: Bearer); "
    "required when --host is not a loopback address (env PLAIT_TOKEN).",
)
@log_option("info")
@user_errors
def serve(db: str, host: str, port: int, token: str | None, log_level: str) -> None:
    """Serve the dashboard and the HTTP API (docs at /api/docs, /openapi.json) and /metrics."""
    render.install_logging(log_level)
    loopback = is_loopback(host)
    if not loopback and not token:
        raise CliError(
            f"refusing to serve on {host}, which is not a loopback address, without a token: "
            "pass --token (or set PLAIT_TOKEN), which mutating calls must then present"
        )
    if token is not None and len(token) < 8:
        raise CliError("the token must have at least 8 characters")
    try:
        import uvicorn

        from ..server.app import LOOPBACK_HOSTS, create_app
    except ImportError as exc:
        raise CliError(
            f"plait serve needs the server extra ({exc.name} is missing): "
            "pip install 'plait[server]'"
        ) from None
    engine = open_engine(db)
    try:
        allowed = [*LOOPBACK_HOSTS] if loopback else ["*"]
        app = create_app(engine, token=token, allowed_hosts=allowed)
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level.lower(), access_log=False,
            timeout_graceful_shutdown=2,
        )  # fmt: skip
        server = uvicorn.Server(config)
        shown = f"[{host}]" if ":" in host else host
        click.echo(
            f"plait serve: {engine.url} on http://{shown}:{port}/ "
            f"(API docs /api/docs; mutating calls {'need the token' if token else 'are local only'})",
            err=True,
        )
        server.run()
    finally:
        engine.close()
