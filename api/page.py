"""The chat page at ``GET /``: static HTML, CSS and JavaScript from ``api/static/``, no build step.

It is the reference client of the SSE contract (``static/sse.js`` parses the stream over
``fetch``), so it is served by the app itself, same origin, under a strict
``Content-Security-Policy`` of its own: scripts and styles only from this origin, no inline
code, requests only to this origin. ``SecurityHeaders`` keeps a policy a response sets.

The files are read once, on first use, and served with an ``ETag`` (a conditional request
gets 304). The page is revalidated on every load (``no-cache``); the assets may be cached
for a few minutes, by browsers and by CloudFront alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response

STATIC_DIR = Path(__file__).resolve().parent / "static"

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=300"

# Only these files are served: a name outside the list is a 404, never a path on disk.
# vendor/ holds markdown-it and DOMPurify as published on npm (tools/vendor/ copies them).
ASSET_TYPES = {
    "chat.css": "text/css; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",
    "sse.js": "text/javascript; charset=utf-8",
    "vendor/markdown-it/markdown-it.umd.min.js": "text/javascript; charset=utf-8",
    "vendor/dompurify/purify.min.js": "text/javascript; charset=utf-8",
    "markdown.js": "text/javascript; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PAGE = "index.html"
PAGE_TYPE = "text/html; charset=utf-8"

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    etag: str


@cache
def static_file(name: str) -> StaticFile:
    body = (STATIC_DIR / name).read_bytes()
    return StaticFile(body, f'"{hashlib.sha256(body).hexdigest()[:20]}"')


def _not_modified(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return wanted.strip() == "*" or etag in (tag.strip() for tag in wanted.split(","))


def _serve(request: Request, name: str, media_type: str, cache_control: str) -> Response:
    file = static_file(name)
    headers = {"ETag": file.etag, "Cache-Control": cache_control}
    if name == PAGE:
        headers["Content-Security-Policy"] = PAGE_CSP
    if _not_modified(request, file.etag):
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=media_type, headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
def chat_page(request: Request) -> Response:
    return _serve(request, PAGE, PAGE_TYPE, PAGE_CACHE)


@router.api_route("/static/{name:path}", methods=["GET", "HEAD"])
def static_asset(request: Request, name: str) -> Response:
    media_type = ASSET_TYPES.get(name)
    if media_type is None:
        raise HTTPException(404, "There is no such static file.")
    return _serve(request, name, media_type, ASSET_CACHE)
