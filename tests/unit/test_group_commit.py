"""GroupCommit: a lone write at once; writes that queue up behind it, together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from infrastructure.group_commit import GroupCommit


class Database:
    """Records how items were written; ``gate`` holds the next write until it is set."""

    def __init__(self) -> None:
        self.alone: list[str] = []
        self.together: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_together = False
        self.poison: set[str] = set()
        self.short_answer = False

    async def write_alone(self, item: str) -> str:
        await self.gate.wait()
        if item in self.poison:
            raise ValueError(item)
        self.alone.append(item)
        return item.upper()

    async def write_together(self, items: Sequence[str]) -> list[str]:
        await self.gate.wait()
        if self.fail_together or self.poison & set(items):
            raise ConnectionError("the batch failed")
        self.together.append(list(items))
        results = [item.upper() for item in items]
        return results[:-1] if self.short_answer else results


@pytest.fixture
def database() -> Database:
    return Database()


@pytest.fixture
def writes(database: Database) -> GroupCommit[str, str]:
    return GroupCommit("items", database.write_together, database.write_alone)


async def burst(
    writes: GroupCommit[str, str], database: Database, items: list[str]
) -> list[object]:
    """The first item's write is held until the others have queued up behind it."""
    database.gate.clear()
    tasks = [asyncio.create_task(writes.write(item)) for item in items]
    await asyncio.sleep(0)
    database.gate.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_lone_write_goes_at_once(writes: GroupCommit[str, str], database: Database) -> None:
    assert await writes.write("a") == "A"
    assert await writes.write("b") == "B"
    assert database.alone == ["a", "b"]
    assert database.together == []


async def test_writes_that_queue_up_go_together_each_with_its_result(
    writes: GroupCommit[str, str], database: Database
) -> None:
    results = await burst(writes, database, ["a", "b", "c", "d"])
    assert results == ["A", "B", "C", "D"]
    assert database.alone == ["a"]
    assert database.together == [["b", "c", "d"]]
    # Once the burst is over, a write goes alone again.
    assert await writes.write("e") == "E"
    assert database.alone == ["a", "e"]


async def test_after_a_failed_batch_each_item_is_written_alone_and_fails_alone(
    writes: GroupCommit[str, str], database: Database
) -> None:
    database.poison = {"c"}
    results = await burst(writes, database, ["a", "b", "c", "d"])
    assert results[:2] == ["A", "B"]
    assert isinstance(results[2], ValueError)
    assert results[3] == "D"
    assert database.alone == ["a", "b", "d"]


@pytest.mark.parametrize("failure", ["fail_together", "short_answer"])
async def test_a_batch_that_fails_or_answers_short_is_written_one_by_one(
    writes: GroupCommit[str, str], database: Database, failure: str
) -> None:
    setattr(database, failure, True)
    results = await burst(writes, database, ["a", "b", "c"])
    assert results == ["A", "B", "C"]
    assert database.alone == ["a", "b", "c"]


async def test_a_cancelled_caller_leaves_its_item_in_the_batch(
    writes: GroupCommit[str, str], database: Database
) -> None:
    database.gate.clear()
    tasks = [asyncio.create_task(writes.write(item)) for item in ["a", "b", "c"]]
    await asyncio.sleep(0)
    tasks[1].cancel()  # the recruiter left before the question was stored
    await asyncio.sleep(0)
    database.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == "A"
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[2] == "C"
    assert database.together == [["b", "c"]]
