"""The daily token budget (DAILY_TOKEN_BUDGET), counted in memory or in Redis.

Counts are kept per UTC day, so the budget rolls over at midnight UTC. Counting is from the
usage the provider reports at the end of each answer, so one answer may overshoot the cap;
the next one is answered offline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from infrastructure.redis_breaker import RedisBreaker, RedisSkipped

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "ask-the-applicant:tokens:"
# Keys outlive their day a little, so a replica whose clock is slightly behind still finds them.
KEY_TTL_SECONDS = 2 * 24 * 3600


def utc_today() -> date:
    return datetime.now(UTC).date()


class MemoryTokenBudget:
    """One process's count: right for a single replica."""

    def __init__(self, daily_tokens: int, today: Callable[[], date] = utc_today) -> None:
        self._daily_tokens = daily_tokens
        self._today = today
        self._day = today()
        self._spent = 0

    def _roll_over(self) -> None:
        if (today := self._today()) != self._day:
            self._day, self._spent = today, 0

    async def exhausted(self) -> bool:
        self._roll_over()
        return self._spent >= self._daily_tokens

    async def spend(self, tokens: int) -> None:
        self._roll_over()
        self._spent += max(tokens, 0)


class RedisTokenBudget:
    """A count shared by every replica through Redis (``INCRBY`` on a key per UTC day).

    If Redis cannot be reached, answers go on (the cap is not enforced meanwhile) and a
    warning is logged: the budget protects the bill, not the service's availability. Calls go
    through the ``breaker`` every Redis client shares, so a Redis that is down or frozen costs
    one short timeout, not one per call. Tokens that could not be counted are added to the
    next count that can.
    """

    def __init__(
        self,
        redis: Redis,
        daily_tokens: int,
        today: Callable[[], date] = utc_today,
        *,
        breaker: RedisBreaker | None = None,
    ) -> None:
        self._redis = redis
        self._daily_tokens = daily_tokens
        self._today = today
        self._breaker = breaker or RedisBreaker()
        self._uncounted = 0
        """Tokens spent while Redis could not be reached, to count when it can."""

    def _key(self) -> str:
        return f"{KEY_PREFIX}{self._today().isoformat()}"

    async def exhausted(self) -> bool:
        try:
            spent = await self._breaker.call(lambda: self._redis.get(self._key()))
        except RedisSkipped:
            return False
        except Exception as error:
            logger.warning("token budget unavailable: %s", type(error).__name__)
            return False
        return int(spent or 0) >= self._daily_tokens

    async def spend(self, tokens: int) -> None:
        tokens = max(tokens, 0) + self._uncounted
        if tokens <= 0:
            return
        self._uncounted = 0
        key = self._key()

        async def count() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(key, tokens)
                pipe.expire(key, KEY_TTL_SECONDS)
                await pipe.execute()

        try:
            await self._breaker.call(count)
        except Exception as error:
            self._uncounted += tokens
            if not isinstance(error, RedisSkipped):
                logger.warning("could not count %d tokens yet: %s", tokens, type(error).__name__)
