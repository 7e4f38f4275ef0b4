"""The answer log in this process's memory: the one every replica without Redis uses, and
the local part of the Redis log (``infrastructure/answer_log_redis.py``).

Per answer, two lists (event names, data: an event's number is its place plus one) and the
readers waiting for the next event. Appending an event is two list appends and, only when a
reader waits, one future resolved: no task and no copy per event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from domain.ports import LoggedAnswer, LoggedEvent

KEEP_AFTER_END_SECONDS = 60.0
"""How long an ended answer stays readable: for a client whose connection dropped just
before the end."""


class _Answer:
    __slots__ = ("answer", "data", "ended", "keys", "names", "readers", "stop", "waiters")

    def __init__(self, answer: LoggedAnswer, keys: Sequence[str]) -> None:
        self.answer = answer
        self.keys = tuple(keys)
        self.names: list[str | None] = []
        self.data: list[str] = []
        self.ended = False
        self.readers = 0
        self.stop = False
        self.waiters: list[asyncio.Future[None]] = []

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class _Reader(AsyncIterator[LoggedEvent]):
    """One reader of an answer, from event ``after + 1``; attached until closed or done."""

    __slots__ = ("_answer", "_attached", "_next")

    def __init__(self, answer: _Answer, after: int) -> None:
        self._answer = answer
        self._next = after  # the index of the next event to give
        self._attached = True
        answer.readers += 1

    def __aiter__(self) -> _Reader:
        return self

    async def __anext__(self) -> LoggedEvent:
        answer = self._answer
        while True:
            index = self._next
            if index < len(answer.data):
                self._next = index + 1
                return index + 1, answer.names[index], answer.data[index]
            if answer.ended or not self._attached:
                self._detach()
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            answer.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                self._detach()
                raise

    def _detach(self) -> None:
        if self._attached:
            self._attached = False
            self._answer.readers -= 1

    async def aclose(self) -> None:
        self._detach()


class MemoryAnswerLog:
    """``AnswerLog`` in this process: readers here only."""

    def __init__(self, keep_after_end: float = KEEP_AFTER_END_SECONDS) -> None:
        self._keep_after_end = keep_after_end
        self._answers: dict[str, _Answer] = {}
        self._keys: dict[str, str] = {}

    def __len__(self) -> int:
        """Answers kept now (in flight or ended lately)."""
        return len(self._answers)

    def open(self, answer: LoggedAnswer, keys: Sequence[str]) -> None:
        self._answers[answer.answer_id] = _Answer(answer, keys)
        for key in keys:
            self._keys[key] = answer.answer_id

    def append(self, answer_id: str, event: str | None, data: str) -> None:
        answer = self._answers[answer_id]
        answer.names.append(event)
        answer.data.append(data)
        if answer.waiters:
            answer.wake()

    def appended(self, answer_id: str) -> int:
        """The number of the answer's latest event (0 before the first)."""
        answer = self._answers.get(answer_id)
        return len(answer.data) if answer is not None else 0

    def end(self, answer_id: str) -> None:
        answer = self._answers.get(answer_id)
        if answer is None or answer.ended:
            return
        answer.ended = True
        answer.wake()
        asyncio.get_running_loop().call_later(self._keep_after_end, self.forget, answer_id)

    def forget(self, answer_id: str) -> None:
        answer = self._answers.pop(answer_id, None)
        if answer is None:
            return
        for key in answer.keys:
            if self._keys.get(key) == answer_id:  # not a later answer's
                del self._keys[key]
        answer.wake()

    def local(self, answer_id: str) -> bool:
        """Whether this process keeps the answer."""
        return answer_id in self._answers

    def find_here(self, key: str) -> LoggedAnswer | None:
        answer_id = self._keys.get(key)
        return self._answers[answer_id].answer if answer_id is not None else None

    async def find(self, key: str) -> LoggedAnswer | None:
        return self.find_here(key)

    def read_here(self, answer_id: str, after: int = 0) -> AsyncIterator[LoggedEvent] | None:
        answer = self._answers.get(answer_id)
        return _Reader(answer, max(0, after)) if answer is not None else None

    async def read(self, answer_id: str, after: int = 0) -> AsyncIterator[LoggedEvent] | None:
        return self.read_here(answer_id, after)

    def readers_here(self, answer_id: str) -> int:
        answer = self._answers.get(answer_id)
        return answer.readers if answer is not None else 0

    async def reader_attached(self, answer_id: str) -> bool:
        return self.readers_here(answer_id) > 0

    async def request_stop(self, answer_id: str) -> None:
        answer = self._answers.get(answer_id)
        if answer is not None:
            answer.stop = True

    async def stop_requested(self, answer_id: str) -> bool:
        answer = self._answers.get(answer_id)
        return answer is not None and answer.stop

    async def close(self) -> None:
        """Wake every reader: nothing more will come."""
        for answer_id in list(self._answers):
            answer = self._answers[answer_id]
            answer.ended = True
            answer.wake()
