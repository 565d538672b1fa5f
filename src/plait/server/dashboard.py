"""The dashboard's pages: one HTML page (the app is static/app.js, which reads the API) and the
API's docs page, both served from the package: no CDN, no network."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.responses import HTMLResponse, RedirectResponse, Response

router = APIRouter(include_in_schema=False)

# the pages load scripts and styles from this server only, and nothing else (no inline script)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _page(name: str) -> HTMLResponse:
    html = (resources.files("plait.server") / "static" / name).read_text(encoding="utf-8")
    return HTMLResponse(html, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})


@router.get("/")
async def index() -> Response:
    return _page("index.html")


@router.get("/ui")
async def ui() -> Response:
    return RedirectResponse("/")


@router.get("/api/docs")
async def docs() -> Response:
    return _page("docs.html")
