"""The answer spool (ANSWER_SPOOL): a small SQLite file on local disk for answers the
database could not take when their stream ended, until it can.

SQLite rather than a JSON-lines file: each answer is one row keyed by its turn, so keeping it
again replaces it and a written-back answer is deleted on its own, without rewriting a file;
``synchronous=FULL`` makes each ``keep`` durable (fsync'd) when it returns, and a crash
mid-write leaves the file as it was. Writes are rare (only while the database fails), so the
standard library's driver in a worker thread is enough.

Answers are stored as JSON with every non-ASCII character escaped, so NUL characters and
lone surrogates from a model's output come back exactly as they were streamed.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio

from domain.conversation import FinishedAnswer, PendingAnswer, SpoolState
from domain.models import Usage

T = TypeVar("T")

# An answer kept while the calling stream is being cancelled must still reach the disk, but
# a disk that does not answer must not hang a shutdown.
KEEP_TIMEOUT_SECONDS = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_answers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    turn_id INTEGER NOT NULL UNIQUE,
    kept_at TEXT NOT NULL,
    entry TEXT NOT NULL
)
"""
# Added later: a spool file from before gets them when opened (each row as never failed).
_ADDED_COLUMNS = {
    "failures": "INTEGER NOT NULL DEFAULT 0",
    "retry_at": "REAL",  # time.time() seconds; NULL: due now
    "set_aside": "INTEGER NOT NULL DEFAULT 0",
}


def _encoded(pending: PendingAnswer) -> str:
    answer, usage = pending.answer, pending.answer.usage
    entry: dict[str, Any] = {
        "text": answer.text,
        "status": answer.status,
        "model": answer.model,
        "finish_reason": answer.finish_reason,
        "error_code": answer.error_code,
        "usage": [usage.input_tokens, usage.output_tokens, usage.total_tokens] if usage else None,
        "covered": pending.covered,
        "agent": answer.agent,
        "route": answer.route,
    }
    return json.dumps(entry, ensure_ascii=True, separators=(",", ":"))


def _decoded(turn_id: int, entry: str) -> PendingAnswer:
    fields = json.loads(entry)
    usage = Usage(*fields["usage"]) if fields["usage"] is not None else None
    answer = FinishedAnswer(
        text=fields["text"],
        status=fields["status"],
        model=fields["model"],
        finish_reason=fields["finish_reason"],
        error_code=fields["error_code"],
        usage=usage,
        agent=fields.get("agent"),  # absent from entries kept before the column existed
        route=fields.get("route"),
    )
    return PendingAnswer(turn_id, answer, fields["covered"])


class SqliteAnswerSpool:
    """``AnswerSpool`` in one SQLite file, opened at start-up (``open`` creates its folder)."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._connection = connection
        self._lock = threading.Lock()  # one statement at a time on the shared connection
        self.path = path

    @classmethod
    def open(cls, path: Path) -> SqliteAnswerSpool:
        """Open (or create) the spool at ``path``; raises ``OSError`` or ``sqlite3.Error`` if
        it cannot be written."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=5, check_same_thread=False)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            # Every commit is fsync'd: an answer kept is on disk when ``keep`` returns.
            connection.execute("PRAGMA synchronous=FULL")
            with connection:
                connection.execute(_SCHEMA)
                present = {
                    row[1] for row in connection.execute("PRAGMA table_info(pending_answers)")
                }
                for name, definition in _ADDED_COLUMNS.items():
                    if name not in present:
                        connection.execute(
                            f"ALTER TABLE pending_answers ADD COLUMN {name} {definition}"
                        )
        except sqlite3.Error:
            connection.close()
            raise
        return cls(connection, path)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    async def _run(self, work: Callable[[], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work()

        return await asyncio.to_thread(locked)

    async def keep(self, pending: PendingAnswer) -> None:
        row = (pending.turn_id, datetime.now(UTC).isoformat(), _encoded(pending))

        def write() -> None:
            with self._connection:
                # A new copy of the turn's answer: its failures so far are forgotten.
                self._connection.execute(
                    "INSERT OR REPLACE INTO pending_answers (turn_id, kept_at, entry)"
                    " VALUES (?, ?, ?)",
                    row,
                )

        with anyio.CancelScope(shield=True), anyio.fail_after(KEEP_TIMEOUT_SECONDS):
            await self._run(write)

    async def oldest(self, limit: int, due_by: float = math.inf) -> Sequence[PendingAnswer]:
        def read() -> list[tuple[int, str, int]]:
            cursor = self._connection.execute(
                "SELECT turn_id, entry, failures FROM pending_answers"
                " WHERE set_aside = 0 AND (retry_at IS NULL OR retry_at <= ?)"
                " ORDER BY seq LIMIT ?",
                (min(due_by, sys.float_info.max), limit),
            )
            return cursor.fetchall()

        return [
            replace(_decoded(turn_id, entry), failures=failures)
            for turn_id, entry, failures in await self._run(read)
        ]

    async def forget(self, turn_ids: Sequence[int]) -> None:
        def delete() -> None:
            with self._connection:
                self._connection.executemany(
                    "DELETE FROM pending_answers WHERE turn_id = ?", [(i,) for i in turn_ids]
                )

        await self._run(delete)

    async def failed(self, turn_id: int, retry_at: float) -> None:
        def note() -> None:
            with self._connection:
                self._connection.execute(
                    "UPDATE pending_answers SET failures = failures + 1, retry_at = ?"
                    " WHERE turn_id = ?",
                    (retry_at, turn_id),
                )

        await self._run(note)

    async def set_aside(self, turn_id: int) -> None:
        def mark() -> None:
            with self._connection:
                self._connection.execute(
                    "UPDATE pending_answers SET set_aside = 1 WHERE turn_id = ?", (turn_id,)
                )

        await self._run(mark)

    async def state(self) -> SpoolState:
        def count() -> tuple[int | None, int | None, float | None]:
            row: tuple[int | None, int | None, float | None] = self._connection.execute(
                "SELECT SUM(set_aside = 0), SUM(set_aside = 1),"
                " MIN(CASE WHEN set_aside = 0 THEN retry_at END) FROM pending_answers"
            ).fetchone()
            return row

        pending, aside, next_retry_at = await self._run(count)
        return SpoolState(pending or 0, aside or 0, next_retry_at)
