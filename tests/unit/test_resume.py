"""Resumable answers (application/resume.py) on the in-memory answer log: numbering, resume
rules, the window an answer waits for a reader, Stop and shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from api.observability import Metrics
from api.sse import answer_events, streamed
from application.ask import AskApplicant
from application.resume import (
    EncodedEvent,
    Reading,
    ResumableAnswers,
    conversation_key,
    parse_event_id,
)
from domain.errors import InvalidLastEventId, ResumeUnavailable
from domain.models import Message, TextDelta
from domain.ports import LoggedAnswer
from infrastructure.answer_log import MemoryAnswerLog
from tests.fakes import InMemoryConversations, ScriptedEngine, small_profile

KEY = conversation_key("c" * 22)


@dataclass(frozen=True)
class Encoded:
    event: str | None
    data: str


class ScriptedAnswer:
    """Encoded events a test releases one by one; records whether the answer was closed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[EncodedEvent | None] = asyncio.Queue()
        self.closed = asyncio.Event()

    def send(self, *events: tuple[str | None, str]) -> None:
        for name, data in events:
            self.queue.put_nowait(Encoded(name, data))

    def finish(self) -> None:
        self.queue.put_nowait(None)

    async def events(self) -> AsyncIterator[EncodedEvent]:
        try:
            while (event := await self.queue.get()) is not None:
                yield event
        finally:
            self.closed.set()


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.005)


async def take(reading: Reading, count: int) -> list[tuple[str, str | None, str]]:
    return [await anext(reading) for _ in range(count)]


async def rest(reading: Reading) -> list[tuple[str, str | None, str]]:
    async with asyncio.timeout(5):
        return [event async for event in reading]


def answers(window: float = 5.0, log: MemoryAnswerLog | None = None) -> ResumableAnswers:
    ids = iter(f"answer{n:010d}" for n in range(1, 100))
    return ResumableAnswers(
        log if log is not None else MemoryAnswerLog(),
        window_seconds=window,
        answer_ids=lambda: next(ids),
    )


async def test_every_event_carries_the_answers_id_and_its_number() -> None:
    resumable, answer = answers(), ScriptedAnswer()
    reading = await resumable.begin(answer.events(), protocol="sse", keys=[KEY])
    answer.send(("meta", "{}"), (None, "안녕"), (None, " hello\nworld"), ("done", "{}"))
    answer.finish()
    assert await rest(reading) == [
        ("answer0000000001.1", "meta", "{}"),
        ("answer0000000001.2", None, "안녕"),
        ("answer0000000001.3", None, " hello\nworld"),
        ("answer0000000001.4", "done", "{}"),
    ]


async def test_a_resume_gets_the_events_after_the_last_id_without_duplicates() -> None:
    resumable, answer = answers(), ScriptedAnswer()
    first = await resumable.begin(answer.events(), protocol="sse", keys=[KEY])
    answer.send(("meta", "{}"), (None, "one"), (None, "two"))
    received = await take(first, 2)
    await first.aclose()  # the connection dropped after "one"

    resumed = await resumable.resume(KEY, received[-1][0])
    assert resumed is not None
    answer.send((None, "three"))
    answer.finish()
    assert [data for _, _, data in await rest(resumed)] == ["two", "three"]
    assert not answer.closed.is_set() or resumable.in_flight == 0  # it ran to its end


async def test_without_a_last_event_id_the_answer_is_replayed_from_its_start() -> None:
    resumable, answer = answers(), ScriptedAnswer()
    await resumable.begin(answer.events(), protocol="ui", keys=[KEY, "chat:x"])
    answer.send(("m", "1"), ("m", "2"))
    answer.finish()
    await until(lambda: resumable.in_flight == 0)
    for key in (KEY, "chat:x"):
        replay = await resumable.resume(key, None)
        assert replay is not None
        assert replay.answer.protocol == "ui"
        assert [data for _, _, data in await rest(replay)] == ["1", "2"]


async def test_resume_rules() -> None:
    resumable, answer = answers(), ScriptedAnswer()
    assert await resumable.resume(KEY, None) is None  # nothing in flight: 204
    await resumable.begin(answer.events(), protocol="sse", keys=[KEY])
    for malformed in ("", "abc", "answer0000000001", "answer0000000001.x", "a.1\nid: 2"):
        with pytest.raises(InvalidLastEventId):
            await resumable.resume(KEY, malformed or "-")
    with pytest.raises(ResumeUnavailable):  # an id of another answer
        await resumable.resume(KEY, "answer0000000099.3")
    assert parse_event_id(" answer0000000001.12 ") == ("answer0000000001", 12)
    answer.finish()


async def test_an_answer_no_one_reads_is_closed_after_the_window() -> None:
    resumable, answer = answers(window=0.2), ScriptedAnswer()
    reading = await resumable.begin(answer.events(), protocol="sse", keys=[KEY])
    answer.send((None, "partial"))
    await take(reading, 1)
    await reading.aclose()
    async with asyncio.timeout(5):
        await answer.closed.wait()
    await until(lambda: resumable.in_flight == 0)
    # What was sent stays readable for a while: a late client gets it, then the end.
    late = await resumable.resume(KEY, None)
    assert late is not None
    assert [data for _, _, data in await rest(late)] == ["partial"]


async def test_a_reader_that_comes_back_within_the_window_keeps_the_answer_going() -> None:
    resumable, answer = answers(window=0.3), ScriptedAnswer()
    reading = await resumable.begin(answer.events(), protocol="sse", keys=[KEY])
    answer.send((None, "a"))
    [(last, _, _)] = await take(reading, 1)
    await reading.aclose()
    resumed = await resumable.resume(KEY, last)
    assert resumed is not None
    await asyncio.sleep(0.6)  # twice the window passes with the reader attached
    assert not answer.closed.is_set()
    answer.send((None, "b"))
    answer.finish()
    assert [data for _, _, data in await rest(resumed)] == ["b"]


async def test_a_reader_never_iterated_detaches_when_closed() -> None:
    resumable, answer = answers(window=0.2), ScriptedAnswer()
    reading = await resumable.begin(answer.events(), protocol="sse", keys=[KEY])
    await reading.aclose()
    async with asyncio.timeout(5):
        await answer.closed.wait()


async def test_stop_closes_the_answer_at_once() -> None:
    resumable, answer = answers(window=60), ScriptedAnswer()
    reading = await resumable.begin(answer.events(), protocol="sse", keys=[KEY])
    assert await resumable.stop(KEY)
    async with asyncio.timeout(5):
        await answer.closed.wait()
    assert await rest(reading) == []
    assert not await resumable.stop(conversation_key("z" * 22))


async def test_a_stop_asked_through_the_log_is_seen_while_no_one_reads() -> None:
    log = MemoryAnswerLog()
    resumable, answer = answers(window=60, log=log), ScriptedAnswer()
    reading = await resumable.begin(answer.events(), protocol="sse", keys=[KEY])
    await reading.aclose()
    found = await log.find(KEY)
    assert found is not None
    await log.request_stop(found.answer_id)  # as another replica's DELETE does, via Redis
    async with asyncio.timeout(5):
        await answer.closed.wait()


async def test_shutdown_cancels_running_answers() -> None:
    resumable, answer = answers(window=60), ScriptedAnswer()
    reading = await resumable.begin(answer.events(), protocol="sse", keys=[KEY])
    await reading.aclose()
    await resumable.close()
    assert answer.closed.is_set()
    assert resumable.in_flight == 0


async def test_an_abandoned_answer_is_stored_interrupted_after_the_window() -> None:
    """Through the use case and the native encoder: the upstream closed, the partial answer
    stored ``interrupted``, as when a client leaves with RESUME_WINDOW_SECONDS=0."""
    conversations = InMemoryConversations()
    engine = ScriptedEngine(script=[TextDelta("첫 부분 ")], hold=True)
    ask = AskApplicant(
        small_profile(),
        engine,
        conversations,
        default_model="m",
        allowed_models=frozenset(),
        max_input_chars=100,
    )
    resumable = answers(window=0.2)
    stream = await ask.start([Message("user", "Where did Jane work?")])
    key = conversation_key(stream.meta.conversation_id)
    content = await streamed(
        answer_events(stream, Metrics()), resumable, protocol="sse", keys=[key]
    )
    received = [await anext(content) for _ in range(3)]  # meta, sources, the delta
    assert [event.id for event in received] == [f"answer0000000001.{n}" for n in (1, 2, 3)]
    await content.aclose()  # type: ignore[attr-defined]

    await until(lambda: engine.closed == 1)
    conversation = await conversations.get(stream.meta.conversation_id)
    assert conversation is not None
    [_, stored] = conversation.messages()
    assert (stored.content, stored.status) == ("첫 부분 ", "interrupted")


async def test_the_memory_log_forgets_an_answer_after_its_end() -> None:
    log = MemoryAnswerLog(keep_after_end=0.05)
    resumable, answer = answers(log=log), ScriptedAnswer()
    await resumable.begin(answer.events(), protocol="sse", keys=[KEY])
    answer.finish()
    await until(lambda: len(log) == 0)
    assert await resumable.resume(KEY, None) is None


class LogThatFailsToStop(MemoryAnswerLog):
    """Names an answer another replica runs, and cannot pass a Stop on (Redis just failed)."""

    async def find(self, key: str) -> LoggedAnswer | None:
        return LoggedAnswer("elsewhere0000001", "sse")

    async def request_stop(self, answer_id: str) -> None:
        raise TimeoutError


async def test_a_stop_the_log_cannot_pass_on_fails_quietly() -> None:
    resumable = answers(log=LogThatFailsToStop())
    assert not await resumable.stop(KEY)  # the answer ends after its window instead
