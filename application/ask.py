"""The one use case of the core service: answer a recruiter's question about the applicant."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeGuard

from application.search import SearchProfile
from application.spool import SpooledAnswers
from domain.conversation import (
    AnswerStatus,
    FinishedAnswer,
    PendingAnswer,
    fit_history,
    is_conversation_id,
    turns_from_messages,
    unstorable_text,
)
from domain.disclosure import Decline
from domain.errors import (
    UPSTREAM_MESSAGES,
    AnswerNotCompleted,
    ConversationNotFound,
    ErrorCode,
    InputTooLong,
    InvalidQuestion,
    ModelNotAllowed,
    ShuttingDown,
)
from domain.models import (
    AgentRoute,
    AnswerDone,
    AnswerEvent,
    AnswerFailed,
    AnswerMeta,
    AnswerRequest,
    CollectedAnswer,
    EngineSwitched,
    Message,
    Notice,
    Passage,
    RetrievedPassage,
    TextDelta,
    Usage,
    add_usage,
)
from domain.policy import BUDGET_SPENT, answered_offline, detect_language
from domain.ports import AnswerEngine, ConversationRepository, KnowledgeIndex, TokenBudget
from domain.protected import ProtectedCategory, decline_text, refers_back, screen, screen_turns

logger = logging.getLogger(__name__)


def new_conversation_id() -> str:
    """Unguessable, URL-safe: 128 bits of randomness."""
    return secrets.token_urlsafe(16)


def _upstream_failure(event: AnswerEvent) -> TypeGuard[AnswerFailed]:
    return isinstance(event, AnswerFailed) and event.code.value.startswith("upstream_")


def _protected_decline(category: ProtectedCategory, question: str) -> Decline:
    text = decline_text(category, detect_language(question))
    return Decline(f"protected: {category.id}", text, category.id)


async def _first_event(events: AsyncGenerator[AnswerEvent, None]) -> AnswerEvent | None:
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None


class _StartedAnswer(AsyncGenerator[AnswerEvent, None]):
    """An answer whose first event was asked for before :meth:`AskApplicant.start` returned.

    Iterating it hands that first event over, then the answer's own events with no layer
    between. Closing it, even before the first event, cancels the request in flight and
    closes the answer (which stores it as ``interrupted``), so an answer no one reads does
    not hold its upstream connection.
    """

    __slots__ = ("_events", "_first")

    def __init__(self, events: AsyncGenerator[AnswerEvent, None]) -> None:
        self._events = events
        self._first: asyncio.Task[AnswerEvent | None] | None = asyncio.create_task(
            _first_event(events)
        )

    def __anext__(self) -> Coroutine[Any, Any, AnswerEvent]:
        if self._first is not None:
            return self._take_first()
        return self._events.__anext__()

    async def _take_first(self) -> AnswerEvent:
        first, self._first = self._first, None
        if first is None:  # two readers at once: not how an answer is read
            raise RuntimeError("the answer's first event was already taken")
        # Cancelling this await (the client left) cancels ``first`` too: the answer closes.
        event = await first
        if event is None:
            raise StopAsyncIteration
        return event

    async def asend(self, value: None) -> AnswerEvent:
        return await self.__anext__()

    async def athrow(self, typ: Any, val: Any = None, tb: Any = None) -> AnswerEvent:
        await self._cancel_first()
        return await self._events.athrow(typ, val, tb)

    async def aclose(self) -> None:
        await self._cancel_first()
        await self._events.aclose()

    async def _cancel_first(self) -> None:
        first, self._first = self._first, None
        if first is None:
            return
        first.cancel()
        await asyncio.wait((first,))
        if not first.cancelled():
            first.exception()  # retrieved: whoever closes does not want it


async def _declined(decline: Decline) -> AsyncGenerator[AnswerEvent, None]:
    """A polite refusal in place of an answer: no engine sees the question."""
    yield TextDelta(decline.text)
    yield AnswerDone("stop")


UpstreamKey = Literal["not_used", "unchecked", "accepted", "rejected"]


@dataclass(slots=True)
class UpstreamEvidence:
    """What the configured engine's latest answers showed of the model provider, for
    operators: a key the provider rejects stays visible even while the offline engine
    answers in its place."""

    key: UpstreamKey = "unchecked"
    """``rejected`` after a 401 or 403 (``upstream_auth``), until an answer succeeds."""
    last_error: ErrorCode | None = None
    """The code of the latest upstream failure; cleared by an answer that succeeds."""


@dataclass(frozen=True, slots=True)
class AnswerStream:
    """An answer that has been accepted: ``meta`` and ``sources`` are known now, the events
    come later."""

    meta: AnswerMeta
    sources: tuple[Passage, ...]
    """What the answer may draw on, numbered from 1 in this order."""
    events: AsyncGenerator[AnswerEvent, None]
    declined: str | None = None
    """Why no engine answers: a protected category's id, or ``undisclosed``; for metrics."""


class AskApplicant:
    """Validates a question, grounds it in the applicant's documents and streams the answer.

    Every rejection happens in :meth:`start`, before a single byte of the answer is sent, so
    a rejected request never reaches the engine. A new conversation's question is stored
    while the engine starts its request (a follow-up's history comes from the store, so it is
    stored first); ``start`` returns only once the question is stored, and if that fails the
    engine's request is cancelled. The answer is stored once, when its stream ends, however
    it ends. The stream
    always ends with one ``AnswerDone`` or ``AnswerFailed``, whatever the engine does.

    With an ``offline`` engine beside the main one, answers come from it while the daily
    token ``budget`` is spent, and (with ``fall_back_on_failure``) when the main engine fails
    before sending any text. The grounding, and whether a question is declined, come from
    ``search`` (the profile's lexical search with the default disclosure policy if none).
    An answer the store cannot take when its stream ends goes to ``spooled``, to be written
    when the store is back; its tokens count against the ``budget`` all the same.
    """

    def __init__(
        self,
        knowledge: KnowledgeIndex,
        engine: AnswerEngine,
        conversations: ConversationRepository,
        *,
        default_model: str,
        allowed_models: frozenset[str],
        max_input_chars: int,
        history_budget_chars: int = 12_000,
        conversation_ids: Callable[[], str] = new_conversation_id,
        offline: AnswerEngine | None = None,
        budget: TokenBudget | None = None,
        fall_back_on_failure: bool = False,
        accepting_questions: Callable[[], bool] = lambda: True,
        search: SearchProfile | None = None,
        spooled: SpooledAnswers | None = None,
    ) -> None:
        self._spooled = spooled
        self._knowledge = knowledge
        self._search = search or SearchProfile(knowledge)
        self._engine = engine
        self._offline = offline
        self._budget = budget
        self._fall_back_on_failure = fall_back_on_failure
        self._accepting_questions = accepting_questions
        self._conversations = conversations
        self._history_budget_chars = history_budget_chars
        self._default_model = default_model
        self._allowed_models = allowed_models | {default_model}
        self._max_input_chars = max_input_chars
        self._conversation_ids = conversation_ids
        self._upstream = UpstreamEvidence(
            key="not_used" if engine.mode == "offline" else "unchecked"
        )

    @property
    def mode(self) -> str:
        return self._engine.mode

    @property
    def upstream(self) -> UpstreamEvidence:
        """The model provider as the latest answers saw it (``GET /ready`` shows it)."""
        return replace(self._upstream)

    async def start(
        self,
        messages: Sequence[Message],
        model: str | None = None,
        conversation_id: str | None = None,
    ) -> AnswerStream:
        """Accept a question or raise an ``AskError`` that says what to fix.

        Without ``conversation_id`` a new conversation starts, with the earlier turns the
        client sent (if any); with it, the stored turns are the history and ``messages``
        must be the new question alone.
        """
        if not self._accepting_questions():
            raise ShuttingDown()
        sent = self._validated(messages)
        requested_model = self._validated_model(model)
        question = sent[-1]
        earlier_sent = sent[:-1]
        if conversation_id is None:
            conversation_id = self._conversation_ids()
            is_new = True
            earlier_turns = turns_from_messages(earlier_sent)
        else:
            if earlier_sent:
                raise InvalidQuestion(
                    "With 'conversation_id', send only the new question as 'input': "
                    "the earlier turns of the conversation are stored."
                )
            if not is_conversation_id(conversation_id):
                raise ConversationNotFound()  # no id of ours has this shape: no query
            # One transaction stores the question and reads the turns before it.
            continued = await self._conversations.continue_conversation(
                conversation_id, question.content
            )
            if continued is None:
                raise ConversationNotFound()
            stored, turn_id = continued
            is_new = False
            earlier_turns = stored.turn_pairs()
        # Hiring-safe: no engine and no search sees a protected question, in any turn. The
        # question is declined whole (a mixed one too); earlier turns that hold one are left
        # out, and so is "answer my previous question" right after one.
        screened = screen_turns(earlier_turns)
        history = fit_history(screened.kept, self._history_budget_chars)
        protected = screen(question.content)
        if protected is None and screened.latest_dropped and refers_back(question.content):
            protected = screened.latest_dropped
        if not is_new:
            return await self._answering(
                conversation_id, question, history, protected, requested_model, turn_id
            )
        # A new conversation's question is stored while it is searched for (for some, an
        # embeddings call) and while the model request starts; ``covered`` is stored with the
        # answer, as for a continued conversation. If the answer cannot start, a write still
        # in flight is cancelled; a failed write answers 503 and cancels the model request.
        storing = asyncio.create_task(
            self._conversations.begin_turn(
                conversation_id,
                question.content,
                covered=True,
                new_conversation=True,
                earlier=earlier_sent,
            )
        )
        try:
            return await self._answering(
                conversation_id, question, history, protected, requested_model, storing
            )
        finally:
            if not storing.done():
                storing.cancel()
                await asyncio.wait((storing,))
            if not storing.cancelled():
                storing.exception()  # retrieved: an error raised here already says what failed

    async def _answering(
        self,
        conversation_id: str,
        question: Message,
        history: Sequence[Message],
        protected: ProtectedCategory | None,
        requested_model: str,
        turn_id: int | asyncio.Task[int],
    ) -> AnswerStream:
        """Search, choose the engine and start the answer; for a new conversation, wait for
        its question's write (``turn_id`` a task) once the model request has gone out."""
        sources: tuple[RetrievedPassage, ...] = ()
        nearest: tuple[RetrievedPassage, ...] = ()
        decline: Decline | None = None
        if protected is not None:
            decline = _protected_decline(protected, question.content)
        else:
            found = await self._search.search(
                question.content, earlier=[m.content for m in history if m.role == "user"]
            )
            sources, decline, nearest = found.passages, found.decline, found.nearest
        if decline is not None:
            logger.info("declined a question (%s)", decline.reason)
        # The contact block closes a refusal or an unsure answer: in the question's language.
        contact = self._knowledge.contact(detect_language(question.content))
        request = AnswerRequest(
            messages=(*history, question),
            model=requested_model,
            grounding=sources,
            contact=contact,
            nearest=nearest,
        )
        # A declined question is not a gap in the profile.
        covered = decline is not None or bool(sources)
        engine, notice = await self._engine_for_this_answer()
        answer = self._with_fallback(request, engine) if decline is None else _declined(decline)
        model = engine.model_for(requested_model)
        # The question's turn id, or None if it could not be stored.
        turn: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        events = self._recorded(answer, turn, model, covered, decline is not None)
        if isinstance(turn_id, int):
            turn.set_result(turn_id)
        else:
            if decline is None:
                # The model request goes out now, while the question is stored.
                events = _StartedAnswer(events)
            try:
                turn.set_result(await turn_id)
            except BaseException:
                turn.set_result(None)
                await events.aclose()  # cancels the request; nothing to record
                raise
        return AnswerStream(
            meta=AnswerMeta(conversation_id, model, engine.mode, notice),
            sources=tuple(hit.passage for hit in (*sources, *request.nearest)),
            events=events,
            declined=decline.category if decline is not None else None,
        )

    async def answer(
        self,
        messages: Sequence[Message],
        model: str | None = None,
        conversation_id: str | None = None,
    ) -> CollectedAnswer:
        """The whole answer at once; raises ``AnswerNotCompleted`` if it cannot be whole."""
        return await self.collect(await self.start(messages, model, conversation_id))

    @staticmethod
    async def collect(stream: AnswerStream) -> CollectedAnswer:
        """The whole of an answer :meth:`start` accepted; raises ``AnswerNotCompleted`` if it
        cannot be whole. Cancelling it closes the answer (stored ``interrupted``)."""
        collected = CollectedAnswer(
            meta=stream.meta, sources=stream.sources, declined=stream.declined
        )
        async with aclosing(stream.events) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    collected.text_parts.append(event.text)
                elif isinstance(event, AnswerDone):
                    collected.usage = event.usage
                    collected.finish_reason = event.finish_reason
                elif isinstance(event, AnswerFailed):
                    raise AnswerNotCompleted(event.code, event.message, event.usage)
                elif isinstance(event, EngineSwitched):
                    collected.meta = replace(
                        collected.meta, model=event.model, mode=event.mode, notice=event.notice
                    )
                    collected.fallback_usage = event.usage
                    collected.fallback_cause = event.cause
        return collected

    def _validated(self, messages: Sequence[Message]) -> tuple[Message, ...]:
        if not messages:
            raise InvalidQuestion("'input' is empty: send a question.")
        if messages[-1].role != "user":
            raise InvalidQuestion(
                "The last message of 'input' must have role 'user': it is the question."
            )
        for index, message in enumerate(messages):
            where = "'input'" if len(messages) == 1 else f"Message {index} of 'input'"
            if not message.content.strip():
                raise InvalidQuestion(f"{where} is empty: send a question.")
            if (problem := unstorable_text(message.content)) is not None:
                raise InvalidQuestion(f"{where} {problem}.")
        length = sum(len(message.content) for message in messages)
        if length > self._max_input_chars:
            raise InputTooLong(length, self._max_input_chars)
        return tuple(messages)

    def _validated_model(self, model: str | None) -> str:
        if model is None:
            return self._default_model
        if model not in self._allowed_models:
            raise ModelNotAllowed(model, self._allowed_models)
        return model

    async def _engine_for_this_answer(self) -> tuple[AnswerEngine, Notice | None]:
        offline, budget = self._offline, self._budget
        if offline is not None and budget is not None and await budget.exhausted():
            return offline, BUDGET_SPENT
        return self._engine, None

    async def _recorded(
        self,
        produced: AsyncGenerator[AnswerEvent, None],
        turn: asyncio.Future[int | None],
        model: str,
        covered: bool | None = None,
        declined: bool = False,
    ) -> AsyncGenerator[AnswerEvent, None]:
        """The answer stream, stored once when it ends: whole, cut short, failed or abandoned
        (a polite refusal, whole, is stored ``declined``).

        Text is gathered in memory and written in one statement, never per delta. A finished
        answer is stored before its terminal event goes out, so a client that reads the
        conversation after ``done`` finds the answer there.
        """
        parts: list[str] = []
        status: AnswerStatus = "interrupted"  # unless a terminal event says otherwise
        finish_reason: str | None = None
        error_code: str | None = None
        usage: Usage | None = None  # every model call's, however it ended: a fallback's too
        route: AgentRoute | None = None
        stored = False

        async def store() -> None:
            nonlocal stored
            stored = True
            # An answer that started with its question's write waits for it to end.
            turn_id = await turn
            if turn_id is None:
                return  # the question could not be stored: the answer was cancelled
            answer = FinishedAnswer(
                "".join(parts),
                status,
                model,
                finish_reason,
                error_code,
                usage,
                agent=route.agent if route else None,
                route=route.route if route else None,
            )
            # The tokens were spent, whatever becomes of the answer's record.
            if usage is not None and self._budget is not None:
                try:
                    await self._budget.spend(usage.total_tokens)
                except Exception as error:
                    logger.error(
                        "could not count the tokens of turn %s: %s", turn_id, type(error).__name__
                    )
            try:
                await self._conversations.finish_turn(turn_id, answer, covered)
            except Exception as error:
                # The recruiter already has the answer: it is kept on local disk until the
                # store is back (``SpooledAnswers``), and the stream ends as it would have.
                logger.error("could not store answer of turn %s: %s", turn_id, type(error).__name__)
                if self._spooled is not None:
                    await self._spooled.keep(PendingAnswer(turn_id, answer, covered))

        try:
            async with aclosing(produced) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        parts.append(event.text)
                    elif isinstance(event, AnswerDone):
                        status = "completed" if event.finish_reason == "stop" else "incomplete"
                        if declined:
                            status = "declined"
                        finish_reason, usage = event.finish_reason, add_usage(usage, event.usage)
                        route = event.route
                        await store()
                    elif isinstance(event, AnswerFailed):
                        status, error_code = "failed", event.code.value
                        usage = add_usage(usage, event.usage)
                        route = event.route
                        await store()
                    elif isinstance(event, EngineSwitched):
                        # The answer is the other engine's; the record keeps why (the code).
                        model = event.model
                        error_code = event.cause.value if event.cause else error_code
                        usage = add_usage(usage, event.usage)
                    yield event
        finally:
            if not stored:
                await store()

    async def _with_fallback(
        self, request: AnswerRequest, engine: AnswerEngine
    ) -> AsyncGenerator[AnswerEvent, None]:
        """``engine``'s answer; the offline engine's if ``engine`` fails before any text."""
        offline = self._offline
        if not self._fall_back_on_failure or offline is None or engine is offline:
            async with aclosing(self._guarded(request, engine)) as events:
                async for event in events:
                    yield event
            return
        text_sent = False
        async with aclosing(self._guarded(request, engine)) as events:
            async for event in events:
                if not text_sent and _upstream_failure(event):
                    logger.warning("answering offline after %s", event.code.value)
                    failed = event
                    break
                # Agent steps (a handoff, a search) before the failure change nothing.
                text_sent = text_sent or isinstance(event, TextDelta)
                yield event
            else:
                return
        yield EngineSwitched(
            answered_offline(failed.code.value),
            offline.mode,
            offline.model_for(request.model),
            usage=failed.usage,
            cause=failed.code,
        )
        async with aclosing(self._guarded(request, offline)) as events:
            async for event in events:
                yield event

    async def _guarded(
        self, request: AnswerRequest, engine: AnswerEngine
    ) -> AsyncGenerator[AnswerEvent, None]:
        """``engine``'s stream, closed properly and ended by exactly one terminal event."""
        async with aclosing(engine.stream_answer(request)) as events:
            try:
                async for event in events:
                    if engine is self._engine:
                        self._keep_evidence(event)
                    yield event
                    if isinstance(event, AnswerDone | AnswerFailed):
                        return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The engine broke its contract. Log the type only: messages may carry secrets.
                logger.error("answer engine %s failed: %s", engine.mode, type(error).__name__)
                yield AnswerFailed(
                    ErrorCode.INTERNAL_ERROR, UPSTREAM_MESSAGES[ErrorCode.INTERNAL_ERROR]
                )
                return
        yield AnswerFailed(
            ErrorCode.UPSTREAM_INTERRUPTED, UPSTREAM_MESSAGES[ErrorCode.UPSTREAM_INTERRUPTED]
        )

    def _keep_evidence(self, event: AnswerEvent) -> None:
        """Note what an event of the configured engine says about the provider."""
        if self._upstream.key == "not_used":
            return
        if isinstance(event, AnswerDone):
            self._upstream.key, self._upstream.last_error = "accepted", None
        elif _upstream_failure(event):
            self._upstream.last_error = event.code
            if event.code == ErrorCode.UPSTREAM_AUTH:
                self._upstream.key = "rejected"
                # Never the key, nor the provider's message: only what to check.
                logger.warning(
                    "the model provider rejected the API key (401/403, upstream_auth): check "
                    "OPENAI_API_KEY; %s",
                    "answering offline meanwhile"
                    if self._fall_back_on_failure and self._offline is not None
                    else "answers fail until it is fixed",
                )
