"""The use case remembers conversations: what is stored, when, and with which status."""

from __future__ import annotations

import pytest

from application.ask import AskApplicant
from application.review import ReviewConversations
from domain.conversation import Conversation, FinishedAnswer, Turn, fit_history, question_key
from domain.errors import ConversationNotFound, ErrorCode, InvalidQuestion
from domain.models import AnswerDone, Message, TextDelta, Usage
from tests.fakes import InMemoryConversations, ScriptedEngine, failing_script, small_profile


def make(engine: ScriptedEngine | None = None, budget: int = 12_000):
    conversations = InMemoryConversations()
    engine = engine or ScriptedEngine()
    ask = AskApplicant(
        small_profile(),
        engine,
        conversations,
        default_model="model-a",
        allowed_models=frozenset(),
        max_input_chars=500,
        history_budget_chars=budget,
    )
    return ask, engine, conversations


def user(text: str) -> Message:
    return Message("user", text)


async def test_question_is_stored_when_the_answer_starts() -> None:
    """The model request may already be out (issue 18), the answer not yet read."""
    ask, _, conversations = make()
    stream = await ask.start([user("Where did Jane work?")])
    [turn] = conversations.conversations[stream.meta.conversation_id].turns
    assert turn.question == "Where did Jane work?"
    assert turn.answer is None
    await stream.events.aclose()


async def test_whole_answer_is_stored_once_with_usage_and_model() -> None:
    ask, _, conversations = make()
    answer = await ask.answer([user("Where did Jane work?")])
    [(_, stored)] = conversations.finished
    assert stored == FinishedAnswer(
        "Hello world", "completed", "model-a", "stop", None, Usage(3, 2, 5)
    )
    assert answer.text == stored.text


async def test_answer_is_stored_before_its_done_event_goes_out() -> None:
    """A client that reads the conversation as soon as ``done`` arrives finds the answer."""
    ask, _, conversations = make()
    stream = await ask.start([user("Where did Jane work?")])
    async for event in stream.events:
        if isinstance(event, AnswerDone):
            [(_, stored)] = conversations.finished
            assert stored.status == "completed"
    await stream.events.aclose()
    assert len(conversations.finished) == 1


async def test_failed_answer_keeps_its_partial_text() -> None:
    ask, _, conversations = make(
        ScriptedEngine(script=failing_script(ErrorCode.UPSTREAM_RATE_LIMITED))
    )
    stream = await ask.start([user("hi")])
    _ = [event async for event in stream.events]
    [(_, stored)] = conversations.finished
    assert (stored.text, stored.status, stored.error_code) == (
        "Partial ",
        "failed",
        "upstream_rate_limited",
    )


async def test_incomplete_answer_is_stored_as_incomplete() -> None:
    script = [TextDelta("Cut"), AnswerDone("max_output_tokens", Usage(1, 1, 2))]
    ask, _, conversations = make(ScriptedEngine(script=script))
    await ask.answer([user("hi")])
    [(_, stored)] = conversations.finished
    assert (stored.status, stored.finish_reason) == ("incomplete", "max_output_tokens")


async def test_abandoned_stream_is_stored_as_interrupted() -> None:
    ask, _, conversations = make(ScriptedEngine(hold=True))
    stream = await ask.start([user("hi")])
    assert await anext(stream.events) == TextDelta("Hello")
    await stream.events.aclose()  # what a client disconnect does
    [(_, stored)] = conversations.finished
    assert (stored.text, stored.status) == ("Hello", "interrupted")


async def test_follow_up_sees_the_stored_turns() -> None:
    ask, engine, conversations = make()
    first = await ask.answer([user("Tell me about Jane's projects")])
    await ask.answer([user("And the second one?")], conversation_id=first.meta.conversation_id)
    follow_up = engine.requests[1]
    assert follow_up.messages == (
        user("Tell me about Jane's projects"),
        Message("assistant", "Hello world"),
        user("And the second one?"),
    )
    assert follow_up.grounding[0].passage.heading_path[-1] == "Projects"
    stored = conversations.conversations[first.meta.conversation_id]
    assert [m.role for m in stored.messages()] == ["user", "assistant", "user", "assistant"]


async def test_unknown_conversation_is_not_found_before_anything_is_stored() -> None:
    ask, engine, conversations = make()
    with pytest.raises(ConversationNotFound):
        await ask.start([user("hi")], conversation_id="no-such-conversation")
    assert conversations.conversations == {}
    assert engine.requests == []


class RefusesQueries(InMemoryConversations):
    """Any read of a conversation fails the test: the id's shape should have refused it."""

    async def get(self, conversation_id: str) -> Conversation | None:
        raise AssertionError(f"queried {conversation_id!r}")

    async def continue_conversation(self, conversation_id: str, question: str) -> None:
        raise AssertionError(f"queried {conversation_id!r}")


@pytest.mark.parametrize(
    "malformed", ["x" * 21, "x" * 23, "a\x00" * 11, "\ud800" * 22, "a b" * 7 + "c"]
)
async def test_a_malformed_conversation_id_is_not_found_without_a_query(malformed: str) -> None:
    conversations = RefusesQueries()
    ask = AskApplicant(
        small_profile(),
        ScriptedEngine(),
        conversations,
        default_model="model-a",
        allowed_models=frozenset(),
        max_input_chars=500,
    )
    with pytest.raises(ConversationNotFound):
        await ask.start([user("hi")], conversation_id=malformed)
    with pytest.raises(ConversationNotFound):
        await ReviewConversations(conversations, retention_days=0).conversation(malformed)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("hi\x00", "contains a NUL character"), ("hi \ud800", "contains an unpaired surrogate")],
)
async def test_text_no_database_can_store_is_refused_before_anything_is_stored(
    text: str, problem: str
) -> None:
    ask, engine, conversations = make()
    with pytest.raises(InvalidQuestion, match=problem):
        await ask.start([user(text)])
    with pytest.raises(InvalidQuestion, match=f"Message 1 of 'input' {problem}"):
        await ask.start([Message("user", "fine"), Message("assistant", text), user("and?")])
    assert conversations.conversations == {}
    assert engine.requests == []


async def test_continuing_a_conversation_takes_only_the_new_question() -> None:
    ask, _, _ = make()
    first = await ask.answer([user("hi")])
    with pytest.raises(InvalidQuestion, match="send only the new question"):
        await ask.start(
            [user("a"), Message("assistant", "b"), user("c")],
            conversation_id=first.meta.conversation_id,
        )


async def test_history_sent_by_a_client_starts_the_stored_conversation() -> None:
    ask, engine, conversations = make()
    sent = [
        Message("assistant", "Hi! Ask me about Jane."),
        user("Jane's job?"),
        Message("assistant", "Search lead."),
        user("Since when?"),
    ]
    answer = await ask.answer(sent)
    assert engine.requests[0].messages == tuple(sent)
    stored = conversations.conversations[answer.meta.conversation_id]
    assert [(m.role, m.content) for m in stored.messages()] == [
        ("assistant", "Hi! Ask me about Jane."),
        ("user", "Jane's job?"),
        ("assistant", "Search lead."),
        ("user", "Since when?"),
        ("assistant", "Hello world"),
    ]


async def test_long_history_is_trimmed_to_the_budget_keeping_recent_whole_turns() -> None:
    ask, engine, _ = make(budget=60)
    first = await ask.answer([user("q" * 40)])  # 40 + 11 characters with its answer
    conversation_id = first.meta.conversation_id
    await ask.answer([user("second")], conversation_id=conversation_id)  # 6 + 11
    await ask.answer([user("third")], conversation_id=conversation_id)
    assert [m.content for m in engine.requests[2].messages] == [
        "second",
        "Hello world",
        "third",
    ]


async def test_question_the_profile_does_not_cover_is_marked() -> None:
    ask, _, conversations = make()
    covered = await ask.answer([user("Which projects did Jane build in Go?")])
    uncovered = await ask.answer([user("What is Jane's favourite colour?")])
    assert conversations.conversations[covered.meta.conversation_id].turns[0].covered
    assert not conversations.conversations[uncovered.meta.conversation_id].turns[0].covered


async def test_storage_failure_at_the_end_does_not_break_the_answer() -> None:
    ask, _, conversations = make()

    async def broken(turn_id: int, answer: FinishedAnswer) -> None:
        raise ConnectionError("database went away")

    conversations.finish_turn = broken  # type: ignore[method-assign]
    answer = await ask.answer([user("hi")])
    assert answer.text == "Hello world"


def test_history_fits_whole_turns_newest_first() -> None:
    pairs = [("a" * 10, "b" * 10), ("c" * 5, ""), ("d", "e")]
    assert fit_history(pairs, 8) == (user("c" * 5), user("d"), Message("assistant", "e"))
    assert fit_history(pairs, 1) == ()


def test_conversation_messages_skip_missing_parts() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    conversation = Conversation(
        "c",
        now,
        (
            Turn(1, "", now, True, FinishedAnswer("greeting", "completed", "m"), now),
            Turn(2, "pending?", now, True),
        ),
    )
    assert [(m.role, m.content, m.status) for m in conversation.messages()] == [
        ("assistant", "greeting", "completed"),
        ("user", "pending?", "completed"),
    ]


@pytest.mark.parametrize(
    ("a", "b"),
    [("What projects did she do?", "what projects did she do"), ("경력은?", "경력은 ?")],
)
def test_repeated_questions_share_a_key(a: str, b: str) -> None:
    assert question_key(a) == question_key(b)
