"""``POST /api/chat``: the AI SDK's UI message stream protocol, for ``useChat`` front ends.

The same use case as ``POST /openai-response/sse`` (validation, grounding, guardrails, rate
limit, storage), spoken as the ``ai`` npm package (6.x) speaks it: the request body of its
``DefaultChatTransport`` and, in the response (header ``x-vercel-ai-ui-message-stream: v1``),
one JSON chunk per SSE ``data:`` line, ended by ``data: [DONE]``.

**The chat id and the conversation.** The AI SDK's chat ``id`` is chosen by the client, so it
proves nothing: using it as the conversation's key would let anyone who sends the same id read
(through the answers) and append to another recruiter's conversation. So it keys nothing that
is stored. The server issues the conversation id, unguessable, in the message metadata of its
first answer (``conversation_id``); ``useChat`` keeps that metadata on the assistant message
and sends it back with every later request. A request whose messages carry a
``conversation_id`` continues that stored conversation: the stored turns are the history, and
the earlier messages the client sent are ignored, so a client cannot rewrite what was said. A
request without one starts a new conversation, with the client's earlier messages as its
history, as the native endpoint does with an ``input`` list. An unknown ``conversation_id`` is
404 ``conversation_not_found``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncGenerator, Sequence
from typing import Annotated, Any, Literal, assert_never

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from sse_starlette import ServerSentEvent

from api.dependencies import ContainerDep, MetricsDep, RateLimited, container_of, metrics_of
from api.errors import ERROR_RESPONSES, RATE_LIMIT_RESPONSES, RESUME_RESPONSES
from api.observability import Metrics
from api.sse import (
    SEPARATOR,
    STREAM_HEADERS,
    AnswerEventSource,
    event_source,
    observed_events,
    resume_response,
    source_items,
    streamed,
)
from application.ask import AnswerStream
from application.resume import chat_key, conversation_key
from domain.conversation import utf8_text
from domain.models import (
    AgentStep,
    AnswerDone,
    AnswerFailed,
    AnswerMeta,
    EngineSwitched,
    Message,
    Passage,
    TextDelta,
)

UI_MESSAGE_STREAM_HEADERS = {
    "x-vercel-ai-ui-message-stream": "v1",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
"""As the ``ai`` package's ``UI_MESSAGE_STREAM_HEADERS`` (the content type is the stream's)."""

HEADERS_BY_PROTOCOL = {"sse": STREAM_HEADERS, "ui": UI_MESSAGE_STREAM_HEADERS}
"""A resumed answer's response headers, by the protocol it was asked in (``streamed``)."""

DONE_MARKER = "[DONE]"
TEXT_PART_ID = "text-1"
"""Each answer is one text part."""
PROVIDER_KEY = "askTheApplicant"
"""Our key in a chunk's ``providerMetadata`` (``source-document``: heading, snippet, page)."""

CHAT_ID_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"
"""The AI SDK's own ids are 16 letters and digits; an id names the chat's answer in flight."""

# The AI SDK's finish reasons: stop, length, content-filter, tool-calls, error, other.
_FINISH_REASONS = {
    "stop": "stop",
    "max_output_tokens": "length",
    "content_filter": "content-filter",
}

_MEDIA_TYPES = {".pdf": "application/pdf", ".md": "text/markdown", ".markdown": "text/markdown"}


class UIMessagePart(BaseModel):
    """A part of a UI message; only ``text`` parts are read, the others are kept by the client
    (sources, step markers, files) and ignored here."""

    model_config = ConfigDict(extra="allow")

    type: StrictStr
    text: StrictStr | None = None


class UIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: StrictStr = ""
    role: Literal["user", "assistant"] = Field(
        description="`system` messages are rejected: this service owns the instructions."
    )
    metadata: dict[str, Any] | None = None
    parts: list[UIMessagePart] = Field(default_factory=list)

    @field_validator("role", mode="before")
    @classmethod
    def _no_system(cls, value: object) -> object:
        if value == "system":
            raise ValueError(
                "role 'system' is not accepted: this service owns the instructions. "
                "Send the recruiter's messages and the earlier answers only"
            )
        return value

    def text(self) -> str:
        return "".join(part.text or "" for part in self.parts if part.type == "text")

    def conversation_id(self) -> str | None:
        """The conversation an answer of ours belongs to, from its message metadata."""
        value = (self.metadata or {}).get("conversation_id")
        return value if isinstance(value, str) and 0 < len(value) <= 64 else None


class ChatRequest(BaseModel):
    """The body ``DefaultChatTransport`` sends: the chat id, all its messages, the trigger.

    Extra fields (a ``useChat`` ``body`` option's) are ignored, except ``model``.
    """

    model_config = ConfigDict(extra="ignore")

    id: StrictStr = Field(
        pattern=CHAT_ID_PATTERN,
        description="The chat's id, chosen by the client (16 to 128 letters, digits, `_`, "
        "`-`). It names the chat's answer in flight, never a stored conversation.",
    )
    messages: list[UIMessage] = Field(min_length=1)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: StrictStr | None = None  # the AI SDK's name; unused
    model: StrictStr | None = Field(
        default=None, description="One of the models this service offers; omit for the default."
    )

    def conversation_id(self) -> str | None:
        """The conversation the latest of our answers in ``messages`` belongs to, if any."""
        for message in reversed(self.messages):
            if message.role == "assistant" and (found := message.conversation_id()):
                return found
        return None

    def question_and_history(self) -> tuple[list[Message], str | None]:
        """What ``AskApplicant.start`` takes: the messages to send and the conversation.

        Earlier messages without text (an answer that failed before its first word) are left
        out. With a conversation id the question alone goes: the stored turns are the history.
        """
        sent = [Message(role=m.role, content=m.text()) for m in self.messages]
        question = sent[-1]
        conversation_id = self.conversation_id()
        if conversation_id is not None:
            return [question], conversation_id
        earlier = [m for m in sent[:-1] if m.content.strip()]
        return [*earlier, question], None


def _chunk(payload: dict[str, Any]) -> ServerSentEvent:
    # A lone surrogate from the model would abort the UTF-8 response with no error chunk.
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return ServerSentEvent(utf8_text(text), sep=SEPARATOR)


def message_metadata(meta: AnswerMeta) -> dict[str, Any]:
    """The answer's metadata on the client's message: ``conversation_id`` continues it."""
    metadata: dict[str, Any] = {
        "conversation_id": meta.conversation_id,
        "model": meta.model,
        "mode": meta.mode,
    }
    if meta.notice is not None:
        metadata["notice"] = {"code": meta.notice.code, "message": meta.notice.message}
    return metadata


def source_chunks(sources: Sequence[Passage]) -> list[dict[str, Any]]:
    """One ``source-document`` chunk per passage, its ``sourceId`` the number the answer cites."""
    chunks = []
    for item in source_items(sources):
        source: str = item["source"]
        suffix = source[source.rfind(".") :].lower() if "." in source else ""
        details = {"heading": item["heading"], "snippet": item["snippet"]}
        if "page" in item:
            details["page"] = item["page"]
        chunks.append(
            {
                "type": "source-document",
                "sourceId": str(item["id"]),
                "mediaType": _MEDIA_TYPES.get(suffix, "text/plain"),
                "title": item["heading"] or source,
                "filename": source,
                "providerMetadata": {PROVIDER_KEY: details},
            }
        )
    return chunks


async def ui_message_chunks(
    stream: AnswerStream, metrics: Metrics
) -> AsyncGenerator[ServerSentEvent, None]:
    """``start`` (with the metadata), the sources, the text part, then ``finish`` or ``error``,
    then ``[DONE]``; never raises."""
    events = observed_events(stream, metrics)
    try:
        yield _chunk(
            {
                "type": "start",
                "messageId": f"msg-{secrets.token_urlsafe(12)}",
                "messageMetadata": message_metadata(stream.meta),
            }
        )
        for chunk in source_chunks(stream.sources):
            yield _chunk(chunk)
        text_open = False
        async for event in events:
            if isinstance(event, TextDelta):
                if not text_open:
                    text_open = True
                    yield _chunk({"type": "text-start", "id": TEXT_PART_ID})
                yield _chunk({"type": "text-delta", "id": TEXT_PART_ID, "delta": event.text})
                continue
            if isinstance(event, AgentStep):
                # Progress only: transient, so not kept in the message's parts.
                data = {"kind": event.kind, "name": event.name}
                if event.route is not None:
                    data["route"] = event.route
                yield _chunk({"type": "data-agent", "data": data, "transient": True})
                continue
            if isinstance(event, EngineSwitched):
                switched = {
                    "mode": event.mode,
                    "model": event.model,
                    "notice": {"code": event.notice.code, "message": event.notice.message},
                }
                yield _chunk({"type": "message-metadata", "messageMetadata": switched})
                continue
            if text_open:
                text_open = False
                yield _chunk({"type": "text-end", "id": TEXT_PART_ID})
            if isinstance(event, AnswerDone):
                usage = event.usage
                finished: dict[str, Any] = {
                    "finish_reason": event.finish_reason,
                    "usage": None
                    if usage is None
                    else {
                        "input_tokens": usage.input_tokens,
                        "output_tokens": usage.output_tokens,
                        "total_tokens": usage.total_tokens,
                    },
                }
                yield _chunk(
                    {
                        "type": "finish",
                        "finishReason": _FINISH_REASONS.get(event.finish_reason, "other"),
                        "messageMetadata": finished,
                    }
                )
            elif isinstance(event, AnswerFailed):
                # The chunk carries only a text; the code goes in the message's metadata.
                code = {"error_code": event.code.value}
                yield _chunk({"type": "message-metadata", "messageMetadata": code})
                yield _chunk({"type": "error", "errorText": event.message})
            else:
                assert_never(event)
        yield ServerSentEvent(DONE_MARKER, sep=SEPARATOR)
    finally:
        await events.aclose()
        await stream.events.aclose()


router = APIRouter()


@router.post(
    "/api/chat",
    summary="Ask about the applicant in the AI SDK's UI message stream protocol (useChat)",
    response_class=AnswerEventSource,
    status_code=200,
    responses={
        200: {
            "description": "The AI SDK's UI message stream (`x-vercel-ai-ui-message-stream: "
            "v1`): `data:` lines of JSON chunks `start` (metadata `conversation_id`, `model`, "
            "`mode`), `source-document` per source, `text-start`, `text-delta`, `text-end`, "
            "then `finish` or `error`, then `data: [DONE]`. See the README.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **ERROR_RESPONSES,
        **RATE_LIMIT_RESPONSES,
    },
    dependencies=[RateLimited],
    tags=["ask"],
)
async def chat(body: ChatRequest, request: Request) -> AnswerEventSource:
    container, metrics = container_of(request), metrics_of(request)
    messages, conversation_id = body.question_and_history()
    stream = await container.ask.start(messages, body.model, conversation_id)
    content = await streamed(
        ui_message_chunks(stream, metrics),
        container.resumable,
        protocol="ui",
        keys=[conversation_key(stream.meta.conversation_id), chat_key(body.id)],
    )
    settings = container.settings
    return event_source(
        content,
        ping=settings.sse_ping_seconds,
        send_timeout=settings.sse_send_timeout_seconds,
        headers=UI_MESSAGE_STREAM_HEADERS,
    )


@router.get(
    "/api/chat/{chat_id}/stream",
    summary="Resume the chat's answer in flight: what DefaultChatTransport.reconnectToStream "
    "(useChat's `resume: true`) asks for",
    response_class=AnswerEventSource,
    status_code=200,
    responses={
        200: {
            "description": "The chat's answer in flight, replayed from its start in the UI "
            "message stream protocol (as `resumeStreamIsReplay` expects), then live until "
            "its end.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **RESUME_RESPONSES,
        **RATE_LIMIT_RESPONSES,
    },
    dependencies=[RateLimited],
    tags=["ask"],
)
async def resume_chat(
    chat_id: Annotated[str, Path(pattern=CHAT_ID_PATTERN)],
    container: ContainerDep,
    metrics: MetricsDep,
) -> Response:
    return await resume_response(
        container,
        metrics,
        chat_key(chat_id),
        None,
        headers=HEADERS_BY_PROTOCOL,
    )
