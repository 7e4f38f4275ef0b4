"""The ``AnswerLog`` contract against the in-memory log and the Redis Streams log (real Redis,
TEST_REDIS_URL), and what only the shared log does: a reader on another replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import pytest
from redis.asyncio import Redis

from domain.errors import ResumeUnavailable
from domain.ports import AnswerLog, LoggedAnswer, LoggedEvent
from infrastructure.answer_log import MemoryAnswerLog
from infrastructure.answer_log_redis import PREFIX, RedisAnswerLog
from infrastructure.redis_breaker import RedisBreaker

ANSWER = LoggedAnswer("answer0000000001", "sse")
KEY = "conversation:abc"


async def until(condition: Callable[[], object], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


async def eventually(check: Callable[[], Awaitable[Any]], seconds: float = 5.0) -> Any:
    """``check()``'s first true result, polled (the Redis log writes in the background)."""
    async with asyncio.timeout(seconds):
        while True:
            if result := await check():
                return result
            await asyncio.sleep(0.01)


async def collect(events: AsyncIterator[LoggedEvent] | None) -> list[LoggedEvent]:
    assert events is not None
    async with asyncio.timeout(5):
        return [event async for event in events]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, socket_timeout=3, decode_responses=True)
    yield client
    await client.aclose()


def replicas(redis: Redis, **options: float) -> tuple[RedisAnswerLog, RedisAnswerLog]:
    breaker = RedisBreaker(timeout_seconds=1.0)
    return RedisAnswerLog(redis, breaker, **options), RedisAnswerLog(redis, breaker, **options)


@pytest.fixture(params=["memory", "redis"])
async def logs(
    request: pytest.FixtureRequest, redis_url: str
) -> AsyncIterator[tuple[AnswerLog, AnswerLog]]:
    """(the log of the replica that runs the answer, the log a resume reads)"""
    if request.param == "memory":
        memory = MemoryAnswerLog()
        yield memory, memory
        await memory.close()
        return
    client = Redis.from_url(redis_url, socket_timeout=3, decode_responses=True)
    writer, reader = replicas(client)
    yield writer, reader
    await writer.close()
    await reader.close()
    await client.aclose()


async def test_a_reader_gets_every_event_in_order_then_the_end(
    logs: tuple[AnswerLog, AnswerLog],
) -> None:
    writer, reader = logs
    writer.open(ANSWER, [KEY])
    sent = [("meta", '{"a":1}'), (None, "안녕하세요\n"), (None, "line\r\nbreak"), ("done", "{}")]
    for name, data in sent:
        writer.append(ANSWER.answer_id, name, data)
    assert await eventually(lambda: reader.find(KEY)) == ANSWER
    events = await eventually(lambda: reader.read(ANSWER.answer_id, 0))
    writer.end(ANSWER.answer_id)
    assert await collect(events) == [(n, *event) for n, event in enumerate(sent, start=1)]


async def test_a_reader_waits_for_the_events_still_to_come(
    logs: tuple[AnswerLog, AnswerLog],
) -> None:
    writer, reader = logs
    writer.open(ANSWER, [KEY])
    writer.append(ANSWER.answer_id, None, "one")
    writer.append(ANSWER.answer_id, None, "two")
    events = await eventually(lambda: reader.read(ANSWER.answer_id, 1))
    assert await anext(events) == (2, None, "two")
    waiting = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.05)  # nothing comes meanwhile
    assert not waiting.done()
    writer.append(ANSWER.answer_id, "done", "{}")
    assert await asyncio.wait_for(waiting, 5) == (3, "done", "{}")
    assert await reader.reader_attached(ANSWER.answer_id)
    writer.end(ANSWER.answer_id)
    assert await collect(events) == []


async def test_an_unknown_answer_or_key_is_none(logs: tuple[AnswerLog, AnswerLog]) -> None:
    _, reader = logs
    assert await reader.find("conversation:nobody") is None
    assert await reader.read("answer0000000404", 0) is None


async def test_a_stop_asked_anywhere_is_seen_by_the_answers_replica(
    logs: tuple[AnswerLog, AnswerLog],
) -> None:
    writer, reader = logs
    writer.open(ANSWER, [KEY])
    assert not await writer.stop_requested(ANSWER.answer_id)
    await reader.request_stop(ANSWER.answer_id)
    assert await writer.stop_requested(ANSWER.answer_id)
    writer.end(ANSWER.answer_id)


async def test_a_key_names_the_latest_answer_opened_with_it(
    logs: tuple[AnswerLog, AnswerLog],
) -> None:
    writer, reader = logs
    later = LoggedAnswer("answer0000000002", "ui")
    writer.open(ANSWER, [KEY])
    writer.end(ANSWER.answer_id)
    writer.open(later, [KEY, "chat:c"])
    await eventually(lambda: _is(reader.find(KEY), later))
    assert await reader.find("chat:c") == later
    writer.end(later.answer_id)


# --- the Redis log only -----------------------------------------------------------------------


async def test_a_reader_on_another_replica_counts_as_attached(redis: Redis) -> None:
    owner, other = replicas(redis)
    owner.open(ANSWER, [KEY])
    owner.append(ANSWER.answer_id, None, "x")
    await eventually(lambda: redis.exists(f"{PREFIX}events:{ANSWER.answer_id}"))
    assert not await owner.reader_attached(ANSWER.answer_id)
    events = await other.read(ANSWER.answer_id, 0)
    assert events is not None
    assert await owner.reader_attached(ANSWER.answer_id)
    owner.end(ANSWER.answer_id)
    assert await collect(events) == [(1, None, "x")]
    await owner.close()
    await other.close()


async def test_a_burst_of_events_is_written_in_few_entries(redis: Redis) -> None:
    owner, other = replicas(redis)
    owner.open(ANSWER, [KEY])
    for number in range(1, 501):
        owner.append(ANSWER.answer_id, None, f"delta {number} ")
    owner.end(ANSWER.answer_id)
    stream = f"{PREFIX}events:{ANSWER.answer_id}"
    # The end is written last, with the stream's expiry: a minute.
    assert 0 < await eventually(lambda: _ttl_after_end(redis, stream)) <= 60
    assert await redis.xlen(stream) <= 3  # the events, the end marker
    assert len(await collect(await other.read(ANSWER.answer_id, 0))) == 500
    rest = await collect(await other.read(ANSWER.answer_id, 498))
    assert [number for number, _, _ in rest] == [499, 500]
    await owner.close()
    await other.close()


async def test_events_no_longer_kept_are_refused(redis: Redis) -> None:
    owner, other = replicas(redis, flush_interval=0)
    owner.open(ANSWER, [KEY])
    stream = f"{PREFIX}events:{ANSWER.answer_id}"
    for number in range(1, 5):
        owner.append(ANSWER.answer_id, None, str(number))
        await eventually(partial(_has_entries, redis, stream, number))  # one entry each
    await redis.xtrim(stream, maxlen=2, approximate=False)  # as MAXLEN does to a long answer
    with pytest.raises(ResumeUnavailable):
        await other.read(ANSWER.answer_id, 0)
    assert [n for n, _, _ in await collect_until_end(owner, other, after=2)] == [3, 4]
    await owner.close()
    await other.close()


async def _is(found: Awaitable[Any], expected: Any) -> bool:
    return bool(await found == expected)


async def _ttl_after_end(redis: Redis, stream: str) -> int:
    ttl: int = await redis.ttl(stream)
    return ttl if 0 < ttl <= 60 else 0


async def _has_entries(redis: Redis, stream: str, count: int) -> bool:
    return bool(await redis.xlen(stream) >= count)


async def collect_until_end(
    owner: RedisAnswerLog, other: RedisAnswerLog, *, after: int
) -> list[LoggedEvent]:
    events = await other.read(ANSWER.answer_id, after)
    owner.end(ANSWER.answer_id)
    return await collect(events)


async def test_redis_down_costs_the_resume_not_the_answer() -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.3)
    log = RedisAnswerLog(unreachable, RedisBreaker(timeout_seconds=0.3))
    log.open(ANSWER, [KEY])
    events = await log.read(ANSWER.answer_id, 0)  # a reader here reads memory
    log.append(ANSWER.answer_id, None, "still answered")
    await until(lambda: log.failed_writes >= 1)
    log.append(ANSWER.answer_id, "done", "{}")
    log.end(ANSWER.answer_id)
    assert await collect(events) == [(1, None, "still answered"), (2, "done", "{}")]
    assert await log.find(KEY) == ANSWER  # found here, from memory
    assert await log.read("answer0000000404", 0) is None  # elsewhere: nothing, quickly
    await log.close()
    await unreachable.aclose()
