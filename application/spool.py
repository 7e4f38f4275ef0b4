"""Answers delivered while the conversation store could not take them: kept on local disk,
written back when the store is back."""

from __future__ import annotations

import asyncio
import logging

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_base, wait_exponential_jitter

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


class SpooledAnswers:
    """The way an answer reaches the conversation store when the store fails as its stream
    ends: ``keep`` puts it in the spool (durable, local), ``write_back_continually`` writes
    what the spool holds to the store, at start-up and whenever something was kept, backing
    off while the store still fails, and forgets each answer once it is stored.

    Writing back is idempotent: ``finish_turn`` of the same answer twice stores it once, so an
    answer whose first write landed late, or a crash between the write and ``forget``, costs
    nothing. An answer whose turn was purged meanwhile is dropped by the store, as always.
    """

    def __init__(
        self,
        conversations: ConversationRepository,
        spool: AnswerSpool,
        *,
        wait: wait_base | None = None,
    ) -> None:
        self._conversations = conversations
        self._spool = spool
        self._wait = wait or wait_exponential_jitter(initial=1, max=60, jitter=1)
        self._kept = asyncio.Event()
        self._kept.set()  # anything left from before a restart is written back at start-up

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
        return True

    async def write_back(self) -> int:
        """Write every answer the spool holds to the store; how many were written. Raises what
        the store raises (``StorageUnavailable``) after forgetting the answers already written."""
        written = 0
        while batch := await self._spool.oldest(BATCH_SIZE):
            done: list[int] = []
            try:
                for pending in batch:
                    await self._conversations.finish_turn(
                        pending.turn_id, pending.answer, pending.covered
                    )
                    done.append(pending.turn_id)
            finally:
                if done:
                    await self._spool.forget(done)
                    written += len(done)
        if written:
            logger.info("wrote back %d spooled answers", written)
        return written

    async def write_back_continually(self) -> None:
        """Until cancelled: write back at start-up and after each ``keep``, retrying with
        exponential backoff (and jitter) while the store or the spool fails."""
        while True:
            await self._kept.wait()
            self._kept.clear()
            retrying = AsyncRetrying(
                wait=self._wait,
                retry=retry_if_exception_type(Exception),
                before_sleep=_log_retry,
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    await self.write_back()
