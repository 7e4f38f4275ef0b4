"""The OpenAI Responses API adapter: ``responses.create(stream=True)``, relayed as answer events."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import anyio
import openai
from openai import AsyncOpenAI
from openai.types.responses import ResponseInputParam, ResponseUsage

from domain.errors import UPSTREAM_MESSAGES, ErrorCode
from domain.models import (
    AnswerDone,
    AnswerEvent,
    AnswerFailed,
    AnswerRequest,
    TextDelta,
    Usage,
)
from domain.policy import INSTRUCTIONS, render_grounding

logger = logging.getLogger(__name__)

UPSTREAM_CLOSE_SECONDS = 2.0

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


def failure(code: ErrorCode) -> AnswerFailed:
    return AnswerFailed(code, UPSTREAM_MESSAGES[code])


def _from_upstream_code(code: object) -> ErrorCode:
    return (
        _UPSTREAM_CODES.get(code, ErrorCode.UPSTREAM_FAILED)
        if isinstance(code, str)
        else (ErrorCode.UPSTREAM_FAILED)
    )


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


def _usage(usage: ResponseUsage | None) -> Usage | None:
    if usage is None:
        return None
    return Usage(usage.input_tokens, usage.output_tokens, usage.total_tokens)


def build_input(request: AnswerRequest) -> ResponseInputParam:
    """The conversation as Responses API input items, after the server's grounding."""
    items: list[Any] = [{"role": "developer", "content": render_grounding(request)}]
    items.extend({"role": m.role, "content": m.content} for m in request.messages)
    return items


class ResponsesEngine:
    """Streams answers from any server that speaks the OpenAI Responses API."""

    mode = "openai"

    def __init__(self, client: AsyncOpenAI, *, max_output_tokens: int) -> None:
        self._client = client
        self._max_output_tokens = max_output_tokens

    def model_for(self, requested: str) -> str:
        return requested

    async def stream_answer(self, request: AnswerRequest) -> AsyncGenerator[AnswerEvent, None]:
        try:
            stream = await self._client.responses.create(
                model=request.model,
                instructions=INSTRUCTIONS,
                input=build_input(request),
                max_output_tokens=self._max_output_tokens,
                store=False,
                stream=True,
            )
        except openai.OpenAIError as error:
            yield self._failed_before_start(error)
            return

        try:
            async for event in stream:
                if event.type == "response.output_text.delta":
                    yield TextDelta(event.delta)
                elif event.type == "response.completed":
                    yield AnswerDone("stop", _usage(event.response.usage))
                    return
                elif event.type == "response.incomplete":
                    details = event.response.incomplete_details
                    reason = details.reason if details and details.reason else "incomplete"
                    yield AnswerDone(reason, _usage(event.response.usage))
                    return
                elif event.type == "response.failed":
                    upstream_code = event.response.error.code if event.response.error else None
                    logger.warning("upstream response failed: %s", upstream_code)
                    yield failure(_from_upstream_code(upstream_code))
                    return
                elif event.type == "error":
                    logger.warning("upstream error event: %s", event.code)
                    yield failure(_from_upstream_code(event.code))
                    return
        except openai.APIConnectionError as error:
            # Includes timeouts: the stream broke after it had started.
            logger.warning("upstream stream broke: %s", type(error).__name__)
            timed_out = isinstance(error, openai.APITimeoutError)
            yield failure(
                ErrorCode.UPSTREAM_TIMEOUT if timed_out else ErrorCode.UPSTREAM_INTERRUPTED
            )
            return
        except openai.APIError as error:
            # The SDK raises nested ``{"error": {...}}`` events mid-iteration.
            logger.warning("upstream error in stream: %s", error.code)
            yield failure(classify(error))
            return
        finally:
            # Close the upstream HTTP stream even when the client left and this task is being
            # cancelled: shielded, so the close itself is not cancelled half-way.
            with anyio.CancelScope(shield=True), anyio.move_on_after(UPSTREAM_CLOSE_SECONDS):
                await stream.close()
        logger.warning("upstream stream ended without a terminal event")
        yield failure(ErrorCode.UPSTREAM_INTERRUPTED)

    @staticmethod
    def _failed_before_start(error: openai.OpenAIError) -> AnswerFailed:
        status = getattr(error, "status_code", None)
        logger.warning("upstream request failed: %s status=%s", type(error).__name__, status)
        return failure(classify(error))
