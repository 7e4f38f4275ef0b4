"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with every
asset served by the app itself: no CDN, so they work without internet and load no unpinned
third-party script on the operator's page.

The assets come from a package, ``fastapi-offline`` (its ``static/`` folder: Swagger UI's
``swagger-ui-bundle.js`` and ``swagger-ui.css``, ReDoc's ``redoc.standalone.js``), pinned in
``uv.lock`` like any dependency; its helpers are not used, only the files. The pages are
FastAPI's own (``get_swagger_ui_html``, ``get_redoc_html``) pointed at them, each with a
``Content-Security-Policy`` that allows scripts from this origin only (and Swagger UI's one
inline start-up script, by its hash).
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

ASSETS_PATH = "/docs-assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
# Only these files are served: a name outside the list is a 404, never a path on disk.
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
ASSET_CACHE = "public, max-age=86400"

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def page_csp(html: str) -> str:
    """Scripts from this origin and the page's own inline scripts (by hash), nothing else:
    styles inline too (both UIs set them), images from here or ``data:`` (Swagger UI's icons),
    ReDoc's search worker from a ``blob:``; requests (the schema, "Try it out") to this
    origin only."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}".rstrip()
        + "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _page(html: str) -> HTMLResponse:
    return HTMLResponse(
        html, headers={"Content-Security-Policy": page_csp(html), "Cache-Control": "no-cache"}
    )


@cache
def _swagger_ui(root: str, openapi_url: str, oauth2_redirect_url: str, title: str) -> str:
    html = get_swagger_ui_html(
        openapi_url=f"{root}{openapi_url}",
        title=f"{title} - Swagger UI",
        oauth2_redirect_url=f"{root}{oauth2_redirect_url}",
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
    )
    return bytes(html.body).decode()


@cache
def _redoc(root: str, openapi_url: str, title: str) -> str:
    html = get_redoc_html(
        openapi_url=f"{root}{openapi_url}",
        title=f"{title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        with_google_fonts=False,
    )
    return bytes(html.body).decode()


def install_docs_pages(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve ``docs_url`` and ``redoc_url`` (create ``app`` with ``docs_url=None`` and
    ``redoc_url=None``, so FastAPI's CDN-loading pages are not there too)."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = f"{docs_url}/oauth2-redirect"
    router = APIRouter(include_in_schema=False)

    @router.get(docs_url)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _page(_swagger_ui(root, openapi_url, oauth2_redirect_url, app.title))

    @router.get(oauth2_redirect_url)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _page(bytes(get_swagger_ui_oauth2_redirect_html().body).decode())

    @router.get(redoc_url)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _page(_redoc(root, openapi_url, app.title))

    @router.api_route(f"{ASSETS_PATH}/{{name}}", methods=["GET", "HEAD"])
    async def asset(name: str) -> Response:
        media_type = ASSET_TYPES.get(name)
        if media_type is None:
            raise HTTPException(404, "There is no such documentation asset.")
        return FileResponse(
            ASSETS_DIR / name, media_type=media_type, headers={"Cache-Control": ASSET_CACHE}
        )

    app.include_router(router)
