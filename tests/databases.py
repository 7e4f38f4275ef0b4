"""Empty databases for tests: SQLite in a temporary folder, the real PostgreSQL and MySQL.

PostgreSQL comes from TEST_DATABASE_URL (default: the local server, trust auth, database
``test``; its schema is dropped, so give each worktree or worker its own); MySQL or MariaDB
from TEST_MYSQL_URL (default: the local server, user root without a password, database
``test``; its tables are dropped). Where a server is absent its tests skip with the reason
printed; in CI (CI=true) they must run.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from infrastructure.database import create_engine

POSTGRES_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() == "true"

DATABASES = ("sqlite", "postgresql", "mysql")
"""The kinds of database the service runs on, each tested."""
SERVERS = {"postgresql": ("PostgreSQL", "TEST_DATABASE_URL"), "mysql": ("MySQL", "TEST_MYSQL_URL")}


async def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def _reset_mysql(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            tables = (
                await connection.execute(
                    text(
                        "SELECT table_name FROM information_schema.tables"
                        " WHERE table_schema = DATABASE()"
                    )
                )
            ).scalars()
            await connection.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
            for table in tables.all():
                await connection.execute(text(f"DROP TABLE `{table}`"))
            await connection.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
    finally:
        await engine.dispose()


async def _reachable(url: str) -> str | None:
    engine = create_engine(url)
    try:
        async with asyncio.timeout(5), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return None
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        await engine.dispose()


async def empty_database(kind: str, folder: Path) -> str:
    """The URL of an empty database of ``kind`` (one of ``DATABASES``); SQLite's file goes in
    ``folder``. A server that cannot be reached skips the test, or fails it in CI."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{folder / 'conversations.db'}"
    if kind not in SERVERS:
        raise ValueError(f"no test database of kind {kind!r}")
    url = POSTGRES_URL if kind == "postgresql" else MYSQL_URL
    problem = await _reachable(url)
    if problem is not None:
        name, variable = SERVERS[kind]
        message = f"{name} at {variable} is not reachable ({problem})"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the {name} tests")
        pytest.skip(message)
    await (_reset_postgres if kind == "postgresql" else _reset_mysql)(url)
    return url


def empty_redis(url: str, variable: str) -> None:
    """Empties the Redis database at ``url`` (named by the environment ``variable``); a Redis
    that cannot be reached skips the test, or fails it in CI."""
    from redis import Redis

    client = Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
        client.flushdb()
    except Exception as error:
        message = f"Redis at {variable} is not reachable ({type(error).__name__})"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the Redis tests")
        pytest.skip(message)
    finally:
        client.close()
