"""One circuit breaker for every Redis client of the process (REDIS_TIMEOUT_SECONDS,
REDIS_RETRY_AFTER_SECONDS).

Redis is on the path of every question (the rate limit, the token budget) and the service does
without it: the limit and the budget fail open. A Redis that is down or frozen must cost a
question no more than one short timeout, once: after a call fails or outlasts the timeout,
every client skips Redis for ``retry_after`` seconds; then one call tries it again (the
others keep skipping until it answers), and a success closes the breaker.

The state machine is the ``circuitbreaker`` library's; this adds the timeout, the single trial
call and the rule that a cancelled call says nothing about Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Literal, TypeVar

from circuitbreaker import STATE_HALF_OPEN, CircuitBreaker

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 0.5
DEFAULT_RETRY_AFTER_SECONDS = 10.0


class RedisSkipped(Exception):
    """Redis failed recently: the call was not made."""


class _Breaker(CircuitBreaker):  # type: ignore[misc]  # the library has no type hints
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if exc_type is None or issubclass(exc_type, Exception):
            super().__exit__(exc_type, exc_value, traceback)
        # Otherwise cancelled: neither a success nor a failure of Redis.
        return False  # the exception, if any, goes on


class RedisBreaker:
    """Runs Redis calls with a timeout, skipping them for a while after one fails."""

    def __init__(
        self,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        retry_after_seconds: float = DEFAULT_RETRY_AFTER_SECONDS,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.retry_after_seconds = retry_after_seconds
        self._breaker = _Breaker(
            failure_threshold=1,
            recovery_timeout=retry_after_seconds,
            expected_exception=Exception,
            name="redis",
        )
        self._trying = False
        """Whether the one trial call after ``retry_after`` is in progress."""

    @property
    def open(self) -> bool:
        """Whether calls are being skipped now."""
        state = self._breaker.state
        return bool(self._breaker.opened or (state == STATE_HALF_OPEN and self._trying))

    async def call(
        self, operation: Callable[[], Awaitable[T]], *, limit_seconds: float | None = None
    ) -> T:
        """``operation()``'s result; raises ``RedisSkipped`` while the breaker is open, or what
        the call raised (``TimeoutError`` after ``timeout_seconds``, or ``limit_seconds`` for a call
        that waits on purpose, such as ``XREAD BLOCK``), which opens it."""
        if self.open:
            raise RedisSkipped()
        trial = self._breaker.state == STATE_HALF_OPEN
        if trial:
            self._trying = True
        try:
            with self._breaker:
                async with asyncio.timeout(limit_seconds or self.timeout_seconds):
                    return await operation()
        finally:
            if trial:
                self._trying = False
