"""tenacity's retry loop, run so that it leaves nothing to the cyclic garbage collector."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from tenacity import AsyncRetrying

P = ParamSpec("P")
T = TypeVar("T")


async def retried(
    retrying: AsyncRetrying, attempt: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``await retrying(attempt, …)``, with the loop's iteration state reset as it ends.

    A retrying object refers to itself through the actions of its current iteration (with the
    attempt's future, a lock and a condition), and so does a ``retry_if_exception_type`` through
    its bound check: build those conditions once, not per loop. Without the reset, each loop
    would wait for the cyclic collector; per answer, about 3 KiB an open stream in a burst
    (docs/performance.md).
    """
    try:
        return await retrying(attempt, *args, **kwargs)
    finally:
        retrying.iter_state.reset()
