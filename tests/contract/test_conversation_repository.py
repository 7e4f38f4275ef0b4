"""The ``ConversationRepository`` contract, run against every implementation.

The SQL repository on each database the service runs on, and the in-memory one that the
unit tests and the benchmark's baseline use instead: one suite, so the fake keeps the
store's rules. A new implementation is one more entry in ``IMPLEMENTATIONS`` (for another
SQL database, one more kind in ``tests.databases`` as well). Tests that only make sense for
SQL (migrations, batched writes, an unreachable server) are in
``tests/integration/test_conversation_store.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest

from domain.conversation import Conversation, DailyAnswers, FinishedAnswer
from domain.errors import StorageUnavailable
from domain.models import Message, Usage
from domain.ports import ConversationRepository
from infrastructure.conversation_store import SqlConversationRepository
from infrastructure.database import create_engine, migrate
from testing.conversations import InMemoryConversations
from tests.databases import empty_database


class Clock:
    """The time a repository stamps rows with, moved only by the test: no sleeping to order
    conversations, no writing behind the repository's back to age them."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


OpenRepository = Callable[[Clock, Path], AbstractAsyncContextManager[ConversationRepository]]


@asynccontextmanager
async def _in_memory(clock: Clock, _: Path) -> AsyncIterator[ConversationRepository]:
    yield InMemoryConversations(now=clock)


def _sql_on(kind: str) -> OpenRepository:
    @asynccontextmanager
    async def open_repository(clock: Clock, folder: Path) -> AsyncIterator[ConversationRepository]:
        engine = create_engine(await empty_database(kind, folder))
        try:
            await migrate(engine)
            repository = SqlConversationRepository(engine, now=clock)
            try:
                yield repository
            finally:
                await repository.close()
        finally:
            await engine.dispose()

    return open_repository


IMPLEMENTATIONS: dict[str, OpenRepository] = {
    "memory": _in_memory,
    "sqlite": _sql_on("sqlite"),
    "postgresql": _sql_on("postgresql"),
    "mysql": _sql_on("mysql"),
}


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 3, 14, 9, 30, tzinfo=UTC))


@pytest.fixture(params=IMPLEMENTATIONS)
async def repository(
    request: pytest.FixtureRequest, clock: Clock, tmp_path: Path
) -> AsyncIterator[ConversationRepository]:
    """An empty repository of each implementation, on ``clock``'s time."""
    async with IMPLEMENTATIONS[request.param](clock, tmp_path) as repository:
        yield repository


def answer(text: str = "An answer.", status: str = "completed") -> FinishedAnswer:
    return FinishedAnswer(text, status, "gpt-test", "stop", None, Usage(10, 5, 15))  # type: ignore[arg-type]


def exchanges(conversation: Conversation) -> list[tuple[str, str | None]]:
    return [(t.question, t.answer.text if t.answer else None) for t in conversation.turns]


async def listed(repository: ConversationRepository) -> list[str]:
    page = await repository.list_conversations(offset=0, limit=100)
    return [summary.id for summary in page.items]


# Questions and answers


async def test_turns_round_trip_in_order_with_utc_times(
    repository: ConversationRepository,
) -> None:
    first = await repository.begin_turn(
        "c1", "경력이 몇 년인가요?", covered=True, new_conversation=True
    )
    await repository.finish_turn(first, answer("약 8년입니다.\n\n- 한빛페이"))
    second = await repository.begin_turn("c1", "And before?", covered=False, new_conversation=False)
    conversation = await repository.get("c1")
    assert conversation is not None
    assert [t.id for t in conversation.turns] == [first, second]
    assert conversation.turns[0].answer == answer("약 8년입니다.\n\n- 한빛페이")
    assert conversation.turns[1].answer is None
    assert not conversation.turns[1].covered
    assert conversation.created_at.tzinfo is not None
    assert conversation.created_at.utcoffset() == timedelta(0)
    assert [m.role for m in conversation.messages()] == ["user", "assistant", "user"]


async def test_korean_text_emoji_and_layout_round_trip_exactly(
    repository: ConversationRepository,
) -> None:
    question = "경력이 몇 년인가요? 🚀 👩‍💻 👍🏽 café cafe\u0301 «Ω» 漢字\tend  "
    text = (
        "약 8년입니다.\n\n- 한빛페이 💳\n- **Kubernetes** ☸️\n\n```py\nprint('안녕')\n```\r\n"
        + "가나다 🇰🇷 " * 3000
    )
    earlier = [Message("user", "안녕하세요 👋"), Message("assistant", "반갑습니다! 😊\n무엇이든")]
    first = await repository.begin_turn(
        "text", question, covered=True, new_conversation=True, earlier=earlier
    )
    await repository.finish_turn(first, answer(text))
    continued = await repository.continue_conversation("text", "그 다음은? 🤔")
    assert continued is not None
    before, _ = continued
    stored = await repository.get("text")
    assert stored is not None
    first_two = [("안녕하세요 👋", "반갑습니다! 😊\n무엇이든"), (question, text)]
    assert exchanges(before) == first_two
    assert exchanges(stored) == [*first_two, ("그 다음은? 🤔", None)]
    [summary] = (await repository.list_conversations(0, 10)).items
    assert summary.first_question == "안녕하세요 👋"
    found = await repository.insights(stored.created_at, limit=10)
    assert {q.question for q in found.top_questions} == {"안녕하세요 👋", question, "그 다음은? 🤔"}


async def test_the_longest_questions_and_answers_fit_whole(
    repository: ConversationRepository,
) -> None:
    # MAX_INPUT_CHARS allows 100,000 characters: in Korean, 300 KB of UTF-8 (MySQL's TEXT
    # holds 64 KB). Answers and a client's earlier turns can be longer still.
    question = ("경력 🚀" * 25_000)[:100_000]
    text = "한빛페이에서 결제 시스템을 이끌었습니다. 💳\n" * 10_000
    earlier = [Message("user", "이전 질문"), Message("assistant", text)]
    first = await repository.begin_turn(
        "long", question, covered=True, new_conversation=True, earlier=earlier
    )
    await repository.finish_turn(first, answer(text))
    stored = await repository.get("long")
    assert stored is not None
    assert exchanges(stored) == [("이전 질문", text), (question, text)]


async def test_nul_and_lone_surrogates_are_stored_as_every_store_can_keep_them(
    repository: ConversationRepository,
) -> None:
    # NUL (PostgreSQL refuses it in text) is dropped; a lone surrogate (not UTF-8) becomes
    # U+FFFD. A request cannot carry either in valid JSON text, but an engine's answer or a
    # future client might: the store must not fail on them.
    earlier = [Message("user", "hi\x00?"), Message("assistant", "hel\ud83dlo")]
    first = await repository.begin_turn(
        "odd", "경력\x00은? \udc80 🚀", covered=True, new_conversation=True, earlier=earlier
    )
    await repository.finish_turn(first, answer("약 8\x00년 \ud800입니다 👍"))
    continued = await repository.continue_conversation("odd", "그\x00리고\udfff?")
    assert continued is not None
    stored = await repository.get("odd")
    assert stored is not None
    assert exchanges(stored) == [
        ("hi?", "hel\ufffdlo"),
        ("경력은? \ufffd 🚀", "약 8년 \ufffd입니다 👍"),
        ("그리고\ufffd?", None),
    ]


async def test_conversation_ids_differ_by_case(repository: ConversationRepository) -> None:
    await repository.begin_turn("Case", "upper?", covered=True, new_conversation=True)
    await repository.begin_turn("case", "lower?", covered=True, new_conversation=True)
    upper, lower = await repository.get("Case"), await repository.get("case")
    assert upper is not None
    assert lower is not None
    assert (upper.turns[0].question, lower.turns[0].question) == ("upper?", "lower?")
    assert await listed(repository) == ["Case", "case"]


async def test_unknown_conversation_is_none(repository: ConversationRepository) -> None:
    assert await repository.get("missing") is None


async def test_client_history_becomes_the_first_turns(
    repository: ConversationRepository,
) -> None:
    earlier = [Message("assistant", "Hi!"), Message("user", "Job?"), Message("assistant", "Lead.")]
    await repository.begin_turn(
        "c2", "Since?", covered=True, new_conversation=True, earlier=earlier
    )
    conversation = await repository.get("c2")
    assert conversation is not None
    assert [(m.role, m.content, m.source) for m in conversation.messages()] == [
        ("assistant", "Hi!", "client"),
        ("user", "Job?", "client"),
        ("assistant", "Lead.", "client"),
        ("user", "Since?", "service"),
    ]
    assert [turn.source for turn in conversation.turns] == ["client", "client", "service"]


async def test_client_history_stays_marked_as_the_clients_once_the_service_answers(
    repository: ConversationRepository, clock: Clock
) -> None:
    # Korean and English history: neither its answers nor its questions are the service's.
    earlier = [
        Message("user", "경력은 몇 년인가요?"),
        Message("assistant", "10년입니다."),
        Message("user", "Where?"),
        Message("assistant", "Seoul."),
    ]
    first = await repository.begin_turn(
        "marked", "지금 회사는?", covered=True, new_conversation=True, earlier=earlier
    )
    await repository.finish_turn(first, answer())
    continued = await repository.continue_conversation("marked", "Why?")
    assert continued is not None
    before, follow_up = continued
    assert [turn.source for turn in before.turns] == ["client", "client", "service"]
    await repository.finish_turn(follow_up, answer())

    stored = await repository.get("marked")
    assert stored is not None
    assert [(m.role, m.source) for m in stored.messages()] == [
        ("user", "client"),
        ("assistant", "client"),
        ("user", "client"),
        ("assistant", "client"),
        ("user", "service"),
        ("assistant", "service"),
        ("user", "service"),
        ("assistant", "service"),
    ]
    listed = await repository.list_conversations(0, 10)
    assert [(s.turns, s.client_turns) for s in listed.items] == [(4, 2)]
    # The answers per day are the service's: the client's history is none of them.
    found = await repository.insights(clock.now - timedelta(days=1), limit=10)
    assert sum(day.answers for day in found.answers_per_day) == 2


@pytest.mark.parametrize(
    "earlier",
    [(), (Message("user", "Hi?"), Message("assistant", "Hello."))],
    ids=["question-alone", "with-history"],
)
async def test_a_new_conversation_whose_id_is_taken_is_refused_and_the_stored_one_kept(
    repository: ConversationRepository, earlier: Sequence[Message]
) -> None:
    first = await repository.begin_turn("taken", "first", covered=True, new_conversation=True)
    with pytest.raises(StorageUnavailable):
        await repository.begin_turn(
            "taken", "again", covered=False, new_conversation=True, earlier=earlier
        )
    taken = await repository.get("taken")
    assert taken is not None
    assert [(t.id, t.question, t.covered) for t in taken.turns] == [(first, "first", True)]
    # The refusal leaves the store usable.
    await repository.begin_turn("free", "q", covered=True, new_conversation=True)
    assert await listed(repository) == ["free", "taken"]


async def test_a_next_turn_of_an_unknown_conversation_is_refused(
    repository: ConversationRepository,
) -> None:
    with pytest.raises(StorageUnavailable):
        await repository.begin_turn("missing", "q", covered=True, new_conversation=False)
    assert await repository.get("missing") is None
    assert await listed(repository) == []


async def test_turn_ids_are_unique_across_conversations_and_answers_land_on_their_turn(
    repository: ConversationRepository,
) -> None:
    ids: dict[int, str] = {}
    for round_ in range(3):
        for conversation_id in ("x", "y"):
            turn_id = await repository.begin_turn(
                conversation_id,
                f"{conversation_id}{round_}?",
                covered=True,
                new_conversation=round_ == 0,
            )
            ids[turn_id] = f"{conversation_id}{round_}?"
    assert len(ids) == 6
    for turn_id, question in ids.items():
        await repository.finish_turn(turn_id, answer(f"answer to {question}"))
    for conversation_id in ("x", "y"):
        conversation = await repository.get(conversation_id)
        assert conversation is not None
        assert [t.question for t in conversation.turns] == [
            f"{conversation_id}{n}?" for n in range(3)
        ]
        assert [t.id for t in conversation.turns] == sorted(t.id for t in conversation.turns)
        for turn in conversation.turns:
            assert turn.answer is not None
            assert turn.answer.text == f"answer to {turn.question}"


@pytest.mark.parametrize(
    "ending",
    [
        FinishedAnswer("Whole.", "completed", "gpt-test", "stop", None, Usage(10, 5, 15)),
        FinishedAnswer("Cut sh", "incomplete", "gpt-test", "length", None, Usage(10, 64, 74)),
        FinishedAnswer("", "failed", "gpt-test", None, "upstream_timeout", None),
        FinishedAnswer("Part of", "interrupted", "offline", None, None, None),
        FinishedAnswer(
            "Routed.", "completed", "gpt-test", "stop", None, None, "logistics", "direct"
        ),
    ],
    ids=lambda ending: f"{ending.status}-{ending.route}",
)
async def test_every_way_an_answer_ends_is_stored_as_it_ended(
    repository: ConversationRepository, clock: Clock, ending: FinishedAnswer
) -> None:
    turn_id = await repository.begin_turn("ends", "q", covered=False, new_conversation=True)
    asked_at = clock.now
    clock.advance(seconds=7)
    await repository.finish_turn(turn_id, ending)
    conversation = await repository.get("ends")
    assert conversation is not None
    [turn] = conversation.turns
    assert turn.answer == ending
    assert (turn.asked_at, turn.answered_at) == (asked_at, clock.now)
    assert not turn.covered, "an answer without news of coverage keeps the question's"


async def test_answer_is_written_even_when_the_caller_is_cancelled(
    repository: ConversationRepository,
) -> None:
    turn_id = await repository.begin_turn("c3", "q", covered=True, new_conversation=True)
    with anyio.CancelScope() as scope:
        scope.cancel()  # as when the client has gone and sse-starlette cancels the stream
        await repository.finish_turn(turn_id, answer("partial", "interrupted"))
    conversation = await repository.get("c3")
    assert conversation is not None
    assert conversation.turns[0].answer == answer("partial", "interrupted")


async def test_concurrent_turns_on_one_conversation_are_all_kept(
    repository: ConversationRepository,
) -> None:
    await repository.begin_turn("c4", "first", covered=True, new_conversation=True)

    async def turn(number: int) -> int:
        turn_id = await repository.begin_turn(
            "c4", f"question {number}", covered=True, new_conversation=False
        )
        await asyncio.sleep(0)
        await repository.finish_turn(turn_id, answer(f"answer {number}"))
        return turn_id

    ids = await asyncio.gather(*(turn(n) for n in range(10)))
    conversation = await repository.get("c4")
    assert conversation is not None
    assert len(set(ids)) == 10
    by_question = {t.question: t for t in conversation.turns}
    for number in range(10):
        stored = by_question[f"question {number}"].answer
        assert stored is not None
        assert stored.text == f"answer {number}"


async def test_times_come_back_in_utc_whatever_the_clocks_zone(
    repository: ConversationRepository, clock: Clock
) -> None:
    clock.now = datetime(2025, 3, 15, 8, 30, tzinfo=timezone(timedelta(hours=9)))  # KST
    turn_id = await repository.begin_turn("kst", "q", covered=True, new_conversation=True)
    await repository.finish_turn(turn_id, answer())
    conversation = await repository.get("kst")
    assert conversation is not None
    [turn] = conversation.turns
    for moment in (conversation.created_at, turn.asked_at, turn.answered_at):
        assert moment == clock.now
        assert moment is not None
        assert moment.utcoffset() == timedelta(0)


# Follow-ups


async def test_a_follow_up_is_stored_and_its_history_read_in_one_step(
    repository: ConversationRepository,
) -> None:
    first = await repository.begin_turn("f1", "first?", covered=True, new_conversation=True)
    await repository.finish_turn(first, answer("first answer"))
    continued = await repository.continue_conversation("f1", "second?")
    assert continued is not None
    before, turn_id = continued
    assert [t.question for t in before.turns] == ["first?"], "the new turn is not its own history"
    await repository.finish_turn(turn_id, answer("second answer"), covered=False)
    stored = await repository.get("f1")
    assert stored is not None
    assert [(t.question, t.covered) for t in stored.turns] == [("first?", True), ("second?", False)]
    assert stored.turns[1].answer == answer("second answer")


async def test_an_unknown_conversation_is_not_continued(
    repository: ConversationRepository,
) -> None:
    assert await repository.continue_conversation("missing", "q") is None
    assert await repository.get("missing") is None


async def test_a_follow_up_counts_as_covered_until_its_answer_says_otherwise(
    repository: ConversationRepository,
) -> None:
    await repository.begin_turn("cov", "first?", covered=False, new_conversation=True)
    continued = await repository.continue_conversation("cov", "second?")
    assert continued is not None
    before, turn_id = continued
    assert before.id == "cov"
    stored = await repository.get("cov")
    assert stored is not None
    assert stored.created_at == before.created_at
    assert [(t.id, t.covered, t.answer) for t in stored.turns][1:] == [(turn_id, True, None)]


# Listing


async def test_conversations_are_listed_newest_first_in_pages(
    repository: ConversationRepository, clock: Clock
) -> None:
    for number in range(5):
        await repository.begin_turn(
            f"p{number}", f"question {number}", covered=True, new_conversation=True
        )
        clock.advance(seconds=1)
    page = await repository.list_conversations(offset=0, limit=2)
    assert page.total == 5
    assert [c.id for c in page.items] == ["p4", "p3"]
    assert page.items[0].first_question == "question 4"
    assert page.items[0].turns == 1
    last = await repository.list_conversations(offset=4, limit=2)
    assert [c.id for c in last.items] == ["p0"]


async def test_each_question_and_answer_makes_its_conversation_the_latest(
    repository: ConversationRepository, clock: Clock
) -> None:
    started = {}
    for conversation_id in ("a", "b", "c"):
        started[conversation_id] = await repository.begin_turn(
            conversation_id, "q", covered=True, new_conversation=True
        )
        clock.advance(seconds=1)
    assert await listed(repository) == ["c", "b", "a"]
    await repository.begin_turn("a", "next?", covered=True, new_conversation=False)
    assert await listed(repository) == ["a", "c", "b"]
    clock.advance(seconds=1)
    await repository.continue_conversation("b", "and then?")
    assert await listed(repository) == ["b", "a", "c"]
    clock.advance(seconds=1)
    await repository.finish_turn(started["c"], answer())
    assert await listed(repository) == ["c", "b", "a"]
    [latest, *_] = (await repository.list_conversations(0, 1)).items
    assert (latest.created_at, latest.updated_at) == (clock.now - timedelta(seconds=3), clock.now)
    assert latest.turns == 1


async def test_conversations_active_at_the_same_moment_are_paged_by_id(
    repository: ConversationRepository,
) -> None:
    for conversation_id in ("c", "a", "d", "b"):
        await repository.begin_turn(conversation_id, "q", covered=True, new_conversation=True)
    pages = [await repository.list_conversations(offset, 2) for offset in (0, 2, 4)]
    assert [[c.id for c in page.items] for page in pages] == [["a", "b"], ["c", "d"], []]
    assert {page.total for page in pages} == {4}


async def test_a_summary_shows_the_first_question_not_a_greeting(
    repository: ConversationRepository,
) -> None:
    earlier = [Message("assistant", "Hi! Ask me about Jane.")]
    await repository.begin_turn(
        "g", "What does she do?", covered=True, new_conversation=True, earlier=earlier
    )
    [summary] = (await repository.list_conversations(0, 10)).items
    assert (summary.first_question, summary.turns) == ("What does she do?", 2)


# Insights


async def test_insights_count_questions_gaps_days_and_tokens(
    repository: ConversationRepository, clock: Clock
) -> None:
    old = await repository.begin_turn(
        "old", "Ancient question?", covered=False, new_conversation=True
    )
    await repository.finish_turn(old, answer())
    clock.advance(days=40)
    asked = [
        ("i1", "What projects did she do?", True),
        ("i2", "what projects did she do", True),
        ("i3", "어떤 프로젝트를 했나요?", True),
        ("i4", "Does she like cats?", False),
    ]
    for conversation_id, question, covered in asked:
        turn_id = await repository.begin_turn(
            conversation_id, question, covered=covered, new_conversation=True
        )
        await repository.finish_turn(turn_id, answer())

    found = await repository.insights(clock.now - timedelta(days=30), limit=10)
    assert found.top_questions[0].count == 2
    assert found.top_questions[0].question.lower().startswith("what projects")
    assert [q.question for q in found.unanswered_questions] == ["Does she like cats?"]
    assert found.unanswered_questions[0].conversation_id == "i4"
    assert sum(day.answers for day in found.answers_per_day) == 4
    assert found.answers_per_day[-1].day == clock.now.date()
    assert found.tokens == Usage(40, 20, 60)


async def test_insights_count_utc_days_from_since_and_leave_out_greetings(
    repository: ConversationRepository, clock: Clock
) -> None:
    clock.now = datetime(2025, 3, 15, 8, 30, tzinfo=timezone(timedelta(hours=9)))  # 23:30 UTC
    since = clock.now
    greeting = [Message("assistant", "Hi!")]
    late = await repository.begin_turn(
        "late", "Late?", covered=False, new_conversation=True, earlier=greeting
    )
    await repository.finish_turn(late, answer())
    clock.advance(hours=1)  # 00:30 UTC, the next UTC day
    early = await repository.begin_turn("early", "Early?", covered=True, new_conversation=True)
    await repository.finish_turn(early, answer())

    found = await repository.insights(since, limit=10)
    assert found.answers_per_day == (
        DailyAnswers(date(2025, 3, 14), 1),
        DailyAnswers(date(2025, 3, 15), 1),
    )
    assert sorted(q.question for q in found.top_questions) == ["Early?", "Late?"]
    assert [q.question for q in found.unanswered_questions] == ["Late?"]
    assert found.unanswered_questions[0].asked_at == since
    after = await repository.insights(since + timedelta(microseconds=1), limit=10)
    assert [q.question for q in after.top_questions] == ["Early?"]
    assert after.answers_per_day == (DailyAnswers(date(2025, 3, 15), 1),)


async def test_insights_keep_the_most_asked_and_the_latest_unanswered_within_the_limit(
    repository: ConversationRepository, clock: Clock
) -> None:
    for number in range(5):  # all at the same moment
        await repository.begin_turn(
            f"l{number}", f"question {number}?", covered=False, new_conversation=True
        )
    await repository.begin_turn("l9", "Question 4", covered=True, new_conversation=True)
    found = await repository.insights(clock.now, limit=3)
    assert [(q.question, q.count) for q in found.top_questions] == [
        ("Question 4", 2),
        ("question 0?", 1),
        ("question 1?", 1),
    ]
    assert [q.question for q in found.unanswered_questions] == [
        "question 4?",
        "question 3?",
        "question 2?",
    ]
    assert found.answers_per_day == ()
    assert found.tokens == Usage(0, 0, 0)


# Forgetting


async def test_purge_forgets_conversations_idle_since_before_the_cutoff(
    repository: ConversationRepository, clock: Clock
) -> None:
    start = clock.now
    await repository.begin_turn("idle", "Forgotten?", covered=True, new_conversation=True)
    answered = await repository.begin_turn("answered", "q", covered=True, new_conversation=True)
    clock.advance(days=10)
    await repository.finish_turn(answered, answer())
    await repository.begin_turn("recent", "q", covered=True, new_conversation=True)

    assert await repository.purge_before(clock.now) == 1
    assert await repository.get("idle") is None
    assert await listed(repository) == ["answered", "recent"]
    found = await repository.insights(start, limit=10)
    assert "Forgotten?" not in [q.question for q in found.top_questions]
    assert await repository.purge_before(clock.now) == 0


async def test_an_answer_to_a_purged_conversation_is_dropped_without_error(
    repository: ConversationRepository, clock: Clock
) -> None:
    turn_id = await repository.begin_turn("gone", "q", covered=True, new_conversation=True)
    clock.advance(days=100)
    assert await repository.purge_before(clock.now) == 1
    await repository.finish_turn(turn_id, answer())
    assert await repository.get("gone") is None
    assert await listed(repository) == []


# Health


async def test_check_passes_on_a_live_database(repository: ConversationRepository) -> None:
    await repository.check()


async def test_a_declined_question_is_stored_declined_and_never_listed_as_a_gap(
    repository: ConversationRepository, clock: Clock
) -> None:
    turn_id = await repository.begin_turn(
        "d1", "Is she married?", covered=False, new_conversation=True
    )
    await repository.finish_turn(turn_id, answer("I can't answer that.", "declined"))
    gap = await repository.begin_turn(
        "d2", "Does she like cats?", covered=False, new_conversation=True
    )
    await repository.finish_turn(gap, answer())

    stored = await repository.get("d1")
    assert stored is not None
    assert stored.turns[0].answer is not None
    assert stored.turns[0].answer.status == "declined"
    found = await repository.insights(clock.now - timedelta(days=1), limit=10)
    assert [q.question for q in found.unanswered_questions] == ["Does she like cats?"]
