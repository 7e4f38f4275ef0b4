"""Databases for integration tests: an empty one of each kind (see ``tests.databases``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.databases import DATABASES, IN_CI, empty_database


@pytest.fixture(params=DATABASES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind, one per test."""
    return await empty_database(request.param, tmp_path)


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """TEST_REDIS_URL, its database emptied before and after the test. Skips with the reason
    printed when Redis is not reachable; in CI (CI=true) fails instead."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as error:
        await client.aclose()
        message = f"Redis at TEST_REDIS_URL is not reachable ({type(error).__name__})"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the Redis tests")
        pytest.skip(message)
    await client.flushdb()
    yield REDIS_URL
    await client.flushdb()
    await client.aclose()
