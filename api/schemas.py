"""Request and response bodies of the public contract."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    field_validator,
    model_validator,
)

from domain.conversation import CONVERSATION_ID_PATTERN, is_conversation_id, unstorable_text
from domain.models import Message

_SERVER_OWNED_ROLES = frozenset({"system", "developer"})


def _storable(value: object) -> object:
    # Before the string's own checks, which cannot even count an unpaired surrogate.
    if isinstance(value, str) and (problem := unstorable_text(value)) is not None:
        raise ValueError(problem)
    return value


Text = Annotated[StrictStr, BeforeValidator(_storable)]
"""A string from a client: strict, and free of what no database or provider accepts."""


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"] = Field(
        description="Who said it. The server owns the instructions: `system` and `developer` "
        "roles are rejected."
    )
    content: Text = Field(min_length=1)

    @field_validator("role", mode="before")
    @classmethod
    def _no_server_roles(cls, value: object) -> object:
        if isinstance(value, str) and value in _SERVER_OWNED_ROLES:
            raise ValueError(
                f"role {value!r} is not accepted: this service owns the instructions. "
                "Use 'user' for the recruiter and 'assistant' for earlier answers"
            )
        return value


class AskRequest(BaseModel):
    """A recruiter's question, alone or after the earlier turns of the conversation."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"input": "어떤 프로젝트를 했나요?"},
                {
                    "input": [
                        {"role": "user", "content": "Where does the applicant work now?"},
                        {"role": "assistant", "content": "At Hanbit Pay, as a backend lead."},
                        {"role": "user", "content": "And before that?"},
                    ]
                },
            ]
        },
    )

    input: Text | list[InputMessage] = Field(
        description="The question, or the conversation so far ending with the user's question."
    )
    model: Text | None = Field(
        default=None, description="One of the models this service offers; omit for the default."
    )
    stream: StrictBool | None = Field(
        default=None, description="Accepted for compatibility and ignored: the endpoint decides."
    )
    conversation_id: StrictStr | None = Field(
        default=None,
        json_schema_extra={"pattern": CONVERSATION_ID_PATTERN},
        description="Continue this conversation (the id from `meta` or an earlier JSON answer); "
        "`input` is then the new question alone. Omit to start a new conversation.",
    )

    @field_validator("conversation_id")
    @classmethod
    def _issued_id(cls, value: str | None) -> str | None:
        # Checked by shape before any query: only ids of this shape were ever issued.
        if value is not None and not is_conversation_id(value):
            raise ValueError(
                "is not an id this service issued (22 characters of A-Z, a-z, 0-9, '_' and "
                "'-'): send the conversation_id from `meta`, or omit it to start a new "
                "conversation"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_client_instructions(cls, data: Any) -> Any:
        if isinstance(data, dict) and "instructions" in data:
            raise ValueError(
                "'instructions' is not accepted: this service owns the prompt. "
                "Remove the field and send only 'input' (and optionally 'model')"
            )
        return data

    def messages(self) -> list[Message]:
        if isinstance(self.input, str):
            return [Message(role="user", content=self.input)]
        return [Message(role=m.role, content=m.content) for m in self.input]


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class NoticeOut(BaseModel):
    code: str = Field(description="`answered_offline` or `daily_token_budget_spent`.")
    message: str


class SourceOut(BaseModel):
    id: int = Field(description="The number the answer cites, as [1], [2], ...")
    source: str = Field(description="The document, relative to the knowledge folder.")
    heading: str = Field(description="The headings above the passage, joined with ' > '.")
    snippet: str = Field(description="The start of the passage.")
    page: int | None = Field(default=None, description="For PDFs, the page.")


class AnswerResponse(BaseModel):
    output_text: str
    model: str
    mode: str = Field(description="The engine that answered: `offline`, `openai` or `agents`.")
    usage: Usage | None
    conversation_id: str
    notice: NoticeOut | None = Field(
        default=None, description="Set when the offline engine answered in the model's place."
    )
    sources: list[SourceOut] = Field(
        default_factory=list, description="The passages the answer draws on, as cited."
    )


class ErrorBody(BaseModel):
    """The one error shape, in HTTP bodies and in SSE `error` events."""

    code: str = Field(description="Stable, machine-readable, e.g. `invalid_request`.")
    message: str = Field(description="What went wrong and what to do about it.")


class MessageOut(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    status: Literal["completed", "incomplete", "failed", "interrupted", "declined"] = Field(
        description="For answers: `completed`; `incomplete` (the model stopped early); "
        "`failed` (upstream error); `interrupted` (the client went away); `declined` (a "
        "question no engine answers, e.g. about a protected characteristic)."
    )
    created_at: datetime
    source: Literal["service", "client"] = Field(
        default="service",
        description="`service`: asked here and answered by this service. `client`: an earlier "
        "turn the client sent along in `input` when the conversation started; its "
        "`assistant` message is the client's text, not this service's answer.",
    )


class ConversationOut(BaseModel):
    id: str
    created_at: datetime
    messages: list[MessageOut] = Field(description="Oldest first.")


class ConversationSummaryOut(BaseModel):
    id: str
    created_at: datetime
    updated_at: datetime
    turns: int
    first_question: str
    client_turns: int = Field(
        default=0,
        description="How many of `turns` the client sent along when the conversation started "
        "(its history, not answered here).",
    )


class ConversationPage(BaseModel):
    items: list[ConversationSummaryOut]
    page: int
    page_size: int
    total: int


class QuestionCountOut(BaseModel):
    question: str
    count: int


class UnansweredQuestionOut(BaseModel):
    question: str
    conversation_id: str
    asked_at: datetime


class DailyAnswersOut(BaseModel):
    day: date
    answers: int


class InsightsOut(BaseModel):
    since: datetime
    top_questions: list[QuestionCountOut] = Field(description="Most frequent questions.")
    unanswered_questions: list[UnansweredQuestionOut] = Field(
        description="Questions the profile could not answer, newest first: add the answers "
        "to the documents."
    )
    answers_per_day: list[DailyAnswersOut] = Field(description="UTC days.")
    tokens: Usage = Field(description="Tokens the model used for these answers.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    engine: str
    passages: int
    database: Literal["ok", "unavailable"]
    upstream_key: Literal["not_used", "unchecked", "accepted", "rejected"] = Field(
        description="The model provider's view of OPENAI_API_KEY as the latest answers saw it: "
        "`rejected` after a 401 or 403 (answers then fall back to the offline engine, or fail), "
        "until an answer succeeds; `not_used` with the offline engine. Readiness does not "
        "depend on it: the service still answers."
    )
    upstream_last_error: str | None = Field(
        default=None,
        description="The code of the latest upstream failure (`upstream_…`), even when the "
        "offline engine answered in its place; cleared by an answer that succeeds.",
    )
