"""The ASGI application: `create_app(engine, token=...)`.

Security, in one place:
- A mutating call (any method but GET/HEAD/OPTIONS) needs the token, when the server has one,
  in the `Authorization: Bearer …` or `X-Plait-Token` header (compared in constant time). A
  header, never a cookie: a page of another site cannot make a browser send it (no CSRF).
  Without a token (a server bound to loopback), a mutating call must still carry the
  `X-Plait-Token` header (any value): a custom header makes a cross-site request need a CORS
  preflight, which this server never grants, so another site's page cannot act either.
- Requests must name an allowed host (`allowed_hosts`): loopback names for a loopback server,
  which defeats DNS rebinding.
- Tokens are never logged nor echoed; errors are JSON, with the Engine's messages.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import Response
from starlette.routing import Match
from starlette.staticfiles import StaticFiles

from .. import __version__
from .._errors import PlaitError
from ..engine.engine import Engine
from . import api, live
from .api import TOKEN_HEADER
from .dashboard import router as dashboard_router
from .errors import error, status_of

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def methods_of(routers: Sequence[APIRouter], request: Request) -> list[str]:
    """The methods the routes of `routers` take at the request's path (a 405's Allow)."""
    methods: set[str] = set()
    for router in routers:
        for route in router.routes:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def create_app(
    engine: Engine,
    *,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    metrics: bool = True,
) -> FastAPI:
    """The API, its live feeds, the dashboard and /metrics over `engine` (which the caller
    opens and closes). `token`: what mutating calls must present. `allowed_hosts`: the Host
    names requests may use (default: loopback names only)."""
    app = FastAPI(
        title="plait",
        version=__version__,
        description="The HTTP API of a plait store: runs, steps, events, operator actions, "
        "bulk actions, queues, schedules, workers, records; live feeds as server-sent events.",
        docs_url=None,  # the docs page below is served from the package, not from a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.engine = engine
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts or LOOPBACK_HOSTS))

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method not in SAFE_METHODS:
            presented = request.headers.get(TOKEN_HEADER)
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                presented = auth[len("Bearer ") :]
            if presented is None:
                return error(
                    401,
                    "Unauthorized",
                    f"this call changes state: send the server's token in the {TOKEN_HEADER} "
                    "header (or Authorization: Bearer …); without a token, any value",
                )
            if token is not None and not hmac.compare_digest(
                presented.encode("utf-8", "replace"), token.encode()
            ):
                return error(403, "Forbidden", "wrong token: nothing was done")
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.exception_handler(PlaitError)
    async def plait_error(_request: Request, exc: PlaitError) -> Response:
        return error(status_of(exc), type(exc).__name__, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error(400, "MalformedJSON", "the request body is not valid JSON")
        details = [
            {"where": ".".join(str(x) for x in p.get("loc", ())), "problem": p.get("msg", "")}
            for p in problems
        ]
        shown = "; ".join(f"{d['where']}: {d['problem']}" for d in details[:5])
        return error(422, "ValidationError", f"invalid request: {shown}", details=details)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        kinds = {404: "NotFound", 405: "MethodNotAllowed"}
        answer = error(exc.status_code, kinds.get(exc.status_code, "HTTPError"), str(exc.detail))
        answer.headers.update(exc.headers or {})
        if exc.status_code == 405:  # every method the path takes, not only its first route's
            answer.headers["Allow"] = ", ".join(methods_of(routers, request))
        return answer

    routers = [api.router, live.router, dashboard_router]
    if metrics:
        from .metrics import router as metrics_router

        routers.append(metrics_router)
    for router in routers:
        app.include_router(router)
    static = resources.files("plait.server") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
