"""The answer log in Redis Streams (with ``REDIS_URL``), so that any replica can serve a resume.

Readers in the process that runs an answer read its events from memory (``MemoryAnswerLog``,
which this log keeps too); a reader on another replica reads the answer's stream in Redis.

Writing never holds up an answer: ``append`` only queues the event, and one writer task
sends whatever is queued, for every answer, in one pipeline (a burst of deltas is one round
trip, and each answer's share of it one ``XADD`` entry holding its events as JSON, with
``MAXLEN ~ 20000``; the writer pauses ``FLUSH_INTERVAL_SECONDS`` between rounds, so that a
round carries the deltas of every answer in flight). Each call goes through the process's
Redis breaker with REDIS_TIMEOUT_SECONDS: when Redis is down the answer goes on, only its
resume elsewhere is lost (the events that could not be written are not written later, and a
reader that would see a gap stops instead).

Keys (under ``ask-the-applicant:answer-log:``): ``key:<key>`` → ``<protocol> <answer id>``;
``events:<answer id>``, the stream, entry ``0-<number of its last event>`` =
``{"e": [first number, [[event, data], ...]]}``, then ``1-0`` = ``{"end": "1"}``;
``reader:<answer id>``, set for a few seconds and refreshed by a reader on another replica;
``stop:<answer id>``, a Stop asked on another replica. Everything expires 15 minutes after
its first write (an answer lasts less), the stream 60 s after the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from domain.errors import ResumeUnavailable
from domain.ports import LoggedAnswer, LoggedEvent
from infrastructure.answer_log import KEEP_AFTER_END_SECONDS, MemoryAnswerLog
from infrastructure.redis_breaker import RedisBreaker

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

PREFIX = "ask-the-applicant:answer-log:"
MAX_ENTRIES = 20_000
IDLE_SECONDS = 900
READER_SECONDS = 5
"""How long a reader on another replica counts as attached after its latest refresh."""
BLOCK_SECONDS = 1.0
"""How long one ``XREAD BLOCK`` of a reader on another replica waits."""
READ_BATCH = 512
FLUSH_INTERVAL_SECONDS = 0.05
"""The writer's pause after each round: the events of every answer in flight that arrive
meanwhile go out together, one XADD per answer."""
GIVE_UP_AFTER_SECONDS = 120.0
"""A reader on another replica that sees nothing for this long stops (the replica that ran
the answer died): no stream hangs."""


class _Pending:
    __slots__ = ("ended", "events", "opened")

    def __init__(self) -> None:
        self.opened: tuple[str, Sequence[str]] | None = None
        self.events: list[LoggedEvent] = []
        self.ended = False


class RedisAnswerLog:
    """``AnswerLog`` shared by every replica through Redis Streams."""

    def __init__(
        self,
        redis: Redis,
        breaker: RedisBreaker,
        *,
        keep_after_end: float = KEEP_AFTER_END_SECONDS,
        block_seconds: float = BLOCK_SECONDS,
        give_up_after: float = GIVE_UP_AFTER_SECONDS,
        flush_interval: float = FLUSH_INTERVAL_SECONDS,
        prefix: str = PREFIX,
    ) -> None:
        self._redis = redis
        self._breaker = breaker
        self._local = MemoryAnswerLog(keep_after_end)
        self._keep_after_end = max(1, round(keep_after_end))
        self._block_seconds = block_seconds
        self._give_up_after = give_up_after
        self._prefix = prefix
        self._pending: dict[str, _Pending] = {}
        self._broken: set[str] = set()
        """Answers a write failed for: no longer written (a reader elsewhere would see a gap)."""
        self._to_delete: set[str] = set()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._flush_interval = flush_interval
        self._expiring: set[str] = set()
        """Answers whose stream has its idle expiry set."""
        self.failed_writes = 0

    # --- writing (the replica that runs the answer) ------------------------------------------

    def _queued(self, answer_id: str) -> _Pending:
        pending = self._pending.get(answer_id)
        if pending is None:
            pending = self._pending[answer_id] = _Pending()
        if not self._wake.is_set():
            self._wake.set()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_continually(), name="answer-log")
        return pending

    def open(self, answer: LoggedAnswer, keys: Sequence[str]) -> None:
        self._local.open(answer, keys)
        self._queued(answer.answer_id).opened = (f"{answer.protocol} {answer.answer_id}", keys)

    def append(self, answer_id: str, event: str | None, data: str) -> None:
        local = self._local
        local.append(answer_id, event, data)
        if answer_id not in self._broken:
            number = local.appended(answer_id)
            self._queued(answer_id).events.append((number, event, data))

    def end(self, answer_id: str) -> None:
        self._local.end(answer_id)
        if answer_id in self._broken:
            self._broken.discard(answer_id)
            self._to_delete.add(answer_id)
            self._queued(answer_id)
        else:
            self._queued(answer_id).ended = True

    async def _write_continually(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await self._write_pending()
            # What arrives meanwhile goes in the next round: every answer's deltas of the
            # interval in one XADD each (a reader elsewhere lags by as much, at most).
            if not self._closing:
                await asyncio.sleep(self._flush_interval)

    async def _write_pending(self) -> None:
        batch, self._pending = self._pending, {}
        deleting, self._to_delete = self._to_delete, set()
        if not batch and not deleting:
            return
        pipe = self._redis.pipeline(transaction=False)
        for answer_id in deleting:
            pipe.delete(self._events_key(answer_id))
        for answer_id, pending in batch.items():
            if answer_id in self._broken:
                continue
            stream = self._events_key(answer_id)
            if pending.opened is not None:
                value, keys = pending.opened
                for key in keys:
                    pipe.set(self._prefix + "key:" + key, value, ex=IDLE_SECONDS)
            events = pending.events
            if events:
                payload = [events[0][0], [[name, data] for _, name, data in events]]
                pipe.xadd(
                    stream,
                    {"e": json.dumps(payload, ensure_ascii=False, separators=(",", ":"))},
                    id=f"0-{events[-1][0]}",
                    maxlen=MAX_ENTRIES,
                    approximate=True,
                )
            if pending.ended:
                pipe.xadd(stream, {"end": "1"}, id="1-0")
                pipe.expire(stream, self._keep_after_end)
                self._expiring.discard(answer_id)
            elif events and answer_id not in self._expiring:
                # Once: an answer lasts less (UPSTREAM_TOTAL_TIMEOUT_SECONDS, the window).
                pipe.expire(stream, IDLE_SECONDS)
                self._expiring.add(answer_id)
        try:
            await self._breaker.call(pipe.execute)
        except Exception as error:
            self.failed_writes += 1
            logger.warning(
                "could not write answers to Redis (%s): they cannot be resumed on another replica",
                type(error).__name__,
            )
            for answer_id, pending in batch.items():
                self._expiring.discard(answer_id)
                if pending.ended:
                    self._to_delete.add(answer_id)
                else:
                    self._broken.add(answer_id)
            self._to_delete |= deleting

    # --- reading (any replica) ---------------------------------------------------------------

    def _events_key(self, answer_id: str) -> str:
        return f"{self._prefix}events:{answer_id}"

    async def _call(self, operation: Any, limit_seconds: float | None = None) -> Any:
        return await self._breaker.call(operation, limit_seconds=limit_seconds)

    async def find(self, key: str) -> LoggedAnswer | None:
        # Redis first: it names the latest answer opened with ``key`` on any replica.
        try:
            value = await self._call(lambda: self._redis.get(self._prefix + "key:" + key))
        except Exception as error:
            logger.debug("answer log lookup failed: %s", type(error).__name__)
            value = None
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and " " in value:
            protocol, answer_id = value.split(" ", 1)
            return LoggedAnswer(answer_id, protocol)
        return self._local.find_here(key)

    async def read(self, answer_id: str, after: int = 0) -> AsyncIterator[LoggedEvent] | None:
        if self._local.local(answer_id):
            return self._local.read_here(answer_id, after)
        stream = self._events_key(answer_id)

        async def first() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            pipe.exists(stream)
            pipe.xrange(stream, min=f"0-{after + 1}", count=READ_BATCH)
            pipe.set(self._prefix + "reader:" + answer_id, "1", ex=READER_SECONDS)
            result: list[Any] = await pipe.execute()
            return result

        try:
            exists, entries, _ = await self._call(first)
        except Exception as error:
            logger.warning("could not read an answer from Redis: %s", type(error).__name__)
            return None
        if not exists:
            return None
        if entries:
            fields = _fields(entries[0][1])
            if "e" in fields and json.loads(fields["e"])[0] > after + 1:
                raise ResumeUnavailable()  # trimmed: the events after ``after`` are gone
        return self._read_remote(answer_id, stream, entries, after)

    async def _read_remote(
        self, answer_id: str, stream: str, entries: list[Any], after: int
    ) -> AsyncIterator[LoggedEvent]:
        loop = asyncio.get_running_loop()
        expected = after + 1
        last_id = f"0-{after}"
        refresh_at = loop.time() + READER_SECONDS / 3
        quiet_since = loop.time()
        reader_key = self._prefix + "reader:" + answer_id
        block_ms = int(self._block_seconds * 1000)
        limit = self._block_seconds + self._breaker.timeout_seconds
        while True:
            for entry_id, raw in entries:
                last_id = _text(entry_id)
                fields = _fields(raw)
                if "end" in fields:
                    return
                first, events = json.loads(fields["e"])
                if first > expected:
                    logger.warning("answer %s has a gap in Redis: its reading stops", answer_id)
                    return
                for offset, (name, data) in enumerate(events):
                    number = first + offset
                    if number >= expected:
                        expected = number + 1
                        yield number, name, data
            now = loop.time()
            if entries:
                quiet_since = now
            elif now - quiet_since > self._give_up_after:
                logger.warning("answer %s: nothing new in Redis for long: reading stops", answer_id)
                return
            try:
                if now >= refresh_at:
                    refresh_at = now + READER_SECONDS / 3
                    await self._call(lambda: self._redis.set(reader_key, "1", ex=READER_SECONDS))
                result = await self._call(
                    partial(self._redis.xread, {stream: last_id}, count=READ_BATCH, block=block_ms),
                    limit_seconds=limit,
                )
                if not result and not await self._call(lambda: self._redis.exists(stream)):
                    return  # expired or deleted
            except Exception as error:
                logger.warning("reading an answer from Redis failed: %s", type(error).__name__)
                return
            entries = result[0][1] if result else []

    async def reader_attached(self, answer_id: str) -> bool:
        if self._local.readers_here(answer_id):
            return True
        key = self._prefix + "reader:" + answer_id
        return bool(await self._call(lambda: self._redis.exists(key)))

    async def request_stop(self, answer_id: str) -> None:
        if self._local.local(answer_id):
            await self._local.request_stop(answer_id)
            return
        key = self._prefix + "stop:" + answer_id
        await self._call(lambda: self._redis.set(key, "1", ex=IDLE_SECONDS))

    async def stop_requested(self, answer_id: str) -> bool:
        if await self._local.stop_requested(answer_id):
            return True
        key = self._prefix + "stop:" + answer_id
        return bool(await self._call(lambda: self._redis.exists(key)))

    async def close(self) -> None:
        """Write what is queued (once, briefly), then stop the writer."""
        # Not cancelled mid-write (redis-py then waits on the connection): told to stop, and
        # waited for; each write is bounded by the breaker.
        self._closing = True
        writer = self._writer
        if writer is not None:
            self._wake.set()
            try:
                async with asyncio.timeout(2 * self._breaker.timeout_seconds + 1):
                    await writer
            except TimeoutError:
                writer.cancel()
            await self._write_pending()
        await self._local.close()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(key): _text(value) for key, value in raw.items()}
