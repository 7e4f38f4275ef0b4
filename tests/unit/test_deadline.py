"""One timer per stream bounds each await, like a cancel scope per await would."""

from __future__ import annotations

import asyncio

import pytest

from common.deadline import DeadlinePassed, RollingDeadline


def loop_time() -> float:
    return asyncio.get_running_loop().time()


async def test_awaits_that_end_in_time_return_their_value() -> None:
    reads = RollingDeadline()
    for value in range(3):
        assert await reads.run(asyncio.sleep(0.01, value), loop_time() + 0.5) == value
    reads.close()


async def test_an_await_past_its_deadline_is_cancelled_and_the_task_goes_on() -> None:
    reads = RollingDeadline()
    with pytest.raises(DeadlinePassed):
        await reads.run(asyncio.sleep(5), loop_time() + 0.05)
    # The task is not left cancelled: it can await again, with the same deadline object.
    assert await reads.run(asyncio.sleep(0.01, "next"), loop_time() + 0.5) == "next"
    await asyncio.sleep(0.01)
    reads.close()


async def test_a_timer_armed_for_an_earlier_await_does_not_cut_a_later_one_short() -> None:
    reads = RollingDeadline()
    await reads.run(asyncio.sleep(0), loop_time() + 0.05)  # arms the timer at +0.05
    await asyncio.sleep(0.04)
    # This await may last until +0.2: the timer fires at +0.05, sees that, and re-arms.
    assert await reads.run(asyncio.sleep(0.1, "whole"), loop_time() + 0.2) == "whole"
    reads.close()


async def test_shortening_the_deadline_cuts_the_await_in_progress() -> None:
    reads = RollingDeadline()

    async def shorten_soon() -> None:
        await asyncio.sleep(0.02)
        reads.deadline = loop_time()  # as Lifecycle does when a shutdown starts

    shortening = asyncio.ensure_future(shorten_soon())
    started = loop_time()
    with pytest.raises(DeadlinePassed):
        await reads.run(asyncio.sleep(5), started + 10)
    assert loop_time() - started < 1
    await shortening
    reads.close()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    reads = RollingDeadline()
    waiting = asyncio.ensure_future(reads.run(asyncio.sleep(5), loop_time() + 10))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    reads.close()


async def test_a_cancellation_at_the_same_time_as_the_deadline_wins() -> None:
    reads = RollingDeadline()

    async def cancelled_and_late() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_at(loop_time() + 0.02, task.cancel)
        await reads.run(asyncio.sleep(5), loop_time() + 0.02)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(cancelled_and_late())
    reads.close()


async def test_one_await_at_a_time() -> None:
    reads = RollingDeadline()
    first = asyncio.ensure_future(reads.run(asyncio.sleep(0.05), loop_time() + 1))
    await asyncio.sleep(0)
    second = reads.run(asyncio.sleep(0), loop_time() + 1)
    with pytest.raises(RuntimeError):
        await second
    await first
    reads.close()
