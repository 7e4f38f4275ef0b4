"""The SQL conversation repository on SQLite and on the real PostgreSQL and MySQL servers: what
only SQL has (migrations, rows, batched writes, a server that cannot be reached).

What every ``ConversationRepository`` promises is in ``tests/contract``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, bindparam, event, inspect, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from domain.conversation import FinishedAnswer
from domain.errors import StorageUnavailable
from domain.models import Usage
from domain.ports import ConversationRepository
from infrastructure.conversation_store import SqlConversationRepository
from infrastructure.database import UtcDateTime, create_engine, metadata, migrate
from tests.databases import MYSQL_URL, POSTGRES_URL, empty_database


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def repository(engine: AsyncEngine) -> AsyncIterator[SqlConversationRepository]:
    repository = SqlConversationRepository(engine)
    yield repository
    await repository.close()


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
        assert version == "0003"
    finally:
        await engine.dispose()


async def test_turns_stored_before_migration_0002_are_the_services_and_can_go_back(
    database_url: str,
) -> None:
    from alembic import command

    from infrastructure.database import alembic_config

    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0001"))
            # A conversation stored before 0002, written as 0001's tables were.
            at = bindparam("t", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), type_=UtcDateTime())
            await connection.execute(
                text(
                    "INSERT INTO conversations (id, created_at, updated_at) VALUES ('old', :t, :t)"
                ).bindparams(at)
            )
            await connection.execute(
                text(
                    "INSERT INTO turns (conversation_id, question, question_key, covered, asked_at)"
                    " VALUES ('old', '경력은?', '경력은', true, :t)"
                ).bindparams(at)
            )
        await migrate(engine)
        repository = SqlConversationRepository(engine)
        stored = await repository.get("old")
        await repository.close()
        assert stored is not None
        assert [turn.source for turn in stored.turns] == ["service"]
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: command.downgrade(alembic_config(sync), "0001"))
            columns = await connection.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("turns")}
            )
        assert "source" not in columns
    finally:
        await engine.dispose()


# SQLite: WEB_CONCURRENCY workers on one file (a lock file beside it).
@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
async def test_replicas_starting_together_migrate_one_at_a_time(kind: str, tmp_path: Path) -> None:
    url = await empty_database(kind, tmp_path)
    engines = [create_engine(url) for _ in range(4)]
    try:
        # Without the lock, two would both create the tables and all but one fail.
        await asyncio.gather(*(migrate(engine) for engine in engines))
        async with engines[0].connect() as connection:
            versions = await connection.execute(text("SELECT version_num FROM alembic_version"))
            assert versions.scalars().all() == ["0003"]
    finally:
        for engine in engines:
            await engine.dispose()


async def test_mysql_tables_keep_korean_and_emoji_and_compare_exactly(tmp_path: Path) -> None:
    engine = create_engine(await empty_database("mysql", tmp_path))
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            tables = (
                await connection.execute(
                    text(
                        "SELECT table_name, table_collation FROM information_schema.tables"
                        " WHERE table_schema = DATABASE()"
                        " AND table_name IN ('conversations', 'turns')"
                    )
                )
            ).all()
            session = (
                await connection.execute(text("SELECT @@character_set_client, @@sql_mode"))
            ).one()
        assert sorted(tuple(row) for row in tables) == [
            ("conversations", "utf8mb4_bin"),
            ("turns", "utf8mb4_bin"),
        ]
        assert session[0] == "utf8mb4"
        assert "STRICT_TRANS_TABLES" in session[1].split(",")
    finally:
        await engine.dispose()


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
    """An engine whose database cannot be reached: a PostgreSQL or MySQL port nobody listens
    on, or a SQLite file whose folder went away (an unmounted volume)."""
    threads = set(threading.enumerate())
    if kind == "postgresql":
        engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/test")
    elif kind == "mysql":
        engine = create_engine("mysql+asyncmy://root@127.0.0.1:1/test")
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
@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
async def test_every_method_reports_an_unreachable_database_as_storage_unavailable(
    kind: str, method: str, tmp_path: Path
) -> None:
    async with unreachable_engine(kind, tmp_path) as engine:
        repository = SqlConversationRepository(engine)
        try:
            with pytest.raises(StorageUnavailable):
                await PORT_CALLS[method](repository)
        finally:
            await repository.close()


async def _drop_other_connections(kind: str) -> None:
    """What a server restart, a failover or MySQL's ``wait_timeout`` does to pooled
    connections."""
    admin = create_engine(POSTGRES_URL if kind == "postgresql" else MYSQL_URL)
    try:
        async with admin.connect() as connection:
            if kind == "postgresql":
                await connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                return
            others = (
                await connection.execute(
                    text(
                        "SELECT id FROM information_schema.processlist"
                        " WHERE db = DATABASE() AND id <> CONNECTION_ID()"
                    )
                )
            ).scalars()
            for connection_id in others.all():
                await connection.execute(text(f"KILL CONNECTION {int(connection_id)}"))
    finally:
        await admin.dispose()


@pytest.mark.parametrize("method", PORT_CALLS)
@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
async def test_a_connection_the_server_dropped_fails_one_call_then_the_store_recovers(
    kind: str, method: str, tmp_path: Path
) -> None:
    engine = create_engine(await empty_database(kind, tmp_path))
    try:
        await migrate(engine)
        repository = SqlConversationRepository(engine)
        await repository.check()  # a connection waits in the pool
        await _drop_other_connections(kind)
        with pytest.raises(StorageUnavailable):
            await PORT_CALLS[method](repository)
        await repository.check()
    finally:
        await engine.dispose()


@pytest.fixture
def statements() -> Iterator[list[int]]:
    """Statements executed by every engine, the SQLite writer's included."""
    executed = [0]

    def count(*_: object) -> None:
        executed[0] += 1

    event.listen(Engine, "before_cursor_execute", count)
    yield executed
    event.remove(Engine, "before_cursor_execute", count)


async def test_new_conversations_arriving_together_are_stored_together(
    repository: SqlConversationRepository, statements: list[int]
) -> None:
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
    assert 2 <= statements[0] <= 8
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
    repository: SqlConversationRepository, statements: list[int]
) -> None:
    first = await repository.begin_turn("ends", "first?", covered=True, new_conversation=True)
    follow_ups = [
        await repository.begin_turn("ends", f"then {n}?", covered=True, new_conversation=False)
        for n in range(40)
    ]
    statements[0] = 0
    # A follow-up's coverage comes with its answer; a first question keeps its own (None).
    await asyncio.gather(
        repository.finish_turn(first, answer("first answer"), None),
        *(
            repository.finish_turn(turn_id, answer(f"answer {n}"), n % 2 == 0)
            for n, turn_id in enumerate(follow_ups)
        ),
    )
    assert 2 <= statements[0] <= 8  # not two statements for each of the 41 answers
    conversation = await repository.get("ends")
    assert conversation is not None
    stored = {
        t.question: (t.answer.text if t.answer else None, t.covered) for t in conversation.turns
    }
    assert stored["first?"] == ("first answer", True)
    for n in range(40):
        assert stored[f"then {n}?"] == (f"answer {n}", n % 2 == 0)


async def test_writes_to_a_sqlite_file_do_not_wait_for_the_async_engines_connection(
    tmp_path: Path,
) -> None:
    """Each transaction goes to the writer's thread in one trip, on a connection of its own:
    the async engine's only connection, busy elsewhere, holds up no question."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'conversations.db'}")
    await migrate(engine)
    repository = SqlConversationRepository(engine)
    try:
        async with engine.connect() as busy:
            await busy.execute(text("SELECT 1"))
            started = await asyncio.wait_for(
                repository.begin_turn("writer", "첫 질문", covered=True, new_conversation=True), 5
            )
            await asyncio.wait_for(repository.finish_turn(started, answer("첫 답")), 5)
            continued = await asyncio.wait_for(
                repository.continue_conversation("writer", "Then?"), 5
            )
        assert continued is not None
        conversation = await repository.get("writer")
        assert conversation is not None
        assert [t.question for t in conversation.turns] == ["첫 질문", "Then?"]
        assert conversation.turns[0].answer == answer("첫 답")
    finally:
        await repository.close()
        await engine.dispose()


async def test_an_in_memory_sqlite_database_is_written_through_the_async_engine() -> None:
    """A second connection to ``:memory:`` would be another database: no writer there.
    (``create_engine`` takes files only; an engine made otherwise may still be given.)"""
    engine = create_async_engine("sqlite+aiosqlite://")
    await migrate(engine)
    repository = SqlConversationRepository(engine)
    try:
        turn_id = await repository.begin_turn("memory", "q", covered=True, new_conversation=True)
        await repository.finish_turn(turn_id, answer())
        conversation = await repository.get("memory")
        assert conversation is not None
        assert conversation.turns[0].answer == answer()
        assert await repository.purge_before(datetime.now(UTC) + timedelta(days=1)) == 1
    finally:
        await repository.close()
        await engine.dispose()
