from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from application.ask import AskApplicant
from application.search import SearchProfile
from domain.errors import (
    AnswerNotCompleted,
    ErrorCode,
    InputTooLong,
    InvalidQuestion,
    ModelNotAllowed,
    StorageUnavailable,
)
from domain.models import AnswerDone, AnswerFailed, Message, TextDelta, Usage
from domain.ports import SearchResult
from tests.fakes import InMemoryConversations, ScriptedEngine, failing_script, small_profile


def make_ask(
    engine: ScriptedEngine | None = None,
    conversations: InMemoryConversations | None = None,
    **overrides: object,
) -> AskApplicant:
    options: dict[str, object] = {
        "default_model": "default-model",
        "allowed_models": frozenset({"other-model"}),
        "max_input_chars": 200,
        "conversation_ids": lambda: "conversation-1",
    }
    options.update(overrides)
    return AskApplicant(
        small_profile(),
        engine or ScriptedEngine(),
        conversations or InMemoryConversations(),
        **options,  # type: ignore[arg-type]
    )


def user(text: str) -> Message:
    return Message("user", text)


async def test_meta_is_known_before_the_answer_is_read() -> None:
    engine = ScriptedEngine()
    stream = await make_ask(engine).start([user("Where did Jane work?")])
    assert stream.meta.conversation_id == "conversation-1"
    assert stream.meta.model == "default-model"
    assert stream.meta.mode == "scripted"
    await stream.events.aclose()


# --- the question stored while the model request starts (issue 18) ----------------------------


class GatedConversations(InMemoryConversations):
    """Holds each new conversation's write until ``release``, then stores it or fails."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Event()
        self.release = asyncio.Event()
        self.fail = False

    async def begin_turn(self, *args: Any, **kwargs: Any) -> int:
        self.writing.set()
        await self.release.wait()
        if self.fail:
            raise StorageUnavailable()
        return await super().begin_turn(*args, **kwargs)


async def until(condition: Callable[[], bool], turns: int = 1000) -> None:
    """Let the event loop run until ``condition`` holds (the fakes never wait on a clock)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not reached in {turns} turns of the event loop")


async def test_the_model_request_starts_while_the_question_is_stored() -> None:
    engine, conversations = ScriptedEngine(), GatedConversations()
    starting = asyncio.create_task(make_ask(engine, conversations).start([user("hi")]))
    await until(lambda: bool(engine.requests))
    assert conversations.writing.is_set()
    assert not starting.done(), "meta must wait for the question's write"

    conversations.release.set()
    stream = await starting

    assert [event async for event in stream.events][-1] == AnswerDone("stop", Usage(3, 2, 5))
    [(turn_id, answer)] = conversations.finished
    [turn] = conversations.conversations["conversation-1"].turns
    assert (turn.id, turn.question, answer.text) == (turn_id, "hi", "Hello world")


class GatedSearch(SearchProfile):
    """The profile's search, held until ``release`` (an embeddings call in flight)."""

    def __init__(self) -> None:
        super().__init__(small_profile())
        self.searching = asyncio.Event()
        self.release = asyncio.Event()

    async def search(self, query: str, **options: Any) -> SearchResult:
        self.searching.set()
        await self.release.wait()
        return await super().search(query, **options)


async def test_a_new_question_is_stored_while_it_is_searched_for() -> None:
    engine, conversations, search = ScriptedEngine(), GatedConversations(), GatedSearch()
    ask = make_ask(engine, conversations, search=search)
    starting = asyncio.create_task(ask.start([user("Where did Jane work?")]))
    await until(conversations.writing.is_set)
    assert search.searching.is_set()
    assert not search.release.is_set()
    assert engine.requests == [], "the model request waits for the search"

    search.release.set()
    await until(lambda: bool(engine.requests))
    assert not starting.done(), "meta waits for the question's write"
    conversations.release.set()
    stream = await starting
    assert [event async for event in stream.events][-1] == AnswerDone("stop", Usage(3, 2, 5))
    [turn] = conversations.conversations["conversation-1"].turns
    assert turn.covered is True  # stored with the answer, as the search found it


async def test_a_question_the_search_cannot_cover_is_stored_uncovered() -> None:
    conversations = InMemoryConversations()
    ask = make_ask(conversations=conversations)
    stream = await ask.start([user("Does Jane hold a pilot licence for gliders?")])
    [event async for event in stream.events]
    [turn] = conversations.conversations["conversation-1"].turns
    assert turn.covered is False


async def test_a_search_that_fails_cancels_the_write_in_flight() -> None:
    conversations, search = GatedConversations(), GatedSearch()

    async def broken(query: str, **options: Any) -> SearchResult:
        await conversations.writing.wait()
        raise RuntimeError("index gone")

    search.search = broken  # type: ignore[method-assign]
    ask = make_ask(conversations=conversations, search=search)
    with pytest.raises(RuntimeError, match="index gone"):
        await ask.start([user("Where did Jane work?")])
    assert conversations.conversations == {}, "the write was cancelled before it stored"


async def test_a_failed_store_cancels_the_model_request_before_raising() -> None:
    engine, conversations = ScriptedEngine(hold=True), GatedConversations()
    starting = asyncio.create_task(make_ask(engine, conversations).start([user("hi")]))
    await until(lambda: bool(engine.requests))
    conversations.fail = True
    conversations.release.set()

    with pytest.raises(StorageUnavailable):
        await starting

    assert engine.closed == 1, "the engine's request must be closed, not left running"
    assert conversations.finished == []


async def test_an_answer_that_ends_before_its_question_is_stored_is_stored_on_its_turn() -> None:
    failed = AnswerFailed(ErrorCode.UPSTREAM_RATE_LIMITED, "busy")
    engine, conversations = ScriptedEngine(script=[failed]), GatedConversations()
    starting = asyncio.create_task(make_ask(engine, conversations).start([user("hi")]))
    await until(lambda: bool(engine.requests))
    for _ in range(10):  # turns of the loop: the failure reaches the recording before the write
        await asyncio.sleep(0)
    conversations.release.set()
    stream = await starting

    assert [event async for event in stream.events] == [failed]
    [(turn_id, answer)] = conversations.finished
    assert answer.status == "failed"
    assert conversations.conversations["conversation-1"].turns[0].id == turn_id


async def test_an_answer_closed_before_it_is_read_closes_the_engine_and_is_stored() -> None:
    engine, conversations = ScriptedEngine(hold=True), InMemoryConversations()
    stream = await make_ask(engine, conversations).start([user("hi")])
    await until(lambda: bool(engine.requests))

    await stream.events.aclose()

    assert engine.closed == 1
    [(_, answer)] = conversations.finished
    assert answer.status == "interrupted"


async def test_question_is_grounded_in_matching_passages() -> None:
    engine = ScriptedEngine()
    answer = await make_ask(engine).answer([user("Which projects did Jane build in Go?")])
    assert answer.text == "Hello world"
    request = engine.requests[0]
    assert request.grounding, "the question should retrieve passages"
    assert request.grounding[0].passage.heading_path[-1] == "Projects"
    assert request.contact is not None
    assert "jane@example.com" in request.contact.text


@pytest.mark.parametrize(
    ("question", "contact_line"),
    [
        ("What is Jane's favourite food?", "Email: jane@example.com"),
        ("제인이 가장 좋아하는 음식은 무엇인가요?", "이메일: jane@example.com"),
    ],
)
async def test_the_contact_given_to_the_engine_is_in_the_question_language(
    question: str, contact_line: str
) -> None:
    engine = ScriptedEngine()
    await make_ask(engine).answer([user(question)])
    contact = engine.requests[0].contact
    assert contact is not None
    assert contact.text == contact_line


async def test_korean_question_with_particles_finds_korean_passage() -> None:
    engine = ScriptedEngine()
    await make_ask(engine).answer([user("쿠버네티스 경험이 있나요?")])
    assert engine.requests[0].grounding[0].passage.source == "ko/profile.md"


async def test_follow_up_borrows_the_previous_question_for_retrieval() -> None:
    engine = ScriptedEngine()
    conversation = [
        user("Tell me about Jane's projects"),
        Message("assistant", "Jane built a ledger."),
        user("And the second one?"),
    ]
    await make_ask(engine).answer(conversation)
    assert engine.requests[0].grounding[0].passage.heading_path[-1] == "Projects"
    assert engine.requests[0].messages == tuple(conversation)


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], "empty"),
        ([user("   ")], "'input' is empty"),
        ([user("hi"), Message("assistant", "hello")], "must have role 'user'"),
        ([user("hi"), Message("assistant", " "), user("q")], "Message 1"),
    ],
)
async def test_invalid_conversations_are_rejected_before_the_engine(
    messages: list[Message], expected: str
) -> None:
    engine = ScriptedEngine()
    with pytest.raises(InvalidQuestion, match=expected):
        await make_ask(engine).start(messages)
    assert engine.requests == []


async def test_too_long_input_is_rejected_with_both_numbers() -> None:
    with pytest.raises(InputTooLong, match="201 characters long; the limit is 200"):
        await make_ask().start([user("x" * 150), Message("assistant", "y" * 30), user("z" * 21)])


async def test_only_allowed_models_are_accepted() -> None:
    ask = make_ask()
    with pytest.raises(ModelNotAllowed, match="other-model") as caught:
        await ask.start([user("hi")], model="gpt-9-ultra")
    assert caught.value.code == ErrorCode.MODEL_NOT_ALLOWED
    stream = await ask.start([user("hi")], model="other-model")
    assert stream.meta.model == "other-model"
    await stream.events.aclose()


async def test_default_model_is_always_allowed() -> None:
    ask = make_ask(allowed_models=frozenset())
    stream = await ask.start([user("hi")], model="default-model")
    assert stream.meta.model == "default-model"
    await stream.events.aclose()


async def test_engine_exception_becomes_one_internal_error_event_without_details() -> None:
    engine = ScriptedEngine(raise_after=1)
    stream = await make_ask(engine).start([user("Where did Jane work?")])
    events = [event async for event in stream.events]
    assert events[0] == TextDelta("Hello")
    assert isinstance(events[-1], AnswerFailed)
    assert events[-1].code == ErrorCode.INTERNAL_ERROR
    assert "sk-" not in events[-1].message


async def test_stream_without_terminal_event_ends_as_interrupted() -> None:
    engine = ScriptedEngine(script=[TextDelta("Half an ans")])
    stream = await make_ask(engine).start([user("Where did Jane work?")])
    events = [event async for event in stream.events]
    assert events == [
        TextDelta("Half an ans"),
        AnswerFailed(ErrorCode.UPSTREAM_INTERRUPTED, events[-1].message),  # type: ignore[union-attr]
    ]


async def test_events_after_the_terminal_event_are_dropped() -> None:
    engine = ScriptedEngine(script=[AnswerDone("stop"), TextDelta("late")])
    stream = await make_ask(engine).start([user("hi")])
    assert [event async for event in stream.events] == [AnswerDone("stop")]


async def test_closing_the_stream_early_closes_the_engine() -> None:
    engine = ScriptedEngine(hold=True)
    stream = await make_ask(engine).start([user("hi")])
    assert await anext(stream.events) == TextDelta("Hello")
    await stream.events.aclose()
    assert engine.closed == 1


async def test_whole_answer_raises_when_the_engine_fails() -> None:
    engine = ScriptedEngine(script=failing_script())
    with pytest.raises(AnswerNotCompleted) as caught:
        await make_ask(engine).answer([user("hi")])
    assert caught.value.code == ErrorCode.UPSTREAM_RATE_LIMITED
    assert engine.closed == 1
