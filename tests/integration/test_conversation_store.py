"""The SQL conversation repository on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.conversation import FinishedAnswer
from domain.errors import StorageUnavailable
from domain.models import Message, Usage
from domain.ports import ConversationRepository
from infrastructure.conversation_store import SqlConversationRepository
from infrastructure.database import create_engine, metadata, migrate, turns


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def repository(engine: AsyncEngine) -> SqlConversationRepository:
    return SqlConversationRepository(engine)


def answer(text: str = "An answer.", status: str = "completed") -> FinishedAnswer:
    return FinishedAnswer(text, status, "gpt-test", "stop", None, Usage(10, 5, 15))  # type: ignore[arg-type]


async def test_migrations_build_the_schema_from_an_empty_database(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        await migrate(engine)  # a second start finds nothing to do

        def describe(connection: object) -> tuple[set[str], list[object]]:
            tables = set(inspect(connection).get_table_names())  # type: ignore[arg-type]
            drift = compare_metadata(MigrationContext.configure(connection), metadata)  # type: ignore[arg-type]
            return tables, drift

        async with engine.connect() as connection:
            tables, drift = await connection.run_sync(describe)
            version = (
                await connection.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar_one()
        assert {"conversations", "turns", "alembic_version"} <= tables
        assert drift == [], "the tables in code and the migrations disagree"
        assert version == "0001"
    finally:
        await engine.dispose()


async def test_turns_round_trip_in_order_with_utc_times(
    repository: SqlConversationRepository,
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


async def test_unknown_conversation_is_none(repository: SqlConversationRepository) -> None:
    assert await repository.get("missing") is None


async def test_client_history_becomes_the_first_turns(
    repository: SqlConversationRepository,
) -> None:
    earlier = [Message("assistant", "Hi!"), Message("user", "Job?"), Message("assistant", "Lead.")]
    await repository.begin_turn(
        "c2", "Since?", covered=True, new_conversation=True, earlier=earlier
    )
    conversation = await repository.get("c2")
    assert conversation is not None
    assert [(m.role, m.content) for m in conversation.messages()] == [
        ("assistant", "Hi!"),
        ("user", "Job?"),
        ("assistant", "Lead."),
        ("user", "Since?"),
    ]


async def test_answer_is_written_even_when_the_caller_is_cancelled(
    repository: SqlConversationRepository,
) -> None:
    turn_id = await repository.begin_turn("c3", "q", covered=True, new_conversation=True)
    with anyio.CancelScope() as scope:
        scope.cancel()  # as when the client has gone and sse-starlette cancels the stream
        await repository.finish_turn(turn_id, answer("partial", "interrupted"))
    conversation = await repository.get("c3")
    assert conversation is not None
    assert conversation.turns[0].answer == answer("partial", "interrupted")


async def test_concurrent_turns_on_one_conversation_are_all_kept(
    repository: SqlConversationRepository,
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


async def test_conversations_are_listed_newest_first_in_pages(
    repository: SqlConversationRepository,
) -> None:
    for number in range(5):
        await repository.begin_turn(
            f"p{number}", f"question {number}", covered=True, new_conversation=True
        )
        await asyncio.sleep(0.002)
    page = await repository.list_conversations(offset=0, limit=2)
    assert page.total == 5
    assert [c.id for c in page.items] == ["p4", "p3"]
    assert page.items[0].first_question == "question 4"
    assert page.items[0].turns == 1
    last = await repository.list_conversations(offset=4, limit=2)
    assert [c.id for c in last.items] == ["p0"]


async def test_insights_count_questions_gaps_days_and_tokens(
    engine: AsyncEngine, repository: SqlConversationRepository
) -> None:
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
    old = await repository.begin_turn(
        "old", "Ancient question?", covered=False, new_conversation=True
    )
    await repository.finish_turn(old, answer())
    long_ago = datetime.now(UTC) - timedelta(days=40)
    async with engine.begin() as connection:
        await connection.execute(
            update(turns).where(turns.c.id == old).values(asked_at=long_ago, answered_at=long_ago)
        )

    found = await repository.insights(datetime.now(UTC) - timedelta(days=30), limit=10)
    assert found.top_questions[0].count == 2
    assert found.top_questions[0].question.lower().startswith("what projects")
    assert [q.question for q in found.unanswered_questions] == ["Does she like cats?"]
    assert found.unanswered_questions[0].conversation_id == "i4"
    assert sum(day.answers for day in found.answers_per_day) == 4
    assert found.answers_per_day[-1].day == datetime.now(UTC).date()
    assert found.tokens == Usage(40, 20, 60)


async def test_old_conversations_are_purged_with_their_turns(
    engine: AsyncEngine, repository: SqlConversationRepository
) -> None:
    for conversation_id in ("keep", "drop"):
        await repository.begin_turn(conversation_id, "q", covered=True, new_conversation=True)
    from infrastructure.database import conversations

    async with engine.begin() as connection:
        await connection.execute(
            update(conversations)
            .where(conversations.c.id == "drop")
            .values(updated_at=datetime.now(UTC) - timedelta(days=100))
        )
    purged = await repository.purge_before(datetime.now(UTC) - timedelta(days=90))
    assert purged == 1
    assert await repository.get("drop") is None
    assert await repository.get("keep") is not None
    async with engine.connect() as connection:
        remaining = (await connection.execute(text("SELECT count(*) FROM turns"))).scalar_one()
    assert remaining == 1


async def test_check_passes_on_a_live_database(repository: SqlConversationRepository) -> None:
    await repository.check()


# Every method of the port, called with harmless arguments.
PORT_CALLS: dict[str, Callable[[ConversationRepository], Awaitable[object]]] = {
    "get": lambda repository: repository.get("any"),
    "begin_turn": lambda repository: repository.begin_turn(
        "any", "q", covered=True, new_conversation=True
    ),
    "continue_conversation": lambda repository: repository.continue_conversation("any", "q"),
    "finish_turn": lambda repository: repository.finish_turn(1, answer()),
    "list_conversations": lambda repository: repository.list_conversations(0, 10),
    "insights": lambda repository: repository.insights(datetime.now(UTC), 10),
    "purge_before": lambda repository: repository.purge_before(datetime.now(UTC)),
    "check": lambda repository: repository.check(),
}


def test_every_method_of_the_port_is_called_against_an_unreachable_database() -> None:
    port_methods = {
        name
        for name, value in vars(ConversationRepository).items()
        if callable(value) and not name.startswith("_")
    }
    assert set(PORT_CALLS) == port_methods


@asynccontextmanager
async def unreachable_engine(kind: str, folder: Path) -> AsyncIterator[AsyncEngine]:
    """An engine whose database cannot be reached: a PostgreSQL port nobody listens on, or a
    SQLite file whose folder went away (an unmounted volume)."""
    threads = set(threading.enumerate())
    if kind == "postgresql":
        engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/test")
    else:
        engine = create_engine(f"sqlite+aiosqlite:///{folder / 'gone' / 'conversations.db'}")
        (folder / "gone").rmdir()
    try:
        yield engine
    finally:
        await engine.dispose()
        # aiosqlite stops the thread of a connection that failed to open through the event
        # loop, later: let it finish while the loop still runs.
        deadline = time.monotonic() + 10
        while set(threading.enumerate()) - threads:
            assert time.monotonic() < deadline, "a database thread did not stop"
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("method", PORT_CALLS)
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_every_method_reports_an_unreachable_database_as_storage_unavailable(
    kind: str, method: str, tmp_path: Path
) -> None:
    async with unreachable_engine(kind, tmp_path) as engine:
        with pytest.raises(StorageUnavailable):
            await PORT_CALLS[method](SqlConversationRepository(engine))


async def test_a_follow_up_is_stored_and_its_history_read_in_one_step(
    repository: SqlConversationRepository,
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
    repository: SqlConversationRepository,
) -> None:
    assert await repository.continue_conversation("missing", "q") is None
    assert await repository.get("missing") is None


def count_statements(engine: AsyncEngine) -> list[int]:
    executed = [0]

    def count(*_: object) -> None:
        executed[0] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    return executed


async def test_new_conversations_arriving_together_are_stored_together(
    engine: AsyncEngine, repository: SqlConversationRepository
) -> None:
    statements = count_statements(engine)
    questions = [f"질문 {n}: what did she build?" for n in range(60)]
    ids = await asyncio.gather(
        *(
            repository.begin_turn(f"burst-{n}", q, covered=n % 2 == 0, new_conversation=True)
            for n, q in enumerate(questions)
        )
    )
    assert len(set(ids)) == 60
    # The first is stored at once, the others that came meanwhile in a batch or two of two
    # statements each (an executemany counts once): not one write each.
    assert statements[0] <= 8
    for n, (question, turn_id) in enumerate(zip(questions, ids, strict=True)):
        conversation = await repository.get(f"burst-{n}")
        assert conversation is not None
        assert [(t.id, t.question, t.covered) for t in conversation.turns] == [
            (turn_id, question, n % 2 == 0)
        ]
    # Each turn id is its own conversation's: answers land where they belong.
    await asyncio.gather(*(repository.finish_turn(i, answer(f"answer {i}")) for i in ids))
    for n, turn_id in enumerate(ids):
        conversation = await repository.get(f"burst-{n}")
        assert conversation is not None
        assert conversation.turns[0].answer == answer(f"answer {turn_id}")


async def test_a_start_that_cannot_be_stored_fails_alone_in_its_batch(
    repository: SqlConversationRepository,
) -> None:
    await repository.begin_turn("taken", "first", covered=True, new_conversation=True)
    # While one start is being stored, three more arrive; one of them reuses an existing id.
    results = await asyncio.gather(
        repository.begin_turn("leader", "q", covered=True, new_conversation=True),
        repository.begin_turn("ok-1", "q", covered=True, new_conversation=True),
        repository.begin_turn("taken", "again", covered=True, new_conversation=True),
        repository.begin_turn("ok-2", "q", covered=True, new_conversation=True),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [int, int, StorageUnavailable, int]
    for conversation_id in ("leader", "ok-1", "ok-2"):
        assert await repository.get(conversation_id) is not None
    taken = await repository.get("taken")
    assert taken is not None
    assert [t.question for t in taken.turns] == ["first"]


async def test_a_start_whose_request_is_cancelled_does_not_hold_up_the_others(
    repository: SqlConversationRepository,
) -> None:
    leader = asyncio.create_task(
        repository.begin_turn("lead", "q", covered=True, new_conversation=True)
    )
    await asyncio.sleep(0)  # the leader's write is under way
    waiting = [
        asyncio.create_task(
            repository.begin_turn(f"wait-{n}", "q", covered=True, new_conversation=True)
        )
        for n in range(3)
    ]
    await asyncio.sleep(0)
    waiting[1].cancel()  # the recruiter left before the question was stored
    results = await asyncio.gather(leader, *waiting, return_exceptions=True)
    assert isinstance(results[0], int)
    assert isinstance(results[1], int)
    assert isinstance(results[2], asyncio.CancelledError)
    assert isinstance(results[3], int)
    assert await repository.get("wait-2") is not None


async def test_answers_ending_together_are_stored_together_each_on_its_turn(
    engine: AsyncEngine, repository: SqlConversationRepository
) -> None:
    first = await repository.begin_turn("ends", "first?", covered=True, new_conversation=True)
    follow_ups = [
        await repository.begin_turn("ends", f"then {n}?", covered=True, new_conversation=False)
        for n in range(40)
    ]
    statements = count_statements(engine)
    # A follow-up's coverage comes with its answer; a first question keeps its own (None).
    await asyncio.gather(
        repository.finish_turn(first, answer("first answer"), None),
        *(
            repository.finish_turn(turn_id, answer(f"answer {n}"), n % 2 == 0)
            for n, turn_id in enumerate(follow_ups)
        ),
    )
    assert statements[0] <= 8  # not two statements for each of the 41 answers
    conversation = await repository.get("ends")
    assert conversation is not None
    stored = {
        t.question: (t.answer.text if t.answer else None, t.covered) for t in conversation.turns
    }
    assert stored["first?"] == ("first answer", True)
    for n in range(40):
        assert stored[f"then {n}?"] == (f"answer {n}", n % 2 == 0)
