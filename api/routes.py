"""HTTP routes: thin, they parse, call the use case and encode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from api.dependencies import (
    AskDep,
    ContainerDep,
    MetricsDep,
    RateLimited,
    ReviewDep,
    container_of,
    metrics_of,
)
from api.errors import (
    ERROR_RESPONSES,
    RATE_LIMIT_RESPONSES,
    RESUME_RESPONSES,
    UPSTREAM_ERROR_RESPONSES,
)
from api.schemas import (
    AnswerResponse,
    AskRequest,
    ConversationOut,
    Health,
    MessageOut,
    NoticeOut,
    Readiness,
    SourceOut,
    Usage,
)
from api.sse import (
    SSE_DESCRIPTION,
    SSE_EXAMPLE,
    AnswerEventSource,
    answer_events,
    event_source,
    resume_response,
    source_items,
    streamed,
)
from api.ui_message_stream import HEADERS_BY_PROTOCOL
from application.resume import conversation_key
from domain.conversation import utf8_text
from domain.errors import AnswerNotCompleted

logger = logging.getLogger(__name__)
router = APIRouter()

T = TypeVar("T")

CLIENT_CLOSED_REQUEST = 499
"""The status the access log shows for a client that left before its answer (nginx's)."""


async def _client_left(request: Request) -> None:
    """Returns when the client disconnects. The body has been read: the next message the
    server has for the app is ``http.disconnect``."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_client_leaves(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """``work``'s result; ``None`` if the client left first, ``work`` then cancelled (for an
    answer: the upstream call closed, the answer stored ``interrupted``), as sse-starlette
    does for the streams."""
    working = asyncio.ensure_future(work)
    watching = asyncio.ensure_future(_client_left(request))
    try:
        await asyncio.wait((working, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Cancelled ourselves (shutdown), or done: neither task outlives the request.
        watching.cancel()
        if not working.done():
            working.cancel()
        await asyncio.wait((working, watching))
    if working.cancelled():
        return None
    return working.result()


@router.post(
    "/openai-response/sse",
    summary="Ask about the applicant; the answer streams as Server-Sent Events",
    response_class=AnswerEventSource,
    status_code=200,
    responses={
        200: {
            "description": SSE_DESCRIPTION,
            "content": {
                "text/event-stream": {"schema": {"type": "string"}, "example": SSE_EXAMPLE}
            },
        },
        **ERROR_RESPONSES,
        **RATE_LIMIT_RESPONSES,
    },
    dependencies=[RateLimited],
    tags=["ask"],
)
async def ask_streaming(body: AskRequest, request: Request) -> AnswerEventSource:
    container, metrics = container_of(request), metrics_of(request)
    # Validation happens here, before the response starts: a bad request gets a 4xx, not a stream.
    stream = await container.ask.start(body.messages(), body.model, body.conversation_id)
    content = await streamed(
        answer_events(stream, metrics),
        container.resumable,
        protocol="sse",
        keys=[conversation_key(stream.meta.conversation_id)],
    )
    settings = container.settings
    return event_source(
        content, ping=settings.sse_ping_seconds, send_timeout=settings.sse_send_timeout_seconds
    )


@router.get(
    "/conversations/{conversation_id}/stream",
    summary="Resume the answer in flight for a conversation (Last-Event-ID)",
    response_class=AnswerEventSource,
    status_code=200,
    responses={
        200: {
            "description": "The rest of the conversation's answer in flight, after the event "
            "`Last-Event-ID` names (from its start without one), framed as it was first sent: "
            "the events of `POST /openai-response/sse`, each with its `id` "
            "(`<answer id>.<number>`); an answer asked on `POST /api/chat` continues in the "
            "AI SDK's protocol (header `x-vercel-ai-ui-message-stream: v1`).",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **RESUME_RESPONSES,
        **RATE_LIMIT_RESPONSES,
    },
    dependencies=[RateLimited],
    tags=["conversations"],
)
async def resume_conversation(
    conversation_id: str,
    container: ContainerDep,
    metrics: MetricsDep,
    last_event_id_header: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="The `id` of the last event received (EventSource sends it itself).",
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Query(description="The same, for clients that cannot set the header."),
    ] = None,
) -> Response:
    return await resume_response(
        container,
        metrics,
        conversation_key(conversation_id),
        last_event_id_header if last_event_id_header is not None else last_event_id,
        headers=HEADERS_BY_PROTOCOL,
    )


@router.delete(
    "/conversations/{conversation_id}/stream",
    summary="Stop the answer in flight for a conversation",
    status_code=204,
    responses={204: {"description": "Stopped (stored `interrupted`), or none was in flight."}},
    tags=["conversations"],
)
async def stop_conversation_answer(conversation_id: str, container: ContainerDep) -> Response:
    # With resumable answers a closed connection does not stop an answer at once (the client
    # may come back): a Stop button says so here.
    if container.resumable is not None:
        await container.resumable.stop(conversation_key(conversation_id))
    return Response(status_code=204)


@router.post(
    "/openai-response",
    summary="Ask about the applicant; the whole answer as JSON",
    response_model=AnswerResponse,
    responses={**ERROR_RESPONSES, **UPSTREAM_ERROR_RESPONSES, **RATE_LIMIT_RESPONSES},
    dependencies=[RateLimited],
    tags=["ask"],
)
async def ask_json(
    body: AskRequest, ask: AskDep, metrics: MetricsDep, request: Request
) -> AnswerResponse | Response:
    # As on the SSE route: the question is accepted (or refused with a 4xx) whatever the client
    # does meanwhile; then, if it leaves, the answer stops and is stored ``interrupted``.
    stream = await ask.start(body.messages(), body.model, body.conversation_id)
    try:
        answer = await _unless_client_leaves(request, ask.collect(stream))
    except AnswerNotCompleted as error:
        metrics.count_failure(error.code)
        metrics.count_usage(error.usage)
        raise
    finally:
        # Closed by ``collect`` already, unless it was cancelled before it began reading.
        await stream.events.aclose()
    if answer is None:  # no one to answer: nothing is sent
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    if answer.fallback_cause is not None:
        metrics.count_fallback(ask.mode, answer.fallback_cause)
    usage = answer.usage
    metrics.count_usage(usage)
    metrics.count_usage(answer.fallback_usage)
    metrics.count_decline(answer.declined)
    notice = answer.meta.notice
    return AnswerResponse(
        # A lone surrogate from the model would make the JSON body unencodable: a 500.
        output_text=utf8_text(answer.text),
        model=answer.meta.model,
        mode=answer.meta.mode,
        usage=Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            total_tokens=usage.total_tokens,
        )
        if usage
        else None,
        conversation_id=answer.meta.conversation_id,
        notice=NoticeOut(code=notice.code, message=notice.message) if notice else None,
        sources=[SourceOut(**item) for item in source_items(answer.sources)],
    )


@router.get("/health", response_model=Health, tags=["operations"], summary="The process is alive")
async def health() -> Health:
    return Health()


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready to answer."}},
    tags=["operations"],
    summary="The service can answer: documents loaded, database reachable",
)
async def ready(container: ContainerDep) -> Readiness | JSONResponse:
    passages = len(container.knowledge.passages)
    try:
        await container.conversations.check()
        database: Literal["ok", "unavailable"] = "ok"
    except Exception as error:  # any failure means "not ready"; the type is enough to log
        logger.warning("readiness: database unavailable: %s", type(error).__name__)
        database = "unavailable"
    is_ready = bool(passages) and database == "ok"
    upstream = container.ask.upstream
    readiness = Readiness(
        status="ready" if is_ready else "not_ready",
        engine=container.ask.mode,
        passages=passages,
        database=database,
        upstream_key=upstream.key,
        upstream_last_error=upstream.last_error.value if upstream.last_error else None,
    )
    if is_ready:
        return readiness
    return JSONResponse(readiness.model_dump(), status_code=503)


@router.get(
    "/conversations/{conversation_id}",
    response_model=ConversationOut,
    responses={404: ERROR_RESPONSES[404]},
    tags=["conversations"],
    summary="A conversation's messages, oldest first",
)
async def conversation(conversation_id: str, review: ReviewDep) -> ConversationOut:
    found = await review.conversation(conversation_id)
    return ConversationOut(
        id=found.id,
        created_at=found.created_at,
        messages=[
            MessageOut(
                role=message.role,
                content=message.content,
                status=message.status,
                created_at=message.created_at,
                source=message.source,
            )
            for message in found.messages()
        ],
    )
