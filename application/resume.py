"""Resumable answers: an answer outlives its connection for a short while, so that a client
whose connection dropped (a phone changing networks, a tab put to sleep) reads the rest.

Each answer runs in a task of its own that feeds the answer log (``AnswerLog``) with its
encoded events; every response, the first one and the resumed ones, reads the log. Every
event is numbered: its SSE id is ``<answer id>.<number>``, and a client that reconnects with
the id of the last event it received gets the events after it.

When no one reads an answer any more, it goes on for ``window_seconds`` waiting for someone
to reconnect (here, or on another replica through Redis); if no one does, it is cancelled:
the upstream call is closed and the answer stored ``interrupted``, as a dropped connection
always did. A Stop (``stop``) cancels it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from domain.errors import InvalidLastEventId, ResumeUnavailable
from domain.ports import AnswerLog, LoggedAnswer, LoggedEvent

logger = logging.getLogger(__name__)


class EncodedEvent(Protocol):
    """An answer's event as its protocol encodes it (``api/``'s SSE events are these)."""

    @property
    def event(self) -> str | None:
        """The SSE event name; ``None`` for an unnamed event."""
        ...

    @property
    def data(self) -> Any: ...


_EVENT_ID = re.compile(r"([A-Za-z0-9_-]{16})\.([0-9]{1,9})")

POLL_SECONDS = 1.0
"""How often an answer no one reads here asks whether someone reads it elsewhere."""
CLOSE_TIMEOUT_SECONDS = 10.0


def new_answer_id() -> str:
    """Random and URL-safe (96 bits): it names the answer in its events' ids."""
    return secrets.token_urlsafe(12)


def event_id(answer_id: str, number: int) -> str:
    return f"{answer_id}.{number}"


def parse_event_id(value: str) -> tuple[str, int]:
    """The answer id and event number of an SSE id we sent; ``InvalidLastEventId`` if it is
    not one."""
    matched = _EVENT_ID.fullmatch(value.strip())
    if matched is None:
        raise InvalidLastEventId()
    return matched[1], int(matched[2])


def conversation_key(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


def chat_key(chat_id: str) -> str:
    return f"chat:{chat_id}"


@dataclass(eq=False, slots=True)
class _Running:
    """An answer whose task runs in this process."""

    answer_id: str
    task: asyncio.Task[None] | None = None
    readers: int = 0
    """Readers in this process."""
    left_at: float = 0.0
    """When the last reader here left."""
    watchdog: asyncio.Task[None] | None = None
    stopped: bool = False
    started: bool = False
    """Whether the task has taken its first step: one cancelled before would never run its
    ``finally`` (nor close the answer, nor store it)."""


@dataclass(eq=False)
class Reading(AsyncIterator[tuple[str, str | None, str]]):
    """One response's reading of an answer: ``(SSE id, event name, data)`` until its end.

    Close it when the response ends (``aclose``): it detaches, and an answer that no one
    reads any more starts waiting for a reconnect.
    """

    answer: LoggedAnswer
    _events: AsyncIterator[LoggedEvent]
    _on_close: Callable[[], None] | None = None
    _closed: bool = field(default=False, init=False)

    def __aiter__(self) -> Reading:
        return self

    async def __anext__(self) -> tuple[str, str | None, str]:
        try:
            number, name, data = await anext(self._events)
        except BaseException:
            await self.aclose()
            raise
        return f"{self.answer.answer_id}.{number}", name, data

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._events, "aclose", None)
        try:
            if close is not None:
                await close()
        finally:
            if self._on_close is not None:
                self._on_close()


class ResumableAnswers:
    """Runs answers in tasks of their own, feeding ``log``, and hands out readings of them.

    ``window_seconds`` is how long an answer no one reads goes on, waiting for a reader
    (RESUME_WINDOW_SECONDS, more than 0: with 0 the service streams answers directly and
    this is not used).
    """

    def __init__(
        self,
        log: AnswerLog,
        *,
        window_seconds: float,
        answer_ids: Callable[[], str] = new_answer_id,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be more than 0")
        self._log = log
        self._window = window_seconds
        self._poll = min(poll_seconds, window_seconds / 4)
        self._answer_ids = answer_ids
        self._running: dict[str, _Running] = {}

    @property
    def in_flight(self) -> int:
        """Answers running in this process now."""
        return len(self._running)

    async def begin(
        self, events: AsyncIterator[EncodedEvent], *, protocol: str, keys: Sequence[str]
    ) -> Reading:
        """Run the answer ``events`` encodes in its own task; the reading of it from its start
        (the response to the question). ``keys`` find it for a resume."""
        answer = LoggedAnswer(self._answer_ids(), protocol)
        self._log.open(answer, keys)
        running = _Running(answer.answer_id)
        reader = await self._log.read(answer.answer_id)
        if reader is None:
            raise RuntimeError("the answer log lost an answer it has just opened")
        reading = self._attach(running, answer, reader)
        running.task = asyncio.create_task(self._run(running, events))
        self._running[answer.answer_id] = running
        return reading

    async def resume(self, key: str, last_event_id: str | None) -> Reading | None:
        """The rest of the answer ``key`` names, after the event ``last_event_id`` (from its
        start without one); ``None`` if no answer is in flight for ``key`` (or it expired).

        Raises ``InvalidLastEventId`` for an id we never sent, ``ResumeUnavailable`` for an
        id of another answer or of events no longer kept.
        """
        wanted, after = parse_event_id(last_event_id) if last_event_id else (None, 0)
        answer = await self._log.find(key)
        if answer is None:
            return None
        if wanted is not None and wanted != answer.answer_id:
            raise ResumeUnavailable()
        reader = await self._log.read(answer.answer_id, after)
        if reader is None:
            return None
        running = self._running.get(answer.answer_id)
        if running is None:  # run by another replica: read from the shared log
            return Reading(answer, reader)
        return self._attach(running, answer, reader)

    async def stop(self, key: str) -> bool:
        """Stop the answer ``key`` names (stored ``interrupted``), wherever it runs; whether
        there was one."""
        answer = await self._log.find(key)
        if answer is None:
            return False
        running = self._running.get(answer.answer_id)
        if running is not None:
            self._cancel(running, "stopped by the client")
            return True
        try:
            await self._log.request_stop(answer.answer_id)
        except Exception as error:  # Redis down: the answer ends after the window instead
            logger.warning("could not ask for a stop: %s", type(error).__name__)
            return False
        return True

    def _attach(
        self, running: _Running, answer: LoggedAnswer, reader: AsyncIterator[LoggedEvent]
    ) -> Reading:
        running.readers += 1

        def detach() -> None:
            running.readers -= 1
            if running.readers == 0 and running.task is not None and not running.task.done():
                running.left_at = asyncio.get_running_loop().time()
                if running.watchdog is None or running.watchdog.done():
                    running.watchdog = asyncio.create_task(self._wait_for_reader(running))

        return Reading(answer, reader, detach)

    async def _run(self, running: _Running, events: AsyncIterator[EncodedEvent]) -> None:
        running.started = True
        log, answer_id = self._log, running.answer_id
        try:
            async for encoded in events:
                log.append(answer_id, encoded.event, encoded.data)
        finally:
            try:
                close = getattr(events, "aclose", None)
                if close is not None:
                    # Cancelled: the encoder closes the answer, which stores it interrupted.
                    await close()
            finally:
                log.end(answer_id)
                self._running.pop(answer_id, None)
                watchdog = running.watchdog
                if watchdog is not None and watchdog is not asyncio.current_task():
                    watchdog.cancel()

    async def _wait_for_reader(self, running: _Running) -> None:
        """While no one here reads the answer: cancel it once no one anywhere has read it for
        the window, or when a client asked to stop it."""
        loop = asyncio.get_running_loop()
        seen = running.left_at
        answer_id = running.answer_id
        while running.readers == 0 and running.task is not None and not running.task.done():
            await asyncio.sleep(self._poll)
            if running.readers:
                return
            try:
                if await self._log.stop_requested(answer_id):
                    self._cancel(running, "stopped by the client")
                    return
                if await self._log.reader_attached(answer_id):
                    seen = loop.time()
                    continue
            except Exception as error:  # the log's store failed: no one can be seen
                logger.debug("answer log check failed: %s", type(error).__name__)
            if loop.time() - max(seen, running.left_at) >= self._window:
                self._cancel(running, "no reader came back")
                return

    def _cancel(self, running: _Running, why: str) -> None:
        task = running.task
        if task is not None and not task.done() and not running.stopped:
            running.stopped = True
            logger.info("answer %s ended early: %s", running.answer_id, why)
            if running.started:
                task.cancel()
            else:  # after its first step, which was scheduled first
                asyncio.get_running_loop().call_soon(task.cancel)

    async def close(self) -> None:
        """Shut down: cancel every answer still running (each is stored ``interrupted``) and
        wait for them, at most ``CLOSE_TIMEOUT_SECONDS``."""
        await asyncio.sleep(0)  # every answer task takes its first step: see ``_Running.started``
        tasks: list[asyncio.Task[None]] = []
        for running in list(self._running.values()):
            for task in (running.task, running.watchdog):
                if task is not None and not task.done():
                    task.cancel()
                    tasks.append(task)
        if tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                    await asyncio.gather(*tasks, return_exceptions=True)
