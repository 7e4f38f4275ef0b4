"""DAILY_TOKEN_BUDGET shared through the real Redis server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import date

import pytest
from redis.asyncio import Redis

from infrastructure.budget import KEY_PREFIX, RedisTokenBudget

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2, decode_responses=True)
    try:
        await client.ping()
    except Exception as error:
        await client.aclose()
        message = f"Redis at TEST_REDIS_URL is not reachable ({type(error).__name__})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI must run the Redis tests")
        pytest.skip(message)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


async def test_replicas_share_one_daily_count(redis: Redis) -> None:
    day = date(2026, 11, 25)
    first = RedisTokenBudget(redis, daily_tokens=100, today=lambda: day)
    second = RedisTokenBudget(redis, daily_tokens=100, today=lambda: day)
    await first.spend(60)
    assert not await second.exhausted()
    await second.spend(40)
    assert await first.exhausted()
    ttl = await redis.ttl(f"{KEY_PREFIX}2026-11-25")
    assert 0 < ttl <= 2 * 24 * 3600


async def test_the_count_starts_again_each_utc_day(redis: Redis) -> None:
    today = [date(2026, 11, 25)]
    budget = RedisTokenBudget(redis, daily_tokens=10, today=lambda: today[0])
    await budget.spend(10)
    assert await budget.exhausted()
    today[0] = date(2026, 11, 26)
    assert not await budget.exhausted()


async def test_unreachable_redis_does_not_stop_answers() -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    budget = RedisTokenBudget(unreachable, daily_tokens=1)
    try:
        assert not await budget.exhausted()
        await budget.spend(5)  # logged, not raised
    finally:
        await unreachable.aclose()
