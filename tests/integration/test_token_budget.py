"""DAILY_TOKEN_BUDGET shared through the real Redis server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import pytest
from redis.asyncio import Redis

from infrastructure.budget import KEY_PREFIX, RedisTokenBudget


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, socket_connect_timeout=2, decode_responses=True)
    yield client
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
