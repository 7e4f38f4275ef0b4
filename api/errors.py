"""Errors to HTTP, in one place: every error body is ``{"code", "message"}``."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.schemas import ErrorBody
from domain.errors import UPSTREAM_MESSAGES, AskError, ErrorCode

logger = logging.getLogger(__name__)


class HttpErrorCode(StrEnum):
    """Codes of the errors the HTTP layer answers by itself, before any use case runs (the
    domain's own codes are ``domain.errors.ErrorCode``)."""

    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BODY_TOO_LARGE = "body_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    RATE_LIMITED = "rate_limited"


STATUS_BY_CODE: dict[ErrorCode | HttpErrorCode, int] = {
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.MODEL_NOT_ALLOWED: 422,
    ErrorCode.INPUT_TOO_LONG: 413,
    ErrorCode.CONVERSATION_NOT_FOUND: 404,
    ErrorCode.UPSTREAM_AUTH: 502,
    ErrorCode.UPSTREAM_RATE_LIMITED: 503,
    ErrorCode.UPSTREAM_UNAVAILABLE: 503,
    ErrorCode.UPSTREAM_TIMEOUT: 504,
    ErrorCode.UPSTREAM_INTERRUPTED: 502,
    ErrorCode.UPSTREAM_FAILED: 502,
    ErrorCode.UPSTREAM_BAD_REQUEST: 502,
    ErrorCode.SERVER_SHUTTING_DOWN: 503,
    ErrorCode.STORAGE_UNAVAILABLE: 503,
    ErrorCode.INVALID_LAST_EVENT_ID: 400,
    ErrorCode.RESUME_UNAVAILABLE: 409,
    ErrorCode.INTERNAL_ERROR: 500,
    HttpErrorCode.UNAUTHORIZED: 401,
    HttpErrorCode.NOT_FOUND: 404,
    HttpErrorCode.METHOD_NOT_ALLOWED: 405,
    HttpErrorCode.BODY_TOO_LARGE: 413,
    HttpErrorCode.REQUEST_TIMEOUT: 408,
    HttpErrorCode.RATE_LIMITED: 429,
}
"""Every error code a client can get, with its HTTP status: the one table. The messages are
the errors' own (``AskError.message``, ``domain.errors.UPSTREAM_MESSAGES``, an HTTP
exception's detail)."""

# An HTTP-level error (Starlette's, or raised in api/) is known by its status alone.
_CODE_BY_STATUS = {
    status: code for code, status in STATUS_BY_CODE.items() if isinstance(code, HttpErrorCode)
}

# For routes' ``responses=``, so the OpenAPI docs show the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    408: {
        "model": ErrorBody,
        "description": "The body did not arrive within REQUEST_BODY_TIMEOUT_SECONDS.",
    },
    413: {
        "model": ErrorBody,
        "description": "The input is longer than MAX_INPUT_CHARS, or the body than MAX_BODY_BYTES.",
    },
    503: {
        "model": ErrorBody,
        "description": "The service is shutting down or its storage is unreachable; retry.",
    },
    404: {"model": ErrorBody, "description": "No conversation has this `conversation_id`."},
    422: {"model": ErrorBody, "description": "The request is invalid; the message says why."},
}
RESUME_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "No answer is in flight (or it ended more than 60 s ago)."},
    400: {
        "model": ErrorBody,
        "description": "`invalid_last_event_id`: the Last-Event-ID is not an id this service sent.",
    },
    409: {
        "model": ErrorBody,
        "description": "`resume_unavailable`: the Last-Event-ID names another answer, or "
        "events no longer kept; read the stored conversation instead.",
    },
}
UPSTREAM_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    502: {"model": ErrorBody, "description": "The model provider failed or rejected the call."},
    503: {"model": ErrorBody, "description": "The model provider is busy or unreachable."},
    504: {"model": ErrorBody, "description": "The model provider did not answer in time."},
}


def error_response(
    code: ErrorCode | HttpErrorCode, message: str, status: int | None = None
) -> JSONResponse:
    return JSONResponse(
        {"code": code.value, "message": message}, status_code=status or STATUS_BY_CODE[code]
    )


_INPUT_SHAPE = (
    "'input': send the question as a string, or the conversation as a list of "
    '{"role": "user" | "assistant", "content": str} messages'
)


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "is not a known field; remove it"
    return f"'{location}': {message}" if location else message


def _problems(errors: list[dict[str, Any]]) -> list[str]:
    """One line per problem; a value that fits neither form of ``input`` says what would."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return ['The body is not valid JSON: send a JSON object such as {"input": "..."}']
    # ``input`` is ``str | list[...]``: pydantic reports a failure for each branch, named by
    # the branch's type in the location.
    branches = [e for e in errors if len(e["loc"]) >= 3 and e["loc"][1] == "input"]
    as_list = [e for e in branches if e["loc"][2] == "list[InputMessage]"]
    as_text = [e for e in branches if e not in as_list]
    others = [e for e in errors if e not in branches]
    problems = [_describe(e) for e in others]
    text_problems = [e for e in as_text if e.get("type") != "string_type"]
    if text_problems:
        # The value was a string: only the string's own problems matter.
        problems += [_describe({**e, "loc": ("input",)}) for e in text_problems]
    elif any(len(e["loc"]) > 3 for e in as_list):
        # The value was a list: only the list's own problems matter.
        problems += [_describe({**e, "loc": ("input", *e["loc"][3:])}) for e in as_list]
    elif as_list or as_text:
        problems.append(_INPUT_SHAPE)
    return list(dict.fromkeys(problems))


async def _validation_failed(_: Request, error: RequestValidationError) -> JSONResponse:
    return error_response(
        ErrorCode.INVALID_REQUEST, "; ".join(_problems(list(error.errors()))) + "."
    )


async def _ask_error(_: Request, error: AskError) -> JSONResponse:
    response = error_response(error.code, error.message)
    if error.code == ErrorCode.SERVER_SHUTTING_DOWN:
        response.headers["Retry-After"] = "5"
    return response


class BodyTooLarge(StarletteHTTPException):
    """The request body is longer than MAX_BODY_BYTES (an HTTP concern, not the domain's)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413, f"The request body is larger than {max_bytes} bytes: send a shorter question."
        )


class BodyReadTimeout(StarletteHTTPException):
    """The request body did not arrive in time (a client that stalls or trickles it)."""

    def __init__(self, timeout_seconds: float) -> None:
        unit = "second" if timeout_seconds == 1 else "seconds"
        super().__init__(
            408,
            f"The request body did not arrive within {timeout_seconds:g} {unit}: "
            "send the whole body at once.",
            # The rest of the body may still come: the connection cannot take another request.
            headers={"Connection": "close"},
        )


class TooManyRequests(StarletteHTTPException):
    """The client is over RATE_LIMIT_PER_MINUTE; ``Retry-After`` says when to try again."""

    def __init__(self, limit: int, retry_after_seconds: int) -> None:
        wait = max(1, retry_after_seconds)
        unit = "second" if wait == 1 else "seconds"
        super().__init__(
            429,
            f"Too many questions from your address: the limit is {limit} per minute. "
            f"Try again in {wait} {unit}.",
            headers={"Retry-After": str(wait), "X-RateLimit-Limit": str(limit)},
        )


RATE_LIMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorBody,
        "description": "Over RATE_LIMIT_PER_MINUTE for this client; retry after `Retry-After`.",
        "headers": {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}},
            "X-RateLimit-Limit": {
                "description": "Requests allowed per minute.",
                "schema": {"type": "integer"},
            },
        },
    },
}


def http_error_response(error: StarletteHTTPException) -> JSONResponse:
    """The body for an HTTP-level error (not found, too large, rate limited, ...)."""
    fallback = ErrorCode.INVALID_REQUEST if error.status_code < 500 else ErrorCode.INTERNAL_ERROR
    code = _CODE_BY_STATUS.get(error.status_code, fallback)
    return JSONResponse(
        {"code": code.value, "message": error.detail},
        status_code=error.status_code,
        headers=error.headers,
    )


def _unparsable_body(cause: BaseException) -> str:
    if isinstance(cause, UnicodeError):
        reason = "it is not UTF-8 text"
    elif isinstance(cause, RecursionError):
        reason = "it is nested too deeply"
    else:
        reason = "it could not be read"
    return f'The body is not valid JSON ({reason}): send a JSON object such as {{"input": "..."}}.'


async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
    if error.status_code == 400 and error.__cause__ is not None:
        # FastAPI answers 400 when reading the JSON body raises anything but a JSON syntax
        # error (bytes that are not UTF-8, nesting deeper than the parser goes): the same
        # invalid request as bad JSON, so the same documented 422.
        return error_response(ErrorCode.INVALID_REQUEST, _unparsable_body(error.__cause__))
    return http_error_response(error)


class StartTrackingSend:
    """``send``, noting whether the response has started: an error raised before then can
    still be answered with the usual error body, one raised after cannot."""

    __slots__ = ("_send", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class CatchUnhandled:
    """Turns an unexpected exception into a plain 500 body, logging its type and no trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracking_send = StartTrackingSend(send)
        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            logger.error("unhandled %s on %s", type(error).__name__, scope.get("path"))
            if not tracking_send.started:
                response = error_response(
                    ErrorCode.INTERNAL_ERROR, UPSTREAM_MESSAGES[ErrorCode.INTERNAL_ERROR]
                )
                await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_failed)  # type: ignore[arg-type]
    app.add_exception_handler(AskError, _ask_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_middleware(CatchUnhandled)
