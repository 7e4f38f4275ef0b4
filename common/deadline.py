"""A deadline for each await of a long stream, at the cost of a comparison per await.

A stream awaits thousands of times (a read per upstream event, a send per delta), and each
await must be bounded. A cancel scope per await (``anyio.move_on_after``) costs about 20 µs
on asyncio, more than the rest of the relay's work per delta (docs/performance.md). A
``RollingDeadline`` keeps one timer per stream instead: an await only records when it must
end; the timer, when it fires, re-arms itself for the await in progress or cancels it.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class DeadlinePassed(Exception):
    """The await outlasted its deadline and was cancelled."""


class RollingDeadline:
    """Bounds one await at a time, made by any task of the loop it was created in.

    ``deadline`` is the loop-clock time the current await must end by (``inf`` between
    awaits); setting it (as ``Lifecycle.bounding`` does when a shutdown starts) shortens
    the await in progress.
    """

    __slots__ = ("_fired", "_loop", "_task", "_timer", "_until")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self._until = math.inf
        self._fired = False

    def now(self) -> float:
        """The event loop's clock, which deadlines are in."""
        return self._loop.time()

    @property
    def deadline(self) -> float:
        return self._until

    @deadline.setter
    def deadline(self, until: float) -> None:
        if self._task is not None and until < self._until:
            self._until = until
            self._arm(until)

    async def run(self, awaitable: Awaitable[T], until: float) -> T:
        """``await awaitable``, or raise ``DeadlinePassed`` at ``until`` (loop clock)."""
        task = asyncio.current_task()
        if task is None or self._task is not None:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise RuntimeError("a RollingDeadline bounds one await at a time, in a task")
        self._task, self._until = task, until
        timer = self._timer
        if timer is None or timer.when() > until:
            self._arm(until)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._fired:
                self._fired = False
                # Ours, unless someone else cancelled the task too.
                if task.uncancel() == 0:
                    raise DeadlinePassed() from None
            raise
        finally:
            self._task, self._until = None, math.inf

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._expire) if when != math.inf else None

    def _expire(self) -> None:
        self._timer = None
        task = self._task
        if task is None:
            return  # between awaits: the next one arms the timer again
        if self._loop.time() < self._until:
            self._arm(self._until)  # the await in progress started after the timer was set
            return
        self._fired = True
        task.cancel()
