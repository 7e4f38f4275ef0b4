"""tenacity's retry loop, entered only on a failure and run so that it leaves nothing to the
cyclic garbage collector."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from tenacity import AsyncRetrying

P = ParamSpec("P")
T = TypeVar("T")


async def retried(
    retrying: AsyncRetrying, attempt: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``await retrying(attempt, …)``, with the first attempt outside the loop, and the loop's
    iteration state reset as it ends.

    Most calls succeed at once, and tenacity's loop costs about 27 µs of CPU a call (4 % of
    the instructions of starting an answer, docs/performance.md). When the first attempt
    raises, the loop starts with that failure as its own first attempt: its retry condition,
    its waits and its attempt limit apply as they would have. (A delay limit counts from
    the first failure.) ``BaseException`` that is not an ``Exception`` (a cancellation) goes
    straight through, as the loop's conditions on exception types would let it.

    A retrying object refers to itself through the actions of its current iteration (with the
    attempt's future, a lock and a condition), and so does a ``retry_if_exception_type`` through
    its bound check: build those conditions once, not per loop. Without the reset, each loop
    would wait for the cyclic collector; per answer, about 3 KiB an open stream in a burst
    (docs/performance.md).
    """
    try:
        return await attempt(*args, **kwargs)
    except Exception as error:
        first_failure: list[Exception] = [error]

    async def again(*args: P.args, **kwargs: P.kwargs) -> T:
        if first_failure:
            raise first_failure.pop()
        return await attempt(*args, **kwargs)

    try:
        return await retrying(again, *args, **kwargs)
    finally:
        retrying.iter_state.reset()
