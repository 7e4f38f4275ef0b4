"""Databases for integration tests: SQLite in a temporary folder and the real PostgreSQL.

PostgreSQL comes from TEST_DATABASE_URL (default: the local server, trust auth, database
``test``). Elsewhere its tests skip with the reason printed; in CI (CI=true) they must run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from infrastructure.database import create_engine

POSTGRES_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


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


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each kind, one per test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'conversations.db'}"
        return
    problem = await _postgres_reachable(POSTGRES_URL)
    if problem is not None:
        message = f"PostgreSQL at TEST_DATABASE_URL is not reachable ({problem})"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the PostgreSQL tests")
        pytest.skip(message)
    await _reset_postgres(POSTGRES_URL)
    yield POSTGRES_URL
