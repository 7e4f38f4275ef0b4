"""One exception tree for the product; ``api/errors.py`` maps it to HTTP and SSE in one place."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from domain.models import Usage


class ErrorCode(StrEnum):
    """Stable codes a client can switch on, in HTTP error bodies and SSE ``error`` events."""

    INVALID_REQUEST = "invalid_request"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    INPUT_TOO_LONG = "input_too_long"
    CONVERSATION_NOT_FOUND = "conversation_not_found"
    UPSTREAM_AUTH = "upstream_auth"
    UPSTREAM_RATE_LIMITED = "upstream_rate_limited"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_INTERRUPTED = "upstream_interrupted"
    UPSTREAM_FAILED = "upstream_failed"
    UPSTREAM_BAD_REQUEST = "upstream_bad_request"
    SERVER_SHUTTING_DOWN = "server_shutting_down"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    INVALID_LAST_EVENT_ID = "invalid_last_event_id"
    RESUME_UNAVAILABLE = "resume_unavailable"
    INTERNAL_ERROR = "internal_error"


class AskError(Exception):
    """Base of every error the product raises on purpose; ``message`` is safe to show."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidQuestion(AskError):
    code = ErrorCode.INVALID_REQUEST


class ModelNotAllowed(AskError):
    code = ErrorCode.MODEL_NOT_ALLOWED

    def __init__(self, model: str, allowed: frozenset[str]) -> None:
        super().__init__(
            f"Model {model!r} is not offered by this service. "
            f"Use one of: {', '.join(sorted(allowed))}, or omit 'model' for the default."
        )


class ConversationNotFound(AskError):
    code = ErrorCode.CONVERSATION_NOT_FOUND

    def __init__(self) -> None:
        super().__init__(
            "No conversation has this 'conversation_id' (it may have expired). "
            "Omit 'conversation_id' to start a new conversation."
        )


class ShuttingDown(AskError):
    code = ErrorCode.SERVER_SHUTTING_DOWN

    def __init__(self) -> None:
        super().__init__("The service is restarting. Please ask again in a few seconds.")


class StorageUnavailable(AskError):
    """Conversations cannot be read or written: no question is answered without a record."""

    code = ErrorCode.STORAGE_UNAVAILABLE

    def __init__(self) -> None:
        super().__init__(
            "The service cannot reach its storage right now. Please try again shortly."
        )


class InputTooLong(AskError):
    code = ErrorCode.INPUT_TOO_LONG

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(
            f"The input is {length} characters long; the limit is {limit}. "
            "Shorten the question or send fewer earlier turns."
        )


class InvalidLastEventId(AskError):
    """A ``Last-Event-ID`` that no event of ours ever carried."""

    code = ErrorCode.INVALID_LAST_EVENT_ID

    def __init__(self) -> None:
        super().__init__(
            "'Last-Event-ID' must be the 'id' of the last event you received, as sent "
            "('<answer id>.<number>'); omit it to receive the answer from its start."
        )


class ResumeUnavailable(AskError):
    """The answer a ``Last-Event-ID`` names cannot be continued here: another answer is in
    flight for the conversation, or the events after it are no longer kept."""

    code = ErrorCode.RESUME_UNAVAILABLE

    def __init__(self) -> None:
        super().__init__(
            "The answer this 'Last-Event-ID' belongs to cannot be continued: it is no longer "
            "the conversation's answer in flight, or its events are no longer kept. Read the "
            "stored conversation (GET /conversations/{id}) or ask again."
        )


# Messages for upstream failures, shared by every engine that talks to a model provider.
UPSTREAM_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.UPSTREAM_AUTH: "The answering service is misconfigured. Please try again later.",
    ErrorCode.UPSTREAM_RATE_LIMITED: (
        "The answering service is busy right now. Please try again in a minute."
    ),
    ErrorCode.UPSTREAM_UNAVAILABLE: (
        "The answering service is unavailable right now. Please try again shortly."
    ),
    ErrorCode.UPSTREAM_TIMEOUT: "The answering service took too long to respond. Please retry.",
    ErrorCode.UPSTREAM_INTERRUPTED: "The answer was interrupted before it finished. Please retry.",
    ErrorCode.UPSTREAM_FAILED: "The answering service could not complete this answer.",
    ErrorCode.UPSTREAM_BAD_REQUEST: "The answering service rejected this question.",
    ErrorCode.SERVER_SHUTTING_DOWN: (
        "The service is restarting, so this answer was cut short. Please ask again in a moment."
    ),
    ErrorCode.INTERNAL_ERROR: "Something went wrong on our side. Please try again.",
}


class AnswerNotCompleted(AskError):
    """An answer that could not be produced whole, for callers that wait for the whole answer."""

    def __init__(self, code: ErrorCode, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.usage = usage
        """The tokens the answer still cost."""


class KnowledgeReloadFailed(Exception):
    """Rebuilding the index from the documents failed; the documents loaded before are still
    in use."""
