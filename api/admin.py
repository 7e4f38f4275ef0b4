"""The applicant's view: what recruiters asked, and which documents answer them. Only with
``ADMIN_TOKEN`` set and sent."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from api.dependencies import AdminDep, ContainerDep, LiveKnowledgeDep, ReviewDep
from api.schemas import (
    ConversationPage,
    ConversationSummaryOut,
    DailyAnswersOut,
    ErrorBody,
    InsightsOut,
    QuestionCountOut,
    UnansweredQuestionOut,
    Usage,
)
from domain.errors import KnowledgeReloadFailed
from domain.models import LoadReport

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[AdminDep],
    responses={
        401: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
        404: {"model": ErrorBody, "description": "ADMIN_TOKEN is not set: no admin API."},
    },
)


@router.get(
    "/conversations", response_model=ConversationPage, summary="Conversations, newest first"
)
async def recent_conversations(
    review: ReviewDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ConversationPage:
    found = await review.recent(page, page_size)
    return ConversationPage(
        items=[
            ConversationSummaryOut(
                id=item.id,
                created_at=item.created_at,
                updated_at=item.updated_at,
                turns=item.turns,
                first_question=item.first_question,
                client_turns=item.client_turns,
            )
            for item in found.items
        ],
        page=page,
        page_size=page_size,
        total=found.total,
    )


@router.get(
    "/insights",
    response_model=InsightsOut,
    summary="Frequent and unanswered questions, answers per day, tokens used",
)
async def insights(
    review: ReviewDep,
    days: Annotated[int, Query(ge=1, le=3650, description="How far back to look.")] = 30,
    limit: Annotated[int, Query(ge=1, le=100, description="Rows per list.")] = 20,
) -> InsightsOut:
    found = await review.insights(days, limit)
    return InsightsOut(
        since=found.since,
        top_questions=[
            QuestionCountOut(question=q.question, count=q.count) for q in found.top_questions
        ],
        unanswered_questions=[
            UnansweredQuestionOut(
                question=q.question, conversation_id=q.conversation_id, asked_at=q.asked_at
            )
            for q in found.unanswered_questions
        ],
        answers_per_day=[
            DailyAnswersOut(day=d.day, answers=d.answers) for d in found.answers_per_day
        ],
        tokens=Usage(
            input_tokens=found.tokens.input_tokens,
            output_tokens=found.tokens.output_tokens,
            total_tokens=found.tokens.total_tokens,
        ),
    )


class KnowledgeSourceOut(BaseModel):
    source: str = Field(description="Path under KNOWLEDGE_DIR, e.g. `en/resume.pdf`.")
    passages: int


class SkippedFileOut(BaseModel):
    source: str
    reason: str = Field(
        description="Why it was left out, e.g. `not UTF-8`, `encrypted PDF`, "
        "`no extractable text`, `unreadable: PermissionError`."
    )


class KnowledgeOut(BaseModel):
    passages: int = Field(description="Passages in use, from every document.")
    sources: list[KnowledgeSourceOut]
    skipped: list[SkippedFileOut] = Field(description="Documents that could not be read.")
    loaded_at: datetime = Field(description="When the documents in use were loaded (UTC).")


def _knowledge_out(report: LoadReport) -> KnowledgeOut:
    per_source = Counter(passage.source for passage in report.passages)
    return KnowledgeOut(
        passages=len(report.passages),
        sources=[KnowledgeSourceOut(source=s, passages=n) for s, n in per_source.items()],
        skipped=[SkippedFileOut(source=f.source, reason=f.reason) for f in report.skipped],
        loaded_at=report.loaded_at,
    )


_NOT_FROM_A_FOLDER: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorBody,
        "description": "ADMIN_TOKEN is not set, or the documents were not loaded from a folder.",
    }
}


@router.get(
    "/knowledge",
    response_model=KnowledgeOut,
    responses=_NOT_FROM_A_FOLDER,
    summary="The documents in use, and those that could not be read",
)
async def knowledge(live: LiveKnowledgeDep) -> KnowledgeOut:
    return _knowledge_out(live.report)


@router.post(
    "/knowledge/reload",
    response_model=KnowledgeOut,
    responses={
        **_NOT_FROM_A_FOLDER,
        500: {
            "model": ErrorBody,
            "description": "The folder could not be loaded; the documents before stay in use.",
        },
    },
    summary="Reload KNOWLEDGE_DIR now",
)
async def reload_knowledge(live: LiveKnowledgeDep) -> KnowledgeOut:
    try:
        report = await live.reload()
    except KnowledgeReloadFailed as error:
        raise HTTPException(
            status.HTTP_500_INTERNAL_SERVER_ERROR,
            f"Reloading KNOWLEDGE_DIR failed ({error}): the documents loaded before stay in use.",
        ) from None
    return _knowledge_out(report)


class ToolServerOut(BaseModel):
    name: str = Field(description="The server's name in MCP_SERVERS.")
    connected: bool = Field(description="Whether it answered its last check (every 30 s).")
    tools: list[str] = Field(
        description="The tools it offers the agents now, within its allow-list; the model "
        "sees each as `mcp_<server>__<tool>`."
    )
    last_error: str | None = Field(
        description="The type of the error that last dropped it or kept it from connecting."
    )
    failures: int = Field(description="Failed connections and checks since start-up.")
    since: datetime | None = Field(description="When it last connected or failed (UTC).")


@router.get(
    "/mcp-servers",
    response_model=list[ToolServerOut],
    summary="The outside MCP servers of the agents (MCP_SERVERS) and how they are doing",
)
async def mcp_servers(container: ContainerDep) -> list[ToolServerOut]:
    """Empty without MCP_SERVERS, or with an engine other than `agents`."""
    toolbox = container.mcp_toolbox
    if toolbox is None:
        return []
    return [
        ToolServerOut(
            name=health.name,
            connected=health.connected,
            tools=list(health.tools),
            last_error=health.last_error,
            failures=health.failures,
            since=health.since,
        )
        for health in toolbox.health()
    ]
