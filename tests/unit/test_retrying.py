"""``common.retrying.retried``: tenacity's loop, entered only once the first attempt failed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_none,
)

from common.retrying import retried
from tests.cycles import cyclic_garbage


class Flaky(Exception):
    """What the loop retries."""


class Broken(Exception):
    """What it does not."""


class Attempts:
    """Fails with each of ``failures`` in turn, then returns how many calls it took."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self, label: str) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return f"{label} after {self.calls}"


class Waits:
    """The loop's wait: no time at all, and a record of what each wait was computed from."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, BaseException | None]] = []

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        self.seen.append((state.attempt_number, outcome.exception() if outcome else None))
        return 0


# Built once, as the engine's: the condition refers to itself through its bound check.
RETRY_FLAKY = retry_if_exception_type(Flaky)


def looping(waits: Callable[[RetryCallState], float], attempts: int = 3) -> AsyncRetrying:
    return AsyncRetrying(
        stop=stop_after_attempt(attempts), wait=waits, retry=RETRY_FLAKY, reraise=True
    )


async def test_a_first_attempt_that_succeeds_never_enters_the_loop() -> None:
    retrying, attempt = looping(Waits()), Attempts()
    assert await retried(retrying, attempt, "opened") == "opened after 1"
    assert "attempt_number" not in retrying.statistics


async def test_a_failed_first_attempt_is_the_loops_first_and_its_waits_follow_from_it() -> None:
    first, second = Flaky("first"), Flaky("second")
    waits, attempt = Waits(), Attempts(first, second)
    retrying = looping(waits)
    assert await retried(retrying, attempt, "opened") == "opened after 3"
    assert waits.seen == [(1, first), (2, second)]
    assert retrying.statistics["attempt_number"] == 3


async def test_the_attempt_limit_counts_the_first_attempt() -> None:
    last = Flaky("third")
    attempt = Attempts(Flaky("first"), Flaky("second"), last, Flaky("never raised"))
    with pytest.raises(Flaky) as raised:
        await retried(looping(Waits(), attempts=3), attempt, "opened")
    assert raised.value is last
    assert attempt.calls == 3


async def test_an_error_the_loop_does_not_retry_is_raised_as_it_was() -> None:
    wrong = Broken("not retried")
    waits, attempt = Waits(), Attempts(wrong)
    with pytest.raises(Broken) as raised:
        await retried(looping(waits), attempt, "opened")
    assert raised.value is wrong
    assert attempt.calls == 1
    assert waits.seen == []


async def test_a_cancellation_goes_straight_through() -> None:
    attempt = Attempts(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await retried(looping(Waits()), attempt, "opened")
    assert attempt.calls == 1


async def test_a_retried_call_leaves_nothing_to_the_cyclic_collector() -> None:
    with cyclic_garbage("") as left:
        for _ in range(3):
            retrying = looping(wait_none())  # (a ``Waits`` keeps the failures it saw)
            assert await retried(retrying, Attempts(Flaky("once")), "opened") == "opened after 2"
    assert [kind for kind in left if kind.__module__.startswith(("tenacity", "tests"))] == []
