"""The ``AnswerLog`` contract against the in-memory log and the Redis Streams log (real Redis,
TEST_REDIS_URL), and what only the shared log does: a reader on another replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

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
    await until(lambda: True)
    found = None
    async with asyncio.timeout(5):
        while found is None:
            found = await reader.find(KEY)
    assert found == ANSWER
    events = await reader.read(ANSWER.answer_id, 0)
    writer.end(ANSWER.answer_id)
    assert await collect(events) == [(n, *event) for n, event in enumerate(sent, start=1)]


async def test_a_reader_waits_for_the_events_still_to_come(
    logs: tuple[AnswerLog, AnswerLog],
) -> None:
    writer, reader = logs
    writer.open(ANSWER, [KEY])
    writer.append(ANSWER.answer_id, None, "one")
    writer.append(ANSWER.answer_id, None, "two")
    await asyncio.sleep(0.05)  # written (the Redis log writes in the background)
    events = await reader.read(ANSWER.answer_id, 1)
    assert events is not None
    assert await anext(events) == (2, None, "two")
    waiting = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.05)
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
    await asyncio.sleep(0.05)
    assert await reader.find(KEY) == later
    assert await reader.find("chat:c") == later
    writer.end(later.answer_id)


# --- the Redis log only -----------------------------------------------------------------------


async def test_a_reader_on_another_replica_counts_as_attached(redis: Redis) -> None:
    owner, other = replicas(redis)
    owner.open(ANSWER, [KEY])
    owner.append(ANSWER.answer_id, None, "x")
    await asyncio.sleep(0.05)
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
    await until(lambda: not owner._pending)  # written
    await asyncio.sleep(0.05)
    stream = f"{PREFIX}events:{ANSWER.answer_id}"
    assert await redis.xlen(stream) <= 3  # the events, the end marker
    assert 0 < await redis.ttl(stream) <= 60  # kept a minute after the end
    assert len(await collect(await other.read(ANSWER.answer_id, 0))) == 500
    rest = await collect(await other.read(ANSWER.answer_id, 498))
    assert [number for number, _, _ in rest] == [499, 500]
    await owner.close()
    await other.close()


async def test_events_no_longer_kept_are_refused(redis: Redis) -> None:
    owner, other = replicas(redis)
    owner.open(ANSWER, [KEY])
    for number in range(1, 5):
        owner.append(ANSWER.answer_id, None, str(number))
        await asyncio.sleep(0.02)  # one entry each
    stream = f"{PREFIX}events:{ANSWER.answer_id}"
    await until(lambda: not owner._pending)
    await asyncio.sleep(0.05)
    await redis.xtrim(stream, maxlen=2, approximate=False)  # as MAXLEN does to a long answer
    with pytest.raises(ResumeUnavailable):
        await other.read(ANSWER.answer_id, 0)
    assert [n for n, _, _ in await collect_until_end(owner, other, after=2)] == [3, 4]
    await owner.close()
    await other.close()


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
