"""Abuse limits and hygiene at the HTTP edge, as pure ASGI middleware.

Pure ASGI (not ``BaseHTTPMiddleware``) so that streamed answers pass through untouched.
From the outside in:

- ``SecurityHeaders`` adds the security headers to every response, SSE streams and errors
  included.
- ``RequestBodyGuard`` applies the rules for reading a request body: a request to a route
  that declares ``RateLimited`` is counted before its body is read (a flood of invalid bodies
  is limited like valid questions); 408 for a body that has not all arrived
  REQUEST_BODY_TIMEOUT_SECONDS after the app began to read it (a client that sends the
  headers, then stalls or trickles the body, must not hold a connection and a task forever);
  413 for a body over MAX_BODY_BYTES, at once when its ``Content-Length`` says so, else as
  soon as the bytes received pass the limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import anyio
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.client_address import IPNetwork, peer_is_trusted, trusted_networks
from api.dependencies import RateLimited, rate_limit_decision
from api.errors import (
    BodyReadTimeout,
    BodyTooLarge,
    StartTrackingSend,
    TooManyRequests,
    http_error_response,
)
from settings import Settings

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-site",
}
# JSON, SSE and errors load nothing and are framed by no one.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# An HTML page (Swagger UI at /docs, ReDoc, a chat page) loads scripts and styles that a
# strict policy would block: it sets its own policy, or gets only this one.
HTML_CSP = "frame-ancestors 'none'"
HSTS = "max-age=31536000"


def _over_https(scope: Scope, trusted: Sequence[IPNetwork]) -> bool:
    """The request came over HTTPS: to us, or to a trusted proxy that says so."""
    if scope.get("scheme") == "https":
        return True
    if not peer_is_trusted(scope, trusted):
        return False
    headers = Headers(scope=scope)
    for name in ("x-forwarded-proto", "cloudfront-forwarded-proto"):
        # The first value is the scheme the outermost proxy received.
        if headers.get(name, "").split(",")[0].strip().lower() == "https":
            return True
    return False


class SecurityHeaders:
    """Security headers on every response; headers the app set itself are kept.

    ``Content-Security-Policy`` depends on the response: none is added when the app set one;
    HTML gets ``frame-ancestors 'none'`` only (so /docs keeps working); everything else gets
    ``default-src 'none'``. ``Strict-Transport-Security`` only over HTTPS (see ``_over_https``).
    """

    def __init__(self, app: ASGIApp, trusted: Sequence[IPNetwork] = ()) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = _over_https(scope, self.trusted)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if "content-security-policy" not in headers:
                    html = headers.get("content-type", "").startswith("text/html")
                    headers["Content-Security-Policy"] = HTML_CSP if html else API_CSP
                if https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _declares_rate_limit(route: object) -> bool:
    return isinstance(route, APIRoute) and any(
        depends.dependency is RateLimited.dependency for depends in route.dependencies
    )


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


class RequestBodyGuard:
    """Three rules for reading a request body, applied in one wrapper of ``receive``:

    - **rate limit first** (``RateLimited``): FastAPI parses JSON before it solves a route's
      dependencies, so a malformed body would get its 422 without being counted. Routing has
      chosen the route (``scope["route"]``) by the time the body is first read; at that
      moment, if the route declares ``RateLimited``, the request is counted, and over the limit
      ``TooManyRequests`` is raised instead of reading: FastAPI hands it to the error handlers
      like any ``HTTPException``. The dependency then reuses the decision instead of counting
      the request twice. Its Redis call is not counted in the body's time.
    - **size** (``max_bytes``): 413 for a body over the limit, before the app sees more than
      that: at once when its ``Content-Length`` says so, else as soon as the bytes received
      pass the limit.
    - **deadline** (``timeout``): 408 for a body that has not all arrived ``timeout`` seconds
      after the app first asked for it, whether the client stalls or trickles it; once it
      has, reads are not bounded (a route may wait for ``http.disconnect``).

    The refusals are raised inside the app, whose handlers answer with the usual error body;
    one raised where no handler sees it, before the response has started, is answered here.
    One middleware, not three: a streamed answer holds each middleware's frame and closures
    for its whole life, and each message passes through each of them.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await http_error_response(BodyTooLarge(self.max_bytes))(scope, receive, send)
            return
        checked = complete = False
        deadline = math.inf
        received = 0

        async def guarded_receive() -> Message:
            nonlocal checked, complete, deadline, received
            if complete:
                return await receive()
            if not checked:
                checked = True
                if _declares_rate_limit(scope.get("route")):
                    decision = await rate_limit_decision(scope)
                    if decision is not None and not decision.allowed:
                        raise TooManyRequests(decision.limit, decision.retry_after_seconds)
            if deadline == math.inf:
                deadline = time.monotonic() + self.timeout
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as waiting:
                message = await receive()
            if waiting.cancelled_caught:
                raise BodyReadTimeout(self.timeout)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        tracking_send = StartTrackingSend(send)
        try:
            await self.app(scope, guarded_receive, tracking_send)
        except (BodyTooLarge, BodyReadTimeout) as error:
            if tracking_send.started:
                raise
            await http_error_response(error)(scope, receive, send)


def install_protection(app: FastAPI, settings: Settings) -> None:
    """The request body's rules (rate limit before it is read, size, deadline) and the
    security headers (outermost).

    Call it before adding CORS, so that CORS (outside) adds its headers to 408, 413 and 429
    too and a browser can read them.
    """
    app.add_middleware(
        RequestBodyGuard,
        max_bytes=settings.max_body_bytes,
        timeout=settings.request_body_timeout_seconds,
    )
    app.add_middleware(SecurityHeaders, trusted=trusted_networks(settings.trusted_proxies))
