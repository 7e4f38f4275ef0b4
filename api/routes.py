"""HTTP routes: thin, they parse, call the use case and encode."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from api.errors import ERROR_RESPONSES, UPSTREAM_ERROR_RESPONSES
from api.schemas import AnswerResponse, AskRequest, Health, Readiness, Usage
from api.sse import SEPARATOR, SSE_DESCRIPTION, SSE_EXAMPLE, answer_events
from application.ask import AskApplicant
from infrastructure.bootstrap import Container

router = APIRouter()


def _container(request: Request) -> Container:
    container: Container = request.state.container
    return container


ContainerDep = Annotated[Container, Depends(_container)]


def _ask(container: ContainerDep) -> AskApplicant:
    return container.ask


AskDep = Annotated[AskApplicant, Depends(_ask)]


@router.post(
    "/openai-response/sse",
    summary="Ask about the applicant; the answer streams as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": SSE_DESCRIPTION,
            "content": {
                "text/event-stream": {"schema": {"type": "string"}, "example": SSE_EXAMPLE}
            },
        },
        **ERROR_RESPONSES,
    },
    tags=["ask"],
)
async def ask_streaming(
    body: AskRequest, ask: AskDep, container: ContainerDep
) -> EventSourceResponse:
    # Validation happens here, before the response starts: a bad request gets a 4xx, not a stream.
    stream = await ask.start(body.messages(), body.model)
    return EventSourceResponse(
        answer_events(stream),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        ping=container.settings.sse_ping_seconds,
        # A client that stops reading must not hold the stream (and the upstream call) forever.
        send_timeout=container.settings.sse_send_timeout_seconds,
        sep=SEPARATOR,
    )


@router.post(
    "/openai-response",
    summary="Ask about the applicant; the whole answer as JSON",
    response_model=AnswerResponse,
    responses={**ERROR_RESPONSES, **UPSTREAM_ERROR_RESPONSES},
    tags=["ask"],
)
async def ask_json(body: AskRequest, ask: AskDep) -> AnswerResponse:
    answer = await ask.answer(body.messages(), body.model)
    usage = answer.usage
    return AnswerResponse(
        output_text=answer.text,
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
    )


@router.get("/health", response_model=Health, tags=["operations"], summary="The process is alive")
async def health() -> Health:
    return Health()


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready to answer."}},
    tags=["operations"],
    summary="The service can answer: documents loaded, engine configured",
)
async def ready(container: ContainerDep) -> Readiness | JSONResponse:
    passages = len(container.knowledge.passages)
    readiness = Readiness(
        status="ready" if passages else "not_ready", engine=container.ask.mode, passages=passages
    )
    if passages:
        return readiness
    return JSONResponse(readiness.model_dump(), status_code=503)
