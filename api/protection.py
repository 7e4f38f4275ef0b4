"""Abuse limits and hygiene at the HTTP edge, as pure ASGI middleware.

Pure ASGI (not ``BaseHTTPMiddleware``) so that streamed answers pass through untouched.
From the outside in:

- ``SecurityHeaders`` adds the security headers to every response, SSE streams and errors
  included.
- ``BodyReadDeadline`` answers 408 to a body that has not all arrived
  REQUEST_BODY_TIMEOUT_SECONDS after the app began to read it (a client that sends the
  headers, then stalls or trickles the body, must not hold a connection and a task forever).
- ``RateLimitFirst`` counts a request to a route that declares ``RateLimited`` before its
  body is read, so a flood of invalid bodies is limited like valid questions.
- ``BodySizeLimit`` answers 413 to a body over MAX_BODY_BYTES: at once when its
  ``Content-Length`` says so, else as soon as the bytes received pass the limit.
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
from api.errors import BodyReadTimeout, BodyTooLarge, TooManyRequests, http_error_response
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


class RateLimitFirst:
    """Applies ``RateLimited`` before FastAPI reads and parses the body.

    FastAPI parses JSON before it solves a route's dependencies, so a malformed body would
    get its 422 without being counted. Routing has chosen the route (``scope["route"]``) by
    the time the body is first read; at that moment, if the route declares ``RateLimited``,
    the request is counted, and over the limit ``TooManyRequests`` is raised instead of
    reading: FastAPI hands it to the error handlers like any ``HTTPException``. The
    dependency then reuses the decision instead of counting the request twice.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        checked = False

        async def receive_within_limit() -> Message:
            nonlocal checked
            if not checked:
                checked = True
                if _declares_rate_limit(scope.get("route")):
                    decision = await rate_limit_decision(scope)
                    if decision is not None and not decision.allowed:
                        raise TooManyRequests(decision.limit, decision.retry_after_seconds)
            return await receive()

        await self.app(scope, receive_within_limit, send)


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


async def _answer_before_start(
    app: ASGIApp,
    scope: Scope,
    wrapped_receive: Receive,
    receive: Receive,
    send: Send,
    refusal: type[BodyTooLarge | BodyReadTimeout],
) -> None:
    """Run ``app`` reading through ``wrapped_receive``; a ``refusal`` raised before the
    response has started is answered with the usual error body (after, it propagates)."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, wrapped_receive, tracking_send)
    except refusal as error:
        if started:
            raise
        await http_error_response(error)(scope, receive, send)


class BodySizeLimit:
    """413 for a request body over ``max_bytes``, before the app sees more than that."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await http_error_response(BodyTooLarge(self.max_bytes))(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the app: its handler answers with the usual error body.
                    raise BodyTooLarge(self.max_bytes)
            return message

        await _answer_before_start(self.app, scope, counting_receive, receive, send, BodyTooLarge)


class BodyReadDeadline:
    """408 for a body that has not all arrived ``timeout`` seconds after the app first asked
    for it, whether the client stalls or trickles it; once it has, reads are not bounded (a
    route may wait for ``http.disconnect``)."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = math.inf
        complete = False

        async def bounded_receive() -> Message:
            nonlocal deadline, complete
            if complete:
                return await receive()
            if deadline == math.inf:
                deadline = time.monotonic() + self.timeout
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as waiting:
                message = await receive()
            if waiting.cancelled_caught:
                # Raised inside the app: its handler answers with the usual error body.
                raise BodyReadTimeout(self.timeout)
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await _answer_before_start(self.app, scope, bounded_receive, receive, send, BodyReadTimeout)


def install_protection(app: FastAPI, settings: Settings) -> None:
    """Body limit, body deadline, rate limit before the body, and security headers (outermost).

    Call it before adding CORS, so that CORS (outside) adds its headers to 413 and 429 too
    and a browser can read them.
    """
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimitFirst)
    # Outside the rate limit: its Redis call, made on the first read, is not the client's time.
    app.add_middleware(BodyReadDeadline, timeout=settings.request_body_timeout_seconds)
    app.add_middleware(SecurityHeaders, trusted=trusted_networks(settings.trusted_proxies))
