"""Empty databases for tests: SQLite in a temporary folder and the real PostgreSQL.

PostgreSQL comes from TEST_DATABASE_URL (default: the local server, trust auth, database
``test``; its schema is dropped, so give each worktree or worker its own). Elsewhere its
tests skip with the reason printed; in CI (CI=true) they must run.
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
IN_CI = os.environ.get("CI", "").lower() == "true"

DATABASES = ("sqlite", "postgresql")
"""The kinds of database the service runs on, each tested."""


async def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def _postgres_reachable(url: str) -> str | None:
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
    if kind != "postgresql":
        raise ValueError(f"no test database of kind {kind!r}")
    problem = await _postgres_reachable(POSTGRES_URL)
    if problem is not None:
        message = f"PostgreSQL at TEST_DATABASE_URL is not reachable ({problem})"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the PostgreSQL tests")
        pytest.skip(message)
    await _reset_postgres(POSTGRES_URL)
    return POSTGRES_URL
