"""An answer delivered is an answer stored: when the store fails as a stream ends, the answer
goes to the spool, its tokens are counted all the same, and it is written back later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from tenacity import wait_fixed

from application.ask import AskApplicant
from application.spool import SpooledAnswers
from domain.conversation import FinishedAnswer, PendingAnswer
from domain.errors import StorageUnavailable
from domain.models import AnswerDone, AnswerEvent, Message, TextDelta, Usage
from infrastructure.budget import MemoryTokenBudget
from tests.cycles import cyclic_garbage
from tests.fakes import InMemoryAnswerSpool, ScriptedEngine, StoreThatGoesDown, small_profile

QUESTION = [Message("user", "Where did Jane work?")]


def make(
    store: StoreThatGoesDown,
    spool: InMemoryAnswerSpool,
    *,
    engine: ScriptedEngine | None = None,
    budget: MemoryTokenBudget | None = None,
) -> tuple[AskApplicant, SpooledAnswers]:
    spooled = SpooledAnswers(store, spool, wait=wait_fixed(0.01))
    ask = AskApplicant(
        small_profile(),
        engine or ScriptedEngine(),
        store,
        default_model="model-a",
        allowed_models=frozenset(),
        max_input_chars=500,
        budget=budget,
        spooled=spooled,
    )
    return ask, spooled


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


async def test_answer_the_store_cannot_take_goes_to_the_spool_and_done_still_goes_out() -> None:
    store, spool = StoreThatGoesDown(), InMemoryAnswerSpool()
    ask, _ = make(store, spool)
    stream = await ask.start(QUESTION)
    store.down = True
    events: list[AnswerEvent] = [event async for event in stream.events]
    assert isinstance(events[-1], AnswerDone)
    [pending] = spool.kept.values()
    assert pending.answer == FinishedAnswer(
        "Hello world", "completed", "model-a", "stop", None, Usage(3, 2, 5)
    )


async def test_tokens_count_against_the_budget_when_the_store_fails() -> None:
    store, spool = StoreThatGoesDown(), InMemoryAnswerSpool()
    budget = MemoryTokenBudget(daily_tokens=5)
    ask, _ = make(store, spool, budget=budget)
    stream = await ask.start(QUESTION)
    store.down = True
    [event async for event in stream.events]
    assert await budget.exhausted(), "the answer's 5 tokens were not counted"


async def test_an_abandoned_answer_is_spooled_as_interrupted() -> None:
    store, spool = StoreThatGoesDown(), InMemoryAnswerSpool()
    engine = ScriptedEngine(script=[TextDelta("Hello "), TextDelta("world"), AnswerDone("stop")])
    ask, _ = make(store, spool, engine=engine)
    stream = await ask.start(QUESTION)
    store.down = True
    assert isinstance(await anext(stream.events), TextDelta)
    await stream.events.aclose()  # the client left
    [pending] = spool.kept.values()
    assert (pending.answer.text, pending.answer.status) == ("Hello ", "interrupted")


async def test_spooled_answers_are_written_back_once_the_store_is_back() -> None:
    store, spool = StoreThatGoesDown(), InMemoryAnswerSpool()
    ask, spooled = make(store, spool)
    stream = await ask.start(QUESTION)
    store.down = True
    [event async for event in stream.events]
    with pytest.raises(StorageUnavailable):
        await spooled.write_back()
    assert len(spool.kept) == 1, "an answer the store did not take must stay in the spool"
    store.down = False
    assert await spooled.write_back() == 1
    assert await spooled.write_back() == 0
    assert spool.kept == {}
    [conversation] = store.conversations.values()
    [turn] = conversation.turns
    assert turn.answer is not None
    assert (turn.answer.text, turn.answer.status) == ("Hello world", "completed")


async def test_writing_back_twice_stores_the_answer_once() -> None:
    """The store's write may land after all (it timed out, then committed): writing the
    spooled copy back changes nothing."""
    store, spool = StoreThatGoesDown(), InMemoryAnswerSpool()
    ask, spooled = make(store, spool)
    stream = await ask.start(QUESTION)
    [event async for event in stream.events]
    [conversation] = store.conversations.values()
    [turn] = conversation.turns
    assert turn.answer is not None
    await spool.keep(PendingAnswer(turn.id, turn.answer))
    assert await spooled.write_back() == 1
    [again] = store.conversations[conversation.id].turns
    assert again.answer == turn.answer


async def test_the_background_task_writes_back_at_start_and_after_the_store_returns() -> None:
    store, spool = StoreThatGoesDown(), InMemoryAnswerSpool()
    ask, spooled = make(store, spool)
    stream = await ask.start(QUESTION)
    store.down = True
    [event async for event in stream.events]
    task = asyncio.create_task(spooled.write_back_continually())
    try:
        await asyncio.sleep(0.05)  # several attempts, each failing
        assert len(spool.kept) == 1
        store.down = False
        await until(lambda: not spool.kept)
        [conversation] = store.conversations.values()
        assert conversation.turns[0].answer is not None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_spool_that_fails_too_does_not_break_the_stream() -> None:
    class BrokenSpool(InMemoryAnswerSpool):
        async def keep(self, pending: PendingAnswer) -> None:
            raise OSError("disk full")

    store = StoreThatGoesDown()
    ask, _ = make(store, BrokenSpool())
    stream = await ask.start(QUESTION)
    store.down = True
    events = [event async for event in stream.events]
    assert isinstance(events[-1], AnswerDone)


class StoreThatRefusesOneTurn(StoreThatGoesDown):
    """Up, but one turn's answer is never taken (a row the database keeps refusing)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: int | None = None
        self.refusals = 0

    async def finish_turn(
        self, turn_id: int, answer: FinishedAnswer, covered: bool | None = None
    ) -> None:
        if turn_id == self.refused:
            self.refusals += 1
            raise StorageUnavailable()
        await super().finish_turn(turn_id, answer, covered)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_an_answer_the_store_keeps_refusing_is_retried_with_backoff_then_set_aside(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, spool, clock = StoreThatRefusesOneTurn(), InMemoryAnswerSpool(), Clock()
    spooled = SpooledAnswers(store, spool, now=clock, max_failed_writes=3, backoff=(5.0, 8.0))
    bad = await store.begin_turn("c1", "Q1", covered=True, new_conversation=True)
    good = await store.begin_turn("c2", "경력은?", covered=True, new_conversation=True)
    store.refused = bad
    await spooled.keep(PendingAnswer(bad, FinishedAnswer("bad", "completed", "m")))
    await spooled.keep(PendingAnswer(good, FinishedAnswer("좋은 답", "completed", "m")))

    # The store is up: the good answer is written, the bad one does not hold it up.
    assert await spooled.write_back() == 1
    assert (store.refusals, spooled.pending, spooled.replayed) == (1, 1, 1)
    # Not due before its back-off (5 s, then 8 s: doubled, at most the longest).
    assert await spooled.write_back() == 0
    assert store.refusals == 1
    clock.now += 5
    await spooled.write_back()
    assert store.refusals == 2
    clock.now += 5
    await spooled.write_back()
    assert store.refusals == 2, "the second back-off is 8 s"
    clock.now += 3
    with caplog.at_level("WARNING"):
        await spooled.write_back()
    assert store.refusals == 3
    # Set aside after 3 failed writes: kept on disk, counted, never tried again.
    assert list(spool.aside) == [bad]
    assert (spooled.pending, spooled.set_aside) == (0, 1)
    assert any("set aside the spooled answer of turn" in r.getMessage() for r in caplog.records)
    assert not any("bad" in r.getMessage() for r in caplog.records), "never the answer's text"
    clock.now += 10_000
    assert await spooled.write_back() == 0
    assert store.refusals == 3


async def test_a_store_that_is_down_blames_no_answer() -> None:
    store, spool, clock = StoreThatGoesDown(), InMemoryAnswerSpool(), Clock()
    spooled = SpooledAnswers(store, spool, now=clock, max_failed_writes=2)
    turn = await store.begin_turn("c", "Q?", covered=True, new_conversation=True)
    await spooled.keep(PendingAnswer(turn, FinishedAnswer("A.", "completed", "m")))
    store.down = True
    for _ in range(5):
        with pytest.raises(StorageUnavailable):
            await spooled.write_back()
    [pending] = await spool.oldest(10)
    assert pending.failures == 0
    assert spool.aside == {}
    store.down = False
    assert await spooled.write_back() == 1
    assert (spooled.pending, spooled.set_aside, spooled.replayed) == (0, 0, 1)


async def test_the_background_task_tries_a_refused_answer_again_when_it_is_due() -> None:
    store, spool = StoreThatRefusesOneTurn(), InMemoryAnswerSpool()
    spooled = SpooledAnswers(store, spool, backoff=(0.05, 0.05), wait=wait_fixed(0.01))
    turn = await store.begin_turn("c", "Q?", covered=True, new_conversation=True)
    store.refused = turn
    await spooled.keep(PendingAnswer(turn, FinishedAnswer("A.", "completed", "m")))
    task = asyncio.create_task(spooled.write_back_continually())
    try:
        await until(lambda: store.refusals >= 2)  # tried again with nothing new kept
        store.refused = None
        await until(lambda: not spool.kept)
        assert spooled.replayed == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_writing_back_leaves_no_retry_state_to_the_cycle_collector() -> None:
    """Each round of the write-back (failed attempts, then one that lands) frees its retry
    loop as it ends, not at the next collection."""

    class CountingStore(StoreThatGoesDown):
        failed_calls = 0

        async def check(self) -> None:
            self.failed_calls += self.down
            await super().check()

    store, spool = CountingStore(), InMemoryAnswerSpool()
    spooled = SpooledAnswers(store, spool, wait=wait_fixed(0.01))
    turn = await store.begin_turn("c", "Q?", covered=True, new_conversation=True)
    store.down = True
    with cyclic_garbage("tenacity") as left:
        task = asyncio.create_task(spooled.write_back_continually())
        await spooled.keep(PendingAnswer(turn, FinishedAnswer("A.", "completed", "m")))
        await until(lambda: store.failed_calls >= 3)
        store.down = False
        await until(lambda: not spool.kept)
        await spooled.keep(PendingAnswer(turn, FinishedAnswer("A.", "completed", "m")))
        await until(lambda: not spool.kept)  # a second round, which lands at once
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert spooled.replayed == 2
    assert left == []
