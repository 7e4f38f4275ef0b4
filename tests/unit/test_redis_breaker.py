"""Every Redis client shares one breaker: a Redis that is down or frozen costs one short
timeout, then Redis is skipped for a while by the rate limiter and the token budget alike."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import pytest
from limits.aio.storage import MemoryStorage

from infrastructure.budget import RedisTokenBudget
from infrastructure.rate_limit import ClientRateLimiter
from infrastructure.redis_breaker import RedisBreaker, RedisSkipped


class FakeRedis:
    """The calls ``RedisTokenBudget`` makes, counted; ``frozen`` never answers, as a Redis
    server stopped with SIGSTOP."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.calls = 0
        self.frozen = False

    async def _answer(self) -> None:
        self.calls += 1
        if self.frozen:
            await asyncio.Event().wait()

    async def get(self, key: str) -> int | None:
        await self._answer()
        return self.values.get(key)

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self._redis = redis
        self._increments: list[tuple[str, int]] = []

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def incrby(self, key: str, amount: int) -> None:
        self._increments.append((key, amount))

    def expire(self, key: str, seconds: int) -> None:
        pass

    async def execute(self) -> None:
        await self._redis._answer()
        for key, amount in self._increments:
            self._redis.values[key] = self._redis.values.get(key, 0) + amount


class FrozenStorage(MemoryStorage):
    """A rate-limit storage that never answers, counting the calls."""

    calls = 0

    async def acquire_entry(self, *args: Any, **kwargs: Any) -> bool:
        FrozenStorage.calls += 1
        await asyncio.Event().wait()
        return True


def breaker(retry_after: float = 60.0) -> RedisBreaker:
    return RedisBreaker(timeout_seconds=0.05, retry_after_seconds=retry_after)


async def test_after_a_frozen_call_every_redis_client_skips_redis() -> None:
    shared = breaker()
    limiter = ClientRateLimiter(FrozenStorage(), 5, breaker=shared)
    redis = FakeRedis()
    redis.frozen = True
    budget = RedisTokenBudget(redis, daily_tokens=10, breaker=shared)  # type: ignore[arg-type]
    FrozenStorage.calls = 0

    assert (await limiter.hit("203.0.113.5")).allowed  # the one call that waits, then opens
    assert FrozenStorage.calls == 1
    assert shared.open
    for _ in range(20):
        assert (await limiter.hit("203.0.113.5")).allowed
        assert not await budget.exhausted()
        await budget.spend(5)
    assert FrozenStorage.calls == 1
    assert redis.calls == 0, "the budget asked a Redis the breaker knows is down"


async def test_tokens_spent_while_redis_is_skipped_are_counted_when_it_is_back() -> None:
    shared = breaker(retry_after=0.05)
    redis = FakeRedis()
    budget = RedisTokenBudget(redis, daily_tokens=100, breaker=shared)  # type: ignore[arg-type]
    redis.frozen = True
    await budget.spend(30)  # times out: the breaker opens
    await budget.spend(20)  # skipped
    redis.frozen = False
    await asyncio.sleep(0.06)  # past retry_after: the next call tries Redis again
    await budget.spend(1)
    assert list(redis.values.values()) == [51]
    assert not shared.open


async def test_only_one_call_tries_redis_again_after_the_wait() -> None:
    shared = breaker(retry_after=0.05)
    with pytest.raises(ConnectionError):
        await shared.call(_fails)
    await asyncio.sleep(0.06)
    release = asyncio.Event()
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "ok"

    trial = asyncio.create_task(shared.call(slow))
    await asyncio.sleep(0)
    with pytest.raises(RedisSkipped):
        await shared.call(slow)  # another client meanwhile: skipped
    release.set()
    assert await trial == "ok"
    assert calls == 1
    assert not shared.open


async def test_a_cancelled_call_neither_opens_nor_closes_the_breaker() -> None:
    shared = RedisBreaker(timeout_seconds=5, retry_after_seconds=60)
    started = asyncio.Event()

    async def hangs() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(shared.call(hangs))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not shared.open
    with pytest.raises(ConnectionError):
        await shared.call(_fails)
    assert shared.open


async def _fails() -> None:
    raise ConnectionError("refused")
