"""The applicant's view: what recruiters asked. Only with ``ADMIN_TOKEN`` set and sent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.dependencies import AdminDep, ReviewDep
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
