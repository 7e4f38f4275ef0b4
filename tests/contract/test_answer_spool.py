"""The ``AnswerSpool`` contract, run against the SQLite spool and the unit tests' fake."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from domain.conversation import FinishedAnswer, PendingAnswer, SpoolState
from domain.models import Usage
from domain.ports import AnswerSpool
from infrastructure.answer_spool import SqliteAnswerSpool
from tests.fakes import InMemoryAnswerSpool


def _sqlite(folder: Path) -> AnswerSpool:
    return SqliteAnswerSpool.open(folder / "spool" / "answers.sqlite3")


IMPLEMENTATIONS: dict[str, Callable[[Path], AnswerSpool]] = {
    "memory": lambda _: InMemoryAnswerSpool(),
    "sqlite": _sqlite,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnswerSpool]:
    opened = IMPLEMENTATIONS[request.param](tmp_path)
    yield opened
    if isinstance(opened, SqliteAnswerSpool):
        opened.close()


def answer(text: str, status: str = "completed") -> FinishedAnswer:
    return FinishedAnswer(text, status, "gpt-x", "stop", None, Usage(1, 2, 3))  # type: ignore[arg-type]


async def test_kept_answers_come_back_first_kept_first(spool: AnswerSpool) -> None:
    kept = [PendingAnswer(7, answer("seven")), PendingAnswer(3, answer("three"), covered=False)]
    for pending in kept:
        await spool.keep(pending)
    assert list(await spool.oldest(10)) == kept
    assert list(await spool.oldest(1)) == kept[:1]


async def test_keeping_a_turn_again_replaces_its_answer(spool: AnswerSpool) -> None:
    await spool.keep(PendingAnswer(1, answer("partial", "interrupted")))
    await spool.keep(PendingAnswer(1, answer("whole")))
    [pending] = await spool.oldest(10)
    assert pending.answer.text == "whole"


async def test_forgotten_answers_are_gone(spool: AnswerSpool) -> None:
    for turn_id in (1, 2, 3):
        await spool.keep(PendingAnswer(turn_id, answer(str(turn_id))))
    await spool.forget([1, 3, 99])
    assert [p.turn_id for p in await spool.oldest(10)] == [2]


async def test_text_comes_back_exactly_as_streamed(spool: AnswerSpool) -> None:
    """NUL, lone surrogates, Korean and emoji: whatever the model sent."""
    text = 'a\x00b \ud800 c\udfff 한국어 🙂\n"quoted"'
    no_usage = FinishedAnswer(
        text, "failed", "gpt-x", None, "upstream_timeout", None, "triage", "triage"
    )
    await spool.keep(PendingAnswer(5, no_usage, covered=True))
    [pending] = await spool.oldest(10)
    assert pending == PendingAnswer(5, no_usage, covered=True)


async def test_sqlite_spool_keeps_answers_across_a_restart(tmp_path: Path) -> None:
    first = _sqlite(tmp_path)
    assert isinstance(first, SqliteAnswerSpool)
    await first.keep(PendingAnswer(9, answer("kept")))
    first.close()
    second = _sqlite(tmp_path)
    assert isinstance(second, SqliteAnswerSpool)
    try:
        assert [p.turn_id for p in await second.oldest(10)] == [9]
    finally:
        second.close()


async def test_a_failed_answer_waits_for_its_retry_and_counts_its_failures(
    spool: AnswerSpool,
) -> None:
    for turn_id in (1, 2):
        await spool.keep(PendingAnswer(turn_id, answer(str(turn_id))))
    await spool.failed(1, retry_at=1_000.0)
    assert [p.turn_id for p in await spool.oldest(10, due_by=999.0)] == [2]
    assert [(p.turn_id, p.failures) for p in await spool.oldest(10, due_by=1_000.0)] == [
        (1, 1),
        (2, 0),
    ]
    await spool.failed(1, retry_at=2_000.0)
    assert [p.failures for p in await spool.oldest(10) if p.turn_id == 1] == [2]
    assert await spool.state() == SpoolState(pending=2, set_aside=0, next_retry_at=2_000.0)


async def test_an_answer_set_aside_is_kept_but_never_offered_again(spool: AnswerSpool) -> None:
    for turn_id in (1, 2):
        await spool.keep(PendingAnswer(turn_id, answer(str(turn_id))))
    await spool.failed(1, retry_at=5.0)
    await spool.set_aside(1)
    assert [p.turn_id for p in await spool.oldest(10)] == [2]
    assert await spool.state() == SpoolState(pending=1, set_aside=1, next_retry_at=None)
    # Kept afresh (the stream's write came round again): a new answer, a new count.
    await spool.keep(PendingAnswer(1, answer("again")))
    assert [(p.turn_id, p.failures) for p in await spool.oldest(10)] == [(2, 0), (1, 0)]
    assert await spool.state() == SpoolState(pending=2, set_aside=0, next_retry_at=None)


async def test_an_empty_spool_has_nothing_pending(spool: AnswerSpool) -> None:
    assert await spool.state() == SpoolState()


async def test_a_spool_file_from_before_failure_counts_opens_with_its_answers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE pending_answers (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " turn_id INTEGER NOT NULL UNIQUE, kept_at TEXT NOT NULL, entry TEXT NOT NULL)"
        )
        entry = '{"text":"old","status":"completed","model":"m","finish_reason":"stop",'
        entry += '"error_code":null,"usage":null,"covered":null}'
        connection.execute(
            "INSERT INTO pending_answers (turn_id, kept_at, entry) VALUES (4, 'then', ?)",
            (entry,),
        )
    connection.close()
    spool = SqliteAnswerSpool.open(path)
    try:
        [pending] = await spool.oldest(10)
        assert (pending.turn_id, pending.answer.text, pending.failures) == (4, "old", 0)
        assert await spool.state() == SpoolState(pending=1)
    finally:
        spool.close()
