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
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio

from domain.conversation import FinishedAnswer, PendingAnswer
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
                self._connection.execute(
                    "INSERT OR REPLACE INTO pending_answers (turn_id, kept_at, entry)"
                    " VALUES (?, ?, ?)",
                    row,
                )

        with anyio.CancelScope(shield=True), anyio.fail_after(KEEP_TIMEOUT_SECONDS):
            await self._run(write)

    async def oldest(self, limit: int) -> Sequence[PendingAnswer]:
        def read() -> list[tuple[int, str]]:
            cursor = self._connection.execute(
                "SELECT turn_id, entry FROM pending_answers ORDER BY seq LIMIT ?",
                (limit,),
            )
            return cursor.fetchall()

        return [_decoded(turn_id, entry) for turn_id, entry in await self._run(read)]

    async def forget(self, turn_ids: Sequence[int]) -> None:
        def delete() -> None:
            with self._connection:
                self._connection.executemany(
                    "DELETE FROM pending_answers WHERE turn_id = ?", [(i,) for i in turn_ids]
                )

        await self._run(delete)
