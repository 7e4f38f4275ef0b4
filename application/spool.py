"""Answers delivered while the conversation store could not take them: kept on local disk,
written back when the store is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final, Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_base, wait_exponential_jitter

from common.retrying import retried
from domain.conversation import PendingAnswer
from domain.ports import AnswerSpool, ConversationRepository

logger = logging.getLogger(__name__)

BATCH_SIZE = 100


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    logger.warning(
        "writing back spooled answers failed (%s): trying again in %.0f s",
        type(error).__name__,
        wait,
    )


_ANY_ERROR: Final = retry_if_exception_type(Exception)
"""Shared by every round (``common.retrying``)."""


class SpoolObserver(Protocol):
    """Told what the spool holds each time it is read, and of every answer written back (the
    metrics: pushed, not read at a scrape, so that several workers on one spool add up)."""

    def spool_seen(self, pending: int, set_aside: int) -> None: ...

    def answers_replayed(self, count: int) -> None: ...


MAX_FAILED_WRITES = 8
"""Writes of one answer that may fail while the store takes others, before it is set aside."""
RETRY_BACKOFF_SECONDS = (5.0, 600.0)
"""The wait after an answer's first failed write, doubling with each failure up to the second."""


class SpooledAnswers:
    """The way an answer reaches the conversation store when the store fails as its stream
    ends: ``keep`` puts it in the spool (durable, local), ``write_back_continually`` writes
    what the spool holds to the store, at start-up and whenever something was kept, backing
    off while the store still fails, and forgets each answer once it is stored.

    Writing back is idempotent: ``finish_turn`` of the same answer twice stores it once, so an
    answer whose first write landed late, or a crash between the write and ``forget``, costs
    nothing. An answer whose turn was purged meanwhile is dropped by the store, as always.

    A store that is down fails every answer: the whole write-back waits and tries again, and
    no answer is blamed. An answer that fails while the store is up (``check`` passes) is
    skipped, tried again after a back-off that doubles (``RETRY_BACKOFF_SECONDS``), and after
    ``MAX_FAILED_WRITES`` failures set aside in the spool with a WARNING: one bad answer
    neither holds up the others nor is retried forever. ``pending`` and ``set_aside`` are what
    the spool held when last read, ``replayed`` the answers written back; observers
    (``observe``, the metrics) are told as they change.

    Several processes may share one spool (``WEB_CONCURRENCY``): what it holds is read from it
    after every keep and every write-back, so each process's view is the spool's own.
    """

    def __init__(
        self,
        conversations: ConversationRepository,
        spool: AnswerSpool,
        *,
        wait: wait_base | None = None,
        now: Callable[[], float] = time.time,
        max_failed_writes: int = MAX_FAILED_WRITES,
        backoff: tuple[float, float] = RETRY_BACKOFF_SECONDS,
    ) -> None:
        self._conversations = conversations
        self._spool = spool
        self._wait = wait or wait_exponential_jitter(initial=1, max=60, jitter=1)
        self._now = now
        self._max_failed_writes = max_failed_writes
        self._backoff = backoff
        self._kept = asyncio.Event()
        self._kept.set()  # anything left from before a restart is written back at start-up
        self._next_retry_at: float | None = None
        self._observers: list[SpoolObserver] = []
        self.pending = 0
        """Answers in the spool waiting to be written back, as last seen."""
        self.set_aside = 0
        """Answers the spool keeps aside after too many failed writes, as last seen."""
        self.replayed = 0
        """Answers written back from the spool since start-up."""

    def observe(self, observer: SpoolObserver) -> None:
        """Tell ``observer`` what the spool holds now and whenever that changes."""
        self._observers.append(observer)
        observer.spool_seen(self.pending, self.set_aside)

    def _seen(self) -> None:
        for observer in self._observers:
            observer.spool_seen(self.pending, self.set_aside)

    async def _refresh(self) -> None:
        state = await self._spool.state()
        self.pending, self.set_aside = state.pending, state.set_aside
        self._next_retry_at = state.next_retry_at
        self._seen()

    async def keep(self, pending: PendingAnswer) -> bool:
        """Keep ``pending`` until the store can take it; ``False`` if even the spool failed
        (then the answer is lost, and the error is logged)."""
        try:
            await self._spool.keep(pending)
        except Exception as error:
            logger.error(
                "could not spool the answer of turn %s: %s: it is lost",
                pending.turn_id,
                type(error).__name__,
            )
            return False
        logger.warning("spooled the answer of turn %s until storage is back", pending.turn_id)
        self._kept.set()
        try:
            await self._refresh()
        except Exception:  # counted here; read from the spool again at the next write-back
            self.pending += 1
            self._seen()
        return True

    async def write_back(self) -> int:
        """Write every answer the spool holds to the store; how many were written. Raises what
        the store raises (``StorageUnavailable``) after forgetting the answers already written."""
        written = 0
        try:
            while batch := await self._spool.oldest(BATCH_SIZE, due_by=self._now()):
                done: list[int] = []
                try:
                    for pending in batch:
                        try:
                            await self._conversations.finish_turn(
                                pending.turn_id, pending.answer, pending.covered
                            )
                        except Exception as error:
                            # Down (this raises, and the whole write-back waits), or only
                            # this answer the store will not take.
                            await self._conversations.check()
                            await self._failed(pending, error)
                            continue
                        done.append(pending.turn_id)
                finally:
                    if done:
                        await self._spool.forget(done)
                        written += len(done)
                        self.replayed += len(done)
                        for observer in self._observers:
                            observer.answers_replayed(len(done))
        finally:
            if written:
                logger.info("wrote back %d spooled answers", written)
            try:
                await self._refresh()
            except Exception:  # the counts wait for the next pass, which is not long
                self._next_retry_at = self._now() + self._backoff[0]
        return written

    async def _failed(self, pending: PendingAnswer, error: Exception) -> None:
        """One more failed write of an answer the store would not take while it took others."""
        # Never the answer, nor the error's message (it may quote the data): the type.
        turn_id, failures = pending.turn_id, pending.failures + 1
        first, longest = self._backoff
        if failures >= self._max_failed_writes:
            await self._spool.set_aside(turn_id)
            logger.warning(
                "set aside the spooled answer of turn %s after %d failed writes (%s): it stays "
                "in the spool (ANSWER_SPOOL) and is not retried",
                turn_id,
                failures,
                type(error).__name__,
            )
            return
        wait = min(longest, first * 2 ** (failures - 1))
        await self._spool.failed(turn_id, self._now() + wait)
        logger.warning(
            "writing back the spooled answer of turn %s failed (%s, %d of %d): next try in %.0f s",
            turn_id,
            type(error).__name__,
            failures,
            self._max_failed_writes,
            wait,
        )

    async def write_back_continually(self) -> None:
        """Until cancelled: write back at start-up, after each ``keep`` and when an answer
        that failed is due again, retrying with exponential backoff (and jitter) while the
        store or the spool fails."""
        while True:
            await self._work_to_do()
            self._kept.clear()
            retrying = AsyncRetrying(
                wait=self._wait, retry=_ANY_ERROR, before_sleep=_log_retry, reraise=True
            )
            await retried(retrying, self.write_back)

    async def _work_to_do(self) -> None:
        """Returns once an answer was kept, or the earliest answer that failed is due."""
        if self._next_retry_at is None:
            await self._kept.wait()
            return
        delay = self._next_retry_at - self._now()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kept.wait(), delay)
