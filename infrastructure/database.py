"""The database: tables, the async engine for SQLite, PostgreSQL or MySQL, and migrations."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    event,
    text,
)
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from settings import sqlite_file

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant: the key of the PostgreSQL advisory lock that keeps replicas from migrating at once.
MIGRATION_LOCK_KEY = 0x41534B  # "ASK"
# MySQL's named lock for the same; a replica waits this long for another's migration.
MYSQL_MIGRATION_LOCK = "ask_the_applicant.migrate"
MYSQL_MIGRATION_LOCK_SECONDS = 300
# MySQL: every session strict (a value too long for its column fails instead of being cut
# short), whatever the server's default; see docs/deploy.md.
MYSQL_SQL_MODE = (
    "STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION"
)
# MySQL and MariaDB tables: 4-byte UTF-8 (Korean and emoji) and binary comparison, so that ids
# and questions compare as PostgreSQL and SQLite compare them (not case- or accent-blind).
MYSQL_TABLE_OPTIONS: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way out, on SQLite (which stores naive values) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        # MySQL's DATETIME has no zone (naive UTC, as on SQLite) and whole seconds unless told.
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name in ("sqlite", "mysql") else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments INTEGER PRIMARY KEY columns.
Identifier = BigInteger().with_variant(Integer(), "sqlite")
# MySQL's TEXT holds 64 KiB of UTF-8 (some 21,000 Korean characters); MEDIUMTEXT 16 MiB.
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    **MYSQL_TABLE_OPTIONS,
)
Index("ix_conversations_updated_at", conversations.c.updated_at)

turns = Table(
    "turns",
    metadata,
    Column("id", Identifier, primary_key=True, autoincrement=True),
    Column(
        "conversation_id",
        String(64),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("question", LongText, nullable=False),
    Column("question_key", String(200), nullable=False),
    Column("covered", Boolean(), nullable=False),
    Column("asked_at", UtcDateTime(), nullable=False),
    Column("answer", LongText, nullable=True),
    Column("status", String(16), nullable=True),
    Column("finish_reason", String(32), nullable=True),
    Column("error_code", String(32), nullable=True),
    Column("model", String(100), nullable=True),
    Column("input_tokens", Integer(), nullable=True),
    Column("output_tokens", Integer(), nullable=True),
    Column("total_tokens", Integer(), nullable=True),
    Column("answered_at", UtcDateTime(), nullable=True),
    # ``service`` or ``client`` (domain.conversation.TurnSource): whether the service was asked
    # the question and gave the answer, or a client sent the turn along (migration 0002).
    Column("source", String(16), nullable=False, server_default="service"),
    # With ENGINE=agents: the agent that answered, and "direct" or "triage" (domain/routing.py).
    Column("agent", String(64), nullable=True),
    Column("route", String(16), nullable=True),
    **MYSQL_TABLE_OPTIONS,
)
Index("ix_turns_conversation_id_id", turns.c.conversation_id, turns.c.id)
Index("ix_turns_asked_at", turns.c.asked_at)


def _sqlite_tuning(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def tune(dbapi_connection: Any, _: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run while an answer is written; NORMAL syncs at checkpoints, safe in WAL.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # How long a statement waits for another process's lock before it fails.
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        cursor.close()

    return tune


DEFAULT_TIMEOUT_SECONDS = 5.0
"""DATABASE_TIMEOUT_SECONDS' default: a frozen database is a 503 within seconds, not a hang."""
MIGRATION_TIMEOUT_SECONDS = 300.0
"""Migrations (and the wait for another replica's) may take longer than a question's statements."""
# The server cancels a statement first, which leaves the connection usable; the client's own
# timeout, a little later, covers a server that cannot answer at all (frozen, unreachable).
CLIENT_TIMEOUT_MARGIN_SECONDS = 1.0


def create_engine(
    database_url: str, *, echo: bool = False, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> AsyncEngine:
    """An async engine; for SQLite, the folder of the file is created and WAL enabled.

    ``timeout`` bounds every wait on the database: each statement and each new connection
    (PostgreSQL: the server's ``statement_timeout``, asyncpg's ``command_timeout`` and connect
    ``timeout``; SQLite: its busy timeout) and, on PostgreSQL, each pool checkout.
    """
    url = make_url(database_url)
    options: dict[str, Any] = {"echo": echo}
    if url.get_backend_name() == "sqlite":
        if (file := sqlite_file(url)) is not None:
            Path(file).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # SQLite has one writer at a time: the repository writes through one connection of its
        # own (``SqliteWriter``), reads through this one, which WAL lets run beside a write;
        # none sleeps in SQLite's busy handler. Its checkouts wait only for this process's own
        # statements, which a burst makes long: not a fault.
        options |= {"pool_size": 1, "max_overflow": 0, "pool_timeout": max(30.0, timeout)}
    else:
        # No pre-ping: it would add a round trip before every question. A connection the
        # server dropped fails one call (503 storage_unavailable) and is then discarded.
        # Recycled after 30 minutes, well within MySQL's wait_timeout (8 hours by default).
        options |= {
            "pool_size": 10,
            "max_overflow": 20,
            "pool_timeout": timeout,
            "pool_recycle": 1800,
        }
    if url.get_backend_name() == "postgresql":
        options["connect_args"] = {
            "timeout": timeout,
            "command_timeout": timeout + CLIENT_TIMEOUT_MARGIN_SECONDS,
            "server_settings": {"statement_timeout": str(round(timeout * 1000))},
        }
    if url.get_backend_name() == "mysql":
        # Korean and emoji need the 4-byte charset on the wire too, whatever the server's
        # default; and strict mode, whatever the server's sql_mode. Every read from the server
        # is bounded as the statements are on PostgreSQL.
        url = url.update_query_dict({"charset": "utf8mb4"})
        options["connect_args"] = {
            "init_command": f"SET SESSION sql_mode = '{MYSQL_SQL_MODE}'",
            "connect_timeout": max(1, round(timeout)),
            "read_timeout": timeout + CLIENT_TIMEOUT_MARGIN_SECONDS,
        }
    engine = create_async_engine(url, **options)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_tuning(round(timeout * 1000)))
    return engine


T = TypeVar("T")


class SqliteWriter:
    """Every write to a SQLite file, each transaction in one trip to a thread of its own.

    Through aiosqlite, a transaction is some nine round trips between the event loop and the
    driver's thread (a cursor, each statement, its rows, the cursor's close, the commit, the
    pool's reset), each waiting for a turn of a loop that relays hundreds of streams. Here the
    whole transaction runs in the writer's thread, through a synchronous connection of its own,
    and the loop waits once. Writes keep SQLite's one writer at a time (one connection, one
    thread, in order); reads stay on the async engine, which WAL lets run beside a write. Only
    for a file: an in-memory database would be another database on another connection.
    """

    def __init__(self, url: URL, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        """``url``: the async engine's (``engine.url``); the writer uses the standard driver."""
        self._engine = create_sync_engine(url.set(drivername="sqlite"), pool_size=1, max_overflow=0)
        event.listen(self._engine, "connect", _sqlite_tuning(round(timeout * 1000)))
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writes")

    @staticmethod
    def serves(engine: AsyncEngine) -> bool:
        """Whether ``engine`` is SQLite on a file (a writer would see the same database)."""
        return sqlite_file(engine.url) is not None

    async def run(self, work: Callable[[Connection], T]) -> T:
        """``work`` in one transaction, committed if it returns. If the caller is cancelled
        the transaction still runs to its end: it may already be under way."""
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._in_transaction, work
        )

    def _in_transaction(self, work: Callable[[Connection], T]) -> T:
        with self._engine.begin() as connection:
            return work(connection)

    async def close(self) -> None:
        """After the writes queued so far; the connection closed in the thread that used it."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._engine.dispose)
        self._thread.shutdown(wait=False)


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config  # only when migrating: it is slow to import

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    from alembic import command

    # Several replicas may start at once: one migrates, the others wait, then see "head".
    if connection.dialect.name == "mysql":
        # MySQL has no transactional DDL nor advisory locks: a named lock, held by the session
        # until released, so released here before the connection goes back to the pool.
        lock = {"name": MYSQL_MIGRATION_LOCK, "seconds": MYSQL_MIGRATION_LOCK_SECONDS}
        if connection.execute(text("SELECT GET_LOCK(:name, :seconds)"), lock).scalar() != 1:
            raise TimeoutError("another replica has been migrating the database for too long")
        try:
            command.upgrade(alembic_config(connection), "head")
        finally:
            connection.execute(text("DO RELEASE_LOCK(:name)"), lock)
        return
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    command.upgrade(alembic_config(connection), "head")


@asynccontextmanager
async def _sqlite_migration_lock(url: URL) -> AsyncIterator[None]:
    """Processes that share a SQLite file (WEB_CONCURRENCY workers) migrate it one at a time.

    SQLite has no advisory lock, and two processes starting at once could both find a new
    file unmigrated and both create its tables. A lock file beside it (``flock``, which the
    kernel releases if its holder dies) does what PostgreSQL's advisory lock does.
    """
    database = sqlite_file(url)
    if database is None:
        yield
        return
    descriptor = os.open(f"{database}.migration-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the latest revision; safe to run on every start, by several
    processes or replicas at once."""
    async with _sqlite_migration_lock(engine.url), engine.begin() as connection:
        await connection.run_sync(_upgrade)
    logger.info("database schema is up to date")
