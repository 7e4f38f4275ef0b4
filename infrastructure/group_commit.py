"""Group commit: writes that queue up behind one another go to the database together.

SQLite takes one write at a time (the process writes through one connection, in one
thread), and PostgreSQL's pool is bounded too. When hundreds of questions start (or answers
end) at once, writing them one by one makes the last wait seconds. A ``GroupCommit`` writes
a lone item at once, as before; items that arrive while a write is in progress wait for it,
and are then written together, in one transaction however many they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(slots=True)
class _Waiting(Generic[Item, Result]):
    item: Item
    result: asyncio.Future[Result]


class GroupCommit(Generic[Item, Result]):
    """``write(item)`` through ``alone`` when nothing is being written, else with the others
    that wait, through ``together`` (which returns one result per item, in order). Without
    ``alone``, a lone item is written as a batch of one.

    If ``together`` fails, each item of the batch is written through ``alone``, so that an item
    that cannot be written fails by itself. A waiting caller that is cancelled leaves its item
    in the batch: it was asked for, and may already be on its way to the database.
    """

    def __init__(
        self,
        name: str,
        together: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        alone: Callable[[Item], Awaitable[Result]] | None = None,
    ) -> None:
        self._name = name
        self._together = together
        self._alone = alone or self._as_batch_of_one
        self._waiting: list[_Waiting[Item, Result]] | None = None
        """The items waiting for the write in progress; ``None`` when none is in progress."""
        self._draining: asyncio.Task[None] | None = None

    async def _as_batch_of_one(self, item: Item) -> Result:
        [result] = await self._together([item])
        return result

    async def write(self, item: Item) -> Result:
        if self._waiting is not None:
            result: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
            self._waiting.append(_Waiting(item, result))
            return await result
        self._waiting = []
        try:
            return await self._alone(item)
        finally:
            if self._waiting:
                # The waiting items are written by a task of their own: this caller has its
                # result and goes on.
                self._draining = asyncio.create_task(self._drain(), name=f"write-{self._name}")
            else:
                self._waiting = None

    async def _drain(self) -> None:
        batch: list[_Waiting[Item, Result]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._write_batch(batch)
        finally:
            self._waiting = None
            for waiting in batch:  # only if this task was cancelled (the server stopping)
                if not waiting.result.done():
                    waiting.result.cancel()

    async def _write_batch(self, batch: list[_Waiting[Item, Result]]) -> None:
        try:
            results = await self._together([waiting.item for waiting in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} items")
        except Exception as error:
            logger.warning(
                "writing %d %s together failed (%s): writing them one by one",
                len(batch),
                self._name,
                type(error).__name__,
            )
            for waiting in batch:
                await self._write_alone(waiting)
            return
        for waiting, result in zip(batch, results, strict=True):
            if not waiting.result.done():  # its caller may have been cancelled
                waiting.result.set_result(result)

    async def _write_alone(self, waiting: _Waiting[Item, Result]) -> None:
        try:
            result = await self._alone(waiting.item)
        except Exception as error:
            if not waiting.result.done():
                waiting.result.set_exception(error)
            return
        if not waiting.result.done():
            waiting.result.set_result(result)
