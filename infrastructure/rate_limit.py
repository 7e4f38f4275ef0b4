"""Per-client request limits, counted with the ``limits`` library in memory or in Redis.

A moving window: a client may make ``RATE_LIMIT_PER_MINUTE`` requests in any 60 seconds,
and a refused request does not count. Counters live in this process by default; with
``REDIS_URL`` they live in Redis, so every replica shares them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from domain.models import RateDecision
from infrastructure.redis_breaker import RedisBreaker, RedisSkipped
from settings import Settings

logger = logging.getLogger(__name__)

NAMESPACE = "chat"
KEY_PREFIX = "ask-the-applicant"


class ClientRateLimiter:
    """Counts each client's requests and refuses those over ``per_minute`` in any 60 s.

    It fails open: if the storage (Redis) errors or takes longer than the ``breaker``'s
    timeout, the request is allowed and a warning names the error type (never the URL, which
    may hold a password). While the breaker is open (after such a failure, by this client or
    another Redis client of the process), requests are allowed without asking the storage,
    so a Redis outage neither breaks chats nor adds a timeout to each of them.
    """

    def __init__(
        self,
        storage: Storage,
        per_minute: int,
        *,
        on_close: Callable[[], Awaitable[None]] | None = None,
        breaker: RedisBreaker | None = None,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1; use no limiter to turn limits off")
        self._strategy = MovingWindowRateLimiter(storage)
        self._item = RateLimitItemPerMinute(per_minute, namespace=NAMESPACE)
        self._on_close = on_close
        self._breaker = breaker
        self.storage_name = type(storage).__name__

    @property
    def limit(self) -> int:
        return self._item.amount

    async def hit(self, client: str) -> RateDecision:
        """Count one request from ``client`` and say whether it may go ahead."""
        breaker = self._breaker
        if breaker is None:  # in memory: nothing to wait for
            return await self._hit(client)
        try:
            return await breaker.call(lambda: self._hit(client))
        except RedisSkipped:
            return RateDecision(allowed=True, limit=self.limit)
        except Exception as error:  # any storage failure: let the request through
            logger.warning(
                "rate limit storage failed (%s): requests are not limited for %.0f s",
                type(error).__name__,
                breaker.retry_after_seconds,
            )
            return RateDecision(allowed=True, limit=self.limit)

    async def _hit(self, client: str) -> RateDecision:
        if await self._strategy.hit(self._item, client):
            return RateDecision(allowed=True, limit=self.limit)
        stats = await self._strategy.get_window_stats(self._item, client)
        # The oldest request in the window leaves it at ``reset_time``: one slot frees up.
        wait = math.ceil(stats.reset_time - time.time())
        return RateDecision(allowed=False, limit=self.limit, retry_after_seconds=max(1, wait))

    async def close(self) -> None:
        if self._on_close is not None:
            await self._on_close()


def _limits_redis_uri(redis_url: str) -> str:
    """``limits`` names its async Redis schemes ``async+redis://`` and so on."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


def redis_breaker(settings: Settings) -> RedisBreaker:
    """The breaker every Redis client of the process shares (REDIS_TIMEOUT_SECONDS,
    REDIS_RETRY_AFTER_SECONDS)."""
    return RedisBreaker(
        timeout_seconds=settings.redis_timeout_seconds,
        retry_after_seconds=settings.redis_retry_after_seconds,
    )


def build_rate_limiter(
    settings: Settings, breaker: RedisBreaker | None = None
) -> ClientRateLimiter | None:
    """The limiter ``settings`` ask for, or ``None`` when RATE_LIMIT_PER_MINUTE is 0; with
    ``REDIS_URL`` its Redis calls go through ``breaker`` (one of its own if none is given).

    Nothing connects here: the Redis pool connects on the first request.
    """
    if settings.rate_limit_per_minute == 0:
        logger.info("rate limits: off")
        return None
    per_minute = settings.rate_limit_per_minute
    if settings.redis_url is None:
        logger.info("rate limits: %d per minute per client, in memory", per_minute)
        return ClientRateLimiter(MemoryStorage(), per_minute)
    from redis.asyncio import ConnectionPool  # only with REDIS_URL

    # Our own pool: timeouts on every socket operation, no retries, and we close it.
    pool = ConnectionPool.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout_seconds,
        socket_timeout=settings.redis_timeout_seconds,
    )
    storage = RedisStorage(
        _limits_redis_uri(settings.redis_url),
        implementation="redispy",
        key_prefix=KEY_PREFIX,
        connection_pool=pool,  # type: ignore[arg-type]  # documented, typed too narrowly
    )
    logger.info("rate limits: %d per minute per client, in Redis", per_minute)
    return ClientRateLimiter(
        storage, per_minute, on_close=pool.aclose, breaker=breaker or redis_breaker(settings)
    )
