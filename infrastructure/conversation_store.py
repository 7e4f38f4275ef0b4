"""Conversations in SQLite, PostgreSQL or MySQL through SQLAlchemy Core; rows become domain
objects."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, ParamSpec, TypeVar

import anyio
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Row,
    String,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import Date

from domain.conversation import (
    Conversation,
    ConversationSummary,
    DailyAnswers,
    FinishedAnswer,
    Insights,
    Page,
    QuestionCount,
    Turn,
    UnansweredQuestion,
    question_key,
    storable_text,
    turns_from_messages,
)
from domain.errors import StorageUnavailable
from domain.models import Message, Usage
from infrastructure.database import (
    DEFAULT_TIMEOUT_SECONDS,
    SqliteWriter,
    UtcDateTime,
    conversations,
    turns,
)
from infrastructure.group_commit import GroupCommit

logger = logging.getLogger(__name__)

# A write that was started must finish even if the client left (or the server is busy);
# but it must not hang a shutdown.
FINISH_TIMEOUT_SECONDS = 30.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _turn(row: Row[Any]) -> Turn:
    answer = None
    if row.status is not None:
        usage = (
            Usage(row.input_tokens, row.output_tokens, row.total_tokens)
            if row.total_tokens is not None
            else None
        )
        answer = FinishedAnswer(
            text=row.answer or "",
            status=row.status,
            model=row.model or "",
            finish_reason=row.finish_reason,
            error_code=row.error_code,
            usage=usage,
            agent=row.agent,
            route=row.route,
        )
    return Turn(
        id=row.id,
        question=row.question,
        asked_at=row.asked_at,
        covered=row.covered,
        answer=answer,
        answered_at=row.answered_at,
        source=row.source,
    )


@dataclass(frozen=True, slots=True)
class _NewConversation:
    """A new conversation with its first question."""

    conversation_id: str
    question: str
    covered: bool
    asked_at: datetime

    def conversation_row(self) -> dict[str, Any]:
        return {
            "id": self.conversation_id,
            "created_at": self.asked_at,
            "updated_at": self.asked_at,
        }

    def question_row(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "question": self.question,
            "question_key": question_key(self.question),
            "covered": self.covered,
            "asked_at": self.asked_at,
        }


_NOT_DECLINED = or_(turns.c.status.is_(None), turns.c.status != "declined")


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


P = ParamSpec("P")
R = TypeVar("R")

# What a database that cannot be used raises: SQLAlchemy wraps every driver's errors
# (OperationalError, InterfaceError, IntegrityError: all DBAPIError) and its pool's timeout;
# a refused or reset connection can surface as OSError, a deadline as TimeoutError.
_DATABASE_FAILURES = (SQLAlchemyError, OSError, TimeoutError)


def _storage_errors(method: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Database failures in ``method`` as the domain's ``StorageUnavailable``, logged by type
    only (a driver's message may quote the data). Every public method of the repository wears
    it, so an outage is a 503 ``storage_unavailable`` wherever it strikes."""

    @functools.wraps(method)
    async def mapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except _DATABASE_FAILURES as error:
            logger.error(
                "conversation storage failed (%s): %s", method.__name__, type(error).__name__
            )
            raise StorageUnavailable() from None

    return mapped


# The statements on the path to an answer's first delta, built once: building and caching a
# statement per call costs more than the database's own work (see docs/performance.md).
_INSERT_CONVERSATION = insert(conversations)
_INSERT_QUESTION = insert(turns).returning(turns.c.id)
# Many questions in one statement ("insertmanyvalues"); each new conversation has one, so its
# id tells which turn id is whose.
_INSERT_QUESTIONS = insert(turns).returning(turns.c.id, turns.c.conversation_id)
# MySQL has no RETURNING (MariaDB has, since 10.5; the MySQL path is the one tested on both):
# a question's id is the connection's last insert id; a batch's are read back by conversation.
_INSERT_QUESTION_MYSQL = insert(turns)
_QUESTIONS_OF_MYSQL = select(turns.c.id, turns.c.conversation_id).where(
    turns.c.conversation_id.in_(bindparam("conversation_ids", expanding=True))
)
_TOUCH_CONVERSATION = (
    update(conversations)
    .where(conversations.c.id == bindparam("conversation_id"))
    .values(updated_at=bindparam("now"))
)
# A follow-up's question, inserted only if its conversation exists; then the turns before it.
_ASK_IN_CONVERSATION = (
    insert(turns)
    .from_select(
        ["conversation_id", "question", "question_key", "covered", "asked_at"],
        select(
            conversations.c.id,
            bindparam("question", type_=Text()),
            bindparam("question_key", type_=String()),
            true(),
            bindparam("now", type_=UtcDateTime()),
        ).where(conversations.c.id == bindparam("conversation_id")),
    )
    .returning(turns.c.id)
)
_CONVERSATION_BEFORE_TURN = (
    select(conversations.c.created_at.label("conversation_created_at"), *turns.c)
    .select_from(
        conversations.outerjoin(
            turns,
            (turns.c.conversation_id == conversations.c.id) & (turns.c.id < bindparam("turn_id")),
        )
    )
    .where(conversations.c.id == bindparam("conversation_id"))
    .order_by(turns.c.id)
)
_TURNS_WITH_CONVERSATION = (
    select(conversations.c.created_at.label("conversation_created_at"), *turns.c)
    .select_from(conversations.outerjoin(turns))
    .where(conversations.c.id == bindparam("conversation_id"))
    .order_by(turns.c.id)
)
# Parameter names differ from the columns': SQLAlchemy reserves those for its own.
_FINISH_TURN = (
    update(turns)
    .where(turns.c.id == bindparam("turn_id"))
    .values(
        answer=bindparam("answer_text"),
        status=bindparam("answer_status"),
        finish_reason=bindparam("answer_finish_reason"),
        error_code=bindparam("answer_error_code"),
        model=bindparam("answer_model"),
        input_tokens=bindparam("answer_input_tokens"),
        output_tokens=bindparam("answer_output_tokens"),
        total_tokens=bindparam("answer_total_tokens"),
        agent=bindparam("answer_agent"),
        route=bindparam("answer_route"),
        answered_at=bindparam("now"),
        # A follow-up's coverage is known with its answer; NULL leaves a question's as it was.
        covered=func.coalesce(bindparam("answer_covered", type_=Boolean()), turns.c.covered),
    )
)
_TOUCH_CONVERSATION_OF_TURN = (
    update(conversations)
    .where(
        conversations.c.id
        == select(turns.c.conversation_id)
        .where(turns.c.id == bindparam("turn_id"))
        .scalar_subquery()
    )
    .values(updated_at=bindparam("now"))
)

# On PostgreSQL each of the two ways a question starts is one statement, one round trip, atomic
# by itself: no BEGIN and COMMIT around it. Data-modifying CTEs are PostgreSQL's alone; SQLite
# runs in the process, where a round trip costs nothing, and keeps the plain transaction.
_NOW = bindparam("now", type_=UtcDateTime())
_NEW_CONVERSATION = (
    insert(conversations)
    .values(id=bindparam("conversation_id"), created_at=_NOW, updated_at=_NOW)
    .cte("new_conversation")
)
_START_CONVERSATION_PG = (
    insert(turns)
    .add_cte(_NEW_CONVERSATION)
    .values(
        conversation_id=bindparam("conversation_id"),
        question=bindparam("question"),
        question_key=bindparam("question_key"),
        covered=bindparam("covered"),
        asked_at=_NOW,
    )
    .returning(turns.c.id)
)
_HEAD = (
    update(conversations)
    .where(conversations.c.id == bindparam("conversation_id"))
    .values(updated_at=_NOW)
    .returning(conversations.c.created_at)
    .cte("head")
)
_NEW_TURN = (
    insert(turns)
    .from_select(
        ["conversation_id", "question", "question_key", "covered", "asked_at"],
        select(
            bindparam("conversation_id", type_=String()),
            bindparam("question", type_=Text()),
            bindparam("question_key", type_=String()),
            true(),
            _NOW,
        ).select_from(_HEAD),
    )
    .returning(turns.c.id)
    .cte("new_turn")
)
# The statement's snapshot predates its own insert: the joined turns are the earlier ones.
_CONTINUE_CONVERSATION_PG = (
    select(
        _HEAD.c.created_at.label("conversation_created_at"),
        _NEW_TURN.c.id.label("new_turn_id"),
        *turns.c,
    )
    .select_from(
        _HEAD.join(_NEW_TURN, true()).outerjoin(
            turns, turns.c.conversation_id == bindparam("conversation_id")
        )
    )
    .order_by(turns.c.id)
)


def _insert_question(
    connection: Connection, conversation_id: str, question: str, covered: bool, now: datetime
) -> int:
    """A new turn with its question and no answer yet; returns its id."""
    mysql = connection.dialect.name == "mysql"
    result = connection.execute(
        _INSERT_QUESTION_MYSQL if mysql else _INSERT_QUESTION,
        {
            "conversation_id": conversation_id,
            "question": question,
            "question_key": question_key(question),
            "covered": covered,
            "asked_at": now,
        },
    )
    turn_id: int = result.lastrowid if mysql else result.scalar_one()
    return turn_id


class SqlConversationRepository:
    """``ConversationRepository`` on an ``AsyncEngine``: one short transaction per call.

    ``now`` tells the time every row is stamped with; tests pass a clock they move.
    ``finish_timeout`` bounds how long ``finish_turn`` waits for its write (a terminal event
    waits for it); past it, ``StorageUnavailable`` lets the caller keep the answer elsewhere.
    On a SQLite file, writes go through a ``SqliteWriter`` (``database_timeout`` is its busy
    timeout), which :meth:`close` closes; every transaction is a plain function of a
    connection, run there or, elsewhere, through the async engine's ``run_sync``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        now: Callable[[], datetime] = _utc_now,
        finish_timeout: float = FINISH_TIMEOUT_SECONDS,
        database_timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._engine = engine
        self._writer = (
            SqliteWriter(engine.url, timeout=database_timeout)
            if SqliteWriter.serves(engine)
            else None
        )
        self._now = now
        self._finish_timeout = finish_timeout
        # Reads need no transaction: no BEGIN before them, no ROLLBACK when they return. Not
        # on MySQL, whose drivers start no transaction anyway: there, switching autocommit on
        # and off costs a round trip each, more than the ROLLBACK it saves, and a connection
        # the server dropped would fail in the switch, outside SQLAlchemy's error handling.
        self._reader = (
            engine
            if engine.dialect.name == "mysql"
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        # Single statements need no transaction around them either.
        self._one_statement = self._reader if engine.dialect.name == "postgresql" else None
        self._mysql = engine.dialect.name == "mysql"
        # Under a burst, new conversations and answers are written in batches.
        self._starts = GroupCommit("new conversations", self._store_starts, self._store_start)
        self._finishes = GroupCommit("answers", self._store_answers)

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()

    async def _transaction(self, work: Callable[[Connection], R]) -> R:
        if self._writer is not None:
            return await self._writer.run(work)
        async with self._engine.begin() as connection:
            return await connection.run_sync(work)

    @_storage_errors
    async def get(self, conversation_id: str) -> Conversation | None:
        # One round trip: the conversation joined with its turns (none yet: turn columns NULL).
        async with self._reader.connect() as connection:
            rows = (
                await connection.execute(
                    _TURNS_WITH_CONVERSATION, {"conversation_id": conversation_id}
                )
            ).all()
        if not rows:
            return None
        created_at = rows[0].conversation_created_at
        stored = tuple(_turn(row) for row in rows if row.id is not None)
        return Conversation(conversation_id, created_at, stored)

    @_storage_errors
    async def begin_turn(
        self,
        conversation_id: str,
        question: str,
        *,
        covered: bool,
        new_conversation: bool,
        earlier: Sequence[Message] = (),
    ) -> int:
        question = storable_text(question)
        if new_conversation and not earlier:
            # Alone, stored at once (on PostgreSQL in one statement); arriving while another is
            # being stored, stored with the others that wait (group commit).
            return await self._starts.write(
                _NewConversation(conversation_id, question, covered, self._now())
            )
        now = self._now()

        def store(connection: Connection) -> int:
            if new_conversation:
                connection.execute(
                    _INSERT_CONVERSATION,
                    {"id": conversation_id, "created_at": now, "updated_at": now},
                )
                earlier_turns = [
                    {
                        "conversation_id": conversation_id,
                        "question": storable_text(earlier_question),
                        "question_key": question_key(earlier_question),
                        "covered": True,
                        "asked_at": now,
                        "answer": storable_text(earlier_answer),
                        "status": "completed",
                        "answered_at": now,
                        # The client's words (its history), not this service's answers.
                        "source": "client",
                    }
                    for earlier_question, earlier_answer in turns_from_messages(earlier)
                ]
                if earlier_turns:
                    connection.execute(insert(turns), earlier_turns)
            else:
                connection.execute(
                    _TOUCH_CONVERSATION, {"conversation_id": conversation_id, "now": now}
                )
            return _insert_question(connection, conversation_id, question, covered, now)

        return await self._transaction(store)

    async def _store_start(self, start: _NewConversation) -> int:
        if self._one_statement is not None:
            parameters = {**start.question_row(), "now": start.asked_at}
            async with self._one_statement.connect() as connection:
                result = await connection.execute(_START_CONVERSATION_PG, parameters)
                turn_id: int = result.scalar_one()
                return turn_id

        def store(connection: Connection) -> int:
            connection.execute(_INSERT_CONVERSATION, start.conversation_row())
            return _insert_question(
                connection, start.conversation_id, start.question, start.covered, start.asked_at
            )

        return await self._transaction(store)

    async def _store_starts(self, batch: Sequence[_NewConversation]) -> list[int]:
        def store(connection: Connection) -> list[int]:
            connection.execute(_INSERT_CONVERSATION, [start.conversation_row() for start in batch])
            questions = [start.question_row() for start in batch]
            if self._mysql:
                connection.execute(_INSERT_QUESTION_MYSQL, questions)
                ids = {"conversation_ids": [start.conversation_id for start in batch]}
                rows = connection.execute(_QUESTIONS_OF_MYSQL, ids).all()
            else:
                rows = connection.execute(_INSERT_QUESTIONS, questions).all()
            turn_ids = {row.conversation_id: row.id for row in rows}
            return [turn_ids[start.conversation_id] for start in batch]

        return await self._transaction(store)

    @_storage_errors
    async def continue_conversation(
        self, conversation_id: str, question: str
    ) -> tuple[Conversation, int] | None:
        question = storable_text(question)
        parameters = {
            "conversation_id": conversation_id,
            "question": question,
            "question_key": question_key(question),
            "now": self._now(),
        }
        if self._one_statement is not None:
            async with self._one_statement.connect() as connection:
                rows = (await connection.execute(_CONTINUE_CONVERSATION_PG, parameters)).all()
            if not rows:
                return None
            earlier = tuple(_turn(row) for row in rows if row.id is not None)
            head_row = rows[0]
            return (
                Conversation(conversation_id, head_row.conversation_created_at, earlier),
                head_row.new_turn_id,
            )

        def store(connection: Connection) -> tuple[Conversation, int] | None:
            if self._mysql:
                turn_id = self._ask_in_conversation_mysql(connection, parameters)
            else:
                turn_id = connection.execute(_ASK_IN_CONVERSATION, parameters).scalar()
            if turn_id is None:
                return None
            if not self._mysql:
                # The question is the conversation's latest activity, as on PostgreSQL
                # (``_HEAD``).
                connection.execute(
                    _TOUCH_CONVERSATION,
                    {"conversation_id": conversation_id, "now": parameters["now"]},
                )
            rows = connection.execute(
                _CONVERSATION_BEFORE_TURN,
                {"conversation_id": conversation_id, "turn_id": turn_id},
            ).all()
            earlier = tuple(_turn(row) for row in rows if row.id is not None)
            return Conversation(conversation_id, rows[0].conversation_created_at, earlier), turn_id

        return await self._transaction(store)

    @staticmethod
    def _ask_in_conversation_mysql(
        connection: Connection, parameters: dict[str, Any]
    ) -> int | None:
        """The conversation touched first, then the question added: its row locked before the
        new turn's foreign key reads it. The other order (INSERT ... SELECT, then UPDATE)
        deadlocks InnoDB's concurrent follow-ups, each holding a shared lock the other's UPDATE
        waits for."""
        touched = connection.execute(_TOUCH_CONVERSATION, parameters)
        if touched.rowcount == 0:  # rows matched: SQLAlchemy asks MySQL for FOUND_ROWS
            return None
        return _insert_question(
            connection,
            parameters["conversation_id"],
            parameters["question"],
            True,
            parameters["now"],
        )

    @_storage_errors
    async def finish_turn(
        self, turn_id: int, answer: FinishedAnswer, covered: bool | None = None
    ) -> None:
        usage = answer.usage
        parameters: dict[str, Any] = {
            "turn_id": turn_id,
            "answer_text": storable_text(answer.text),
            "answer_status": answer.status,
            "answer_finish_reason": answer.finish_reason,
            "answer_error_code": answer.error_code,
            "answer_model": answer.model,
            "answer_input_tokens": usage.input_tokens if usage else None,
            "answer_output_tokens": usage.output_tokens if usage else None,
            "answer_total_tokens": usage.total_tokens if usage else None,
            "answer_agent": answer.agent,
            "answer_route": answer.route,
            "answer_covered": covered,
            "now": self._now(),
        }
        # Shielded: this runs in the ``finally`` of a stream whose client may have just left.
        with anyio.CancelScope(shield=True), anyio.fail_after(self._finish_timeout):
            await self._finishes.write(parameters)

    async def _store_answers(self, batch: Sequence[dict[str, Any]]) -> list[None]:
        def store(connection: Connection) -> None:
            connection.execute(_FINISH_TURN, list(batch))
            # The answer is the conversation's latest activity.
            connection.execute(
                _TOUCH_CONVERSATION_OF_TURN,
                [{"turn_id": p["turn_id"], "now": p["now"]} for p in batch],
            )

        await self._transaction(store)
        return [None] * len(batch)

    @_storage_errors
    async def list_conversations(self, offset: int, limit: int) -> Page[ConversationSummary]:
        turn_count = (
            select(func.count())
            .where(turns.c.conversation_id == conversations.c.id)
            .scalar_subquery()
        )
        client_turn_count = (
            select(func.count())
            .where(turns.c.conversation_id == conversations.c.id, turns.c.source == "client")
            .scalar_subquery()
        )
        first_question = (
            select(turns.c.question)
            .where(turns.c.conversation_id == conversations.c.id, turns.c.question != "")
            .order_by(turns.c.id)
            .limit(1)
            .scalar_subquery()
        )
        query = (
            select(
                conversations.c.id,
                conversations.c.created_at,
                conversations.c.updated_at,
                turn_count.label("turns"),
                first_question.label("first_question"),
                client_turn_count.label("client_turns"),
            )
            .order_by(conversations.c.updated_at.desc(), conversations.c.id)
            .offset(offset)
            .limit(limit)
        )
        async with self._reader.connect() as connection:
            total = (
                await connection.execute(select(func.count()).select_from(conversations))
            ).scalar_one()
            rows = (await connection.execute(query)).all()
        items = tuple(
            ConversationSummary(
                r.id, r.created_at, r.updated_at, r.turns, r.first_question or "", r.client_turns
            )
            for r in rows
        )
        return Page(items, total)

    @_storage_errors
    async def insights(self, since: datetime, limit: int) -> Insights:
        recent = turns.c.asked_at >= since
        asked = turns.c.question != ""
        top = (
            select(func.min(turns.c.question).label("question"), func.count().label("count"))
            .where(recent, asked)
            .group_by(turns.c.question_key)
            .order_by(func.count().desc(), func.min(turns.c.question))
            .limit(limit)
        )
        unanswered = (
            select(turns.c.question, turns.c.conversation_id, turns.c.asked_at)
            # A declined question is not a gap in the profile, whatever its coverage.
            .where(recent, asked, turns.c.covered.is_(False), _NOT_DECLINED)
            .order_by(turns.c.asked_at.desc(), turns.c.id.desc())
            .limit(limit)
        )
        # Days are UTC days: SQLite and MySQL store UTC; PostgreSQL converts in the session's zone.
        day: ColumnElement[Any]
        if self._engine.dialect.name in ("sqlite", "mysql"):
            day = func.date(turns.c.answered_at)
        else:
            day = cast(func.timezone("UTC", turns.c.answered_at), Date)
        per_day = (
            select(day.label("day"), func.count().label("answers"))
            # A client's history holds no answer of this service's.
            .where(
                turns.c.answered_at >= since,
                turns.c.status.is_not(None),
                asked,
                turns.c.source == "service",
            )
            .group_by(day)
            .order_by(day)
        )
        tokens = select(
            func.coalesce(func.sum(turns.c.input_tokens), 0),
            func.coalesce(func.sum(turns.c.output_tokens), 0),
            func.coalesce(func.sum(turns.c.total_tokens), 0),
        ).where(turns.c.answered_at >= since)
        async with self._reader.connect() as connection:
            top_rows = (await connection.execute(top)).all()
            unanswered_rows = (await connection.execute(unanswered)).all()
            day_rows = (await connection.execute(per_day)).all()
            token_row = (await connection.execute(tokens)).one()
        return Insights(
            since=since,
            top_questions=tuple(QuestionCount(r.question, r.count) for r in top_rows),
            unanswered_questions=tuple(
                UnansweredQuestion(r.question, r.conversation_id, r.asked_at)
                for r in unanswered_rows
            ),
            answers_per_day=tuple(DailyAnswers(_as_date(r.day), r.answers) for r in day_rows),
            tokens=Usage(int(token_row[0]), int(token_row[1]), int(token_row[2])),
        )

    @_storage_errors
    async def purge_before(self, cutoff: datetime) -> int:
        expired = select(conversations.c.id).where(conversations.c.updated_at < cutoff)

        def purge(connection: Connection) -> int:
            connection.execute(delete(turns).where(turns.c.conversation_id.in_(expired)))
            result = connection.execute(
                delete(conversations).where(conversations.c.updated_at < cutoff)
            )
            return int(result.rowcount or 0)

        return await self._transaction(purge)

    @_storage_errors
    async def check(self) -> None:
        with anyio.fail_after(2):
            async with self._reader.connect() as connection:
                await connection.execute(text("SELECT 1"))
