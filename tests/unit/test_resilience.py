"""The use case keeps answering when the model cannot: fallback, budget, shutdown."""

from __future__ import annotations

from datetime import date

import pytest

from application.ask import AskApplicant
from domain.errors import ErrorCode, ShuttingDown
from domain.models import AnswerDone, AnswerFailed, EngineSwitched, Message, TextDelta, Usage
from domain.policy import ANSWERED_OFFLINE, BUDGET_SPENT
from infrastructure.budget import MemoryTokenBudget
from tests.fakes import InMemoryConversations, ScriptedEngine, small_profile

UNREACHABLE = [AnswerFailed(ErrorCode.UPSTREAM_UNAVAILABLE, "unavailable")]


def make(
    primary: ScriptedEngine,
    *,
    fall_back: bool = True,
    budget: MemoryTokenBudget | None = None,
    accepting: bool = True,
) -> tuple[AskApplicant, ScriptedEngine, InMemoryConversations]:
    offline = ScriptedEngine(
        script=[TextDelta("From the documents."), AnswerDone("stop")], mode="offline"
    )
    conversations = InMemoryConversations()
    ask = AskApplicant(
        small_profile(),
        primary,
        conversations,
        default_model="gpt-x",
        allowed_models=frozenset(),
        max_input_chars=500,
        offline=offline,
        budget=budget,
        fall_back_on_failure=fall_back,
        accepting_questions=lambda: accepting,
    )
    return ask, offline, conversations


async def events_of(ask: AskApplicant) -> list[object]:
    stream = await ask.start([Message("user", "Where did Jane work?")])
    return [event async for event in stream.events]


async def test_failure_before_any_text_falls_back_to_offline() -> None:
    ask, offline, conversations = make(ScriptedEngine(script=UNREACHABLE))
    events = await events_of(ask)
    assert events == [
        EngineSwitched(
            ANSWERED_OFFLINE,
            "offline",
            "gpt-x",
            cause=ErrorCode.UPSTREAM_UNAVAILABLE,
        ),
        TextDelta("From the documents."),
        AnswerDone("stop"),
    ]
    assert len(offline.requests) == 1
    [(_, stored)] = conversations.finished
    assert (stored.text, stored.status, stored.model, stored.error_code) == (
        "From the documents.",
        "completed",
        "gpt-x",
        "upstream_unavailable",  # why the offline engine answered
    )


async def test_the_tokens_of_an_engine_that_gave_up_count_against_the_budget() -> None:
    budget = MemoryTokenBudget(4_000)
    looped = [AnswerFailed(ErrorCode.UPSTREAM_FAILED, "loop", Usage(4_000, 100, 4_100))]
    ask, _, conversations = make(ScriptedEngine(script=looped), budget=budget)
    events = await events_of(ask)

    [switched] = [e for e in events if isinstance(e, EngineSwitched)]
    assert switched.usage == Usage(4_000, 100, 4_100)
    [(_, stored)] = conversations.finished
    assert stored.usage == Usage(4_000, 100, 4_100)
    assert await budget.exhausted()


async def test_a_failed_answer_counts_its_tokens_without_the_fallback() -> None:
    budget = MemoryTokenBudget(1_000)
    failing = [AnswerFailed(ErrorCode.UPSTREAM_FAILED, "loop", Usage(900, 100, 1_000))]
    ask, _, conversations = make(ScriptedEngine(script=failing), fall_back=False, budget=budget)
    await events_of(ask)

    [(_, stored)] = conversations.finished
    assert (stored.status, stored.usage) == ("failed", Usage(900, 100, 1_000))
    assert await budget.exhausted()


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (ErrorCode.UPSTREAM_UNAVAILABLE, "could not be reached"),
        (ErrorCode.UPSTREAM_TIMEOUT, "could not be reached"),
        (ErrorCode.UPSTREAM_RATE_LIMITED, "is busy"),
        (ErrorCode.UPSTREAM_FAILED, "could not complete this answer"),
        (ErrorCode.UPSTREAM_BAD_REQUEST, "could not complete this answer"),
    ],
)
async def test_the_fallback_notice_says_what_happened_to_the_model(
    code: ErrorCode, says: str
) -> None:
    ask, _, _ = make(ScriptedEngine(script=[AnswerFailed(code, "x")]))
    [switched, *_] = await events_of(ask)
    assert isinstance(switched, EngineSwitched)
    assert switched.notice.code == "answered_offline"
    assert says in switched.notice.message


async def test_json_answer_reports_the_engine_that_answered() -> None:
    ask, _, _ = make(ScriptedEngine(script=UNREACHABLE))
    answer = await ask.answer([Message("user", "hi")])
    assert answer.meta.mode == "offline"
    assert answer.meta.notice == ANSWERED_OFFLINE
    assert answer.fallback_cause == ErrorCode.UPSTREAM_UNAVAILABLE
    assert answer.text == "From the documents."


REJECTED_KEY = [AnswerFailed(ErrorCode.UPSTREAM_AUTH, "Incorrect API key provided: sk-abc…")]


@pytest.mark.parametrize("fall_back", [True, False])
async def test_a_rejected_key_stays_in_evidence_until_an_answer_succeeds(
    fall_back: bool, caplog: pytest.LogCaptureFixture
) -> None:
    primary = ScriptedEngine(script=REJECTED_KEY)
    ask, _, _ = make(primary, fall_back=fall_back)
    assert (ask.upstream.key, ask.upstream.last_error) == ("unchecked", None)

    with caplog.at_level("WARNING", logger="application.ask"):
        await events_of(ask)
    assert (ask.upstream.key, ask.upstream.last_error) == ("rejected", ErrorCode.UPSTREAM_AUTH)
    [warning] = [r for r in caplog.records if "rejected the API key" in r.getMessage()]
    assert warning.levelname == "WARNING"
    assert "OPENAI_API_KEY" in warning.getMessage()
    assert "sk-" not in caplog.text

    # Another failure keeps the key's verdict; only a success clears it.
    primary.script = UNREACHABLE
    await events_of(ask)
    assert (ask.upstream.key, ask.upstream.last_error) == (
        "rejected",
        ErrorCode.UPSTREAM_UNAVAILABLE,
    )
    primary.script = [TextDelta("Fine."), AnswerDone("stop")]
    await events_of(ask)
    assert (ask.upstream.key, ask.upstream.last_error) == ("accepted", None)


async def test_the_offline_engine_uses_no_key() -> None:
    ask, _, _ = make(ScriptedEngine(mode="offline"))
    await events_of(ask)
    assert ask.upstream.key == "not_used"


async def test_failure_after_text_is_an_error_not_a_fallback() -> None:
    failing = [TextDelta("Half"), AnswerFailed(ErrorCode.UPSTREAM_UNAVAILABLE, "gone")]
    ask, offline, _ = make(ScriptedEngine(script=failing))
    events = await events_of(ask)
    assert events[0] == TextDelta("Half")
    assert isinstance(events[-1], AnswerFailed)
    assert offline.requests == []


async def test_no_fallback_when_turned_off() -> None:
    ask, offline, _ = make(ScriptedEngine(script=UNREACHABLE), fall_back=False)
    events = await events_of(ask)
    assert isinstance(events[-1], AnswerFailed)
    assert offline.requests == []


async def test_internal_errors_do_not_fall_back() -> None:
    ask, offline, _ = make(ScriptedEngine(raise_after=0))
    events = await events_of(ask)
    assert isinstance(events[-1], AnswerFailed)
    assert events[-1].code == ErrorCode.INTERNAL_ERROR
    assert offline.requests == []


async def test_spent_budget_answers_offline_and_says_so_in_meta() -> None:
    budget = MemoryTokenBudget(daily_tokens=5)
    primary = ScriptedEngine()  # reports 5 tokens
    ask, offline, _ = make(primary, budget=budget)
    first = await ask.start([Message("user", "hi")])
    assert first.meta.mode == "scripted"
    assert first.meta.notice is None
    _ = [event async for event in first.events]
    second = await ask.start([Message("user", "hi again")])
    assert second.meta.mode == "offline"
    assert second.meta.notice == BUDGET_SPENT
    _ = [event async for event in second.events]
    assert len(primary.requests) == 1
    assert len(offline.requests) == 1


async def test_budget_rolls_over_with_the_utc_day() -> None:
    today = [date(2026, 11, 25)]
    budget = MemoryTokenBudget(daily_tokens=10, today=lambda: today[0])
    await budget.spend(10)
    assert await budget.exhausted()
    today[0] = date(2026, 11, 26)
    assert not await budget.exhausted()
    await budget.spend(-3)  # nonsense is ignored
    assert not await budget.exhausted()


async def test_usage_is_counted_against_the_budget() -> None:
    budget = MemoryTokenBudget(daily_tokens=100)
    ask, _, _ = make(
        ScriptedEngine(script=[TextDelta("x"), AnswerDone("stop", Usage(60, 40, 100))]),
        budget=budget,
    )
    await ask.answer([Message("user", "hi")])
    assert await budget.exhausted()


async def test_questions_are_refused_while_shutting_down() -> None:
    ask, _, conversations = make(ScriptedEngine(), accepting=False)
    with pytest.raises(ShuttingDown):
        await ask.start([Message("user", "hi")])
    assert conversations.conversations == {}
