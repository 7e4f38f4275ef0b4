"""What the Responses API's stream events and errors mean, as answer events: one set of rules.

Both engines that talk to a Responses API server use it: the relay (``openai_engine``) with
the raw events off the wire, decoded as JSON only when they are relayed (the SDK's typed
events cost several times the rest of the relay per delta, see docs/performance.md); the
Agents engine with the SDK's typed events, turned into the same JSON-shaped dicts. Either way
:func:`answer_event` alone decides what a delta, a completed, incomplete or failed response,
or an error event means.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import openai
import orjson
from openai.types.responses import ResponseStreamEvent

from common.sse import RawEvent
from domain.errors import UPSTREAM_MESSAGES, ErrorCode
from domain.models import AnswerDone, AnswerEvent, AnswerFailed, TextDelta, Usage

logger = logging.getLogger(__name__)

_DELTA = "response.output_text.delta"

RELAYED_TYPES = frozenset(
    {_DELTA, "response.completed", "response.incomplete", "response.failed", "error"}
)
"""The events an answer is made of. The Responses API names each event after its type; the
other ``response.*`` events (``response.created``, ``response.output_item.done``...) are
skipped by name, without decoding: most of them carry the whole response object."""

# Error codes OpenAI puts in ``error`` events and ``response.error``, mapped to ours.
_UPSTREAM_CODES: Mapping[str, ErrorCode] = {
    "rate_limit_exceeded": ErrorCode.UPSTREAM_RATE_LIMITED,
    "insufficient_quota": ErrorCode.UPSTREAM_RATE_LIMITED,
    "server_error": ErrorCode.UPSTREAM_FAILED,
    "server_is_overloaded": ErrorCode.UPSTREAM_UNAVAILABLE,
    "invalid_api_key": ErrorCode.UPSTREAM_AUTH,
    "invalid_prompt": ErrorCode.UPSTREAM_BAD_REQUEST,
    "context_length_exceeded": ErrorCode.UPSTREAM_BAD_REQUEST,
}


def failure(code: ErrorCode, usage: Usage | None = None) -> AnswerFailed:
    return AnswerFailed(code, UPSTREAM_MESSAGES[code], usage)


def _from_upstream_code(code: object) -> ErrorCode:
    if isinstance(code, str):
        return _UPSTREAM_CODES.get(code, ErrorCode.UPSTREAM_FAILED)
    return ErrorCode.UPSTREAM_FAILED


def classify(error: openai.OpenAIError) -> ErrorCode:
    """Our code for an SDK exception; the exception's text is never shown or logged."""
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return ErrorCode.UPSTREAM_AUTH
    if isinstance(error, openai.RateLimitError):
        return ErrorCode.UPSTREAM_RATE_LIMITED
    if isinstance(error, openai.APITimeoutError):
        return ErrorCode.UPSTREAM_TIMEOUT
    if isinstance(error, openai.APIConnectionError | openai.InternalServerError):
        return ErrorCode.UPSTREAM_UNAVAILABLE
    if isinstance(error, openai.BadRequestError | openai.NotFoundError):
        return ErrorCode.UPSTREAM_BAD_REQUEST
    if isinstance(error, openai.APIError):
        body = error.body
        return _from_upstream_code(body.get("code") if isinstance(body, dict) else None)
    return ErrorCode.UPSTREAM_FAILED


def _usage(response: Any) -> Usage | None:
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    try:
        return Usage(
            int(usage["input_tokens"]), int(usage["output_tokens"]), int(usage["total_tokens"])
        )
    except (KeyError, TypeError, ValueError):
        return None


def _error_code(error: Any) -> object:
    return error.get("code") if isinstance(error, dict) else None


def answer_event(payload: Mapping[str, Any], name: str) -> AnswerEvent | None:
    """Our event for an upstream event's JSON object, or ``None`` for the many we do not
    relay. ``name`` is the event's name on the wire (its type for the SDK's events)."""
    kind = payload.get("type")
    if kind == _DELTA:
        delta = payload.get("delta")
        return TextDelta(delta) if isinstance(delta, str) else None
    if name == "error" or kind == "error" or ("error" in payload and kind is None):
        # Flat ``{"type": "error", "code": ...}`` or nested ``{"error": {"code": ...}}``.
        code = payload.get("code") if kind == "error" else _error_code(payload.get("error"))
        logger.warning("upstream error event: %s", code)
        return failure(_from_upstream_code(code))
    response = payload.get("response")
    if kind == "response.completed":
        return AnswerDone("stop", _usage(response))
    if kind == "response.incomplete":
        details = response.get("incomplete_details") if isinstance(response, dict) else None
        reason = details.get("reason") if isinstance(details, dict) else None
        return AnswerDone(
            reason if isinstance(reason, str) and reason else "incomplete", _usage(response)
        )
    if kind == "response.failed":
        upstream_code = _error_code(response.get("error")) if isinstance(response, dict) else None
        logger.warning("upstream response failed: %s", upstream_code)
        return failure(_from_upstream_code(upstream_code), _usage(response))
    return None


def decoded(data: bytes) -> Any:
    """The JSON value ``data`` holds, as ``json.loads`` reads it; raises ``ValueError`` if it
    is not JSON.

    orjson decodes a delta's event in about a quarter of the standard library's time, but
    refuses what a model's JSON may hold and the relay must take: half a surrogate pair (a
    delta may split an emoji's pair; the encoders mend it). The standard library reads what
    orjson refuses.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def map_payload(event: RawEvent) -> AnswerEvent | None:
    """:func:`answer_event` for an event as it arrives on the wire; its JSON is decoded only
    if the event may be relayed."""
    name = event.type
    if name.startswith("response.") and name not in RELAYED_TYPES:
        return None
    if event.data.startswith(b"[DONE]"):
        return None
    try:
        payload = decoded(event.data)
    except ValueError:
        logger.warning("upstream sent an event that is not JSON")
        return failure(ErrorCode.UPSTREAM_FAILED)
    if not isinstance(payload, dict):
        return None
    return answer_event(payload, name)


def map_event(event: ResponseStreamEvent) -> AnswerEvent | None:
    """:func:`answer_event` for one of the SDK's typed events."""
    if event.type not in RELAYED_TYPES:
        return None
    return answer_event(event.model_dump(), event.type)
