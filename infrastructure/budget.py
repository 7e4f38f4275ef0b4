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
    warning is logged: the budget protects the bill, not the service's availability.
    """

    def __init__(
        self, redis: Redis, daily_tokens: int, today: Callable[[], date] = utc_today
    ) -> None:
        self._redis = redis
        self._daily_tokens = daily_tokens
        self._today = today

    def _key(self) -> str:
        return f"{KEY_PREFIX}{self._today().isoformat()}"

    async def exhausted(self) -> bool:
        try:
            spent = await self._redis.get(self._key())
        except Exception as error:
            logger.warning("token budget unavailable: %s", type(error).__name__)
            return False
        return int(spent or 0) >= self._daily_tokens

    async def spend(self, tokens: int) -> None:
        if tokens <= 0:
            return
        key = self._key()
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(key, tokens)
                pipe.expire(key, KEY_TTL_SECONDS)
                await pipe.execute()
        except Exception as error:
            logger.warning("could not count %d tokens: %s", tokens, type(error).__name__)
